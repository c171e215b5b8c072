//! Checking each reply of the server against the screen a shopper should see next.
//!
//! The expected texts come from the catalog's English texts (a new phone has no language set),
//! filled with the values the bench computed itself: the product's list line and price, the
//! quantity, the total in whole shillings with thousands separators, the masked phone. Keys are
//! read off the screen by their label (`1. Checkout` gives `1`), so the bench follows the menus
//! as a person would instead of hard-coding option numbers.
//!
//! A reply that is not what the step expects is a [`Failure`] of some [`ErrorKind`]; nothing here
//! panics on what a server sends.

use std::fmt;

use serde::Serialize;

use super::plan::{group_thousands, Item, Shopper};
use crate::menu::catalog::Target;
use crate::menu::engine::MAIN_SCREEN;
use crate::menu::render::{list_name, MORE_KEY};
use crate::menu::{Catalog, Lang};
use crate::msisdn::Msisdn;

/// Why a hop failed, counted separately in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// The connection failed while the request or the reply was on the wire.
    Io,
    /// No complete reply within the hop timeout.
    Timeout,
    /// An HTTP status other than 200.
    Status,
    /// A 200 whose body is not `CON …` or `END …` text.
    NotUssd,
    /// A well-formed reply showing another screen than the one expected.
    WrongScreen,
    /// The checkout screen, with another total than price times quantity.
    WrongTotal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Io,
        ErrorKind::Timeout,
        ErrorKind::Status,
        ErrorKind::NotUssd,
        ErrorKind::WrongScreen,
        ErrorKind::WrongTotal,
    ];

    /// The name used in the report and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Io => "io",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Status => "status",
            ErrorKind::NotUssd => "not_ussd",
            ErrorKind::WrongScreen => "wrong_screen",
            ErrorKind::WrongTotal => "wrong_total",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed hop: what kind of failure, and a line saying what was expected and what came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    fn screen(what: &str, expected: &str, screen: &Screen<'_>) -> Self {
        Self::new(
            ErrorKind::WrongScreen,
            format!("{what}: expected {expected:?}, got {}", screen.excerpt()),
        )
    }
}

/// A reply as the aggregator reads it: `CON` or `END`, and the screen text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Screen<'a> {
    pub end: bool,
    pub text: &'a str,
}

impl<'a> Screen<'a> {
    /// The first line: the title, on every screen the bench walks through.
    pub fn title(&self) -> &'a str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The whole line for list number `number`, if this page shows it.
    pub fn option_line(&self, number: usize) -> Option<&'a str> {
        let prefix = format!("{number}. ");
        self.text.lines().find(|line| line.starts_with(&prefix))
    }

    /// The key of the option labelled `label` (`1. Checkout` gives `1`).
    pub fn option_key(&self, label: &str) -> Option<&'a str> {
        self.text.lines().find_map(|line| {
            let (key, rest) = line.split_once(". ")?;
            (rest == label && !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()))
                .then_some(key)
        })
    }

    /// A short, one-line rendering of the screen for error details.
    fn excerpt(&self) -> String {
        let prefix = if self.end { "END " } else { "CON " };
        let text: String = self.text.chars().take(120).collect();
        format!("{:?}", format!("{prefix}{text}"))
    }
}

/// Reads an HTTP reply as a USSD screen.
///
/// # Errors
/// [`ErrorKind::Status`] for a status other than 200, [`ErrorKind::NotUssd`] for a body that is
/// not UTF-8 text starting with `CON ` or `END `.
pub fn read_reply(status: u16, body: &[u8]) -> Result<Screen<'_>, Failure> {
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        return Err(Failure::new(
            ErrorKind::Status,
            format!("HTTP {status}: {text:?}"),
        ));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(Failure::new(ErrorKind::NotUssd, "the body is not UTF-8"));
    };
    if let Some(rest) = text.strip_prefix("CON ") {
        Ok(Screen {
            end: false,
            text: rest,
        })
    } else if let Some(rest) = text.strip_prefix("END ") {
        Ok(Screen {
            end: true,
            text: rest,
        })
    } else {
        let start: String = text.chars().take(60).collect();
        Err(Failure::new(
            ErrorKind::NotUssd,
            format!("the body starts neither with CON nor END: {start:?}"),
        ))
    }
}

/// True when `text` reads as `pattern`, where each `{placeholder}` left in the pattern stands for
/// any text (an order number, say, which only the server knows).
pub fn matches_template(pattern: &str, text: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        match rest[open..].find('}') {
            Some(close) => {
                literals.push(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    literals.push(rest);
    if literals.len() == 1 {
        return text == pattern;
    }
    let (first, last) = (literals[0], literals[literals.len() - 1]);
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    for literal in &literals[1..literals.len() - 1] {
        match remaining.find(literal) {
            Some(at) => remaining = &remaining[at + literal.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last)
}

/// What to send on a list screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMove {
    /// The wanted number is on this page, reading as expected: send it.
    Choose,
    /// The wanted number is further on: send `98`.
    NextPage,
}

/// The lines of one product as a shopper sees them.
#[derive(Clone, Debug)]
struct ProductTexts {
    /// `7. Biscuits 200g - KES 90` in its category's list.
    list_line: String,
    /// `Biscuits 200g - KES 90 each` on the quantity screen.
    quantity_title: String,
    /// The full name, as in `Added 2 x Biscuits 200g.`
    name: String,
}

/// Every text the bench expects, taken once from the catalog.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The key of the main menu's option that opens the shop, and its label.
    shop_key: String,
    shop_label: String,
    categories_title: String,
    /// `2. Household`, by category index.
    category_lines: Vec<String>,
    /// The title of each category's product list.
    category_titles: Vec<String>,
    /// The paging option line, `98. More`.
    more_line: String,
    /// By product id.
    products: std::collections::HashMap<String, ProductTexts>,
    added_title: String,
    added_checkout: String,
    checkout_total: String,
    pay_self: String,
    placed: String,
}

/// Why the catalog cannot be walked by the bench.
#[derive(Debug, thiserror::Error)]
#[error("the main menu has no option that opens the shop")]
pub struct NoShopOption;

impl Expected {
    /// Takes the expected texts from the catalog, in English.
    ///
    /// # Errors
    /// [`NoShopOption`] when the main menu cannot lead a shopper to the products.
    pub fn from_catalog(catalog: &Catalog) -> Result<Self, NoShopOption> {
        let lang = Lang::En;
        let text = |id: &str| catalog.text(lang, id, &[]);
        let shop = catalog
            .screen(MAIN_SCREEN)
            .and_then(|main| main.options.iter().find(|o| o.target == Target::Shop))
            .ok_or(NoShopOption)?;
        let mut products = std::collections::HashMap::new();
        for category in catalog.categories() {
            for (i, product) in category.products.iter().enumerate() {
                let price = product.price.to_string();
                let label = catalog.text(
                    lang,
                    "shop.product",
                    &[
                        ("name", &list_name(product.name_in(lang))),
                        ("price", &price),
                    ],
                );
                products.insert(
                    product.id.clone(),
                    ProductTexts {
                        list_line: format!("{}. {label}", i + 1),
                        quantity_title: catalog.text(
                            lang,
                            "product.title",
                            &[("name", product.name_in(lang)), ("price", &price)],
                        ),
                        name: product.name_in(lang).to_owned(),
                    },
                );
            }
        }
        Ok(Self {
            shop_key: shop.key.clone(),
            shop_label: text(&shop.label),
            categories_title: text("shop.title"),
            category_lines: catalog
                .categories()
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}. {}", i + 1, list_name(c.name(lang))))
                .collect(),
            category_titles: catalog
                .categories()
                .iter()
                .map(|c| c.name(lang).to_owned())
                .collect(),
            more_line: format!("{MORE_KEY}. {}", text("nav.more")),
            products,
            added_title: text("added.title"),
            added_checkout: text("added.checkout"),
            checkout_total: text("checkout.total"),
            pay_self: text("checkout.pay_self"),
            placed: text("order.placed"),
        })
    }

    /// The first screen: the main menu. Returns the key that opens the shop.
    ///
    /// # Errors
    /// [`ErrorKind::WrongScreen`] when the shop option is missing (a shopper with a cart from
    /// an earlier run would see the resume offer instead, for example).
    pub fn main_menu<'s>(&'s self, screen: &Screen<'_>) -> Result<&'s str, Failure> {
        let want = format!("{}. {}", self.shop_key, self.shop_label);
        if screen.end || screen.option_key(&self.shop_label) != Some(self.shop_key.as_str()) {
            return Err(Failure::screen("main menu", &want, screen));
        }
        Ok(&self.shop_key)
    }

    /// The category list: choose the shopper's category, or page on to it.
    ///
    /// # Errors
    /// [`ErrorKind::WrongScreen`] when the screen is not the category list, or the category's
    /// number reads differently.
    pub fn categories(&self, screen: &Screen<'_>, item: &Item) -> Result<ListMove, Failure> {
        let line = self
            .category_lines
            .get(item.category)
            .map_or("", String::as_str);
        self.list(
            "categories",
            screen,
            &self.categories_title,
            item.category + 1,
            line,
        )
    }

    /// A category's product list: choose the shopper's product, or page on to it.
    ///
    /// # Errors
    /// [`ErrorKind::WrongScreen`] when the screen is not this category's list, or the product's
    /// number names another product or price.
    pub fn products(&self, screen: &Screen<'_>, item: &Item) -> Result<ListMove, Failure> {
        let title = self
            .category_titles
            .get(item.category)
            .map_or("", String::as_str);
        let line = self
            .products
            .get(&item.product)
            .map_or("", |p| p.list_line.as_str());
        self.list("products", screen, title, item.number, line)
    }

    fn list(
        &self,
        what: &str,
        screen: &Screen<'_>,
        title: &str,
        number: usize,
        line: &str,
    ) -> Result<ListMove, Failure> {
        if screen.end || screen.title() != title {
            return Err(Failure::screen(what, title, screen));
        }
        match screen.option_line(number) {
            Some(shown) if shown == line => Ok(ListMove::Choose),
            Some(_) => Err(Failure::screen(what, line, screen)),
            None if screen.text.lines().any(|l| l == self.more_line) => Ok(ListMove::NextPage),
            None => Err(Failure::screen(what, line, screen)),
        }
    }

    /// The quantity prompt of the shopper's product.
    ///
    /// # Errors
    /// [`ErrorKind::WrongScreen`] when another screen shows.
    pub fn quantity(&self, screen: &Screen<'_>, item: &Item) -> Result<(), Failure> {
        let title = self
            .products
            .get(&item.product)
            .map_or("", |p| p.quantity_title.as_str());
        if screen.end || screen.title() != title {
            return Err(Failure::screen("quantity", title, screen));
        }
        Ok(())
    }

    /// `Added Q x NAME.`: returns the key of Checkout.
    ///
    /// # Errors
    /// [`ErrorKind::WrongScreen`] when another screen shows or Checkout is missing.
    pub fn added<'s>(&self, screen: &Screen<'s>, shopper: &Shopper) -> Result<&'s str, Failure> {
        let name = self
            .products
            .get(&shopper.item.product)
            .map_or("", |p| p.name.as_str());
        let title = crate::menu::catalog::fill(
            &self.added_title,
            &[("qty", &shopper.qty.to_string()), ("name", name)],
        );
        if screen.end || screen.title() != title {
            return Err(Failure::screen("added", &title, screen));
        }
        screen
            .option_key(&self.added_checkout)
            .ok_or_else(|| Failure::screen("added", &self.added_checkout, screen))
    }

    /// The checkout screen: the total must be price times quantity. Returns the key of "Pay with
    /// M-Pesa" for the shopper's own phone.
    ///
    /// # Errors
    /// [`ErrorKind::WrongTotal`] when the total line shows another amount,
    /// [`ErrorKind::WrongScreen`] when another screen shows.
    pub fn checkout<'s>(&self, screen: &Screen<'s>, shopper: &Shopper) -> Result<&'s str, Failure> {
        let total = group_thousands(shopper.total);
        let want = crate::menu::catalog::fill(&self.checkout_total, &[("total", &total)]);
        if screen.end {
            return Err(Failure::screen("checkout", &want, screen));
        }
        if screen.title() != want {
            // The checkout screen with another amount is a wrong total; anything else is
            // another screen.
            return Err(if matches_template(&self.checkout_total, screen.title()) {
                Failure::new(
                    ErrorKind::WrongTotal,
                    format!(
                        "{} x {} at KES {}: expected {want:?}, got {:?}",
                        shopper.qty,
                        shopper.item.product,
                        group_thousands(shopper.item.price),
                        screen.title()
                    ),
                )
            } else {
                Failure::screen("checkout", &want, screen)
            });
        }
        let masked = Msisdn::parse(&shopper.phone)
            .map(|m| m.local_masked())
            .unwrap_or_default();
        let pay = crate::menu::catalog::fill(&self.pay_self, &[("phone", &masked)]);
        screen
            .option_key(&pay)
            .ok_or_else(|| Failure::screen("checkout", &pay, screen))
    }

    /// The `END` screen after paying: the order placed, with the same total.
    ///
    /// # Errors
    /// [`ErrorKind::WrongScreen`] when the session goes on or another text shows.
    pub fn placed(&self, screen: &Screen<'_>, shopper: &Shopper) -> Result<(), Failure> {
        let total = group_thousands(shopper.total);
        let want = crate::menu::catalog::fill(&self.placed, &[("total", &total)]);
        if !screen.end || !matches_template(&want, screen.text) {
            return Err(Failure::screen("order placed (END)", &want, screen));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::bench::plan::Plan;

    fn catalog() -> Catalog {
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("menus")).unwrap()
    }

    fn con(text: &str) -> Screen<'_> {
        Screen { end: false, text }
    }

    #[test]
    fn a_reply_must_be_200_and_start_with_con_or_end() {
        assert_eq!(
            read_reply(200, b"CON Hi\n1. Shop").unwrap(),
            con("Hi\n1. Shop")
        );
        assert!(read_reply(200, b"END Bye").unwrap().end);
        assert_eq!(
            read_reply(503, b"busy").unwrap_err().kind,
            ErrorKind::Status
        );
        assert_eq!(
            read_reply(200, b"Hello").unwrap_err().kind,
            ErrorKind::NotUssd
        );
        assert_eq!(
            read_reply(200, b"CON\xff").unwrap_err().kind,
            ErrorKind::NotUssd
        );
        assert_eq!(read_reply(200, b"").unwrap_err().kind, ErrorKind::NotUssd);
    }

    #[test]
    fn option_keys_are_read_off_the_screen_by_label() {
        let screen =
            con("Added 2 x Sugar 1kg.\n1. Checkout\n2. Continue shopping\n0. Back 00. Home");
        assert_eq!(screen.option_key("Checkout"), Some("1"));
        assert_eq!(screen.option_key("Continue shopping"), Some("2"));
        assert_eq!(screen.option_key("Check"), None);
        assert_eq!(screen.option_line(2), Some("2. Continue shopping"));
        assert_eq!(screen.option_line(3), None);
    }

    #[test]
    fn templates_match_with_unknown_placeholders_as_wildcards() {
        assert!(matches_template("Total KES {total}.", "Total KES 1,800."));
        assert!(!matches_template("Total KES {total}.", "Total 1,800."));
        assert!(matches_template(
            "Order {order}. Pay KES 900 to Paybill {paybill}, Account {order}.",
            "Order D7K2Q9. Pay KES 900 to Paybill 174379, Account D7K2Q9."
        ));
        assert!(!matches_template(
            "Order {order}. Pay KES 900 to Paybill {paybill}, Account {order}.",
            "Order D7K2Q9. Pay KES 90 to Paybill 174379, Account D7K2Q9."
        ));
        assert!(matches_template("No placeholders", "No placeholders"));
        assert!(!matches_template("No placeholders", "No placeholders!"));
    }

    fn setup() -> (Catalog, Plan, Expected) {
        let catalog = catalog();
        let plan = Plan::from_catalog(&catalog).unwrap();
        let expected = Expected::from_catalog(&catalog).unwrap();
        (catalog, plan, expected)
    }

    /// The first shopper buying the product with this id.
    fn shopper_for(plan: &Plan, product: &str) -> Shopper {
        (0..plan.products() as u64)
            .map(|i| plan.shopper(1, i))
            .find(|s| s.item.product == product)
            .unwrap()
    }

    #[test]
    fn the_main_menu_leads_to_the_shop() {
        let (_, _, expected) = setup();
        let main = con("Welcome to Duka\n1. Shop\n2. My cart\n3. My orders\n4. Language\n5. Help");
        assert_eq!(expected.main_menu(&main).unwrap(), "1");
        let resume =
            con("Welcome back. Your cart: 4 items, KES 1,220.\n1. Continue\n2. Start over");
        assert_eq!(
            expected.main_menu(&resume).unwrap_err().kind,
            ErrorKind::WrongScreen
        );
    }

    #[test]
    fn a_product_on_a_later_page_is_reached_by_paging() {
        let (_, plan, expected) = setup();
        let shopper = shopper_for(&plan, "biscuits-200g");
        let page_1 = con("Snacks & Drinks\n1. Soda 500ml - KES 70\n2. Drinking Water 1L - KES 80\n3. Mango Juice 1L - KES 220\n4. Tea Leaves 250g - KES 140\n98. More\n0. Back 00. Home");
        let page_2 = con("Snacks & Drinks\n5. Instant Coffee 50g - KES 260\n6. Drinking Chocolate.. - KES 390\n7. Biscuits 200g - KES 90\n8. Potato Crisps 150g - KES 150\n98. More\n0. Back 00. Home");
        assert_eq!(
            expected.products(&page_1, &shopper.item).unwrap(),
            ListMove::NextPage
        );
        assert_eq!(
            expected.products(&page_2, &shopper.item).unwrap(),
            ListMove::Choose
        );
    }

    #[test]
    fn a_list_showing_another_product_or_price_is_a_wrong_screen() {
        let (_, plan, expected) = setup();
        let shopper = shopper_for(&plan, "sugar-1kg");
        let repriced = con(
            "Groceries\n1. Maize Flour 2kg - KES 230\n2. Sugar 1kg - KES 195\n0. Back 00. Home",
        );
        assert_eq!(
            expected
                .products(&repriced, &shopper.item)
                .unwrap_err()
                .kind,
            ErrorKind::WrongScreen
        );
        let last_page = con("Groceries\n1. Maize Flour 2kg - KES 230\n0. Back 00. Home");
        assert_eq!(
            expected
                .products(&last_page, &shopper.item)
                .unwrap_err()
                .kind,
            ErrorKind::WrongScreen
        );
        let other_list = con("Household\n2. Sugar 1kg - KES 190\n0. Back 00. Home");
        assert_eq!(
            expected
                .products(&other_list, &shopper.item)
                .unwrap_err()
                .kind,
            ErrorKind::WrongScreen
        );
    }

    #[test]
    fn the_checkout_total_must_be_price_times_quantity() {
        let (_, plan, expected) = setup();
        let mut shopper = shopper_for(&plan, "power-bank");
        shopper.qty = 3;
        shopper.total = 5_400;
        shopper.phone = "+254712345678".into();
        let right = con(
            "Total KES 5,400.\n1. Pay with M-Pesa (07XX XXX X78)\n2. Pay with another number\n0. Back 00. Home",
        );
        assert_eq!(expected.checkout(&right, &shopper).unwrap(), "1");
        let wrong = con(
            "Total KES 5,401.\n1. Pay with M-Pesa (07XX XXX X78)\n2. Pay with another number\n0. Back 00. Home",
        );
        let failure = expected.checkout(&wrong, &shopper).unwrap_err();
        assert_eq!(failure.kind, ErrorKind::WrongTotal);
        assert!(failure.detail.contains("Total KES 5,400."), "{failure:?}");
        let unseparated = con("Total KES 5400.\n1. Pay with M-Pesa (07XX XXX X78)");
        assert_eq!(
            expected.checkout(&unseparated, &shopper).unwrap_err().kind,
            ErrorKind::WrongTotal
        );
        let other_phone = con("Total KES 5,400.\n1. Pay with M-Pesa (07XX XXX X99)");
        assert_eq!(
            expected.checkout(&other_phone, &shopper).unwrap_err().kind,
            ErrorKind::WrongScreen
        );
    }

    #[test]
    fn the_session_must_end_with_the_order_and_its_total() {
        let (_, plan, expected) = setup();
        let mut shopper = shopper_for(&plan, "toilet-paper-10");
        shopper.qty = 2;
        shopper.total = 900;
        let placed = "Order D7K2Q9. Enter your M-Pesa PIN on the prompt that follows. No prompt? Pay KES 900 to Paybill 174379, Account D7K2Q9.";
        assert!(expected
            .placed(
                &Screen {
                    end: true,
                    text: placed
                },
                &shopper
            )
            .is_ok());
        assert_eq!(
            expected.placed(&con(placed), &shopper).unwrap_err().kind,
            ErrorKind::WrongScreen
        );
        let apology = Screen {
            end: true,
            text: "Sorry, we could not complete that. Please try again.",
        };
        assert_eq!(
            expected.placed(&apology, &shopper).unwrap_err().kind,
            ErrorKind::WrongScreen
        );
    }

    #[test]
    fn the_quantity_and_added_screens_name_the_product() {
        let (_, plan, expected) = setup();
        let mut shopper = shopper_for(&plan, "toilet-paper-10");
        shopper.qty = 2;
        let quantity = con("Toilet Paper 10pk - KES 450 each\nEnter quantity\n0. Back 00. Home");
        assert!(expected.quantity(&quantity, &shopper.item).is_ok());
        let added = con(
            "Added 2 x Toilet Paper 10pk.\n1. Checkout\n2. Continue shopping\n0. Back 00. Home",
        );
        assert_eq!(expected.added(&added, &shopper).unwrap(), "1");
        let hint =
            con("Enter a number from 1 to 99.\nToilet Paper 10pk - KES 450 each\nEnter quantity");
        assert_eq!(
            expected.added(&hint, &shopper).unwrap_err().kind,
            ErrorKind::WrongScreen
        );
    }
}
