//! The texts of the SMS Duka sends, rendered from `menus/` in the shopper's language.
//!
//! Each fits one SMS (160 GSM-7 septets): the items list is what gives way, shortened at a word
//! boundary with a `..` mark, and `duka check` proves every text fits with the longest values.
//! Unit tests below render each message from the real menus, in both languages, for the largest
//! orders the cart allows.

use crate::menu::{Cart, Catalog, Lang, Payee};
use crate::money::Kes;
use crate::orders::{Order, OrderLine};

/// The receipt of a paid order: shop, order, items, total, M-Pesa receipt (when known).
///
/// Items are summarised by [`Catalog::items_summary`], which caps them at the length `duka
/// check` proved leaves every message within one SMS.
pub fn receipt(catalog: &Catalog, order: &Order) -> String {
    let receipt = order
        .payments
        .iter()
        .find_map(|p| p.receipt.clone())
        .unwrap_or_else(|| "-".to_owned());
    let items = catalog.items_summary(&order.lines);
    let total = order.total.to_string();
    catalog.text(
        order.lang,
        "sms.receipt",
        &[
            ("shop", catalog.shop_name()),
            ("order", &order.number),
            ("items", &items),
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

/// "Payment for order X was not completed (reason). Pay KES T to Paybill P, Account X." (or
/// "to Till T" in till mode).
pub fn payment_failed(
    catalog: &Catalog,
    order: &Order,
    result_code: Option<i64>,
    payee: Payee<'_>,
) -> String {
    let reason = catalog.text(order.lang, reason_id(result_code), &[]);
    let total = crate::payments::amount_due(order).to_string();
    catalog.text(
        order.lang,
        &payee.text_id("sms.payment_failed"),
        &[
            ("shop", catalog.shop_name()),
            ("order", &order.number),
            ("total", &total),
            payee.value(),
            ("reason", &reason),
        ],
    )
}

/// "KES A of your M-Pesa payment R for order X has been sent back to you."
pub fn refund(catalog: &Catalog, order: &Order, amount: Kes, receipt: &str) -> String {
    catalog.text(
        order.lang,
        "sms.refund",
        &[
            ("shop", catalog.shop_name()),
            ("order", &order.number),
            ("amount", &amount.to_string()),
            ("receipt", receipt),
        ],
    )
}

/// "Your cart is waiting: items, total. Dial *384*12# to finish."
pub fn nudge(catalog: &Catalog, lang: Lang, cart: &Cart, shortcode: &str) -> String {
    let lines = cart.order_lines(catalog, lang);
    let total: Kes = lines.iter().map(OrderLine::total).sum();
    let items = catalog.items_summary(&lines);
    let total = total.to_string();
    catalog.text(
        lang,
        "sms.nudge",
        &[
            ("shop", catalog.shop_name()),
            ("items", &items),
            ("total", &total),
            ("shortcode", shortcode),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gsm7;
    use crate::menu::CartLine;
    use crate::msisdn::Msisdn;
    use crate::orders::{Payment, PaymentSource};

    fn catalog() -> Catalog {
        Catalog::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/menus"
        )))
        .unwrap()
    }

    /// The biggest order the cart allows: ten lines of the longest names, 99 of each.
    fn big_order(catalog: &Catalog, lang: Lang) -> Order {
        let mut products: Vec<_> = catalog.products().collect();
        products.sort_by_key(|p| std::cmp::Reverse(p.name_in(lang).len()));
        let lines = products
            .iter()
            .take(10)
            .map(|p| OrderLine {
                product: p.id.clone(),
                name: p.name_in(lang).to_owned(),
                unit_price: p.price,
                qty: 99,
            })
            .collect();
        let msisdn = Msisdn::parse("0712345678").unwrap();
        let mut order = Order::place("D7K2Q9".into(), msisdn.clone(), lang, lines, msisdn, 0, 1);
        order.payments.push(Payment {
            receipt: Some("QKH94M1Z11".into()),
            amount: order.total,
            source: PaymentSource::Stk,
            at_ms: 0,
            attempt: Some(1),
        });
        order
    }

    fn one_sms(text: &str) {
        let (encoding, _, segments) = gsm7::sms_encoding_and_segments(text);
        assert_eq!(encoding, gsm7::Encoding::Gsm7, "{text}");
        assert_eq!(
            segments,
            1,
            "{} septets: {text}",
            gsm7::septets(text).unwrap()
        );
    }

    #[test]
    fn a_receipt_names_the_order_total_items_and_mpesa_receipt_in_one_sms() {
        let catalog = catalog();
        for lang in Lang::ALL {
            let order = big_order(&catalog, lang);
            let text = receipt(&catalog, &order);
            one_sms(&text);
            assert!(text.contains("D7K2Q9"), "{text}");
            assert!(text.contains("QKH94M1Z11"), "{text}");
            assert!(text.contains(&order.total.to_string()), "{text}");
            assert!(
                text.contains(".."),
                "a long items list is visibly shortened: {text}"
            );
        }
    }

    #[test]
    fn a_failure_notice_says_how_to_pay_by_paybill_in_one_sms() {
        let catalog = catalog();
        for lang in Lang::ALL {
            let order = big_order(&catalog, lang);
            for code in [Some(1032), Some(2001), Some(1037), Some(1), Some(17), None] {
                let text = payment_failed(&catalog, &order, code, Payee::Paybill("1743790"));
                one_sms(&text);
                assert!(
                    text.contains("1743790") && text.contains("D7K2Q9"),
                    "{text}"
                );
                let text = payment_failed(&catalog, &order, code, Payee::Till("5123456"));
                one_sms(&text);
                assert!(
                    text.contains("Till 5123456") && !text.contains("Paybill"),
                    "a till takes no account number: {text}"
                );
            }
        }
    }

    #[test]
    fn a_nudge_fits_one_sms_with_a_full_cart() {
        let catalog = catalog();
        let cart = Cart {
            lines: catalog
                .products()
                .take(10)
                .map(|p| CartLine {
                    product: p.id.clone(),
                    qty: 99,
                })
                .collect(),
        };
        for lang in Lang::ALL {
            let text = nudge(&catalog, lang, &cart, "*384*12#");
            one_sms(&text);
            assert!(text.contains("*384*12#"), "{text}");
        }
    }
}
