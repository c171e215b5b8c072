//! The length check: every screen and SMS, drawn with the longest data, must fit.
//!
//! A translation that is a few words longer, or one long product name, would otherwise show up
//! as a screen the aggregator rejects or an SMS billed twice, and only for the shopper with the
//! biggest cart. So at load time each screen the engine can draw is built through the same
//! [`render`] functions the engine uses, with worst-case data: the longest names, the largest
//! price, quantity 99, a full cart at the largest total the cart limits allow, six-character
//! order numbers, a seven-digit paybill, and each hint the screen can show on top. Every page
//! from every starting item, laid out at the smallest screen any gateway takes
//! ([`SMALLEST_SCREEN_MAX`]), must fit it. Each SMS text is filled with the longest realistic
//! values and must fit one GSM-7 segment.
//!
//! A text that is not GSM-7 has no length in GSM-7: its character is reported where it is
//! written (file, key, the character and its code), and the screens it appears on are not
//! measured, so no made-up length is ever reported.

use super::{text_file, Catalog, Problems, CATALOG_FILE, SCREENS_FILE};
use crate::gsm7;
use crate::menu::engine::{MAX_CART_LINES, MAX_ORDER_TOTAL, MAX_PAYBILL_LEN, MAX_QTY};
use crate::menu::render::{self, CartRow, PayWay, Placed, View};
use crate::menu::{Lang, Payee, SMALLEST_SCREEN_MAX};
use crate::money::Kes;
use crate::orders::{OrderStatus, OrderSummary, ORDER_NUMBER_LEN};

/// One SMS segment in GSM-7.
pub const SMS_MAX_SEPTETS: usize = 160;
/// The room `{items}` gets in an SMS; [`Catalog::items_summary`] shortens to it.
pub const SMS_ITEMS_MAX_SEPTETS: usize = 50;

/// An M-Pesa receipt number is ten characters (`QKH94M1Z11`).
const WORST_RECEIPT: &str = "QKH94M1Z11";
/// The longest USSD code a nudge may tell shoppers to dial.
const WORST_SHORTCODE: &str = "*384*123456#";
/// The longest `Msisdn::local_masked` a shopper offered "Pay with M-Pesa" can have (a Kenyan
/// number: only those can be pushed).
const WORST_PHONE_MASKED: &str = "07XX XXX X78";

const ALL_STATUSES: [OrderStatus; 4] = [
    OrderStatus::AwaitingPayment,
    OrderStatus::Failed,
    OrderStatus::Paid,
    OrderStatus::Expired,
];

/// The longest data the limits allow, shared by every screen of one language.
struct Worst {
    order: String,
    paybill: String,
    /// As long as a paybill: a till shop's texts are checked with it.
    till: String,
    /// The largest cart total: the dearest products at the most each, up to the order limit.
    total: Kes,
    /// The largest line: the dearest product at the most per line, up to the order limit.
    line: Kes,
    /// The product name that is longest in this language.
    name: String,
    /// The most lines a cart holds, as "N items" counts them.
    items: u32,
}

impl Worst {
    fn new(catalog: &Catalog, lang: Lang) -> Self {
        let limit = Kes::whole(MAX_ORDER_TOTAL);
        let mut prices: Vec<Kes> = catalog.products().map(|p| p.price).collect();
        prices.sort_unstable_by(|a, b| b.cmp(a));
        let dearest: Kes = prices
            .iter()
            .take(MAX_CART_LINES)
            .map(|p| p.times(MAX_QTY))
            .sum();
        let line = prices.first().map_or(Kes::ZERO, |p| p.times(MAX_QTY));
        let name = catalog
            .products()
            .map(|p| p.name_in(lang))
            .max_by_key(|name| gsm7::septets(name).unwrap_or(0))
            .unwrap_or_default()
            .to_owned();
        Worst {
            order: "W".repeat(ORDER_NUMBER_LEN),
            paybill: "9".repeat(MAX_PAYBILL_LEN),
            till: "9".repeat(MAX_PAYBILL_LEN),
            total: dearest.min(limit),
            line: line.min(limit),
            name,
            items: u32::try_from(MAX_CART_LINES).unwrap_or(u32::MAX),
        }
    }

    /// The paybill and the till: every text that says where to pay is checked with both.
    fn payees(&self) -> [Payee<'_>; 2] {
        [Payee::Paybill(&self.paybill), Payee::Till(&self.till)]
    }
}

/// Checks one language's screens and SMS, adding a problem per screen that can overflow.
struct Checker<'c, 'p> {
    catalog: &'c Catalog,
    lang: Lang,
    problems: &'p mut Problems,
}

impl Checker<'_, '_> {
    fn text(&self, id: &str, values: &[(&str, &str)]) -> String {
        self.catalog.text(self.lang, id, values)
    }

    /// Lays out every page of `view`, from every item and with each notice, and reports the
    /// first that does not fit.
    fn screen(&mut self, blame: (&str, &str), what: &str, view: &View, notices: &[&str]) {
        let starts = 0..view.items.len().max(1);
        for notice in std::iter::once(None).chain(notices.iter().copied().map(Some)) {
            for start in starts.clone() {
                let page = view.page(self.catalog, self.lang, start, notice, SMALLEST_SCREEN_MAX);
                // Not GSM-7: the character is reported where it is written.
                let Some(length) = gsm7::septets(&page.text) else {
                    return;
                };
                if !page.fits || length > SMALLEST_SCREEN_MAX {
                    self.overflow(blame, what, length, &page.text);
                    return;
                }
            }
        }
    }

    fn end(&mut self, blame: (&str, &str), what: &str, text: &str) {
        if let Some(length) = gsm7::septets(text) {
            if length > SMALLEST_SCREEN_MAX {
                self.overflow(blame, what, length, text);
            }
        }
    }

    fn overflow(&mut self, (file, key): (&str, &str), what: &str, length: usize, text: &str) {
        self.problems.add(
            file,
            key,
            format!(
                "the {what} screen in {} can be {length} characters with the longest data, \
                 more than {SMALLEST_SCREEN_MAX} (the smallest screen a gateway takes): \"{}\"",
                self.lang.code(),
                text.replace('\n', " | ")
            ),
        );
    }

    fn sms(&mut self, id: &str, values: &[(&str, &str)]) {
        let text = self.text(id, values);
        // Not GSM-7: the character is reported where it is written.
        let Some(length) = gsm7::septets(&text) else {
            return;
        };
        if length > SMS_MAX_SEPTETS {
            self.problems.add(
                &text_file(self.lang),
                id,
                format!(
                    "can be {length} characters with the longest values, more than one SMS \
                     ({SMS_MAX_SEPTETS}): \"{text}\""
                ),
            );
        }
    }
}

/// Adds a problem for every screen or SMS that could exceed its length.
pub(super) fn check(catalog: &Catalog, problems: &mut Problems) {
    for lang in Lang::ALL {
        let worst = Worst::new(catalog, lang);
        let mut checker = Checker {
            catalog,
            lang,
            problems,
        };
        check_screens(&mut checker, &worst);
        check_sms(&mut checker, &worst);
    }
}

fn check_screens(c: &mut Checker<'_, '_>, worst: &Worst) {
    let catalog = c.catalog;
    let lang = c.lang;
    let file = text_file(lang);
    let max = |id: &str, value: &str| c.text(id, &[("max", value)]);
    let invalid = c.text("hint.invalid", &[]);
    let quantity = max("hint.quantity", &MAX_QTY.to_string());
    let most = max("hint.most_per_item", &MAX_QTY.to_string());
    let full = max("hint.cart_full", &MAX_CART_LINES.to_string());
    let order_max = max("hint.order_max", &Kes::whole(MAX_ORDER_TOTAL).to_string());
    let phone = c.text("hint.phone", &[]);
    let not_safaricom = c.text("hint.not_safaricom", &[]);
    let list_name = render::list_name(&worst.name);
    let removed = c.text("item.removed", &[("name", &list_name)]);
    let changed_qty = c.text(
        "item.changed",
        &[("qty", &MAX_QTY.to_string()), ("name", &list_name)],
    );
    let changed = c.text("language.changed", &[]);

    for screen in catalog.screens.values() {
        let mut notices = vec![invalid.as_str()];
        if screen.id == crate::menu::engine::MAIN_SCREEN {
            notices.push(changed.as_str());
        }
        for payee in worst.payees() {
            let view = render::static_screen(catalog, lang, screen, payee);
            c.screen((SCREENS_FILE, &screen.id), &screen.id, &view, &notices);
        }
    }

    let view = render::resume(catalog, lang, worst.items, worst.total);
    c.screen(
        (&file, "resume.title"),
        "resume",
        &view,
        &[invalid.as_str()],
    );
    let view = render::categories(catalog, lang);
    c.screen(
        (&file, "shop.title"),
        "categories",
        &view,
        &[invalid.as_str()],
    );

    // The quantity and "added" screens show the full name. They are first checked with the
    // shortest name, to blame a too-long text once; then with each product, to blame a name.
    let quantity_notices = [
        quantity.as_str(),
        most.as_str(),
        full.as_str(),
        order_max.as_str(),
    ];
    let added_notices = [invalid.as_str(), most.as_str()];
    let shortest = catalog
        .products()
        .min_by_key(|p| gsm7::septets(p.name_in(lang)).unwrap_or(0));
    let mut texts_fit = true;
    if let Some(product) = shortest {
        let before = c.problems.0.len();
        let view = render::quantity(catalog, lang, product);
        c.screen(
            (&file, "product.title"),
            "quantity",
            &view,
            &quantity_notices,
        );
        let view = render::added(catalog, lang, product, MAX_QTY);
        c.screen((&file, "added.title"), "added", &view, &added_notices);
        let view = render::new_quantity(catalog, lang, product, MAX_QTY);
        let notices = [quantity.as_str(), order_max.as_str()];
        c.screen((&file, "item.ask"), "new quantity", &view, &notices);
        texts_fit = c.problems.0.len() == before;
    }
    for (i, category) in catalog.categories().iter().enumerate() {
        let key = format!("categories[{i}]");
        let view = render::products(catalog, lang, category);
        let notices = [invalid.as_str(), full.as_str()];
        c.screen((CATALOG_FILE, &key), "product list", &view, &notices);
        for (j, product) in category.products.iter().enumerate().filter(|_| texts_fit) {
            let key = format!("categories[{i}].products[{j}].name");
            let view = render::quantity(catalog, lang, product);
            c.screen((CATALOG_FILE, &key), "quantity", &view, &quantity_notices);
            let view = render::added(catalog, lang, product, MAX_QTY);
            c.screen((CATALOG_FILE, &key), "added", &view, &added_notices);
        }
    }

    for (way, payee) in [PayWay::Prompt, PayWay::Paybill, PayWay::None]
        .into_iter()
        .flat_map(|way| worst.payees().map(|payee| (way, payee)))
    {
        let view = render::checkout(
            catalog,
            lang,
            Some(worst.total),
            WORST_PHONE_MASKED,
            way,
            payee,
        );
        let notices = [invalid.as_str(), order_max.as_str()];
        let (blame, notices) = match way {
            // One text, reachable only by going back to it: "Invalid choice." is all it shows.
            PayWay::None => ("checkout.mpesa_only", &notices[..1]),
            _ => ("checkout.total", &notices[..]),
        };
        c.screen((&file, blame), "checkout", &view, notices);
        let view = render::checkout(catalog, lang, None, WORST_PHONE_MASKED, way, payee);
        c.screen(
            (&file, "cart.empty"),
            "checkout",
            &view,
            &[invalid.as_str()],
        );
    }
    let text = render::mpesa_only(catalog, lang, worst.total);
    c.end((&file, "checkout.mpesa_only"), "M-Pesa only", &text);
    let view = render::payer(catalog, lang);
    c.screen(
        (&file, "payer.ask"),
        "payer number",
        &view,
        &[phone.as_str(), not_safaricom.as_str()],
    );

    let rows: Vec<CartRow<'_>> = (0..MAX_CART_LINES)
        .map(|_| CartRow {
            name: &worst.name,
            qty: MAX_QTY,
            amount: worst.line,
        })
        .collect();
    let notices = [invalid.as_str(), removed.as_str(), changed_qty.as_str()];
    let view = render::cart(catalog, lang, &rows, worst.total);
    c.screen((&file, "cart.line"), "cart", &view, &notices);
    let view = render::cart(catalog, lang, &[], Kes::ZERO);
    c.screen((&file, "cart.empty"), "cart", &view, &notices);
    let view = render::pick_line(catalog, lang, &rows);
    c.screen(
        (&file, "item.choice"),
        "change which item",
        &view,
        &[invalid.as_str()],
    );
    if let Some(row) = rows.first() {
        let view = render::line(catalog, lang, row);
        c.screen(
            (&file, "cart.line"),
            "cart line",
            &view,
            &[invalid.as_str()],
        );
    }
    // The new-quantity screen shows the full name, like the quantity screen.
    let new_qty_notices = [quantity.as_str(), order_max.as_str()];
    for (i, category) in catalog
        .categories()
        .iter()
        .enumerate()
        .filter(|_| texts_fit)
    {
        for (j, product) in category.products.iter().enumerate() {
            let key = format!("categories[{i}].products[{j}].name");
            let view = render::new_quantity(catalog, lang, product, MAX_QTY);
            c.screen(
                (CATALOG_FILE, &key),
                "new quantity",
                &view,
                &new_qty_notices,
            );
        }
    }
    let view = render::clear(catalog, lang);
    c.screen(
        (&file, "clear.ask"),
        "empty cart",
        &view,
        &[invalid.as_str()],
    );

    for status in ALL_STATUSES {
        let summary = OrderSummary {
            number: worst.order.clone(),
            total: worst.total,
            status,
            placed_at_ms: 0,
        };
        let list = vec![summary.clone(); crate::menu::Profile::MAX_ORDERS];
        let view = render::orders(catalog, lang, &list);
        c.screen((&file, "orders.line"), "orders", &view, &[invalid.as_str()]);
        for (prompt, payee) in [true, false]
            .into_iter()
            .flat_map(|prompt| worst.payees().map(|payee| (prompt, payee)))
        {
            let view = render::order(catalog, lang, &summary, payee, prompt);
            c.screen(
                (&file, &payee.text_id("order.paybill")),
                "order",
                &view,
                &[invalid.as_str()],
            );
        }
    }
    let view = render::orders(catalog, lang, &[]);
    c.screen((&file, "orders.none"), "orders", &view, &[invalid.as_str()]);

    for (placed, payee) in Placed::ALL
        .into_iter()
        .flat_map(|placed| worst.payees().map(|payee| (placed, payee)))
    {
        let text = render::order_placed(catalog, lang, &worst.order, worst.total, payee, placed);
        c.end(
            (&file, &payee.text_id(placed.text_id())),
            "order placed",
            &text,
        );
    }
    let text = render::prompt_sent(catalog, lang, &worst.order, worst.total);
    c.end((&file, "order.prompt_sent"), "pay again", &text);
    let text = c.text("ussd.apology", &[]);
    c.end((&file, "ussd.apology"), "apology", &text);
}

fn check_sms(c: &mut Checker<'_, '_>, worst: &Worst) {
    let shop = c.catalog.shop_name().to_owned();
    let items = "W".repeat(SMS_ITEMS_MAX_SEPTETS);
    let total = worst.total.to_string();
    let reason = [
        "reason.cancelled",
        "reason.wrong_pin",
        "reason.timeout",
        "reason.insufficient_funds",
        "reason.failed",
    ]
    .iter()
    .map(|id| c.text(id, &[]))
    .max_by_key(|text| gsm7::septets(text).unwrap_or(0))
    .unwrap_or_default();
    c.sms(
        "sms.receipt",
        &[
            ("shop", &shop),
            ("order", &worst.order),
            ("items", &items),
            ("total", &total),
            ("receipt", WORST_RECEIPT),
        ],
    );
    for payee in worst.payees() {
        c.sms(
            &payee.text_id("sms.payment_failed"),
            &[
                ("shop", &shop),
                ("order", &worst.order),
                ("total", &total),
                payee.value(),
                ("reason", &reason),
            ],
        );
    }
    c.sms(
        "sms.nudge",
        &[
            ("shop", &shop),
            ("items", &items),
            ("total", &total),
            ("shortcode", WORST_SHORTCODE),
        ],
    );
}
