//! The shop's menus: what a shopper sees and what each key press does.
//!
//! [`catalog`] loads `menus/` (screens, texts in English and Kiswahili, products) and refuses a
//! shop that could ever show a broken screen. [`engine`] is the pure state machine: given the
//! catalog, what the store holds for this shopper, the menu state and one input, it returns the
//! next screen, the new state and the [`Effect`]s to carry out. It does no I/O and reads no clock
//! or randomness of its own (both come in through [`Hop`]), which is what makes it exhaustively
//! testable and the fixture replay deterministic.
//!
//! Nothing here knows about Africa's Talking: a [`Reply`] is a screen and whether it ends the
//! session; each gateway adapter renders it in its own wire format.

pub mod catalog;
pub mod engine;
pub mod pages;
pub mod render;

use serde::{Deserialize, Serialize};

pub use catalog::{Catalog, CatalogError};
pub use engine::{advance, apology, start, step, MenuState};

/// The longest screen text most gateways take: 182 GSM-7 characters on the wire (Africa's
/// Talking, Safaricom), less the `CON `/`END ` prefix. Screens are paged at [`Hop::screen_max`].
pub const DEFAULT_SCREEN_MAX: usize = 178;
/// The smallest screen any gateway documents (some say 160). `duka check` lays out every screen
/// at this budget, so a screen fits whichever gateway the shopper dialled through.
pub const SMALLEST_SCREEN_MAX: usize = 160;

use crate::money::Kes;
use crate::msisdn::Msisdn;
use crate::orders::{OrderLine, OrderSummary};

/// Where a shopper pays by hand when no prompt comes: a paybill, with the order number as the
/// account, or a Buy Goods till, which takes no account number (`MPESA_TILL`). Texts that tell
/// the shopper how to pay have a till twin, the same id with `_till` (`order.placed_till`),
/// which has `{till}` where the paybill text has `{paybill}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payee<'a> {
    Paybill(&'a str),
    Till(&'a str),
}

impl<'a> Payee<'a> {
    /// The paybill or till number.
    pub fn number(self) -> &'a str {
        match self {
            Payee::Paybill(n) | Payee::Till(n) => n,
        }
    }

    /// The text to use for `id`: `id` itself for a paybill, its `_till` twin for a till.
    pub fn text_id(self, id: &str) -> String {
        match self {
            Payee::Paybill(_) => id.to_owned(),
            Payee::Till(_) => format!("{id}_till"),
        }
    }

    /// The placeholder and value that say where to pay: `("paybill", n)` or `("till", n)`.
    pub fn value(self) -> (&'static str, &'a str) {
        match self {
            Payee::Paybill(n) => ("paybill", n),
            Payee::Till(n) => ("till", n),
        }
    }
}

/// A language every text exists in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Sw,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Sw];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Sw => "sw",
        }
    }
}

/// The screen to show and whether the session goes on (`CON`) or ends (`END`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub end: bool,
    pub text: String,
}

impl Reply {
    pub fn con(text: impl Into<String>) -> Self {
        Self {
            end: false,
            text: text.into(),
        }
    }

    pub fn end(text: impl Into<String>) -> Self {
        Self {
            end: true,
            text: text.into(),
        }
    }
}

/// A shopper's cart, kept under the phone number for hours, apart from the short-lived session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub lines: Vec<CartLine>,
}

/// One product in the cart. Prices are read from the catalog when shown, and frozen into the
/// order at checkout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    /// The catalog id of the product.
    pub product: String,
    pub qty: u32,
}

impl Cart {
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The number of items (sum of quantities): "3 items".
    pub fn item_count(&self) -> u32 {
        self.lines.iter().map(|l| l.qty).sum()
    }

    /// The number of lines (distinct products), which is what shoppers count as "items" on
    /// a screen: ten bags of sugar are one item in the cart.
    pub fn line_count(&self) -> u32 {
        u32::try_from(self.lines.len()).unwrap_or(u32::MAX)
    }

    /// The cart priced from the catalog, as order lines named in `lang`. Products no longer in
    /// the catalog are left out.
    pub fn order_lines(&self, catalog: &Catalog, lang: Lang) -> Vec<OrderLine> {
        self.lines
            .iter()
            .filter_map(|line| {
                let product = catalog.product(&line.product)?;
                Some(OrderLine {
                    product: product.id.clone(),
                    name: product.name_in(lang).to_owned(),
                    unit_price: product.price,
                    qty: line.qty,
                })
            })
            .collect()
    }
}

/// What Duka remembers of a shopper across sessions, under the phone number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The chosen language; `None` until the shopper picks one (English is shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<Lang>,
    /// The last orders, newest first, at most [`Profile::MAX_ORDERS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<OrderSummary>,
    /// The day (days since the Unix epoch, EAT) the last drop-off nudge SMS was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nudged_on_day: Option<i64>,
}

impl Profile {
    pub const MAX_ORDERS: usize = 5;

    pub fn lang(&self) -> Lang {
        self.lang.unwrap_or_default()
    }
}

/// Everything the engine may look at for one hop besides the menu state and the input.
#[derive(Clone, Copy, Debug)]
pub struct Hop<'a> {
    pub catalog: &'a Catalog,
    /// The phone the session is on.
    pub msisdn: &'a Msisdn,
    /// Whether an M-Pesa STK push can be sent to this phone
    /// ([`Msisdn::mpesa_payable`] with the gateway's network code). When false, checkout
    /// offers the paybill (Kenyan numbers) or says the shop takes M-Pesa only (others).
    pub mpesa: bool,
    /// The longest screen the gateway takes, in GSM-7 characters ([`DEFAULT_SCREEN_MAX`]
    /// unless the gateway documents a smaller one); long screens are paged to fit it.
    pub screen_max: usize,
    pub cart: &'a Cart,
    pub profile: &'a Profile,
    /// The paybill (or till) shown in the "no prompt?" instructions.
    pub payee: Payee<'a>,
    /// A fresh, unused order number in the shopper's shard, used if this hop places an order.
    pub new_order_number: &'a str,
    /// Milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// Until when no STK push may go to this phone (the prompt-bombing limit, as read when the
    /// session started; see [`crate::payments::push_limit`]). The push job enforces the limit;
    /// this lets checkout tell the shopper instead of promising a prompt.
    pub push_blocked_until_ms: Option<i64>,
}

/// What a step returns: the screen, and the whole new state of the session, cart and profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub reply: Reply,
    pub state: MenuState,
    pub cart: Cart,
    pub profile: Profile,
    pub effects: Vec<Effect>,
}

/// Work the engine asks for, carried out by the caller in the same atomic commit as the state.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Create the order (the cart in `Step::cart` is already empty) and, when `payer` is set,
    /// ask that number to pay it by STK push once the USSD session has ended. With `payer`
    /// `None` the shopper cannot be pushed (another network): no push is sent, and the order
    /// waits for a paybill payment with its number as the account until it expires.
    PlaceOrder {
        number: String,
        lines: Vec<OrderLine>,
        total: Kes,
        lang: Lang,
        payer: Option<Msisdn>,
    },
    /// Send a new STK push for an unpaid order of this shopper.
    PayAgain { number: String, payer: Msisdn },
}
