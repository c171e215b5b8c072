//! The texts of the SMS Duka sends, rendered from `menus/` in the shopper's language.
//!
//! Each fits one SMS (160 GSM-7 septets) where it can: the items list is what gives way, shortened
//! at a word boundary with a `..` mark; a message never exceeds three segments (checked by unit
//! tests over the real menus with long orders).

use crate::gsm7;
use crate::menu::{Cart, Catalog, Lang};
use crate::money::Kes;
use crate::orders::Order;

/// One GSM-7 SMS.
pub const ONE_SMS: usize = 160;

/// "2x Toilet Paper 10pk, 1x Sugar 1kg".
fn items_of<'a>(lines: impl Iterator<Item = (u32, &'a str)>) -> String {
    lines
        .map(|(qty, name)| format!("{qty}x {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders `id` with `items` shortened so the whole text fits one SMS where possible.
fn fit(catalog: &Catalog, lang: Lang, id: &str, items: &str, vars: &[(&str, &str)]) -> String {
    let render = |items: &str| {
        let mut all: Vec<(&str, &str)> = vars.to_vec();
        all.push(("items", items));
        catalog.text(lang, id, &all)
    };
    let full = render(items);
    let full_len = gsm7::septets(&full).unwrap_or(usize::MAX);
    if full_len <= ONE_SMS {
        return full;
    }
    let items_len = gsm7::septets(items).unwrap_or(0);
    let room = items_len.saturating_sub(full_len - ONE_SMS);
    render(&gsm7::shorten(items, room.max(8)))
}

/// The receipt of a paid order: shop, order, items, total, M-Pesa receipt (when known).
pub fn receipt(catalog: &Catalog, order: &Order) -> String {
    let receipt = order
        .payments
        .iter()
        .find_map(|p| p.receipt.clone())
        .unwrap_or_else(|| "-".to_owned());
    let items = items_of(order.lines.iter().map(|l| (l.qty, l.name.as_str())));
    let total = order.total.to_string();
    fit(
        catalog,
        order.lang,
        "sms.receipt",
        &items,
        &[
            ("shop", catalog.shop_name()),
            ("order", &order.number),
            ("total", &total),
            ("receipt", &receipt),
        ],
    )
}

/// The reason text for an STK result code.
fn reason_id(result_code: Option<i64>) -> &'static str {
    match result_code {
        Some(1032) => "reason.cancelled",
        Some(2001) => "reason.wrong_pin",
        Some(1019 | 1037) => "reason.timeout",
        Some(1) => "reason.insufficient_funds",
        _ => "reason.failed",
    }
}

/// "Payment for order X was not completed (reason). Pay KES T to Paybill P, Account X."
pub fn payment_failed(
    catalog: &Catalog,
    order: &Order,
    result_code: Option<i64>,
    paybill: &str,
) -> String {
    let reason = catalog.text(order.lang, reason_id(result_code), &[]);
    let total = crate::payments::amount_due(order).to_string();
    catalog.text(
        order.lang,
        "sms.payment_failed",
        &[
            ("shop", catalog.shop_name()),
            ("order", &order.number),
            ("total", &total),
            ("paybill", paybill),
            ("reason", &reason),
        ],
    )
}

/// "Your cart is waiting: items, total. Dial *384*12# to finish."
pub fn nudge(catalog: &Catalog, lang: Lang, cart: &Cart, shortcode: &str) -> String {
    let mut total = Kes::ZERO;
    let mut lines = Vec::new();
    for line in &cart.lines {
        if let Some(product) = catalog.product(&line.product) {
            total = total + product.price.times(line.qty);
            lines.push((line.qty, product.name.as_str()));
        }
    }
    let items = items_of(lines.into_iter());
    let total = total.to_string();
    fit(
        catalog,
        lang,
        "sms.nudge",
        &items,
        &[
            ("shop", catalog.shop_name()),
            ("total", &total),
            ("shortcode", shortcode),
        ],
    )
}
