//! What each screen looks like, and how a long screen is split into pages.
//!
//! A screen is described as a `View`: head lines (title, messages), items (options or cart
//! lines, each kept whole), foot lines (options shown on every page, such as the cart's
//! Checkout) and whether the navigation line shows. `View::page` lays out one page from a given
//! item, for a screen budget (the gateway's, [`crate::menu::Hop::screen_max`]): an optional
//! notice (a hint such as "Invalid choice.") on top, the head, as many items as fit, the foot,
//! `98. More` when items remain, and `0. Back 00. Home`. A notice never moves options to
//! another page: if it would, it takes the title's line instead. A page never splits an item
//! and never exceeds the budget unless a single item cannot fit at all, which
//! [`crate::menu::catalog`] rules out at load time by laying out every screen with the longest
//! data at [`crate::menu::SMALLEST_SCREEN_MAX`].
//!
//! Both the engine and the catalog's budget check build views through the functions here, so
//! what is checked at startup is exactly what shoppers see. Nothing here decides what a key
//! does; that is [`crate::menu::engine`].

use crate::gsm7;
use crate::menu::catalog::{Catalog, Category, Product, StaticScreen};
use crate::menu::{Lang, Payee, DEFAULT_SCREEN_MAX};
use crate::money::Kes;
use crate::orders::{OrderStatus, OrderSummary};
/// Names in lists (products, cart lines) are shortened to this with [`gsm7::shorten`], so a
/// page holds several of them.
pub const LIST_NAME_MAX_SEPTETS: usize = 22;
/// The key that shows the next page.
pub const MORE_KEY: &str = "98";

/// A screen before it is laid out in pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct View {
    /// Lines shown at the top of every page.
    pub head: Vec<String>,
    /// Options or cart lines, in order; an item may span lines and is never split.
    pub items: Vec<String>,
    /// Lines shown under the items on every page (the cart's actions).
    pub foot: Vec<String>,
    /// Whether `0. Back 00. Home` is shown (everywhere but the main menu and the resume offer).
    pub nav: bool,
}

/// One laid-out page of a [`View`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub text: String,
    /// The index of the first item of the next page, if items remain.
    pub next: Option<usize>,
    /// False when even one item (or the head alone) is longer than the screen allows.
    pub fits: bool,
}

fn width(line: &str) -> usize {
    gsm7::septets(line).unwrap_or(line.chars().count())
}

impl View {
    /// Lays out the page that starts at item `start`, with `notice` above it, in at most `max`
    /// GSM-7 characters.
    ///
    /// When the notice would push items of this page onto the next one, or make a screen
    /// without items too long, it takes the place of the first head line (the title the
    /// shopper has just seen) instead, so that a hint never moves the options the shopper is
    /// choosing from.
    pub(crate) fn page(
        &self,
        catalog: &Catalog,
        lang: Lang,
        start: usize,
        notice: Option<&str>,
        max: usize,
    ) -> Page {
        let start = if start < self.items.len() { start } else { 0 };
        let head: Vec<&str> = self.head.iter().map(String::as_str).collect();
        let layout = |notice, head: &[&str]| self.layout(catalog, lang, start, notice, head, max);
        let page = layout(notice, &head);
        let Some(notice) = notice else {
            return page;
        };
        if head.is_empty() {
            return page;
        }
        let plain = layout(None, &head);
        if page.fits && page.next == plain.next {
            return page;
        }
        let mut replaced = head.clone();
        replaced[0] = notice;
        let instead = layout(None, &replaced);
        if instead.fits && instead.next == plain.next {
            instead
        } else {
            page
        }
    }

    fn layout(
        &self,
        catalog: &Catalog,
        lang: Lang,
        start: usize,
        notice: Option<&str>,
        head: &[&str],
        max: usize,
    ) -> Page {
        let Chrome { more, nav } = catalog.chrome(lang);

        // Every line costs its septets plus one for the line feed before it.
        let fixed: Vec<&str> = notice
            .into_iter()
            .chain(head.iter().copied())
            .chain(self.foot.iter().map(String::as_str))
            .chain(self.nav.then_some(nav.as_str()))
            .collect();
        let base: usize = fixed.iter().map(|line| width(line) + 1).sum();
        let more_cost = width(more) + 1;
        let budget = max + 1;

        // The most items that fit, trying every count: the last item needs no `98. More`, so a
        // count that fits may follow one that does not.
        let remaining = self.items.len() - start;
        let mut used = base;
        let mut shown = 0;
        for count in 1..=remaining {
            used += width(&self.items[start + count - 1]) + 1;
            let cost = if count < remaining {
                used + more_cost
            } else {
                used
            };
            if cost <= budget {
                shown = count;
            }
        }
        let fits = if remaining == 0 {
            base <= budget
        } else {
            shown > 0
        };
        if remaining > 0 && shown == 0 {
            shown = 1;
        }

        let next = (start + shown < self.items.len()).then_some(start + shown);
        let mut lines: Vec<&str> = notice.into_iter().collect();
        lines.extend(head.iter().copied());
        lines.extend(self.items[start..start + shown].iter().map(String::as_str));
        lines.extend(self.foot.iter().map(String::as_str));
        if next.is_some() {
            lines.push(more);
        }
        if self.nav {
            lines.push(nav);
        }
        Page {
            text: lines.join("\n"),
            next,
            fits,
        }
    }
}

/// The lines every list screen may end with, in one language: `98. More` and the navigation
/// line. Worked out once per catalog ([`Catalog::chrome`]), since every laid-out page needs them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Chrome {
    pub more: String,
    pub nav: String,
}

impl Chrome {
    pub(crate) fn of(catalog: &Catalog, lang: Lang) -> Chrome {
        Chrome {
            more: format!("{MORE_KEY}. {}", catalog.text(lang, "nav.more", &[])),
            nav: nav_line(catalog, lang),
        }
    }
}

fn nav_line(catalog: &Catalog, lang: Lang) -> String {
    format!(
        "0. {} 00. {}",
        catalog.text(lang, "nav.back", &[]),
        catalog.text(lang, "nav.home", &[])
    )
}

fn option(key: impl std::fmt::Display, label: &str) -> String {
    format!("{key}. {label}")
}

/// A name as shown in a list.
pub(crate) fn list_name(name: &str) -> String {
    gsm7::shorten(name, LIST_NAME_MAX_SEPTETS)
}

/// "1 item", "3 items" (or "bidhaa 3").
pub(crate) fn item_count(catalog: &Catalog, lang: Lang, count: u32) -> String {
    if count == 1 {
        catalog.text(lang, "count.one", &[])
    } else {
        catalog.text(lang, "count.many", &[("count", &count.to_string())])
    }
}

pub(crate) fn status(catalog: &Catalog, lang: Lang, status: OrderStatus) -> String {
    let id = match status {
        OrderStatus::AwaitingPayment => "status.awaiting_payment",
        OrderStatus::Failed => "status.failed",
        OrderStatus::Paid => "status.paid",
        OrderStatus::Expired => "status.expired",
    };
    catalog.text(lang, id, &[])
}

/// A screen of `screens.toml`. The main menu has no navigation line: it is where `00` leads.
pub(crate) fn static_screen(
    catalog: &Catalog,
    lang: Lang,
    screen: &StaticScreen,
    payee: Payee<'_>,
) -> View {
    let values = [
        ("shop", catalog.shop_name()),
        ("help_phone", catalog.help_phone()),
        payee.value(),
    ];
    // A till shop shows a text's `_till` twin where the menus have one (`help.body_till`).
    let text = |id: &str| {
        let twin = payee.text_id(id);
        let id = if catalog.has_text(lang, &twin) {
            &twin
        } else {
            id
        };
        catalog.text(lang, id, &values)
    };
    let mut head = vec![text(&screen.title)];
    if let Some(body) = &screen.body {
        head.push(text(body));
    }
    View {
        head,
        items: screen
            .options
            .iter()
            .map(|o| option(&o.key, &catalog.text(lang, &o.label, &values)))
            .collect(),
        nav: screen.id != crate::menu::engine::MAIN_SCREEN,
        foot: Vec::new(),
    }
}

/// "Welcome back. Your cart: 3 items, KES 900." with Continue and Start over. `items` counts
/// the cart's lines (ten bags of sugar are one item), as shoppers do.
pub(crate) fn resume(catalog: &Catalog, lang: Lang, items: u32, total: Kes) -> View {
    View {
        head: vec![catalog.text(
            lang,
            "resume.title",
            &[
                ("items", &item_count(catalog, lang, items)),
                ("total", &total.to_string()),
            ],
        )],
        items: vec![
            option(1, &catalog.text(lang, "resume.continue", &[])),
            option(2, &catalog.text(lang, "resume.restart", &[])),
        ],
        nav: false,
        foot: Vec::new(),
    }
}

pub(crate) fn categories(catalog: &Catalog, lang: Lang) -> View {
    View {
        head: vec![catalog.text(lang, "shop.title", &[])],
        items: catalog
            .categories()
            .iter()
            .enumerate()
            .map(|(i, c)| option(i + 1, &list_name(c.name(lang))))
            .collect(),
        nav: true,
        foot: Vec::new(),
    }
}

/// `N. NAME - KES PRICE`, numbered on across pages.
pub(crate) fn products(catalog: &Catalog, lang: Lang, category: &Category) -> View {
    View {
        head: vec![category.name(lang).to_owned()],
        items: category
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let label = catalog.text(
                    lang,
                    "shop.product",
                    &[
                        ("name", &list_name(p.name_in(lang))),
                        ("price", &p.price.to_string()),
                    ],
                );
                option(i + 1, &label)
            })
            .collect(),
        nav: true,
        foot: Vec::new(),
    }
}

/// `NAME - KES PRICE each` and `Enter quantity`.
pub(crate) fn quantity(catalog: &Catalog, lang: Lang, product: &Product) -> View {
    View {
        head: vec![
            catalog.text(
                lang,
                "product.title",
                &[
                    ("name", product.name_in(lang)),
                    ("price", &product.price.to_string()),
                ],
            ),
            catalog.text(lang, "product.ask", &[]),
        ],
        items: Vec::new(),
        nav: true,
        foot: Vec::new(),
    }
}

/// `Added Q x NAME.` with Checkout and Continue shopping.
pub(crate) fn added(catalog: &Catalog, lang: Lang, product: &Product, qty: u32) -> View {
    View {
        head: vec![catalog.text(
            lang,
            "added.title",
            &[("qty", &qty.to_string()), ("name", product.name_in(lang))],
        )],
        items: vec![
            option(1, &catalog.text(lang, "added.checkout", &[])),
            option(2, &catalog.text(lang, "added.continue", &[])),
        ],
        nav: true,
        foot: Vec::new(),
    }
}

/// An empty cart says so and offers the shop.
fn empty_cart(catalog: &Catalog, lang: Lang, title: Option<String>) -> View {
    View {
        head: title
            .into_iter()
            .chain([catalog.text(lang, "cart.empty", &[])])
            .collect(),
        items: vec![option(1, &catalog.text(lang, "cart.shop", &[]))],
        nav: true,
        foot: Vec::new(),
    }
}

/// How a shopper can pay at checkout, from their number and network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PayWay {
    /// An M-Pesa prompt to this phone, or to another Safaricom number.
    Prompt,
    /// A Kenyan number that cannot get a prompt (Airtel, Telkom): the order is paid to the
    /// paybill, or by prompt to another (Safaricom) number.
    Paybill,
    /// A number outside Kenya: the shop takes M-Pesa (Kenya) only.
    None,
}

/// `Total KES X.` and the ways to pay; `total` is `None` for an empty cart.
pub(crate) fn checkout(
    catalog: &Catalog,
    lang: Lang,
    total: Option<Kes>,
    phone_masked: &str,
    way: PayWay,
    payee: Payee<'_>,
) -> View {
    let Some(total) = total else {
        return empty_cart(catalog, lang, None);
    };
    let head = vec![catalog.text(lang, "checkout.total", &[("total", &total.to_string())])];
    let items = match way {
        PayWay::Prompt => vec![
            option(
                1,
                &catalog.text(lang, "checkout.pay_self", &[("phone", phone_masked)]),
            ),
            option(2, &catalog.text(lang, "checkout.pay_other", &[])),
        ],
        PayWay::Paybill => vec![
            option(
                1,
                &catalog.text(lang, &payee.text_id("checkout.pay_paybill"), &[]),
            ),
            option(2, &catalog.text(lang, "checkout.pay_other", &[])),
        ],
        PayWay::None => {
            return View {
                head: vec![mpesa_only(catalog, lang, total)],
                items: Vec::new(),
                foot: Vec::new(),
                nav: true,
            }
        }
    };
    View {
        head,
        items,
        foot: Vec::new(),
        nav: true,
    }
}

/// The END screen at checkout for a number outside Kenya: no order is placed.
pub(crate) fn mpesa_only(catalog: &Catalog, lang: Lang, total: Kes) -> String {
    catalog.text(
        lang,
        "checkout.mpesa_only",
        &[("total", &total.to_string()), ("shop", catalog.shop_name())],
    )
}

pub(crate) fn payer(catalog: &Catalog, lang: Lang) -> View {
    View {
        head: vec![catalog.text(lang, "payer.ask", &[])],
        items: Vec::new(),
        nav: true,
        foot: Vec::new(),
    }
}

/// A cart line as the cart and the remove list show it.
#[derive(Clone, Debug)]
pub(crate) struct CartRow<'a> {
    pub name: &'a str,
    pub qty: u32,
    pub amount: Kes,
}

/// The total, the cart's lines, and the three actions under them on every page: only the
/// lines are paged, so Checkout is on the first page of a ten-line cart.
pub(crate) fn cart(catalog: &Catalog, lang: Lang, rows: &[CartRow<'_>], total: Kes) -> View {
    let title = catalog.text(lang, "cart.title", &[]);
    if rows.is_empty() {
        return empty_cart(catalog, lang, Some(title));
    }
    View {
        head: vec![
            title,
            catalog.text(lang, "cart.total", &[("total", &total.to_string())]),
        ],
        items: rows
            .iter()
            .map(|row| cart_line(catalog, lang, row))
            .collect(),
        foot: vec![
            option(1, &catalog.text(lang, "cart.checkout", &[])),
            option(2, &catalog.text(lang, "cart.change", &[])),
            option(3, &catalog.text(lang, "cart.clear", &[])),
        ],
        nav: true,
    }
}

/// `Q x NAME - KES AMOUNT`.
fn cart_line(catalog: &Catalog, lang: Lang, row: &CartRow<'_>) -> String {
    catalog.text(
        lang,
        "cart.line",
        &[
            ("qty", &row.qty.to_string()),
            ("name", &list_name(row.name)),
            ("amount", &row.amount.to_string()),
        ],
    )
}

/// The cart's lines as numbered choices: which one to change or remove.
pub(crate) fn pick_line(catalog: &Catalog, lang: Lang, rows: &[CartRow<'_>]) -> View {
    if rows.is_empty() {
        return empty_cart(catalog, lang, None);
    }
    View {
        head: vec![catalog.text(lang, "item.pick", &[])],
        items: rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let label = catalog.text(
                    lang,
                    "item.choice",
                    &[
                        ("qty", &row.qty.to_string()),
                        ("name", &list_name(row.name)),
                    ],
                );
                option(i + 1, &label)
            })
            .collect(),
        foot: Vec::new(),
        nav: true,
    }
}

/// One cart line, with Change quantity and Remove.
pub(crate) fn line(catalog: &Catalog, lang: Lang, row: &CartRow<'_>) -> View {
    View {
        head: vec![cart_line(catalog, lang, row)],
        items: vec![
            option(1, &catalog.text(lang, "item.change", &[])),
            option(2, &catalog.text(lang, "item.remove", &[])),
        ],
        foot: Vec::new(),
        nav: true,
    }
}

/// `NAME - KES PRICE each` and `Enter the new quantity (now Q)`.
pub(crate) fn new_quantity(catalog: &Catalog, lang: Lang, product: &Product, qty: u32) -> View {
    let mut view = quantity(catalog, lang, product);
    view.head[1] = catalog.text(lang, "item.ask", &[("qty", &qty.to_string())]);
    view
}

pub(crate) fn clear(catalog: &Catalog, lang: Lang) -> View {
    View {
        head: vec![catalog.text(lang, "clear.ask", &[])],
        items: vec![
            option(1, &catalog.text(lang, "clear.yes", &[])),
            option(2, &catalog.text(lang, "clear.no", &[])),
        ],
        nav: true,
        foot: Vec::new(),
    }
}

/// `N. D7K2Q9 KES 900 Paid`, newest first as the profile keeps them.
pub(crate) fn orders(catalog: &Catalog, lang: Lang, orders: &[OrderSummary]) -> View {
    let title = catalog.text(lang, "orders.title", &[]);
    if orders.is_empty() {
        return View {
            head: vec![title, catalog.text(lang, "orders.none", &[])],
            items: Vec::new(),
            nav: true,
            foot: Vec::new(),
        };
    }
    View {
        head: vec![title],
        items: orders
            .iter()
            .enumerate()
            .map(|(i, order)| {
                let label = catalog.text(
                    lang,
                    "orders.line",
                    &[
                        ("order", &order.number),
                        ("total", &order.total.to_string()),
                        ("status", &status(catalog, lang, order.status)),
                    ],
                );
                option(i + 1, &label)
            })
            .collect(),
        nav: true,
        foot: Vec::new(),
    }
}

/// One order: number, total, status, and for a payable one the ways to pay: "Pay again" (when
/// `prompt`, the phone can get an M-Pesa prompt) and the paybill.
pub(crate) fn order(
    catalog: &Catalog,
    lang: Lang,
    order: &OrderSummary,
    payee: Payee<'_>,
    prompt: bool,
) -> View {
    let total = order.total.to_string();
    let head = vec![
        catalog.text(lang, "order.title", &[("order", &order.number)]),
        catalog.text(lang, "order.total", &[("total", &total)]),
        catalog.text(
            lang,
            "order.status",
            &[("status", &status(catalog, lang, order.status))],
        ),
    ];
    // "1. Pay again" then "Or pay KES 900 to Paybill ...", kept together as one item.
    let mut head = head;
    let mut items = Vec::new();
    if order.status.is_payable() {
        let paybill_way = catalog.text(
            lang,
            &payee.text_id("order.paybill"),
            &[("total", &total), payee.value(), ("order", &order.number)],
        );
        if prompt {
            let pay_again = option(1, &catalog.text(lang, "order.pay_again", &[]));
            items.push(format!("{pay_again}\n{paybill_way}"));
        } else {
            head.push(paybill_way);
        }
    }
    View {
        head,
        items,
        nav: true,
        foot: Vec::new(),
    }
}

/// What happens to a placed order's payment, which the END screen after checkout says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placed {
    /// The M-Pesa prompt follows the end of the session.
    Prompt,
    /// A prompt of an earlier order may still be open on the phone: this order's prompt
    /// waits for it (the payment worker sends one prompt per phone at a time).
    PromptQueued,
    /// No prompt is sent (the phone cannot get one): pay to the paybill.
    Paybill,
}

impl Placed {
    pub(crate) const ALL: [Placed; 3] = [Placed::Prompt, Placed::PromptQueued, Placed::Paybill];

    pub(crate) fn text_id(self) -> &'static str {
        match self {
            Placed::Prompt => "order.placed",
            Placed::PromptQueued => "order.placed_queued",
            Placed::Paybill => "order.placed_paybill",
        }
    }
}

/// The END screen after checkout.
pub(crate) fn order_placed(
    catalog: &Catalog,
    lang: Lang,
    number: &str,
    total: Kes,
    payee: Payee<'_>,
    placed: Placed,
) -> String {
    catalog.text(
        lang,
        &payee.text_id(placed.text_id()),
        &[
            ("order", number),
            ("total", &total.to_string()),
            payee.value(),
        ],
    )
}

/// The END screen at checkout when the phone has had too many payment prompts.
pub(crate) fn order_placed_limited(
    catalog: &Catalog,
    lang: Lang,
    number: &str,
    until_ms: i64,
) -> String {
    catalog.text(
        lang,
        "order.placed_limited",
        &[("order", number), ("time", &eat_clock(until_ms))],
    )
}

/// The END screen for "Pay again" when the phone has had too many payment prompts.
pub(crate) fn prompt_limited(catalog: &Catalog, lang: Lang, until_ms: i64) -> String {
    catalog.text(
        lang,
        "order.prompt_limited",
        &[("time", &eat_clock(until_ms))],
    )
}

/// `HH:MM` in Nairobi (EAT, UTC+3, no daylight saving), rounded up to the next minute so that
/// the time shown is never before the limit lifts.
pub(crate) fn eat_clock(at_ms: i64) -> String {
    const MINUTE_MS: i64 = 60_000;
    let minutes = (at_ms + 3 * 60 * MINUTE_MS + MINUTE_MS - 1).div_euclid(MINUTE_MS);
    let of_day = minutes.rem_euclid(24 * 60);
    format!("{:02}:{:02}", of_day / 60, of_day % 60)
}

/// The END screen after "Pay again".
pub(crate) fn prompt_sent(catalog: &Catalog, lang: Lang, number: &str, total: Kes) -> String {
    catalog.text(
        lang,
        "order.prompt_sent",
        &[("order", number), ("total", &total.to_string())],
    )
}

/// Cuts a text to `max` as a last resort. The catalog check makes this unreachable for every
/// screen the engine draws on a gateway that takes at least [`crate::menu::SMALLEST_SCREEN_MAX`];
/// it is here so that a gateway is never sent an oversized body.
pub(crate) fn clamp(text: String, max: usize) -> String {
    if width(&text) <= max {
        text
    } else {
        gsm7::shorten(&text, max)
    }
}

/// [`clamp`] at the budget of most gateways, for screens drawn without a [`crate::menu::Hop`].
pub(crate) fn clamp_default(text: String) -> String {
    clamp(text, DEFAULT_SCREEN_MAX)
}
