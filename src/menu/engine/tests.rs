use super::*;
use std::path::Path;
use std::sync::OnceLock;

use crate::menu::Payee;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("menus");
        Catalog::load(&dir).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A shopper's phone: the state the store would keep between hops, and the last reply.
struct Phone {
    msisdn: Msisdn,
    /// Whether the phone can get an M-Pesa prompt (`Hop::mpesa`).
    mpesa: bool,
    screen_max: usize,
    cart: Cart,
    profile: Profile,
    state: MenuState,
    paybill: String,
    till: Option<String>,
    next_order: String,
    now_ms: i64,
    reply: Reply,
    effects: Vec<Effect>,
}

impl Phone {
    fn new() -> Self {
        Phone {
            msisdn: Msisdn::parse("0712345678").unwrap(),
            mpesa: true,
            screen_max: crate::menu::DEFAULT_SCREEN_MAX,
            cart: Cart::default(),
            profile: Profile::default(),
            state: MenuState::default(),
            paybill: "174379".to_owned(),
            till: None,
            next_order: "D7K2Q9".to_owned(),
            now_ms: 1_700_000_000_000,
            reply: Reply::con(""),
            effects: Vec::new(),
        }
    }

    fn apply(&mut self, step: Step) -> &str {
        self.state = step.state;
        self.cart = step.cart;
        self.profile = step.profile;
        self.effects = step.effects;
        self.reply = step.reply;
        &self.reply.text
    }

    /// A phone on another network or in another country.
    fn on(number: &str, mpesa: bool) -> Self {
        Phone {
            msisdn: Msisdn::parse(number).unwrap(),
            mpesa,
            ..Phone::new()
        }
    }

    fn hop(&self) -> Hop<'_> {
        self.hop_in(catalog())
    }

    fn hop_in<'a>(&'a self, catalog: &'a Catalog) -> Hop<'a> {
        Hop {
            catalog,
            msisdn: &self.msisdn,
            mpesa: self.mpesa,
            screen_max: self.screen_max,
            cart: &self.cart,
            profile: &self.profile,
            payee: match &self.till {
                Some(till) => Payee::Till(till),
                None => Payee::Paybill(&self.paybill),
            },
            new_order_number: &self.next_order,
            push_blocked_until_ms: None,
            now_ms: self.now_ms,
        }
    }

    fn dial(&mut self) -> &str {
        let step = start(&self.hop());
        self.apply(step)
    }

    fn press(&mut self, input: &str) -> &str {
        let step = step(&self.hop(), &self.state, input);
        self.apply(step)
    }

    fn presses(&mut self, inputs: &[&str]) -> &str {
        for input in inputs {
            self.press(input);
        }
        &self.reply.text
    }
}

const MAIN_EN: &str = "Welcome to Duka\n1. Shop\n2. My cart\n3. My orders\n4. Language\n5. Help";
const MAIN_SW: &str = "Karibu Duka\n1. Nunua\n2. Kikapu changu\n3. Oda zangu\n4. Lugha\n5. Msaada";
const NAV_EN: &str = "0. Back 00. Home";
const NAV_SW: &str = "0. Rudi 00. Mwanzo";

fn line(product: &str, qty: u32) -> CartLine {
    CartLine {
        product: product.to_owned(),
        qty,
    }
}

fn summary(number: &str, total: i64, status: OrderStatus) -> OrderSummary {
    OrderSummary {
        number: number.to_owned(),
        total: Kes::whole(total),
        status,
        placed_at_ms: 1_700_000_000_000,
    }
}

/// A shopper with one order in each status, newest first.
fn shopper_with_orders(lang: Lang) -> Phone {
    let mut phone = Phone::new();
    phone.profile.lang = Some(lang);
    phone.profile.orders = vec![
        summary("D7K2Q9", 900, OrderStatus::AwaitingPayment),
        summary("H3MX7P", 1_800, OrderStatus::Failed),
        summary("K9RT4B", 450, OrderStatus::Paid),
        summary("Z2WQ8N", 65, OrderStatus::Expired),
    ];
    phone
}

/// The screen after dialing and typing `inputs`, from a fresh phone made by `phone`.
fn screen_after(phone: fn() -> Phone, inputs: &[&str]) -> String {
    let mut phone = phone();
    phone.dial();
    phone.presses(inputs).to_owned()
}

fn septets(text: &str) -> usize {
    crate::gsm7::septets(text).unwrap_or_else(|| panic!("not GSM-7: {text:?}"))
}

// ---------------------------------------------------------------------------------------------
// The first screen

#[test]
fn dialing_shows_the_main_menu_with_the_shop_name() {
    let mut phone = Phone::new();
    assert_eq!(phone.dial(), MAIN_EN);
    assert!(!phone.reply.end);
    assert_eq!(phone.state.screen_id(), "main");
    assert!(phone.effects.is_empty());
}

#[test]
fn a_kiswahili_shopper_sees_the_main_menu_in_kiswahili() {
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    assert_eq!(phone.dial(), MAIN_SW);
}

#[test]
fn a_returning_shopper_with_a_cart_is_offered_to_continue_it() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("rice-2kg", 2), line("chocolate-100g", 1)];
    assert_eq!(
        phone.dial(),
        "Welcome back. Your cart: 2 items, KES 900.\n1. Continue\n2. Start over"
    );
    assert_eq!(phone.state.screen_id(), "resume");
}

#[test]
fn the_resume_offer_counts_lines_not_units() {
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.cart.lines = catalog()
        .products()
        .take(MAX_CART_LINES)
        .map(|p| line(&p.id, 99))
        .collect();
    let screen = phone.dial().to_owned();
    assert!(screen.contains("bidhaa 10,"), "{screen}");
    assert!(!screen.contains("990"), "{screen}");
}

#[test]
fn the_resume_offer_reads_naturally_in_kiswahili_and_for_one_item() {
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.cart.lines = vec![line("power-bank", 1)];
    assert_eq!(
        phone.dial(),
        "Karibu tena. Kikapu chako: bidhaa 1, KES 1,800.\n1. Endelea\n2. Anza upya"
    );
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("power-bank", 1)];
    assert!(phone.dial().contains("Your cart: 1 item, KES 1,800."));
}

#[test]
fn continue_opens_the_cart_and_back_then_shows_the_main_menu() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("rice-2kg", 2)];
    phone.dial();
    assert!(phone
        .press("1")
        .starts_with("My cart\nTotal KES 720\n2 x Rice 2kg - KES 720"));
    assert_eq!(phone.press("0"), MAIN_EN);
    assert_eq!(phone.cart.lines, vec![line("rice-2kg", 2)]);
}

#[test]
fn start_over_empties_the_cart_and_shows_the_main_menu() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("rice-2kg", 2)];
    phone.dial();
    assert_eq!(phone.press("2"), MAIN_EN);
    assert!(phone.cart.is_empty());
}

#[test]
fn back_from_the_resume_offer_keeps_the_cart_and_shows_the_main_menu() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("rice-2kg", 2)];
    phone.dial();
    assert_eq!(phone.press("0"), MAIN_EN);
    assert_eq!(phone.cart.lines.len(), 1);
    assert!(phone
        .press("9")
        .starts_with("Invalid choice.\nWelcome to Duka"));
}

#[test]
fn a_cart_of_products_no_longer_sold_is_cleaned_and_not_offered() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("discontinued", 2), line("sugar-1kg", 0)];
    assert_eq!(phone.dial(), MAIN_EN);
    assert!(phone.cart.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Shopping

#[test]
fn shop_household_toilet_paper_two_then_checkout_shows_a_total_of_900() {
    let mut phone = Phone::new();
    phone.dial();
    let screen = phone.presses(&["1", "2", "3", "2", "1"]);
    assert!(screen.contains("Total KES 900"), "{screen}");
}

#[test]
fn the_categories_are_listed_in_menu_order() {
    assert_eq!(
        screen_after(Phone::new, &["1"]),
        format!(
            "Choose a category\n1. Groceries\n2. Household\n3. Phone & Data\n\
             4. Snacks & Drinks\n{NAV_EN}"
        )
    );
}

#[test]
fn a_short_product_list_shows_name_and_price_on_one_page() {
    assert_eq!(
        screen_after(Phone::new, &["1", "3"]),
        format!(
            "Phone & Data\n1. SIM Card - KES 50\n2. Data Bundle 1GB - KES 250\n\
             3. Phone Charger - KES 450\n4. Earphones - KES 350\n5. Power Bank - KES 1,800\n\
             {NAV_EN}"
        )
    );
}

#[test]
fn kiswahili_product_lists_use_the_kiswahili_names() {
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    let screen = phone.presses(&["1", "1"]);
    assert!(screen.starts_with("Vyakula\n1. Unga wa Mahindi 2kg - KES 230\n2. Sukari 1kg"));
    assert!(screen.ends_with(NAV_SW));
}

#[test]
fn a_long_product_list_is_paged_with_98_and_numbering_continues() {
    let mut phone = Phone::new();
    phone.dial();
    let first = phone.presses(&["1", "4"]).to_owned();
    assert!(first.contains("\n1. Soda 500ml - KES 70\n"), "{first}");
    assert!(first.ends_with(&format!("98. More\n{NAV_EN}")), "{first}");
    let second = phone.press("98").to_owned();
    let first_numbers = numbers(&first);
    let second_numbers = numbers(&second);
    assert_eq!(
        second_numbers.first().copied(),
        first_numbers.last().map(|n| n + 1),
        "{first}\n---\n{second}"
    );
}

/// The option numbers on a screen, without the navigation keys.
fn numbers(screen: &str) -> Vec<usize> {
    screen
        .lines()
        .filter_map(|l| l.split_once(". ")?.0.parse().ok())
        .filter(|n| *n != 98 && *n != 0)
        .collect()
}

#[test]
fn paging_through_a_list_shows_every_product_once_and_in_order() {
    let category = &catalog().categories()[3];
    let mut phone = Phone::new();
    phone.dial();
    let mut screen = phone.presses(&["1", "4"]).to_owned();
    let mut seen = Vec::new();
    loop {
        assert!(septets(&screen) <= crate::menu::DEFAULT_SCREEN_MAX);
        for l in screen.lines() {
            if let Some(product) = category
                .products
                .iter()
                .find(|p| l.contains(&render::list_name(&p.name)))
            {
                seen.push(product.id.clone());
            }
        }
        if !screen.contains("98. More") {
            break;
        }
        screen = phone.press("98").to_owned();
    }
    let all: Vec<String> = category.products.iter().map(|p| p.id.clone()).collect();
    assert_eq!(seen, all);
    assert!(all.len() >= 12);
}

#[test]
fn more_on_the_last_page_is_an_invalid_choice() {
    let mut phone = Phone::new();
    phone.dial();
    phone.presses(&["1", "4", "98", "98", "98"]);
    let last = phone.reply.text.clone();
    assert!(!last.contains("98. More"));
    assert_eq!(phone.press("98"), format!("Invalid choice.\n{last}"));
}

#[test]
fn more_on_an_unpaged_screen_is_an_invalid_choice() {
    assert_eq!(
        screen_after(Phone::new, &["98"]),
        format!("Invalid choice.\n{MAIN_EN}")
    );
    assert!(screen_after(Phone::new, &["1", "98"]).starts_with("Invalid choice.\nChoose"));
}

#[test]
fn back_from_a_later_page_shows_the_page_before() {
    let first = screen_after(Phone::new, &["1", "4"]);
    assert_eq!(screen_after(Phone::new, &["1", "4", "98", "0"]), first);
    let second = screen_after(Phone::new, &["1", "4", "98"]);
    assert_eq!(
        screen_after(Phone::new, &["1", "4", "98", "98", "0"]),
        second
    );
}

#[test]
fn a_number_from_another_page_of_the_list_is_accepted() {
    // Soda is item 1 on the first page; typing 1 on the second page still means Soda.
    assert_eq!(
        screen_after(Phone::new, &["1", "4", "98", "1"]),
        format!("Soda 500ml - KES 70 each\nEnter quantity\n{NAV_EN}")
    );
    // 13 is on the last page; typing it on the first page picks it.
    assert!(screen_after(Phone::new, &["1", "4", "13"]).starts_with("Yoghurt 500ml"));
}

#[test]
fn a_number_past_the_end_of_the_list_is_an_invalid_choice() {
    let list = screen_after(Phone::new, &["1", "3"]);
    assert_eq!(
        screen_after(Phone::new, &["1", "3", "6"]),
        format!("Invalid choice.\n{list}")
    );
    assert!(screen_after(Phone::new, &["1", "3", "01"]).starts_with("Invalid choice."));
}

#[test]
fn a_hint_on_a_paged_list_keeps_numbering_and_more_continues_where_the_screen_ended() {
    let mut phone = Phone::new();
    phone.dial();
    phone.presses(&["1", "4", "x"]);
    let hinted = phone.reply.text.clone();
    assert!(hinted.starts_with("Invalid choice.\nSnacks & Drinks\n1. "));
    assert!(septets(&hinted) <= crate::menu::DEFAULT_SCREEN_MAX);
    let last_shown = *numbers(&hinted).last().unwrap();
    let next = phone.press("98").to_owned();
    assert_eq!(numbers(&next)[0], last_shown + 1, "{hinted}\n---\n{next}");
}

#[test]
fn the_product_screen_shows_the_price_each_and_asks_for_a_quantity() {
    assert_eq!(
        screen_after(Phone::new, &["1", "2", "3"]),
        format!("Toilet Paper 10pk - KES 450 each\nEnter quantity\n{NAV_EN}")
    );
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "2", "3"]),
        format!("Karatasi ya Choo 10pk - KES 450 kila moja\nWeka idadi\n{NAV_SW}")
    );
}

#[test]
fn quantities_outside_1_to_99_repeat_the_screen_with_a_hint() {
    let product = screen_after(Phone::new, &["1", "2", "3"]);
    for bad in [
        "100", "abc", "2*3", "", "-1", "1.5", "000", "1000", "two", "9 9",
    ] {
        let mut phone = Phone::new();
        phone.dial();
        phone.presses(&["1", "2", "3"]);
        assert_eq!(
            phone.press(bad),
            format!("Enter a number from 1 to 99.\n{product}"),
            "{bad:?}"
        );
        assert_eq!(phone.state.screen_id(), "quantity");
        assert!(phone.cart.is_empty(), "{bad:?}");
    }
}

#[test]
fn zero_on_the_quantity_screen_goes_back_as_on_every_screen() {
    let list = screen_after(Phone::new, &["1", "2"]);
    assert_eq!(screen_after(Phone::new, &["1", "2", "3", "0"]), list);
}

#[test]
fn the_quantity_screen_reads_98_as_a_quantity_not_a_page() {
    let mut phone = Phone::new();
    phone.dial();
    assert!(phone
        .presses(&["1", "2", "4", "98"])
        .starts_with("Added 98 x Matches 10pk."));
    assert_eq!(phone.cart.lines, vec![line("matches-10", 98)]);
}

#[test]
fn the_smallest_and_largest_quantities_are_accepted() {
    for (typed, qty) in [("1", 1), ("99", 99), ("05", 5), (" 7 ", 7)] {
        let mut phone = Phone::new();
        phone.dial();
        phone.presses(&["1", "1", "2", typed]);
        assert_eq!(phone.cart.lines, vec![line("sugar-1kg", qty)], "{typed:?}");
    }
}

#[test]
fn adding_shows_what_was_added_with_checkout_and_continue_shopping() {
    assert_eq!(
        screen_after(Phone::new, &["1", "2", "3", "2"]),
        format!("Added 2 x Toilet Paper 10pk.\n1. Checkout\n2. Continue shopping\n{NAV_EN}")
    );
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "2", "3", "2"]),
        format!("Umeongeza 2 x Karatasi ya Choo 10pk.\n1. Lipa sasa\n2. Endelea kununua\n{NAV_SW}")
    );
}

#[test]
fn continue_shopping_returns_to_the_page_of_the_list_the_product_came_from() {
    let page = screen_after(Phone::new, &["1", "4", "98"]);
    assert_eq!(
        screen_after(Phone::new, &["1", "4", "98", "6", "1", "2"]),
        page
    );
}

#[test]
fn back_after_adding_returns_to_the_product_list_not_the_quantity_prompt() {
    let list = screen_after(Phone::new, &["1", "2"]);
    let mut phone = Phone::new();
    phone.dial();
    assert_eq!(phone.presses(&["1", "2", "3", "2", "0"]), list);
    assert_eq!(phone.cart.lines, vec![line("toilet-paper-10", 2)]);
}

#[test]
fn adding_a_product_already_in_the_cart_adds_to_its_line() {
    let mut phone = Phone::new();
    phone.dial();
    phone.presses(&["1", "2", "3", "2", "2", "3", "5"]);
    assert_eq!(
        phone.reply.text.lines().next(),
        Some("Added 5 x Toilet Paper 10pk.")
    );
    phone.presses(&["2", "1", "7"]);
    assert_eq!(
        phone.cart.lines,
        vec![line("toilet-paper-10", 7), line("bar-soap-800g", 7)]
    );
}

#[test]
fn a_line_is_capped_at_99_and_the_shopper_is_told() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("sugar-1kg", 60)];
    phone.dial();
    phone.presses(&["0", "1", "1", "2"]);
    assert_eq!(
        phone.press("60"),
        format!("99 is the most per item.\nAdded 39 x Sugar 1kg.\n1. Checkout\n2. Continue shopping\n{NAV_EN}")
    );
    assert_eq!(phone.cart.lines, vec![line("sugar-1kg", 99)]);
}

#[test]
fn a_line_already_at_99_cannot_grow() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("sugar-1kg", 99)];
    phone.dial();
    phone.presses(&["0", "1", "1", "2"]);
    assert_eq!(
        phone.press("1"),
        format!("99 is the most per item.\nSugar 1kg - KES 190 each\nEnter quantity\n{NAV_EN}")
    );
    assert_eq!(phone.cart.lines, vec![line("sugar-1kg", 99)]);
}

/// A cart holding the ten products of the first two categories, one of each.
fn full_cart_phone() -> Phone {
    let mut phone = Phone::new();
    phone.cart.lines = catalog()
        .products()
        .take(MAX_CART_LINES)
        .map(|p| line(&p.id, 1))
        .collect();
    phone
}

#[test]
fn an_eleventh_product_is_refused_before_the_quantity_is_asked() {
    let mut phone = full_cart_phone();
    phone.dial();
    let list = phone.presses(&["0", "1", "4"]).to_owned();
    let screen = phone.press("1").to_owned();
    assert!(
        hinted("Cart full (10 products). Remove one first.", &list).contains(&screen),
        "{screen}"
    );
    assert_eq!(phone.state.screen_id(), "products");
    assert!(
        septets(&screen) <= crate::menu::DEFAULT_SCREEN_MAX,
        "{list}"
    );
    assert_eq!(phone.cart.lines.len(), MAX_CART_LINES);
}

#[test]
fn a_full_cart_still_takes_more_of_a_product_it_holds() {
    let mut phone = full_cart_phone();
    phone.dial();
    phone.presses(&["0", "1", "1", "1", "3"]);
    assert!(phone.reply.text.starts_with("Added 3 x Maize Flour 2kg."));
    assert_eq!(phone.cart.lines[0], line("maize-flour-2kg", 4));
}

#[test]
fn an_order_above_the_mpesa_limit_is_refused_with_a_hint() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("power-bank", 99), line("charger", 99)];
    phone.dial();
    phone.presses(&["0", "1", "2", "3"]);
    let screen = phone.press("99").to_owned();
    assert!(
        screen.starts_with("An order can be at most KES 250,000.\nToilet Paper 10pk"),
        "{screen}"
    );
    assert_eq!(phone.cart.lines.len(), 2);
    assert!(phone
        .press("10")
        .starts_with("Added 10 x Toilet Paper 10pk."));
}

// ---------------------------------------------------------------------------------------------
// Checkout

#[test]
fn a_cart_over_the_mpesa_limit_after_a_price_rise_cannot_be_checked_out() {
    // The engine never builds such a cart, but a price can rise while a cart waits.
    let mut phone = Phone::new();
    phone.cart.lines = vec![
        line("power-bank", 99),
        line("charger", 99),
        line("toilet-paper-10", 99),
    ];
    phone.dial();
    assert!(phone.presses(&["1", "1"]).starts_with("Total KES 267,300."));
    assert!(phone
        .press("1")
        .starts_with("An order can be at most KES 250,000.\nTotal KES 267,300."));
    assert!(phone.effects.is_empty());
    assert_eq!(phone.cart.lines.len(), 3);
}

#[test]
fn checkout_shows_the_total_and_both_ways_to_pay() {
    assert_eq!(
        screen_after(Phone::new, &["1", "2", "3", "2", "1"]),
        format!(
            "Total KES 900.\n1. Pay with M-Pesa (07XX XXX X78)\n2. Pay with another number\n{NAV_EN}"
        )
    );
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "2", "3", "2", "1"]),
        format!(
            "Jumla KES 900.\n1. Lipa na M-Pesa (07XX XXX X78)\n2. Lipa kwa namba nyingine\n{NAV_SW}"
        )
    );
}

#[test]
fn checkout_with_an_empty_cart_says_so_and_offers_the_shop() {
    let mut phone = Phone::new();
    phone.state = serde_json::from_str(r#"{"s":["s:main","o"]}"#).unwrap();
    assert_eq!(
        phone.press("9"),
        format!("Invalid choice.\nYour cart is empty.\n1. Shop\n{NAV_EN}")
    );
    assert!(phone.press("1").starts_with("Choose a category"));
}

fn toilet_paper_order(payer: &str, lang: Lang) -> Effect {
    let name = match lang {
        Lang::En => "Toilet Paper 10pk",
        Lang::Sw => "Karatasi ya Choo 10pk",
    };
    Effect::PlaceOrder {
        number: "D7K2Q9".to_owned(),
        lines: vec![OrderLine {
            product: "toilet-paper-10".to_owned(),
            name: name.to_owned(),
            unit_price: Kes::whole(450),
            qty: 2,
        }],
        total: Kes::whole(900),
        lang,
        payer: Some(Msisdn::parse(payer).unwrap()),
    }
}

#[test]
fn paying_with_my_number_places_the_order_and_ends_with_the_paybill_way() {
    let mut phone = Phone::new();
    phone.profile.orders = vec![summary("K9RT4B", 450, OrderStatus::Paid)];
    phone.dial();
    let screen = phone.presses(&["1", "2", "3", "2", "1", "1"]).to_owned();
    assert_eq!(
        screen,
        "Order D7K2Q9. Enter your M-Pesa PIN on the prompt that follows. No prompt? \
         Pay KES 900 to Paybill 174379, Account D7K2Q9."
    );
    assert!(phone.reply.end);
    assert_eq!(
        phone.effects,
        vec![toilet_paper_order("0712345678", Lang::En)]
    );
    assert!(phone.cart.is_empty());
    assert_eq!(
        phone.profile.orders,
        vec![
            OrderSummary {
                number: "D7K2Q9".to_owned(),
                total: Kes::whole(900),
                status: OrderStatus::AwaitingPayment,
                placed_at_ms: 1_700_000_000_000,
            },
            summary("K9RT4B", 450, OrderStatus::Paid),
        ]
    );
}

#[test]
fn a_kiswahili_order_ends_in_kiswahili_and_snapshots_kiswahili_names() {
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "2", "3", "2", "1", "1"]),
        "Oda D7K2Q9. Weka PIN yako ya M-Pesa kwenye ombi litakalofuata. Hukupata ombi? \
         Lipa KES 900 kwa Paybill 174379, Akaunti D7K2Q9."
    );
    assert_eq!(
        phone.effects,
        vec![toilet_paper_order("0712345678", Lang::Sw)]
    );
}

#[test]
fn paying_with_another_number_asks_for_it_and_re_asks_on_a_bad_one() {
    let mut phone = Phone::new();
    phone.dial();
    let ask = phone.presses(&["1", "2", "3", "2", "1", "2"]).to_owned();
    assert_eq!(
        ask,
        format!("Enter the M-Pesa number (Safaricom) to pay with\n{NAV_EN}")
    );
    for bad in [
        "12345",
        "0201234567",
        "07*12345678",
        "abc",
        "",
        "98",
        "071234567890",
    ] {
        assert_eq!(
            phone.press(bad),
            format!("Not a valid number. Try e.g. 0712345678.\n{ask}"),
            "{bad:?}"
        );
        assert!(phone.effects.is_empty());
    }
    assert_eq!(phone.cart.lines.len(), 1);
}

#[test]
fn every_form_of_a_kenyan_mobile_number_places_the_order_for_that_payer() {
    for (typed, normalised) in [
        ("0722000111", "0722000111"),
        ("0110345678", "0110345678"),
        ("254722000111", "0722000111"),
        ("254110345678", "0110345678"),
        ("+254722000111", "0722000111"),
    ] {
        let mut phone = Phone::new();
        phone.dial();
        phone.presses(&["1", "2", "3", "2", "1", "2", typed]);
        assert!(phone.reply.end, "{typed}");
        assert_eq!(
            phone.effects,
            vec![toilet_paper_order(normalised, Lang::En)],
            "{typed}"
        );
        assert!(phone.cart.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Shoppers who cannot get an M-Pesa prompt

/// An Airtel Kenya phone (network 63903): Kenyan, but no STK push.
fn airtel_phone() -> Phone {
    Phone::on("0733123456", false)
}

/// A Tanzanian phone.
fn tanzanian_phone() -> Phone {
    Phone::on("+255712345678", false)
}

#[test]
fn a_kenyan_on_another_network_is_offered_the_paybill_not_the_prompt() {
    let mut phone = airtel_phone();
    phone.dial();
    let checkout = phone.presses(&["1", "2", "3", "2", "1"]).to_owned();
    assert_eq!(
        checkout,
        format!(
            "Total KES 900.\n1. Order now, pay to Paybill\n2. Pay with another number\n{NAV_EN}"
        )
    );
    assert!(!checkout.contains("M-Pesa ("), "{checkout}");
    assert_eq!(
        phone.press("1"),
        "Order D7K2Q9 placed. To pay, send KES 900 by M-Pesa to Paybill 174379, Account D7K2Q9."
    );
    assert!(phone.reply.end);
    // The order is placed, with no payer to push to.
    let Effect::PlaceOrder { payer, number, .. } = &phone.effects[0] else {
        panic!("{:?}", phone.effects);
    };
    assert_eq!((payer, number.as_str()), (&None, "D7K2Q9"));
    assert!(phone.cart.is_empty());
    assert_eq!(phone.profile.orders[0].number, "D7K2Q9");
}

#[test]
fn the_paybill_order_reads_in_kiswahili() {
    let mut phone = airtel_phone();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert!(phone
        .presses(&["1", "2", "3", "2", "1"])
        .contains("1. Agiza sasa, lipa kwa Paybill"));
    assert_eq!(
        phone.press("1"),
        "Oda D7K2Q9 imepokelewa. Kulipa, tuma KES 900 kwa M-Pesa kwa Paybill 174379, Akaunti D7K2Q9."
    );
}

#[test]
fn a_kenyan_on_another_network_may_still_pay_from_a_safaricom_number() {
    let mut phone = airtel_phone();
    phone.dial();
    phone.presses(&["1", "2", "3", "2", "1", "2", "0722000111"]);
    assert!(phone.reply.end);
    assert_eq!(
        phone.effects,
        vec![toilet_paper_order("0722000111", Lang::En)]
    );
}

#[test]
fn a_number_outside_kenya_is_told_the_shop_takes_mpesa_only_and_no_order_is_placed() {
    for (lang, text) in [
        (
            Lang::En,
            "Total KES 900. Sorry, Duka takes M-Pesa (Kenya) only and cannot take an order \
             from this number. Your cart is kept.",
        ),
        (
            Lang::Sw,
            "Jumla KES 900. Samahani, Duka inapokea M-Pesa (Kenya) tu, haiwezi kupokea oda \
             ya namba hii. Kikapu kimehifadhiwa.",
        ),
    ] {
        let mut phone = tanzanian_phone();
        phone.profile.lang = Some(lang);
        phone.dial();
        // Browsing works; checkout from "Added" ends the session with the explanation.
        assert_eq!(phone.presses(&["1", "2", "3", "2", "1"]), text);
        assert!(phone.reply.end);
        assert!(phone.effects.is_empty());
        assert!(phone.profile.orders.is_empty());
        assert_eq!(phone.cart.lines, vec![line("toilet-paper-10", 2)]);
        // From the cart too.
        let mut phone = tanzanian_phone();
        phone.profile.lang = Some(lang);
        phone.cart = phone_cart();
        phone.dial();
        phone.presses(&["1", "1"]);
        assert!(
            phone.reply.end && phone.effects.is_empty(),
            "{}",
            phone.reply.text
        );
    }
}

fn phone_cart() -> Cart {
    Cart {
        lines: vec![line("rice-2kg", 2)],
    }
}

#[test]
fn another_number_must_be_a_safaricom_number() {
    for (lang, hint) in [
        (
            Lang::En,
            "Only a Safaricom number can get the M-Pesa prompt. Try e.g. 0712345678.",
        ),
        (
            Lang::Sw,
            "Namba ya Safaricom tu ndiyo hupata ombi la M-Pesa. Jaribu mfano 0712345678.",
        ),
    ] {
        let mut phone = Phone::new();
        phone.profile.lang = Some(lang);
        phone.dial();
        phone.presses(&["1", "2", "3", "2", "1", "2"]);
        for other in ["0733123456", "0100123456", "+255712345678", "233241234567"] {
            let screen = phone.press(other).to_owned();
            assert!(screen.starts_with(hint), "{other}: {screen}");
            assert!(!phone.reply.end, "{other}");
            assert!(phone.effects.is_empty(), "{other}");
        }
        assert_eq!(phone.state.screen_id(), "payer");
    }
}

#[test]
fn a_second_order_while_a_prompt_is_pending_says_its_prompt_waits() {
    let mut phone = Phone::new();
    // An order placed 30 s ago still awaits its payment: its prompt may be on the phone.
    phone.profile.orders = vec![OrderSummary {
        placed_at_ms: phone.now_ms - 30_000,
        ..summary("K9RT4B", 450, OrderStatus::AwaitingPayment)
    }];
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "2", "3", "2", "1", "1"]),
        "Order D7K2Q9. A payment prompt is still open on your phone; this order's prompt comes \
         after it. Or pay KES 900 to Paybill 174379, Account D7K2Q9."
    );
    assert_eq!(
        phone.effects,
        vec![toilet_paper_order("0712345678", Lang::En)]
    );

    // Once the prompt's time is over (or the earlier order is paid), the usual text.
    for (age_ms, status) in [
        (
            i64::try_from(STK_LOCK_TTL_MS).unwrap(),
            OrderStatus::AwaitingPayment,
        ),
        (30_000, OrderStatus::Paid),
    ] {
        let mut phone = Phone::new();
        phone.profile.orders = vec![OrderSummary {
            placed_at_ms: phone.now_ms - age_ms,
            ..summary("K9RT4B", 450, status)
        }];
        phone.dial();
        assert!(phone
            .presses(&["1", "2", "3", "2", "1", "1"])
            .contains("Enter your M-Pesa PIN on the prompt that follows"));
    }

    // A prompt to another number does not wait for this phone's.
    let mut phone = Phone::new();
    phone.profile.orders = vec![summary("K9RT4B", 450, OrderStatus::AwaitingPayment)];
    phone.dial();
    assert!(phone
        .presses(&["1", "2", "3", "2", "1", "2", "0722000111"])
        .contains("the prompt that follows"));
}

#[test]
fn an_unpaid_order_offers_only_the_paybill_to_a_phone_that_cannot_be_pushed() {
    let mut phone = Phone::on("0733123456", false);
    phone.profile = shopper_with_orders(Lang::En).profile;
    phone.dial();
    assert_eq!(
        phone.presses(&["3", "1"]),
        format!(
            "Order D7K2Q9\nTotal KES 900\nStatus: Awaiting payment\n\
             Or pay KES 900 to Paybill 174379, Account D7K2Q9.\n{NAV_EN}"
        )
    );
    assert!(phone.press("1").starts_with("Invalid choice."));
    assert!(phone.effects.is_empty());
}

#[test]
fn screens_are_paged_at_the_gateway_s_budget() {
    let mut long_cart = Phone::new();
    long_cart.cart.lines = catalog()
        .products()
        .take(MAX_CART_LINES)
        .map(|p| line(&p.id, 99))
        .collect();
    let pages = |screen_max: usize| {
        let mut phone = Phone {
            screen_max,
            cart: long_cart.cart.clone(),
            ..Phone::new()
        };
        phone.dial();
        let mut screen = phone.press("1").to_owned();
        let mut pages = 1;
        while screen.contains("98. More") {
            assert!(septets(&screen) <= screen_max, "{screen}");
            screen = phone.press("98").to_owned();
            pages += 1;
        }
        assert!(septets(&screen) <= screen_max, "{screen}");
        pages
    };
    let default = pages(crate::menu::DEFAULT_SCREEN_MAX);
    let smallest = pages(crate::menu::SMALLEST_SCREEN_MAX);
    assert!(
        smallest > default,
        "{smallest} pages at 160, {default} at 178"
    );
}

#[test]
fn the_profile_keeps_the_newest_orders_only() {
    let mut phone = Phone::new();
    phone.profile.orders = (0..Profile::MAX_ORDERS)
        .map(|i| summary(&format!("OLD00{i}"), 100, OrderStatus::Paid))
        .collect();
    phone.dial();
    phone.presses(&["1", "2", "3", "2", "1", "1"]);
    assert_eq!(phone.profile.orders.len(), Profile::MAX_ORDERS);
    assert_eq!(phone.profile.orders[0].number, "D7K2Q9");
    assert_eq!(phone.profile.orders[1].number, "OLD000");
}

#[test]
fn an_order_snapshots_every_line_at_catalog_prices() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("rice-2kg", 2), line("chocolate-100g", 1)];
    phone.dial();
    phone.presses(&["1", "1", "1"]);
    let Some(Effect::PlaceOrder { lines, total, .. }) = phone.effects.first() else {
        panic!("no order placed: {:?}", phone.reply);
    };
    assert_eq!(*total, Kes::whole(900));
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.product.as_str(), l.unit_price, l.qty))
            .collect::<Vec<_>>(),
        vec![
            ("rice-2kg", Kes::whole(360), 2),
            ("chocolate-100g", Kes::whole(180), 1)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// My cart

#[test]
fn an_empty_cart_says_so_and_offers_the_shop() {
    assert_eq!(
        screen_after(Phone::new, &["2"]),
        format!("My cart\nYour cart is empty.\n1. Shop\n{NAV_EN}")
    );
    assert!(screen_after(Phone::new, &["2", "1"]).starts_with("Choose a category"));
    assert!(screen_after(Phone::new, &["2", "2"]).starts_with("Invalid choice.\nMy cart"));
}

fn cart_phone() -> Phone {
    let mut phone = Phone::new();
    phone.cart.lines = vec![line("rice-2kg", 2), line("chocolate-100g", 1)];
    phone
}

#[test]
fn the_cart_lists_quantities_line_totals_the_total_and_the_actions() {
    assert_eq!(
        screen_after(cart_phone, &["1"]),
        format!(
            "My cart\nTotal KES 900\n2 x Rice 2kg - KES 720\n1 x Chocolate Bar 100g - KES 180\n\
             1. Checkout\n2. Change an item\n3. Empty cart\n{NAV_EN}"
        )
    );
}

#[test]
fn the_cart_reads_in_kiswahili() {
    let mut phone = cart_phone();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert_eq!(
        phone.press("1"),
        format!(
            "Kikapu changu\nJumla KES 900\n2 x Mchele 2kg - KES 720\n1 x Chokoleti 100g - KES 180\n\
             1. Lipa sasa\n2. Badilisha\n3. Futa yote\n{NAV_SW}"
        )
    );
}

#[test]
fn checkout_from_the_cart_shows_the_total() {
    assert!(screen_after(cart_phone, &["1", "1"]).starts_with("Total KES 900.\n1. Pay with"));
}

#[test]
fn a_long_cart_is_paged_and_its_actions_work_from_any_page() {
    let mut phone = Phone::new();
    phone.cart.lines = catalog()
        .products()
        .skip(10)
        .take(MAX_CART_LINES)
        .map(|p| line(&p.id, 99))
        .collect();
    let full = phone.cart.clone();
    phone.dial();
    let first = phone.press("1").to_owned();
    // The total and the actions are on the first page; only the lines are paged.
    assert!(
        first.contains("98. More")
            && first.contains("Total KES ")
            && first.contains("1. Checkout\n2. Change an item\n3. Empty cart"),
        "{first}"
    );
    let mut previous = first.clone();
    let mut screen = first.clone();
    let mut pages = 1;
    let mut lines_seen = 0;
    loop {
        lines_seen += screen.lines().filter(|l| l.contains(" x ")).count();
        if !screen.contains("98. More") {
            break;
        }
        previous = screen.clone();
        screen = phone.press("98").to_owned();
        pages += 1;
        assert!(septets(&screen) <= crate::menu::DEFAULT_SCREEN_MAX);
        assert!(screen.contains("1. Checkout"), "{screen}");
    }
    assert!(pages > 1);
    assert_eq!(lines_seen, MAX_CART_LINES);
    assert_eq!(phone.press("0"), previous);

    // The actions work from the first page.
    let mut phone = Phone::new();
    phone.cart = full.clone();
    phone.dial();
    assert_eq!(phone.press("1"), first);
    assert!(phone
        .press("3")
        .starts_with("Remove everything from your cart?"));
}

#[test]
fn removing_an_item_picks_it_from_a_list_and_says_so() {
    let mut phone = cart_phone();
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "2"]),
        format!("Change which item?\n1. 2 x Rice 2kg\n2. 1 x Chocolate Bar 100g\n{NAV_EN}")
    );
    assert_eq!(
        phone.press("1"),
        format!("2 x Rice 2kg - KES 720\n1. Change quantity\n2. Remove it\n{NAV_EN}")
    );
    assert_eq!(
        phone.press("2"),
        format!(
            "Removed Rice 2kg.\nMy cart\nTotal KES 180\n1 x Chocolate Bar 100g - KES 180\n\
             1. Checkout\n2. Change an item\n3. Empty cart\n{NAV_EN}"
        )
    );
    assert_eq!(phone.cart.lines, vec![line("chocolate-100g", 1)]);
    assert_eq!(phone.state.screen_id(), "cart");
    assert!(phone.press("2").starts_with("Change which item?"));
    assert!(phone
        .press("3")
        .starts_with("Invalid choice.\nChange which item?"));
    phone.press("1");
    assert!(phone
        .press("3")
        .starts_with("Invalid choice.\n1 x Chocolate"));
    assert_eq!(
        phone.press("2"),
        format!("Removed Chocolate Bar 100g.\nMy cart\nYour cart is empty.\n1. Shop\n{NAV_EN}")
    );
    // Back from the emptied cart does not reopen a line that is gone.
    assert_eq!(phone.press("0"), MAIN_EN);
}

#[test]
fn a_line_s_quantity_can_be_changed_and_is_checked_like_the_quantity_screen() {
    let mut phone = cart_phone();
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "2", "1", "1"]),
        format!("Rice 2kg - KES 360 each\nEnter the new quantity (now 2)\n{NAV_EN}")
    );
    assert_eq!(phone.state.screen_id(), "new_quantity");
    for bad in ["100", "abc", "2*3", "000"] {
        assert!(
            phone
                .press(bad)
                .starts_with("Enter a number from 1 to 99.\nRice 2kg"),
            "{bad}"
        );
    }
    // 98 is a quantity here, not "More".
    assert!(phone
        .press("98")
        .starts_with("Now 98 x Rice 2kg.\nMy cart\nTotal KES 35,460\n"));
    assert_eq!(
        phone.cart.lines,
        vec![line("rice-2kg", 98), line("chocolate-100g", 1)]
    );
    assert_eq!(phone.state.screen_id(), "cart");
    // Down again, to 1; the other line is untouched.
    phone.presses(&["2", "1", "1"]);
    assert!(phone
        .press("1")
        .starts_with("Now 1 x Rice 2kg.\nMy cart\nTotal KES 540\n"));
    assert_eq!(
        phone.cart.lines,
        vec![line("rice-2kg", 1), line("chocolate-100g", 1)]
    );
    // 0 is back, not a quantity: the line stays.
    phone.presses(&["2", "1", "1"]);
    assert!(phone
        .press("0")
        .starts_with("1 x Rice 2kg - KES 360\n1. Change quantity"));
    assert_eq!(phone.cart.lines.len(), 2);
}

#[test]
fn a_changed_quantity_may_not_take_the_order_past_the_mpesa_limit() {
    let mut phone = Phone::new();
    phone.cart.lines = vec![
        line("rice-2kg", 1),
        line("power-bank", 99),
        line("charger", 99),
    ];
    phone.dial();
    phone.presses(&["1", "2", "1", "1"]);
    assert!(phone
        .press("99")
        .starts_with("An order can be at most KES 250,000.\nRice 2kg"));
    assert_eq!(phone.cart.lines[0], line("rice-2kg", 1));
}

#[test]
fn changing_quantity_reads_in_kiswahili() {
    let mut phone = cart_phone();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "2", "1"]),
        format!("2 x Mchele 2kg - KES 720\n1. Badilisha idadi\n2. Iondoe\n{NAV_SW}")
    );
    assert!(phone.press("1").contains("Weka idadi mpya (sasa 2)"));
    assert!(phone
        .press("5")
        .starts_with("Sasa 5 x Mchele 2kg.\nKikapu changu"));
}

#[test]
fn emptying_the_cart_asks_first_and_no_keeps_it() {
    let mut phone = cart_phone();
    phone.dial();
    assert_eq!(
        phone.presses(&["1", "3"]),
        format!("Remove everything from your cart?\n1. Yes, empty it\n2. No, keep it\n{NAV_EN}")
    );
    assert!(phone
        .press("2")
        .starts_with("My cart\nTotal KES 900\n2 x Rice 2kg"));
    assert_eq!(phone.cart.lines.len(), 2);
    phone.presses(&["3", "1"]);
    assert_eq!(
        phone.reply.text,
        format!("My cart\nYour cart is empty.\n1. Shop\n{NAV_EN}")
    );
    assert!(phone.cart.is_empty());
    assert_eq!(phone.press("0"), MAIN_EN);
}

// ---------------------------------------------------------------------------------------------
// My orders

#[test]
fn a_shopper_without_orders_is_told_so() {
    assert_eq!(
        screen_after(Phone::new, &["3"]),
        format!("My orders\nYou have no orders yet.\n{NAV_EN}")
    );
    assert!(screen_after(Phone::new, &["3", "1"]).starts_with("Invalid choice.\nMy orders"));
}

#[test]
fn my_orders_lists_newest_first_with_translated_statuses() {
    assert_eq!(
        screen_after(|| shopper_with_orders(Lang::En), &["3"]),
        format!(
            "My orders\n1. D7K2Q9 KES 900 Awaiting payment\n2. H3MX7P KES 1,800 Failed\n\
             3. K9RT4B KES 450 Paid\n4. Z2WQ8N KES 65 Expired\n{NAV_EN}"
        )
    );
    assert_eq!(
        screen_after(|| shopper_with_orders(Lang::Sw), &["3"]),
        format!(
            "Oda zangu\n1. D7K2Q9 KES 900 Inasubiri malipo\n2. H3MX7P KES 1,800 Imeshindikana\n\
             3. K9RT4B KES 450 Imelipwa\n4. Z2WQ8N KES 65 Muda umeisha\n{NAV_SW}"
        )
    );
}

#[test]
fn a_payable_order_offers_pay_again_and_the_paybill_way() {
    assert_eq!(
        screen_after(|| shopper_with_orders(Lang::En), &["3", "1"]),
        format!(
            "Order D7K2Q9\nTotal KES 900\nStatus: Awaiting payment\n1. Pay again\n\
             Or pay KES 900 to Paybill 174379, Account D7K2Q9.\n{NAV_EN}"
        )
    );
    assert_eq!(
        screen_after(|| shopper_with_orders(Lang::Sw), &["3", "2"]),
        format!(
            "Oda H3MX7P\nJumla KES 1,800\nHali: Imeshindikana\n1. Lipa tena\n\
             Au lipa KES 1,800 kwa Paybill 174379, Akaunti H3MX7P.\n{NAV_SW}"
        )
    );
}

#[test]
fn pay_again_asks_for_a_new_prompt_and_ends_the_session() {
    let mut phone = shopper_with_orders(Lang::En);
    phone.dial();
    let screen = phone.presses(&["3", "2", "1"]).to_owned();
    assert_eq!(
        screen,
        "A new M-Pesa prompt is coming. Enter your PIN to pay KES 1,800 for order H3MX7P."
    );
    assert!(phone.reply.end);
    assert_eq!(
        phone.effects,
        vec![Effect::PayAgain {
            number: "H3MX7P".to_owned(),
            payer: Msisdn::parse("0712345678").unwrap(),
        }]
    );
    assert_eq!(phone.profile.orders[1].status, OrderStatus::Failed);
}

#[test]
fn a_paid_or_expired_order_offers_no_payment() {
    for (pick, status) in [("3", "Paid"), ("4", "Expired")] {
        let screen = screen_after(|| shopper_with_orders(Lang::En), &["3", pick]);
        assert!(
            screen.contains(&format!("Status: {status}\n{NAV_EN}")),
            "{screen}"
        );
        assert!(!screen.contains("Pay again") && !screen.contains("Paybill"));
        let mut phone = shopper_with_orders(Lang::En);
        phone.dial();
        phone.presses(&["3", pick]);
        assert_eq!(phone.press("1"), format!("Invalid choice.\n{screen}"));
        assert!(phone.effects.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Language and help

#[test]
fn choosing_kiswahili_switches_every_screen_and_confirms_in_kiswahili() {
    let mut phone = Phone::new();
    phone.dial();
    assert_eq!(
        phone.press("4"),
        format!("Choose a language\n1. English\n2. Kiswahili\n{NAV_EN}")
    );
    assert_eq!(
        phone.press("2"),
        format!("Sasa unatumia Kiswahili.\n{MAIN_SW}")
    );
    assert_eq!(phone.profile.lang, Some(Lang::Sw));
    assert_eq!(phone.state.depth(), 1);
    assert!(phone
        .press("1")
        .starts_with("Chagua aina ya bidhaa\n1. Vyakula"));
}

#[test]
fn choosing_english_switches_back_and_confirms_in_english() {
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert_eq!(
        phone.press("4"),
        format!("Chagua lugha\n1. English\n2. Kiswahili\n{NAV_SW}")
    );
    assert_eq!(
        phone.press("1"),
        format!("You are now using English.\n{MAIN_EN}")
    );
    assert_eq!(phone.profile.lang, Some(Lang::En));
}

#[test]
fn help_gives_the_phone_number_and_both_ways_to_pay() {
    assert_eq!(
        screen_after(Phone::new, &["5"]),
        format!(
            "Help\nCall 0700 384 012. To pay, enter your M-Pesa PIN on the prompt after \
             checkout, or use Paybill 174379, Account: order number.\n{NAV_EN}"
        )
    );
    let mut phone = Phone::new();
    phone.profile.lang = Some(Lang::Sw);
    phone.dial();
    assert_eq!(
        phone.press("5"),
        format!(
            "Msaada\nPiga 0700 384 012. Kulipa, weka PIN ya M-Pesa kwenye ombi linalofuata, \
             au tumia Paybill 174379, Akaunti: namba ya oda.\n{NAV_SW}"
        )
    );
}

#[test]
fn the_apology_ends_the_session_in_the_shoppers_language() {
    assert_eq!(
        apology(catalog(), Lang::En),
        Reply::end("Sorry, we could not complete that. Please try again.")
    );
    assert_eq!(
        apology(catalog(), Lang::Sw),
        Reply::end("Samahani, hatukuweza kukamilisha hilo. Tafadhali jaribu tena.")
    );
}

// ---------------------------------------------------------------------------------------------
// Navigation from every screen

/// Every kind of screen: its name, the inputs that reach it, and the inputs that reach the
/// screen `0` leads back to.
const SCREENS: &[(&str, &[&str], &[&str])] = &[
    ("categories", &["1"], &[]),
    ("product list", &["1", "2"], &["1"]),
    ("second page", &["1", "4", "98"], &["1", "4"]),
    ("quantity", &["1", "2", "3"], &["1", "2"]),
    ("added", &["1", "2", "3", "2"], &["1", "2"]),
    (
        "checkout",
        &["1", "2", "3", "2", "1"],
        &["1", "2", "3", "2"],
    ),
    (
        "payer",
        &["1", "2", "3", "2", "1", "2"],
        &["1", "2", "3", "2", "1"],
    ),
    (
        "cart",
        &["1", "2", "3", "2", "00", "2"],
        &["1", "2", "3", "2", "00"],
    ),
    (
        "remove",
        &["1", "2", "3", "2", "00", "2", "2"],
        &["1", "2", "3", "2", "00", "2"],
    ),
    (
        "clear",
        &["1", "2", "3", "2", "00", "2", "3"],
        &["1", "2", "3", "2", "00", "2"],
    ),
    ("empty cart", &["2"], &[]),
    ("orders", &["3"], &[]),
    ("payable order", &["3", "1"], &["3"]),
    ("paid order", &["3", "3"], &["3"]),
    ("language", &["4"], &[]),
    ("help", &["5"], &[]),
];

fn tour_shopper() -> Phone {
    shopper_with_orders(Lang::En)
}

fn with(path: &[&str], more: &[&'static str]) -> Vec<String> {
    path.iter().chain(more).map(|s| (*s).to_owned()).collect()
}

fn screen_after_all(path: &[String]) -> (String, Phone) {
    let mut phone = tour_shopper();
    phone.dial();
    for input in path {
        phone.press(input);
    }
    (phone.reply.text.clone(), phone)
}

#[test]
fn zero_goes_back_one_screen_from_every_screen() {
    for (name, path, parent) in SCREENS {
        let (back, _) = screen_after_all(&with(path, &["0"]));
        let (expected, _) = screen_after_all(&with(parent, &[]));
        assert_eq!(back, expected, "back from {name}");
    }
}

#[test]
fn zero_on_the_main_menu_shows_it_again() {
    let mut phone = Phone::new();
    phone.dial();
    assert_eq!(phone.press("0"), MAIN_EN);
    assert_eq!(phone.state.depth(), 1);
}

#[test]
fn double_zero_goes_to_the_main_menu_from_every_screen() {
    for (name, path, _) in SCREENS {
        let (home, phone) = screen_after_all(&with(path, &["00"]));
        assert_eq!(home, MAIN_EN, "home from {name}");
        assert_eq!(phone.state.depth(), 1, "{name}");
    }
}

#[test]
fn an_invalid_input_repeats_every_screen_with_a_short_hint() {
    for (name, path, _) in SCREENS {
        let (screen, phone) = screen_after_all(&with(path, &[]));
        let hint = match phone.state.screen_id() {
            "quantity" => "Enter a number from 1 to 99.",
            "payer" => "Not a valid number. Try e.g. 0712345678.",
            _ => "Invalid choice.",
        };
        for bad in ["7x", "1*2", "", "#", "*"] {
            let (again, after) = screen_after_all(&with(path, &[bad]));
            assert!(
                hinted(hint, &screen).contains(&again),
                "{name} after {bad:?}:\n{again}"
            );
            assert_eq!(after.state.screen_id(), phone.state.screen_id(), "{name}");
            assert_eq!(after.cart, phone.cart, "{name}");
            assert!(after.effects.is_empty(), "{name}");
        }
    }
}

/// A screen shown again with a hint: above it, or in place of its title when the hint would
/// otherwise push options to the next page.
fn hinted(hint: &str, screen: &str) -> [String; 2] {
    let without_title = screen.split_once('\n').map_or("", |(_, rest)| rest);
    [
        format!("{hint}\n{screen}"),
        format!("{hint}\n{without_title}"),
    ]
}

#[test]
fn a_hint_takes_the_title_line_rather_than_push_an_option_to_the_next_page() {
    // Household's five products fill the screen; "Invalid choice." above them would not fit.
    let list = screen_after(Phone::new, &["1", "2"]);
    let again = screen_after(Phone::new, &["1", "2", "9"]);
    assert_eq!(again, hinted("Invalid choice.", &list)[1]);
    assert!(again.contains("5. Candles 6pk") && !again.contains("98. More"));
}

#[test]
fn a_star_inside_an_input_is_not_read_as_two_inputs() {
    // "1*2" is not Shop then Household: it is one invalid answer.
    assert_eq!(
        screen_after(Phone::new, &["1*2"]),
        format!("Invalid choice.\n{MAIN_EN}")
    );
    let mut phone = Phone::new();
    phone.dial();
    phone.presses(&["1", "2", "3", "2*3"]);
    assert!(phone.cart.is_empty());
}

#[test]
fn more_on_every_screen_without_a_next_page_is_an_invalid_choice() {
    for (name, path, _) in SCREENS {
        let (screen, phone) = screen_after_all(&with(path, &[]));
        if screen.contains("98. More") || ["quantity", "payer"].contains(&phone.state.screen_id()) {
            continue;
        }
        let (again, _) = screen_after_all(&with(path, &["98"]));
        assert!(
            hinted("Invalid choice.", &screen).contains(&again),
            "{name}:\n{again}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The menu state

#[test]
fn the_menu_state_is_compact_json_naming_each_screen_and_page() {
    let mut phone = Phone::new();
    phone.dial();
    phone.presses(&["1", "4", "98"]);
    let json = serde_json::to_string(&phone.state).unwrap();
    assert_eq!(
        json,
        r#"{"s":["s:main","c","p:snacks-drinks>4","p:snacks-drinks@4>8"]}"#
    );
    assert_eq!(
        serde_json::from_str::<MenuState>(&json).unwrap(),
        phone.state
    );
    assert_eq!(phone.state.screen_id(), "products");
}

#[test]
fn every_kind_of_frame_round_trips_through_its_string() {
    for raw in [
        "s:main",
        "r",
        "c",
        "p:snacks-drinks@4>8",
        "q:sugar-1kg",
        "a:sugar-1kg:99",
        "k>3",
        "x",
        "e",
        "o",
        "n",
        "l",
        "d:D7K2Q9",
        "i:rice-2kg",
        "u:rice-2kg@1",
        "a:sugar-1kg:0",
        "a:sugar-1kg:4294967295",
        "p:snacks-drinks@255>254",
        "c>10",
    ] {
        let frame: Frame = raw.parse().unwrap();
        assert_eq!(frame.to_string(), raw);
        assert_eq!(serde_json::to_string(&frame).unwrap(), format!("\"{raw}\""));
    }
}

#[test]
fn a_corrupt_state_is_refused_when_read() {
    for json in [
        r#"{"s":["zz"]}"#,
        r#"{"s":["p"]}"#,
        r#"{"s":["p:x@y"]}"#,
        r#"{"s":["a:sugar-1kg:many"]}"#,
        r#"{"s":["c:extra"]}"#,
        r#"{"s":[3]}"#,
    ] {
        assert!(serde_json::from_str::<MenuState>(json).is_err(), "{json}");
    }
}

#[test]
fn the_default_state_reads_as_the_main_menu() {
    let mut phone = Phone::new();
    assert_eq!(phone.state, MenuState::default());
    assert_eq!(phone.state.screen_id(), "main");
    assert!(phone.press("1").starts_with("Choose a category"));
}

#[test]
fn a_state_naming_what_the_catalog_no_longer_has_falls_back_to_the_main_menu() {
    for json in [
        r#"{"s":["s:main","c","p:groceries","q:gone"]}"#,
        r#"{"s":["s:main","s:removed-screen"]}"#,
        r#"{"s":["s:main","l","d:NOSUCH"]}"#,
        r#"{"s":["c","p:groceries"]}"#,
    ] {
        let mut phone = Phone::new();
        phone.state = serde_json::from_str(json).unwrap();
        assert_eq!(phone.press("2"), MAIN_EN, "{json}");
        assert!(phone.cart.is_empty(), "{json}");
        assert_eq!(phone.state.depth(), 1);
    }
}

#[test]
fn the_history_is_capped_by_dropping_its_oldest_screens() {
    let mut frames = vec!["s:main".to_owned()];
    frames.extend(std::iter::repeat_n("c".to_owned(), MAX_DEPTH - 2));
    frames.push("p:snacks-drinks>4".to_owned());
    let mut phone = Phone::new();
    phone.state = serde_json::from_value(serde_json::json!({ "s": frames })).unwrap();
    assert_eq!(phone.state.depth(), MAX_DEPTH);
    assert!(phone.press("98").contains("\n5. "));
    assert_eq!(phone.state.depth(), MAX_DEPTH);
    assert_eq!(phone.state.stack[0].to_string(), "s:main");
}

// ---------------------------------------------------------------------------------------------
// Bounds, over every screen and many random sessions

/// One visit to each screen of the shop, in the shopper's language, with names for review.
fn tour(lang: Lang) -> Vec<(String, String)> {
    let visit = |inputs: &[&str]| {
        let mut phone = shopper_with_orders(lang);
        phone.dial();
        phone.presses(inputs);
        phone
    };
    let mut screens: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, phone: &Phone| {
        screens.push((name.to_owned(), phone.reply.text.clone()));
    };
    add("main menu", &visit(&[]));
    add("main menu, invalid choice", &visit(&["9"]));
    add("categories", &visit(&["1"]));
    for (i, category) in catalog().categories().iter().enumerate() {
        let mut phone = visit(&["1", &(i + 1).to_string()]);
        add(&format!("products: {}", category.id), &phone);
        let mut page = 2;
        while phone.reply.text.contains("98. More") {
            phone.press("98");
            add(&format!("products: {}, page {page}", category.id), &phone);
            page += 1;
        }
    }
    add("quantity", &visit(&["1", "2", "3"]));
    add("quantity, bad number", &visit(&["1", "2", "3", "100"]));
    add("added", &visit(&["1", "2", "3", "2"]));
    add("checkout", &visit(&["1", "2", "3", "2", "1"]));
    add("payer number", &visit(&["1", "2", "3", "2", "1", "2"]));
    add(
        "payer number, bad number",
        &visit(&["1", "2", "3", "2", "1", "2", "123"]),
    );
    add(
        "payer number, not Safaricom",
        &visit(&["1", "2", "3", "2", "1", "2", "0733123456"]),
    );
    add(
        "order placed, an earlier prompt pending",
        &visit(&["1", "2", "3", "2", "1", "1"]),
    );
    let on = |mut phone: Phone, inputs: &[&str]| {
        phone.profile.lang = Some(lang);
        phone.dial();
        phone.presses(inputs);
        phone
    };
    let buy = ["1", "2", "3", "2", "1"];
    add(
        "order placed",
        &on(Phone::new(), &[&buy[..], &["1"]].concat()),
    );
    add("checkout, another network", &on(airtel_phone(), &buy));
    add(
        "order placed, to pay by paybill",
        &on(airtel_phone(), &[&buy[..], &["1"]].concat()),
    );
    add("checkout, outside Kenya", &on(tanzanian_phone(), &buy));
    let mut airtel_orders = airtel_phone();
    airtel_orders.profile = shopper_with_orders(lang).profile;
    add(
        "order, awaiting payment, another network",
        &on(airtel_orders, &["3", "1"]),
    );
    add("cart, empty", &visit(&["2"]));
    let cart = ["1", "2", "3", "2", "2", "1", "2", "00", "2"];
    let mut phone = visit(&cart);
    add("cart", &phone);
    phone.dial();
    add("resume offer", &phone);
    add("change which item", &visit(&[&cart[..], &["2"]].concat()));
    add("cart line", &visit(&[&cart[..], &["2", "1"]].concat()));
    add("removed", &visit(&[&cart[..], &["2", "1", "2"]].concat()));
    add(
        "new quantity",
        &visit(&[&cart[..], &["2", "1", "1"]].concat()),
    );
    add(
        "new quantity, bad number",
        &visit(&[&cart[..], &["2", "1", "1", "100"]].concat()),
    );
    add(
        "quantity changed",
        &visit(&[&cart[..], &["2", "1", "1", "5"]].concat()),
    );
    add("empty the cart?", &visit(&[&cart[..], &["3"]].concat()));
    add("cart emptied", &visit(&[&cart[..], &["3", "1"]].concat()));
    add("my orders", &visit(&["3"]));
    for (i, status) in ["awaiting payment", "failed", "paid", "expired"]
        .iter()
        .enumerate()
    {
        add(
            &format!("order, {status}"),
            &visit(&["3", &(i + 1).to_string()]),
        );
    }
    add("pay again", &visit(&["3", "1", "1"]));
    add("language", &visit(&["4"]));
    let other = if lang == Lang::En { "2" } else { "1" };
    add("language changed", &visit(&["4", other]));
    add("help", &visit(&["5"]));
    screens.push(("apology".to_owned(), apology(catalog(), lang).text));
    screens
}

#[test]
fn every_screen_in_both_languages_is_gsm7_and_fits() {
    for lang in Lang::ALL {
        let screens = tour(lang);
        assert!(screens.len() > 30);
        for (name, text) in screens {
            assert!(!text.is_empty(), "{name}");
            assert!(
                septets(&text) <= crate::menu::DEFAULT_SCREEN_MAX,
                "{name} ({}): {} septets\n{text}",
                lang.code(),
                septets(&text)
            );
        }
    }
}

#[test]
fn every_screen_matches_its_reviewed_snapshot() {
    for lang in Lang::ALL {
        let document: String = tour(lang)
            .into_iter()
            .map(|(name, text)| format!("=== {name} ({} septets)\n{text}\n\n", septets(&text)))
            .collect();
        insta::assert_snapshot!(format!("screens_{}", lang.code()), document);
    }
}

/// The inputs a random shopper types: options, navigation, numbers, junk and phone numbers.
const RANDOM_INPUTS: &[&str] = &[
    "1",
    "1",
    "1",
    "2",
    "2",
    "2",
    "3",
    "3",
    "4",
    "5",
    "6",
    "7",
    "9",
    "12",
    "13",
    "0",
    "00",
    "98",
    "98",
    "99",
    "100",
    "2*3",
    "abc",
    "",
    " 1 ",
    "01",
    "0722000111",
    "+254110345678",
    "0201234567",
];

#[test]
fn random_sessions_keep_every_screen_within_bounds_and_the_state_small() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(38_412);
    let products: Vec<&str> = catalog().products().map(|p| p.id.as_str()).collect();
    let mut orders_placed = 0;
    for session in 0..1_500 {
        let mut phone = Phone::new();
        phone.profile.lang = Some(if rng.random_bool(0.5) {
            Lang::En
        } else {
            Lang::Sw
        });
        // A cart within the limits, as the engine builds them.
        for _ in 0..rng.random_range(0..=MAX_CART_LINES) {
            let product = products[rng.random_range(0..products.len())];
            phone
                .cart
                .lines
                .push(line(product, rng.random_range(1..=MAX_QTY)));
            if cart_total(catalog(), &phone.cart) > Kes::whole(MAX_ORDER_TOTAL) {
                phone.cart.lines.pop();
            }
        }
        for i in 0..rng.random_range(0..=Profile::MAX_ORDERS) {
            let status = [
                OrderStatus::AwaitingPayment,
                OrderStatus::Failed,
                OrderStatus::Paid,
                OrderStatus::Expired,
            ][rng.random_range(0..4)];
            phone
                .profile
                .orders
                .push(summary(&format!("RND{i:03}"), 1_000, status));
        }
        phone.next_order = crate::orders::draw_order_number(&mut rng, 0, &[]);
        phone.dial();
        for hop in 0..40 {
            let input = RANDOM_INPUTS[rng.random_range(0..RANDOM_INPUTS.len())];
            let was = phone.state.clone();
            let reply = phone.press(input).to_owned();
            let context = format!("session {session} hop {hop} {input:?} from {was:?}");
            assert!(!reply.is_empty(), "{context}");
            assert!(
                septets(&reply) <= crate::menu::DEFAULT_SCREEN_MAX,
                "{context}\n{reply}"
            );
            assert!(phone.state.depth() <= MAX_DEPTH, "{context}");
            assert!(phone.cart.lines.len() <= MAX_CART_LINES, "{context}");
            assert!(phone
                .cart
                .lines
                .iter()
                .all(|l| (1..=MAX_QTY).contains(&l.qty)));
            assert!(cart_total(catalog(), &phone.cart) <= Kes::whole(MAX_ORDER_TOTAL));
            let state = serde_json::to_string(&phone.state).unwrap();
            let cart = serde_json::to_string(&phone.cart).unwrap();
            assert!(state.len() + cart.len() <= 700, "{context}: {state} {cart}");
            assert_eq!(
                serde_json::from_str::<MenuState>(&state).unwrap(),
                phone.state
            );
            if phone.reply.end {
                if let Some(Effect::PlaceOrder { number, total, .. }) = phone.effects.first() {
                    assert_eq!(number, &phone.next_order);
                    assert_eq!(phone.profile.orders[0].total, *total);
                    assert!(phone.cart.is_empty());
                    orders_placed += 1;
                }
                break;
            }
            assert!(phone.effects.is_empty(), "{context}");
        }
    }
    assert!(
        orders_placed > 10,
        "the walk should reach checkout: {orders_placed}"
    );
}

#[test]
fn a_phone_over_its_prompt_limit_is_told_when_it_can_pay_and_gets_no_push() {
    let mut phone = Phone::new();
    phone.dial();
    phone.presses(&["1", "2", "3", "2", "1"]);
    // 2023-11-14 22:13:20 UTC is 01:13:20 EAT; the limit lifts 90 s later, shown as 01:15.
    let until = phone.now_ms + 90_000;
    let next = step(
        &Hop {
            push_blocked_until_ms: Some(until),
            ..phone.hop()
        },
        &phone.state,
        "1",
    );
    let text = phone.apply(next).to_owned();
    assert!(phone.reply.end);
    assert_eq!(
        text,
        "Order D7K2Q9 placed. Too many payment prompts were sent to this phone: pay it from My orders after 01:15."
    );
    assert!(matches!(
        phone.effects.as_slice(),
        [Effect::PlaceOrder { payer: None, .. }]
    ));

    // "Pay again" from My orders says the same, and asks for no push.
    let mut phone = shopper_with_orders(Lang::En);
    phone.dial();
    phone.presses(&["3", "1"]);
    let next = step(
        &Hop {
            push_blocked_until_ms: Some(phone.now_ms + 90_000),
            ..phone.hop()
        },
        &phone.state,
        "1",
    );
    phone.apply(next);
    assert!(phone.reply.end, "{}", phone.reply.text);
    assert!(
        phone.reply.text.starts_with("Too many payment prompts"),
        "{}",
        phone.reply.text
    );
    assert!(phone.effects.is_empty(), "{:?}", phone.effects);

    // A limit that has lifted changes nothing.
    let mut phone = Phone::new();
    phone.dial();
    phone.presses(&["1", "2", "3", "2", "1"]);
    let next = step(
        &Hop {
            push_blocked_until_ms: Some(phone.now_ms - 1),
            ..phone.hop()
        },
        &phone.state,
        "1",
    );
    phone.apply(next);
    assert!(matches!(
        phone.effects.as_slice(),
        [Effect::PlaceOrder { payer: Some(_), .. }]
    ));
}

/// A phone in a till shop (`MPESA_TILL`): the store number is `paybill`, shoppers pay the till.
fn till_phone(number: &str, mpesa: bool) -> Phone {
    Phone {
        till: Some("5123456".to_owned()),
        ..Phone::on(number, mpesa)
    }
}

#[test]
fn a_till_shop_says_pay_to_the_till_with_no_account_in_both_languages() {
    let mut phone = till_phone("0712345678", true);
    phone.dial();
    let placed = phone.presses(&["1", "2", "3", "2", "1", "1"]).to_owned();
    assert_eq!(
        placed,
        "Order D7K2Q9. Enter your M-Pesa PIN on the prompt that follows. No prompt? \
         Pay KES 900 to Till 5123456 (Buy Goods) and keep the M-Pesa SMS."
    );
    assert!(!placed.contains("Account") && !placed.contains("174379"));

    let mut airtel = till_phone("0733123456", false);
    airtel.profile.lang = Some(Lang::Sw);
    airtel.dial();
    let checkout = airtel.presses(&["1", "2", "3", "2", "1"]).to_owned();
    assert!(
        checkout.contains("1. Agiza sasa, lipa kwa Till"),
        "{checkout}"
    );
    let placed = airtel.press("1").to_owned();
    assert_eq!(
        placed,
        "Oda D7K2Q9 imepokelewa. Kulipa, tuma KES 900 kwa M-Pesa kwa Till 5123456 (Buy Goods), \
         hifadhi SMS ya M-Pesa."
    );
}

#[test]
fn a_till_shop_s_help_and_order_screens_name_the_till() {
    let mut phone = till_phone("0712345678", true);
    phone.profile.orders = vec![summary("K9RT4B", 450, OrderStatus::AwaitingPayment)];
    phone.dial();
    let help = phone.press("5").to_owned();
    assert!(
        help.contains("Till 5123456") && !help.contains("Paybill"),
        "{help}"
    );
    phone.dial();
    let orders = phone.press("3").to_owned();
    assert!(orders.contains("K9RT4B"), "{orders}");
    let order = phone.press("1").to_owned();
    assert!(
        order.contains("Or pay KES 450 to Till 5123456 (Buy Goods).") && !order.contains("Account"),
        "{order}"
    );
}

/// The catalog's page cache ([`crate::menu::pages`]) keeps a page under everything that decides
/// it: walks that differ in language, screen budget or payee, served by one catalog in turn
/// (each finding pages the others left), show exactly what a fresh catalog lays out for them.
#[test]
fn a_cached_page_is_the_page_a_fresh_catalog_lays_out() {
    let load = || Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("menus")).unwrap();
    let shared = load();
    let walks: [&[&str]; 5] = [
        &["1", "1", "98", "0", "2", "00", "4"],
        &["3", "2", "00", "1", "1", "1"],
        &["1", "2", "1", "x", "0", "0", "0", "5"],
        &["1", "1", "2", "3", "1"],
        // "Added" pages: kept up to MAX_CACHED_QTY, laid out every time above it.
        &["1", "1", "1", "10", "2", "1", "11", "2", "2", "10", "0"],
    ];
    let mut variants = Vec::new();
    for screen_max in [
        crate::menu::DEFAULT_SCREEN_MAX,
        crate::menu::SMALLEST_SCREEN_MAX,
    ] {
        for till in [None, Some("300584".to_owned())] {
            for swahili in [false, true] {
                variants.push((screen_max, till.clone(), swahili));
            }
        }
    }
    let walk = |catalog: &Catalog,
                (screen_max, till, swahili): &(usize, Option<String>, bool),
                inputs: &[&str]| {
        let mut phone = Phone::new();
        phone.screen_max = *screen_max;
        phone.till = till.clone();
        let mut screens = Vec::new();
        let first = start(&phone.hop_in(catalog));
        phone.apply(first);
        if *swahili {
            for input in ["4", "2"] {
                let next = step(&phone.hop_in(catalog), &phone.state, input);
                phone.apply(next);
            }
        }
        screens.push(phone.reply.text.clone());
        for input in inputs {
            let next = step(&phone.hop_in(catalog), &phone.state, input);
            screens.push(phone.apply(next).to_owned());
        }
        screens
    };
    for round in 0..2 {
        for variant in &variants {
            for inputs in walks {
                let fresh = walk(&load(), variant, inputs);
                assert_eq!(
                    walk(&shared, variant, inputs),
                    fresh,
                    "round {round}, {variant:?}, {inputs:?}"
                );
            }
        }
    }
    assert!(
        shared.pages().len() > 10,
        "{} pages kept",
        shared.pages().len()
    );
    // The last walk does reach "Added" at both sides of the bound.
    let added = walk(&shared, &variants[0], walks[4]);
    for qty in ["Added 10 x", "Added 11 x"] {
        assert!(
            added.iter().any(|s| s.starts_with(qty)),
            "{qty}: {added:#?}"
        );
    }
}
