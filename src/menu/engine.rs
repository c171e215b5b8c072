//! The pure menu engine: one key press in, the next screen and the new state out.
//!
//! [`start`] draws the first screen of a session; [`step`] takes the [`MenuState`] saved after
//! the previous hop and the shopper's new input. Both return a [`Step`]: the reply, the new
//! menu state, the new cart and profile, and the [`Effect`]s (placing an order, a new STK push)
//! for the caller to commit atomically with the state. Nothing here does I/O or reads a clock or
//! a random source: the time, the paybill and the next order number arrive in the [`Hop`]. That
//! is what lets the tests walk every screen, and thousands of random sessions, in milliseconds.
//!
//! # Navigation
//! - `0` goes back one screen through a real history stack, `00` goes to the main menu, on
//!   every screen. `0` on the main menu shows it again.
//! - `98` shows the next page of a paged screen. Where there is no next page it is an invalid
//!   choice, except on the quantity screen, where it is the quantity 98: that screen reads
//!   numbers as data, and 98 is a quantity the shop allows.
//! - Anything else that is not an option (letters, `2*3`, an empty input, a number out of range)
//!   shows the same screen with a short hint on top.
//! - Numbers continue across pages, and a number from another page of the same list is
//!   accepted: it is unambiguous, and a shopper may remember it.
//! - Opening a screen that is already in the history goes back to it instead of stacking a
//!   second copy, so "Continue shopping" after adding returns to the product list the shopper
//!   came from and the history never grows in circles. It is also capped at [`MAX_DEPTH`]
//!   screens, which keeps the session record small.
//! - A screen that confirms an action replaces the screen that asked for it: after "Added 2 x
//!   Sugar", `0` returns to the product list, not to a quantity prompt that would add again.
//!
//! # Paying
//! Checkout offers what the shopper's phone can do ([`Hop::mpesa`]): an M-Pesa prompt to this
//! phone or to another Safaricom number; for a Kenyan number on another network, an order paid
//! to the paybill (no prompt is sent) or a prompt to a Safaricom number; for a number outside
//! Kenya, an END screen saying the shop takes M-Pesa (Kenya) only, and no order.
//!
//! # Cart limits
//! At most [`MAX_CART_LINES`] products, [`MAX_QTY`] of each, and [`MAX_ORDER_TOTAL`] shillings
//! in all (the most one M-Pesa payment can be). Adding to a product already in the cart adds to
//! its line; past [`MAX_QTY`] the line is capped and the shopper told. The catalog check lays
//! out every screen with carts at these limits.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, Target};
use super::pages::{CachedPage, PageKey};
use super::render::{self, CartRow, PayWay, Placed, View, MORE_KEY};
use super::{Cart, CartLine, Effect, Hop, Lang, Profile, Reply, Step};
use crate::keys::STK_LOCK_TTL_MS;
use crate::money::Kes;
use crate::msisdn::Msisdn;
use crate::orders::{OrderLine, OrderStatus, OrderSummary};

/// The id of the main menu in `screens.toml`: the bottom of every history.
pub const MAIN_SCREEN: &str = "main";
/// The most of one product in the cart; quantities are typed as 1 to 99.
pub const MAX_QTY: u32 = 99;
/// The largest quantity whose "Added" page is kept in [`super::pages::Pages`].
const MAX_CACHED_QTY: u32 = 10;
/// The most distinct products in the cart.
pub const MAX_CART_LINES: usize = 10;
/// The largest order, in whole shillings: the most one M-Pesa payment can be.
pub const MAX_ORDER_TOTAL: i64 = 250_000;
/// The longest paybill number the screens are checked against (Safaricom's are 5 to 7 digits).
pub const MAX_PAYBILL_LEN: usize = 7;
/// The most screens the history keeps; the oldest above the main menu are dropped first.
pub const MAX_DEPTH: usize = 12;

/// Where a shopper is in the menus, saved in the session between hops.
///
/// Serialised compactly (`{"s":["s:main","c","p:household>4"]}`), since it is stored per
/// session in Redis beside the cart; each screen is one short string (see `Frame` in the source).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MenuState {
    /// The history: never empty in a state the engine returns; the top is the screen the
    /// shopper is looking at and the bottom is the main menu. An empty stack (the `Default`)
    /// reads as the main menu.
    #[serde(rename = "s", default)]
    stack: Vec<Frame>,
}

impl MenuState {
    /// The state of a shopper looking at the main menu.
    pub fn home() -> Self {
        Self {
            stack: vec![Frame::new(Screen::Static(MAIN_SCREEN.to_owned()))],
        }
    }

    /// The current screen's name, for logs (`main`, `products`, `checkout`, ...).
    pub fn screen_id(&self) -> &str {
        match self.stack.last() {
            None => MAIN_SCREEN,
            Some(frame) => frame.screen.name(),
        }
    }

    /// How many screens deep the shopper is (1 on the main menu).
    pub fn depth(&self) -> usize {
        self.stack.len().max(1)
    }
}

/// One screen in the history, with where its page starts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Frame {
    screen: Screen,
    /// The index of the first item on the page shown.
    at: u8,
    /// The first item of the next page, as laid out when this screen was last shown (with the
    /// hint it had then), so `98` continues exactly where the shopper's screen ended.
    next: Option<u8>,
}

impl Frame {
    fn new(screen: Screen) -> Self {
        Self {
            screen,
            at: 0,
            next: None,
        }
    }
}

/// The screens of the engine. Products and orders are named by id, not position, so a
/// catalog change between two hops cannot make a key press pick a different product.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Screen {
    /// A screen of `screens.toml`.
    Static(String),
    /// "Welcome back", offered when a session starts with items in the cart.
    Resume,
    Categories,
    /// The products of a category.
    Products(String),
    /// Asking how many of a product.
    Quantity(String),
    /// "Added Q x NAME."
    Added(String, u32),
    Cart,
    /// Picking a cart line to change or remove.
    Remove,
    /// One cart line, by product: change its quantity or remove it.
    Line(String),
    /// Asking for a cart line's new quantity, by product.
    NewQty(String),
    /// Confirming "empty the cart".
    Clear,
    Checkout,
    /// Asking for the number to pay with.
    Payer,
    Orders,
    /// One order, by number.
    Order(String),
}

impl Screen {
    fn name(&self) -> &str {
        match self {
            Screen::Static(id) => id,
            Screen::Resume => "resume",
            Screen::Categories => "categories",
            Screen::Products(_) => "products",
            Screen::Quantity(_) => "quantity",
            Screen::Added(..) => "added",
            Screen::Cart => "cart",
            Screen::Remove => "pick_line",
            Screen::Line(_) => "line",
            Screen::NewQty(_) => "new_quantity",
            Screen::Clear => "clear",
            Screen::Checkout => "checkout",
            Screen::Payer => "payer",
            Screen::Orders => "orders",
            Screen::Order(_) => "order",
        }
    }
}

/// A frame as one short string: a one-letter screen code, its arguments after `:`, then
/// `@start` when the page does not start at the first item and `>next` when a next page
/// exists. Ids never contain `:`, `@` or `>` (the catalog allows `a-z0-9-_` only).
impl Frame {
    /// Appends the frame's string to `out`. Written by hand rather than through `fmt`: every
    /// hop stores its whole stack, and the formatting machinery cost more than the writing.
    fn write_to(&self, out: &mut String) {
        let (code, arg) = match &self.screen {
            Screen::Static(id) => ("s", Some(id.as_str())),
            Screen::Resume => ("r", None),
            Screen::Categories => ("c", None),
            Screen::Products(category) => ("p", Some(category.as_str())),
            Screen::Quantity(product) => ("q", Some(product.as_str())),
            Screen::Added(product, _) => ("a", Some(product.as_str())),
            Screen::Cart => ("k", None),
            Screen::Remove => ("x", None),
            Screen::Line(product) => ("i", Some(product.as_str())),
            Screen::NewQty(product) => ("u", Some(product.as_str())),
            Screen::Clear => ("e", None),
            Screen::Checkout => ("o", None),
            Screen::Payer => ("n", None),
            Screen::Orders => ("l", None),
            Screen::Order(number) => ("d", Some(number.as_str())),
        };
        out.push_str(code);
        if let Some(arg) = arg {
            out.push(':');
            out.push_str(arg);
        }
        if let Screen::Added(_, qty) = &self.screen {
            out.push(':');
            push_number(out, *qty);
        }
        if self.at > 0 {
            out.push('@');
            push_number(out, u32::from(self.at));
        }
        if let Some(next) = self.next {
            out.push('>');
            push_number(out, u32::from(next));
        }
    }
}

/// Appends `n` in decimal.
fn push_number(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(24);
        self.write_to(&mut out);
        f.write_str(&out)
    }
}

impl std::str::FromStr for Frame {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || format!("not a menu frame: {raw:?}");
        let (rest, next) = match raw.split_once('>') {
            Some((rest, next)) => (rest, Some(next.parse::<u8>().map_err(|_| bad())?)),
            None => (raw, None),
        };
        let (rest, at) = match rest.split_once('@') {
            Some((rest, at)) => (rest, at.parse::<u8>().map_err(|_| bad())?),
            None => (rest, 0),
        };
        let mut parts = rest.split(':');
        let code = parts.next().unwrap_or_default();
        let mut arg = || parts.next().map(str::to_owned).ok_or_else(bad);
        let screen = match code {
            "s" => Screen::Static(arg()?),
            "r" => Screen::Resume,
            "c" => Screen::Categories,
            "p" => Screen::Products(arg()?),
            "q" => Screen::Quantity(arg()?),
            "a" => {
                let product = arg()?;
                let qty = arg()?.parse().map_err(|_| bad())?;
                Screen::Added(product, qty)
            }
            "k" => Screen::Cart,
            "x" => Screen::Remove,
            "i" => Screen::Line(arg()?),
            "u" => Screen::NewQty(arg()?),
            "e" => Screen::Clear,
            "o" => Screen::Checkout,
            "n" => Screen::Payer,
            "l" => Screen::Orders,
            "d" => Screen::Order(arg()?),
            _ => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Frame { screen, at, next })
    }
}

impl Serialize for Frame {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Every hop writes its whole stack: one buffer per thread, not one string per frame.
        thread_local! {
            static WRITTEN: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        WRITTEN.with_borrow_mut(|out| {
            out.clear();
            self.write_to(out);
            serializer.serialize_str(out)
        })
    }
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// The first screen of a new session: the main menu, or the offer to continue a cart.
pub fn start(hop: &Hop<'_>) -> Step {
    let mut session = Session::new(hop, MenuState::default());
    if !session.cart.is_empty() {
        session.stack.push(Frame::new(Screen::Resume));
    }
    session.finish(Outcome::Show(None))
}

/// The next screen after `input` on the screen `state` is at.
pub fn step(hop: &Hop<'_>, state: &MenuState, input: &str) -> Step {
    advance(hop, state.clone(), input)
}

/// [`step`], from a state the caller has no more use for (a hop's walk): no copy of it.
pub fn advance(hop: &Hop<'_>, state: MenuState, input: &str) -> Step {
    let mut session = Session::new(hop, state);
    let input = input.trim();
    let outcome = if session.stale {
        // The screen the shopper answered no longer exists (the menus changed under the
        // session): the input meant something else, so show the main menu instead.
        Outcome::Show(None)
    } else {
        match input {
            "00" => {
                session.home();
                Outcome::Show(None)
            }
            "0" => {
                if session.stack.len() > 1 {
                    session.stack.pop();
                }
                Outcome::Show(None)
            }
            _ => session.answer(input),
        }
    };
    session.finish(outcome)
}

/// The END screen for when a hop cannot be completed (a store or upstream failure).
pub fn apology(catalog: &Catalog, lang: Lang) -> Reply {
    Reply::end(render::clamp_default(catalog.text(
        lang,
        "ussd.apology",
        &[],
    )))
}

/// What answering an input leads to.
enum Outcome {
    /// Show the (new) top of the history, with an optional notice line above it.
    Show(Option<String>),
    /// End the session with this text.
    End(String),
}

/// One hop's working copy of the state, cart and profile.
struct Session<'h, 'a> {
    hop: &'h Hop<'a>,
    catalog: &'a Catalog,
    stack: Vec<Frame>,
    cart: Cart,
    profile: Profile,
    effects: Vec<Effect>,
    /// True when the saved history named something the catalog or profile no longer has.
    stale: bool,
}

impl<'h, 'a> Session<'h, 'a> {
    fn new(hop: &'h Hop<'a>, state: MenuState) -> Self {
        let catalog = hop.catalog;
        let had_frames = !state.stack.is_empty();
        let mut session = Session {
            hop,
            catalog,
            stack: state.stack,
            cart: clean_cart(catalog, hop.cart),
            profile: hop.profile.clone(),
            effects: Vec::new(),
            stale: false,
        };
        let root_ok = session
            .stack
            .first()
            .is_some_and(|f| matches!(&f.screen, Screen::Static(id) if id == MAIN_SCREEN));
        let frames_ok = session.stack.iter().all(|f| session.exists(&f.screen));
        if !root_ok || !frames_ok || session.stack.len() > MAX_DEPTH {
            session.stale = had_frames;
            session.home();
        }
        session
    }

    fn lang(&self) -> Lang {
        self.profile.lang()
    }

    fn text(&self, id: &str, values: &[(&str, &str)]) -> String {
        self.catalog.text(self.lang(), id, values)
    }

    /// True when everything the screen names still exists.
    fn exists(&self, screen: &Screen) -> bool {
        match screen {
            Screen::Static(id) => self.catalog.screen(id).is_some(),
            Screen::Products(category) => self.catalog.category(category).is_some(),
            Screen::Quantity(product) | Screen::Added(product, _) => {
                self.catalog.product(product).is_some()
            }
            Screen::Line(product) | Screen::NewQty(product) => {
                self.cart.lines.iter().any(|l| &l.product == product)
            }
            Screen::Order(number) => self.summary(number).is_some(),
            _ => true,
        }
    }

    fn summary(&self, number: &str) -> Option<&OrderSummary> {
        self.profile.orders.iter().find(|o| o.number == number)
    }

    fn top(&self) -> Screen {
        self.stack
            .last()
            .map(|f| f.screen.clone())
            .unwrap_or_else(|| Screen::Static(MAIN_SCREEN.to_owned()))
    }

    fn home(&mut self) {
        self.stack = MenuState::home().stack;
    }

    /// Opens `screen`: back to it if it is already in the history, on top otherwise.
    fn open(&mut self, screen: Screen) {
        if let Some(i) = self.stack.iter().rposition(|f| f.screen == screen) {
            self.stack.truncate(i + 1);
        } else {
            self.stack.push(Frame::new(screen));
            if self.stack.len() > MAX_DEPTH {
                self.stack.remove(1);
            }
        }
    }

    /// Replaces the top screen (a confirmation replacing the question).
    fn replace(&mut self, screen: Screen) {
        self.stack.pop();
        self.stack.push(Frame::new(screen));
    }

    /// Goes back to the cart screen, at its first page (its lines changed).
    fn back_to_cart(&mut self) {
        self.open(Screen::Cart);
        if let Some(frame) = self.stack.last_mut() {
            frame.at = 0;
        }
    }

    fn invalid(&self) -> Outcome {
        Outcome::Show(Some(self.text("hint.invalid", &[])))
    }

    fn hint_max(&self, id: &str, max: impl fmt::Display) -> Outcome {
        Outcome::Show(Some(self.text(id, &[("max", &max.to_string())])))
    }

    /// `98`: the next page of the screen, as the shopper last saw it laid out.
    fn next_page(&mut self) -> Outcome {
        let Some(frame) = self.stack.last() else {
            return self.invalid();
        };
        match frame.next {
            Some(next) => {
                let screen = frame.screen.clone();
                self.stack.push(Frame {
                    screen,
                    at: next,
                    next: None,
                });
                if self.stack.len() > MAX_DEPTH {
                    self.stack.remove(1);
                }
                Outcome::Show(None)
            }
            None => self.invalid(),
        }
    }

    /// The answer to `input` on the current screen (navigation keys are handled before).
    fn answer(&mut self, input: &str) -> Outcome {
        let screen = self.top();
        if input == MORE_KEY && screen_reads_more(&screen) {
            return self.next_page();
        }
        match screen {
            Screen::Static(id) => self.on_static(&id, input),
            Screen::Resume => match input {
                "1" => {
                    // The cart replaces the offer, so that back leads to the main menu.
                    self.replace(Screen::Cart);
                    Outcome::Show(None)
                }
                "2" => {
                    self.cart = Cart::default();
                    self.home();
                    Outcome::Show(None)
                }
                _ => self.invalid(),
            },
            Screen::Categories => match choice(input, self.catalog.categories().len()) {
                Some(i) => {
                    let id = self.catalog.categories()[i].id.clone();
                    self.open(Screen::Products(id));
                    Outcome::Show(None)
                }
                None => self.invalid(),
            },
            Screen::Products(category) => self.on_products(&category, input),
            Screen::Quantity(product) => self.on_quantity(&product, input),
            Screen::Added(..) => match input {
                "1" => self.open_checkout(),
                "2" => {
                    // Back to the list the product was picked from, at the same page.
                    match self
                        .stack
                        .iter()
                        .rposition(|f| matches!(f.screen, Screen::Products(_)))
                    {
                        Some(i) => self.stack.truncate(i + 1),
                        None => self.open(Screen::Categories),
                    }
                    Outcome::Show(None)
                }
                _ => self.invalid(),
            },
            Screen::Cart => match (self.cart.is_empty(), input) {
                (true, "1") => {
                    self.open(Screen::Categories);
                    Outcome::Show(None)
                }
                (false, "1") => self.open_checkout(),
                (false, "2") => {
                    self.open(Screen::Remove);
                    Outcome::Show(None)
                }
                (false, "3") => {
                    self.open(Screen::Clear);
                    Outcome::Show(None)
                }
                _ => self.invalid(),
            },
            Screen::Remove => match choice(input, self.cart.lines.len()) {
                Some(i) => {
                    let product = self.cart.lines[i].product.clone();
                    self.open(Screen::Line(product));
                    Outcome::Show(None)
                }
                None if self.cart.is_empty() && input == "1" => {
                    // The cart emptied meanwhile, and this screen showed "1. Shop".
                    self.open(Screen::Categories);
                    Outcome::Show(None)
                }
                None => self.invalid(),
            },
            Screen::Line(product) => match input {
                "1" => {
                    self.open(Screen::NewQty(product));
                    Outcome::Show(None)
                }
                "2" => {
                    let name = self.list_name(&product);
                    self.cart.lines.retain(|l| l.product != product);
                    self.back_to_cart();
                    Outcome::Show(Some(self.text("item.removed", &[("name", &name)])))
                }
                _ => self.invalid(),
            },
            Screen::NewQty(product) => self.on_new_quantity(&product, input),
            Screen::Clear => match input {
                "1" => {
                    self.cart = Cart::default();
                    self.back_to_cart();
                    Outcome::Show(None)
                }
                "2" => {
                    self.back_to_cart();
                    Outcome::Show(None)
                }
                _ => self.invalid(),
            },
            Screen::Checkout => match (self.cart.is_empty(), self.pay_way(), input) {
                (true, _, "1") => {
                    self.open(Screen::Categories);
                    Outcome::Show(None)
                }
                (false, PayWay::Prompt, "1") => self.place_order(Some(self.hop.msisdn.clone())),
                (false, PayWay::Paybill, "1") => self.place_order(None),
                (false, PayWay::Prompt | PayWay::Paybill, "2") => {
                    self.open(Screen::Payer);
                    Outcome::Show(None)
                }
                _ => self.invalid(),
            },
            Screen::Payer => match Msisdn::parse(input) {
                // `Msisdn::parse` is the one check: `*` or letters inside the input fail it like
                // any other malformed number.
                Ok(payer) if payer.is_safaricom() => self.place_order(Some(payer)),
                Ok(_) => Outcome::Show(Some(self.text("hint.not_safaricom", &[]))),
                _ => Outcome::Show(Some(self.text("hint.phone", &[]))),
            },
            Screen::Orders => match choice(input, self.profile.orders.len()) {
                Some(i) => {
                    let number = self.profile.orders[i].number.clone();
                    self.open(Screen::Order(number));
                    Outcome::Show(None)
                }
                None => self.invalid(),
            },
            Screen::Order(number) => match self.summary(&number) {
                Some(_) if input == "1" && self.hop.mpesa && self.push_blocked().is_some() => {
                    let until = self.push_blocked().unwrap_or_default();
                    Outcome::End(render::prompt_limited(self.catalog, self.lang(), until))
                }
                Some(order) if input == "1" && order.status.is_payable() && self.hop.mpesa => {
                    let text = render::prompt_sent(self.catalog, self.lang(), &number, order.total);
                    self.effects.push(Effect::PayAgain {
                        number,
                        payer: self.hop.msisdn.clone(),
                    });
                    Outcome::End(text)
                }
                _ => self.invalid(),
            },
        }
    }

    fn on_static(&mut self, id: &str, input: &str) -> Outcome {
        let target = self
            .catalog
            .screen(id)
            .and_then(|s| s.options.iter().find(|o| o.key == input))
            .map(|o| o.target.clone());
        match target {
            Some(Target::Screen(next)) => self.open(Screen::Static(next)),
            Some(Target::Shop) => self.open(Screen::Categories),
            Some(Target::Cart) => self.open(Screen::Cart),
            Some(Target::Orders) => self.open(Screen::Orders),
            Some(Target::Checkout) => return self.open_checkout(),
            Some(Target::Language(lang)) => {
                self.profile.lang = Some(lang);
                self.home();
                return Outcome::Show(Some(self.text("language.changed", &[])));
            }
            None => return self.invalid(),
        }
        Outcome::Show(None)
    }

    fn on_products(&mut self, category: &str, input: &str) -> Outcome {
        let Some(products) = self.catalog.category(category).map(|c| &c.products) else {
            return self.invalid();
        };
        let Some(i) = choice(input, products.len()) else {
            return self.invalid();
        };
        let product = products[i].id.clone();
        let in_cart = self.cart.lines.iter().any(|l| l.product == product);
        if !in_cart && self.cart.lines.len() >= MAX_CART_LINES {
            // Said before the quantity is typed, not after.
            return self.hint_max("hint.cart_full", MAX_CART_LINES);
        }
        self.open(Screen::Quantity(product));
        Outcome::Show(None)
    }

    fn on_quantity(&mut self, product_id: &str, input: &str) -> Outcome {
        let Some(product) = self.catalog.product(product_id) else {
            return self.invalid();
        };
        let Some(wanted) = quantity(input) else {
            return self.hint_max("hint.quantity", MAX_QTY);
        };
        let line = self.cart.lines.iter().position(|l| l.product == product_id);
        let have = line.map_or(0, |i| self.cart.lines[i].qty);
        if line.is_none() && self.cart.lines.len() >= MAX_CART_LINES {
            return self.hint_max("hint.cart_full", MAX_CART_LINES);
        }
        if have >= MAX_QTY {
            return self.hint_max("hint.most_per_item", MAX_QTY);
        }
        let added = wanted.min(MAX_QTY - have);
        let total = cart_total(self.catalog, &self.cart) + product.price.times(added);
        if total > Kes::whole(MAX_ORDER_TOTAL) {
            return self.hint_max("hint.order_max", Kes::whole(MAX_ORDER_TOTAL));
        }
        match line {
            Some(i) => self.cart.lines[i].qty = have + added,
            None => self.cart.lines.push(CartLine {
                product: product_id.to_owned(),
                qty: added,
            }),
        }
        self.replace(Screen::Added(product_id.to_owned(), added));
        if added < wanted {
            return self.hint_max("hint.most_per_item", MAX_QTY);
        }
        Outcome::Show(None)
    }

    /// The new quantity of a cart line, checked as the quantity screen checks it.
    fn on_new_quantity(&mut self, product_id: &str, input: &str) -> Outcome {
        let Some(product) = self.catalog.product(product_id) else {
            return self.invalid();
        };
        let Some(i) = self.cart.lines.iter().position(|l| l.product == product_id) else {
            return self.invalid();
        };
        let Some(wanted) = quantity(input) else {
            return self.hint_max("hint.quantity", MAX_QTY);
        };
        let others: Kes = self
            .cart
            .lines
            .iter()
            .filter(|l| l.product != product_id)
            .filter_map(|l| Some(self.catalog.product(&l.product)?.price.times(l.qty)))
            .sum();
        if others + product.price.times(wanted) > Kes::whole(MAX_ORDER_TOTAL) {
            return self.hint_max("hint.order_max", Kes::whole(MAX_ORDER_TOTAL));
        }
        self.cart.lines[i].qty = wanted;
        let name = self.list_name(product_id);
        self.back_to_cart();
        let qty = wanted.to_string();
        Outcome::Show(Some(
            self.text("item.changed", &[("qty", &qty), ("name", &name)]),
        ))
    }

    /// The cart row of a product in the cart.
    fn cart_row(&self, product: &str) -> Option<CartRow<'a>> {
        let line = self.cart.lines.iter().find(|l| l.product == product)?;
        let found = self.catalog.product(product)?;
        Some(CartRow {
            name: found.name_in(self.lang()),
            qty: line.qty,
            amount: found.price.times(line.qty),
        })
    }

    /// How this shopper can pay, from their number and network.
    fn pay_way(&self) -> PayWay {
        if self.hop.mpesa {
            PayWay::Prompt
        } else if self.hop.msisdn.is_kenyan() {
            PayWay::Paybill
        } else {
            PayWay::None
        }
    }

    /// Opens checkout; for a number outside Kenya with items in the cart, ends the session
    /// instead, saying the shop takes M-Pesa (Kenya) only. The cart is kept.
    fn open_checkout(&mut self) -> Outcome {
        if self.pay_way() == PayWay::None && !self.cart.is_empty() {
            let total = cart_total(self.catalog, &self.cart);
            return Outcome::End(render::mpesa_only(self.catalog, self.lang(), total));
        }
        self.open(Screen::Checkout);
        Outcome::Show(None)
    }

    /// A product's name as lists show it.
    fn list_name(&self, product: &str) -> String {
        self.catalog
            .product(product)
            .map(|p| render::list_name(p.name_in(self.lang())))
            .unwrap_or_default()
    }

    /// True when an earlier order may still have an M-Pesa prompt open on this phone: the
    /// payment worker holds one prompt per phone at a time, for up to [`STK_LOCK_TTL_MS`].
    fn prompt_pending(&self) -> bool {
        let window = i64::try_from(STK_LOCK_TTL_MS).unwrap_or(i64::MAX);
        self.profile.orders.iter().any(|o| {
            o.status == OrderStatus::AwaitingPayment && self.hop.now_ms - o.placed_at_ms < window
        })
    }

    /// Until when the prompt-bombing limit holds pushes to this phone, if it does now.
    fn push_blocked(&self) -> Option<i64> {
        self.hop
            .push_blocked_until_ms
            .filter(|until| *until > self.hop.now_ms)
    }

    /// Places the cart as an order, and ends the session so that the phone can show the
    /// M-Pesa prompt to `payer`; with no `payer`, no prompt is sent and the END screen gives
    /// the paybill instructions.
    fn place_order(&mut self, payer: Option<Msisdn>) -> Outcome {
        let lang = self.lang();
        let lines = self.cart.order_lines(self.catalog, lang);
        if lines.is_empty() {
            self.open(Screen::Checkout);
            return Outcome::Show(None);
        }
        let total: Kes = lines.iter().map(OrderLine::total).sum();
        if total > Kes::whole(MAX_ORDER_TOTAL) {
            // Only reachable when prices rose after the items were added.
            return self.hint_max("hint.order_max", Kes::whole(MAX_ORDER_TOTAL));
        }
        let number = self.hop.new_order_number.to_owned();
        // The shopper's own phone over the prompt limit: no push (the job would refuse it);
        // the order waits, payable from My orders once the limit lifts, or by paybill.
        let limited = match &payer {
            Some(p) if p == self.hop.msisdn => self.push_blocked(),
            _ => None,
        };
        let payer = if limited.is_some() { None } else { payer };
        let placed = match &payer {
            None => Placed::Paybill,
            // Measured before this order joins the profile.
            Some(payer) if payer == self.hop.msisdn && self.prompt_pending() => {
                Placed::PromptQueued
            }
            Some(_) => Placed::Prompt,
        };
        self.effects.push(Effect::PlaceOrder {
            number: number.clone(),
            lines,
            total,
            lang,
            payer,
        });
        self.cart = Cart::default();
        self.profile.orders.insert(
            0,
            OrderSummary {
                number: number.clone(),
                total,
                status: OrderStatus::AwaitingPayment,
                placed_at_ms: self.hop.now_ms,
            },
        );
        self.profile.orders.truncate(Profile::MAX_ORDERS);
        if let Some(until) = limited {
            return Outcome::End(render::order_placed_limited(
                self.catalog,
                lang,
                &number,
                until,
            ));
        }
        Outcome::End(render::order_placed(
            self.catalog,
            lang,
            &number,
            total,
            self.hop.payee,
            placed,
        ))
    }

    /// The view of a screen with the current cart and profile, if it still exists.
    fn view(&self, screen: &Screen) -> Option<View> {
        let catalog = self.catalog;
        let lang = self.lang();
        let rows = || cart_rows(catalog, lang, &self.cart);
        let total = cart_total(catalog, &self.cart);
        Some(match screen {
            Screen::Static(id) => {
                render::static_screen(catalog, lang, catalog.screen(id)?, self.hop.payee)
            }
            Screen::Resume => render::resume(catalog, lang, self.cart.line_count(), total),
            Screen::Categories => render::categories(catalog, lang),
            Screen::Products(category) => {
                render::products(catalog, lang, catalog.category(category)?)
            }
            Screen::Quantity(product) => render::quantity(catalog, lang, catalog.product(product)?),
            Screen::Added(product, qty) => {
                render::added(catalog, lang, catalog.product(product)?, *qty)
            }
            Screen::Cart => render::cart(catalog, lang, &rows(), total),
            Screen::Remove => render::pick_line(catalog, lang, &rows()),
            Screen::Line(product) => {
                let row = self.cart_row(product)?;
                render::line(catalog, lang, &row)
            }
            Screen::NewQty(product) => {
                let qty = self.cart.lines.iter().find(|l| &l.product == product)?.qty;
                render::new_quantity(catalog, lang, catalog.product(product)?, qty)
            }
            Screen::Clear => render::clear(catalog, lang),
            Screen::Checkout => render::checkout(
                catalog,
                lang,
                (!self.cart.is_empty()).then_some(total),
                &self.hop.msisdn.local_masked(),
                self.pay_way(),
                self.hop.payee,
            ),
            Screen::Payer => render::payer(catalog, lang),
            Screen::Orders => render::orders(catalog, lang, &self.profile.orders),
            Screen::Order(number) => render::order(
                catalog,
                lang,
                self.summary(number)?,
                self.hop.payee,
                self.hop.mpesa,
            ),
        })
    }

    /// The top screen's page, with `notice` on top: from the catalog's
    /// [`super::pages::Pages`] when the menus alone decide it, else laid out now (and kept, when
    /// it qualifies).
    fn show(&mut self, notice: Option<&str>) -> Reply {
        let key = if notice.is_none() {
            self.page_key()
        } else {
            None
        };
        if let Some(page) = key.as_ref().and_then(|key| self.catalog.pages().get(key)) {
            self.turn_page(page.next, page.items);
            return Reply::con(page.text.clone());
        }
        let (view, known) = match self.view(&self.top()) {
            Some(view) => (view, true),
            None => {
                self.home();
                (self.view(&self.top()).unwrap_or_default(), false)
            }
        };
        let lang = self.lang();
        let at = self.stack.last().map_or(0, |f| usize::from(f.at));
        let page = view.page(self.catalog, lang, at, notice, self.hop.screen_max);
        let text = render::clamp(page.text, self.hop.screen_max);
        self.turn_page(page.next, view.items.len());
        if let (Some(key), true) = (key, known) {
            let cached = CachedPage {
                text: text.clone(),
                next: page.next,
                items: view.items.len(),
            };
            self.catalog.pages().put(key, cached);
        }
        Reply::con(text)
    }

    /// The key of the top screen's page in [`super::pages::Pages`], for the screens the menus
    /// alone decide.
    fn page_key(&self) -> Option<PageKey> {
        let screen = self.top();
        let payee = match &screen {
            Screen::Static(_) => Some(PageKey::payee(self.hop.payee)),
            Screen::Categories
            | Screen::Products(_)
            | Screen::Quantity(_)
            | Screen::Clear
            | Screen::Payer => None,
            // "Added Q x NAME": the product and the number typed decide it. Only small numbers
            // (nearly every order) are kept, so typing every quantity cannot fill the cache.
            Screen::Added(_, qty) if *qty <= MAX_CACHED_QTY => None,
            _ => return None,
        };
        Some(PageKey {
            screen,
            lang: self.lang(),
            at: self.stack.last().map_or(0, |f| usize::from(f.at)),
            max: self.hop.screen_max,
            payee,
        })
    }

    /// Records where the page shown ends, and starts a screen that shrank since at its first
    /// item.
    fn turn_page(&mut self, next: Option<usize>, items: usize) {
        if let Some(frame) = self.stack.last_mut() {
            frame.next = next.and_then(|n| u8::try_from(n).ok());
            if usize::from(frame.at) >= items {
                frame.at = 0;
            }
        }
    }

    fn finish(mut self, outcome: Outcome) -> Step {
        let reply = match outcome {
            Outcome::End(text) => {
                self.home();
                Reply::end(render::clamp(text, self.hop.screen_max))
            }
            Outcome::Show(notice) => self.show(notice.as_deref()),
        };
        Step {
            reply,
            state: MenuState { stack: self.stack },
            cart: self.cart,
            profile: self.profile,
            effects: self.effects,
        }
    }
}

/// Screens where `98` means "More" rather than data or an invalid choice.
fn screen_reads_more(screen: &Screen) -> bool {
    !matches!(
        screen,
        Screen::Quantity(_) | Screen::NewQty(_) | Screen::Payer
    )
}

/// A list choice `1..=len` as an index. Keys are written without leading zeros.
fn choice(input: &str, len: usize) -> Option<usize> {
    if input.is_empty() || input.len() > 2 || input.starts_with('0') {
        return None;
    }
    if !input.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = input.parse().ok()?;
    (1..=len).contains(&n).then(|| n - 1)
}

/// A quantity `1..=MAX_QTY`. Leading zeros are allowed (`05` is 5); `0` itself never reaches
/// here, since it means back.
fn quantity(input: &str) -> Option<u32> {
    if input.is_empty() || input.len() > 3 || !input.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = input.parse().ok()?;
    (1..=MAX_QTY).contains(&n).then_some(n)
}

/// The cart without lines the catalog no longer sells, duplicate lines merged and limits
/// applied. A cart is only ever written by this engine, but it lives for hours, across
/// catalog changes.
fn clean_cart(catalog: &Catalog, cart: &Cart) -> Cart {
    let mut lines: Vec<CartLine> = Vec::with_capacity(cart.lines.len());
    for line in &cart.lines {
        if line.qty == 0 || catalog.product(&line.product).is_none() {
            continue;
        }
        if let Some(existing) = lines.iter_mut().find(|l| l.product == line.product) {
            existing.qty = existing.qty.saturating_add(line.qty).min(MAX_QTY);
        } else if lines.len() < MAX_CART_LINES {
            lines.push(CartLine {
                product: line.product.clone(),
                qty: line.qty.min(MAX_QTY),
            });
        }
    }
    Cart { lines }
}

/// The cart's total at catalog prices.
fn cart_total(catalog: &Catalog, cart: &Cart) -> Kes {
    cart.lines
        .iter()
        .filter_map(|line| Some(catalog.product(&line.product)?.price.times(line.qty)))
        .sum()
}

fn cart_rows<'c>(catalog: &'c Catalog, lang: Lang, cart: &Cart) -> Vec<CartRow<'c>> {
    cart.lines
        .iter()
        .filter_map(|line| {
            let product = catalog.product(&line.product)?;
            Some(CartRow {
                name: product.name_in(lang),
                qty: line.qty,
                amount: product.price.times(line.qty),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
