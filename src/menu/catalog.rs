//! The shop's menu files (`menus/`), loaded and checked once at startup.
//!
//! Screens, texts and products are data, edited by people who do not read Rust, so the loader
//! is strict and talks back: [`Catalog::load`] collects *every* problem it finds, each naming the
//! file, the key and the reason, and refuses the whole directory if there is any. `duka check`
//! prints them all; `duka serve` refuses to start. The format is documented, with examples, in
//! `menus/README.md`:
//!
//! - `shop.toml`: the shop's name and help phone number;
//! - `screens.toml`: the static screens (main menu, language, help) and where each option leads;
//! - `text/en.toml`, `text/sw.toml`: every text by id, with `{placeholders}`;
//! - `catalog.toml`: categories and products, with whole-shilling prices.
//!
//! Beyond the shape of the files, the loader checks what would otherwise only show on a phone:
//! every target exists, option keys are unique and not the navigation keys, every text is in
//! both languages with the same placeholders, everything is GSM-7, and (in `budget.rs`) that no
//! screen the engine can draw exceeds the aggregator's limit, by drawing each one with the
//! longest data the cart limits allow. A catalog that loads can therefore not show a broken
//! screen, which is why the engine itself never has to check.
//!
//! The files are read into `toml::Table`s and walked by hand rather than with serde derives: a
//! derive stops at the first problem, and an operator fixing a catalog wants the whole list.

mod budget;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::gsm7;
use crate::menu::pages::Pages;
use crate::menu::render::Chrome;
use crate::menu::Lang;
use crate::money::Kes;
use crate::orders::OrderLine;

pub use budget::{SMS_ITEMS_MAX_SEPTETS, SMS_MAX_SEPTETS};

/// The longest shop name, so that the welcome line and every SMS keep their room.
pub const SHOP_NAME_MAX_SEPTETS: usize = 20;
/// The longest help phone number as written in `shop.toml` (`0700 384 012`).
pub const HELP_PHONE_MAX_SEPTETS: usize = 16;
/// Options are numbered from 1; `98` is "More", so a list holds at most 97.
pub const MAX_OPTIONS: usize = 97;
/// The keys every screen reserves for navigation: back, home and next page.
pub const RESERVED_KEYS: [&str; 3] = ["0", "00", "98"];
/// The longest id of a screen, category or product. Ids are kept in the session and the cart
/// in Redis, so they are short.
pub const ID_MAX_LEN: usize = 24;

/// The placeholders a static screen's texts may use.
pub const STATIC_PLACEHOLDERS: [&str; 4] = ["shop", "help_phone", "paybill", "till"];

/// Every text the app itself uses, with the placeholders it may contain. The engine, the SMS
/// sender and the USSD error page read these ids; the static screens name theirs in
/// `screens.toml`. A text file with an id in neither place is refused as a likely typo.
pub const APP_TEXTS: &[(&str, &[&str])] = &[
    ("nav.back", &[]),
    ("nav.home", &[]),
    ("nav.more", &[]),
    ("hint.invalid", &[]),
    ("hint.quantity", &["max"]),
    ("hint.most_per_item", &["max"]),
    ("hint.cart_full", &["max"]),
    ("hint.order_max", &["max"]),
    ("hint.phone", &[]),
    ("hint.not_safaricom", &[]),
    ("resume.title", &["items", "total"]),
    ("resume.continue", &[]),
    ("resume.restart", &[]),
    ("count.one", &[]),
    ("count.many", &["count"]),
    ("shop.title", &[]),
    ("shop.product", &["name", "price"]),
    ("product.title", &["name", "price"]),
    ("product.ask", &[]),
    ("added.title", &["qty", "name"]),
    ("added.checkout", &[]),
    ("added.continue", &[]),
    ("checkout.total", &["total"]),
    ("checkout.pay_self", &["phone"]),
    ("checkout.pay_other", &[]),
    ("checkout.pay_paybill", &[]),
    ("checkout.pay_paybill_till", &[]),
    ("checkout.mpesa_only", &["total", "shop"]),
    ("payer.ask", &[]),
    ("cart.title", &[]),
    ("cart.line", &["qty", "name", "amount"]),
    ("cart.total", &["total"]),
    ("cart.checkout", &[]),
    ("cart.change", &[]),
    ("cart.clear", &[]),
    ("cart.empty", &[]),
    ("cart.shop", &[]),
    ("item.pick", &[]),
    ("item.choice", &["qty", "name"]),
    ("item.change", &[]),
    ("item.remove", &[]),
    ("item.ask", &["qty"]),
    ("item.changed", &["qty", "name"]),
    ("item.removed", &["name"]),
    ("clear.ask", &[]),
    ("clear.yes", &[]),
    ("clear.no", &[]),
    ("orders.title", &[]),
    ("orders.none", &[]),
    ("orders.line", &["order", "total", "status"]),
    ("status.awaiting_payment", &[]),
    ("status.failed", &[]),
    ("status.paid", &[]),
    ("status.expired", &[]),
    ("order.title", &["order"]),
    ("order.total", &["total"]),
    ("order.status", &["status"]),
    ("order.pay_again", &[]),
    ("order.paybill", &["total", "paybill", "order"]),
    ("order.placed", &["order", "total", "paybill"]),
    ("order.placed_queued", &["order", "total", "paybill"]),
    ("order.placed_limited", &["order", "time"]),
    ("order.prompt_limited", &["time"]),
    ("order.placed_paybill", &["order", "total", "paybill"]),
    ("order.paybill_till", &["total", "till", "order"]),
    ("order.placed_till", &["order", "total", "till"]),
    ("order.placed_queued_till", &["order", "total", "till"]),
    ("order.placed_paybill_till", &["order", "total", "till"]),
    ("order.prompt_sent", &["total", "order"]),
    ("language.changed", &[]),
    ("ussd.apology", &[]),
    (
        "sms.receipt",
        &["shop", "order", "items", "total", "receipt"],
    ),
    (
        "sms.payment_failed",
        &["shop", "order", "total", "paybill", "reason"],
    ),
    (
        "sms.payment_failed_till",
        &["shop", "order", "total", "till", "reason"],
    ),
    ("sms.nudge", &["shop", "items", "total", "shortcode"]),
    ("sms.refund", &["shop", "order", "amount", "receipt"]),
    ("reason.cancelled", &[]),
    ("reason.wrong_pin", &[]),
    ("reason.timeout", &[]),
    ("reason.insufficient_funds", &[]),
    ("reason.failed", &[]),
];

/// The file names inside the menus directory.
const SHOP_FILE: &str = "shop.toml";
const SCREENS_FILE: &str = "screens.toml";
const CATALOG_FILE: &str = "catalog.toml";

fn text_file(lang: Lang) -> String {
    format!("text/{}.toml", lang.code())
}

/// A value per language, indexed by [`Lang`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PerLang<T>([T; 2]);

impl<T> PerLang<T> {
    fn get(&self, lang: Lang) -> &T {
        &self.0[lang_index(lang)]
    }
}

fn lang_index(lang: Lang) -> usize {
    match lang {
        Lang::En => 0,
        Lang::Sw => 1,
    }
}

/// The loaded, checked menus: the one source of every screen text, price and product name.
#[derive(Debug)]
pub struct Catalog {
    shop_name: String,
    help_phone: String,
    screens: BTreeMap<String, StaticScreen>,
    texts: PerLang<BTreeMap<String, String>>,
    categories: Vec<Category>,
    /// Product id to (category index, product index), for [`Catalog::product`].
    product_index: HashMap<String, (usize, usize)>,
    /// The pages the menus alone decide, as shoppers have seen them ([`crate::menu::pages`]).
    pages: Pages,
    /// `98. More` and the navigation line, per language.
    chrome: PerLang<Chrome>,
}

/// A category of products, in menu order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    pub id: String,
    names: PerLang<String>,
    /// The products, in menu order.
    pub products: Vec<Product>,
}

impl Category {
    pub fn name(&self, lang: Lang) -> &str {
        self.names.get(lang)
    }
}

/// A product the shop sells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    /// The English name, which is also the name wherever no language applies (logs, `duka
    /// order`). Shoppers see [`Product::name_in`] their language.
    pub name: String,
    /// The price, whole shillings, more than zero.
    pub price: Kes,
    /// The id of the category the product is listed under.
    pub category: String,
    names: PerLang<String>,
}

impl Product {
    pub fn name_in(&self, lang: Lang) -> &str {
        self.names.get(lang)
    }
}

/// A screen written in `screens.toml`: a title, an optional body and numbered options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticScreen {
    pub id: String,
    /// The text id of the first line.
    pub title: String,
    /// The text id shown under the title, if any.
    pub body: Option<String>,
    pub options: Vec<StaticOption>,
}

/// One numbered choice of a static screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticOption {
    /// What the shopper types: `1` to `97`, never a navigation key.
    pub key: String,
    /// The text id of the label.
    pub label: String,
    pub target: Target,
}

/// Where an option of a static screen leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Another static screen, by id.
    Screen(String),
    /// The categories, then products, then quantity.
    Shop,
    Cart,
    Orders,
    Checkout,
    /// Sets the shopper's language and shows the main menu in it.
    Language(Lang),
}

impl Target {
    /// The built-in flows, by the name `screens.toml` uses.
    const FLOWS: [(&'static str, Target); 4] = [
        ("shop", Target::Shop),
        ("cart", Target::Cart),
        ("orders", Target::Orders),
        ("checkout", Target::Checkout),
    ];

    fn parse(raw: &str) -> Result<Target, String> {
        if let Some((_, target)) = Self::FLOWS.iter().find(|(name, _)| *name == raw) {
            return Ok(target.clone());
        }
        if let Some(code) = raw.strip_prefix("language:") {
            return Lang::ALL
                .into_iter()
                .find(|lang| lang.code() == code)
                .map(Target::Language)
                .ok_or_else(|| format!("unknown language {code:?} (known: en, sw)"));
        }
        if is_id(raw) {
            Ok(Target::Screen(raw.to_owned()))
        } else {
            Err(format!(
                "{raw:?} is neither a screen id nor a built-in flow (shop, cart, orders, \
                 checkout, language:en, language:sw)"
            ))
        }
    }
}

/// One thing wrong in the menus: which file, which key, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the menus directory (`text/sw.toml`).
    pub file: String,
    /// The key in that file, dotted (`categories[2].products[0].price`), or empty for the file.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.reason)
        }
    }
}

/// Why the menus cannot be used: every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
#[error("the menus in {} have {} problem(s):\n{}", .dir.display(), .problems.len(), list(.problems))]
pub struct CatalogError {
    pub dir: PathBuf,
    pub problems: Vec<Problem>,
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| format!("  {problem}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects problems while the files are read.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, file: &str, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Problem {
            file: file.to_owned(),
            key: key.into(),
            reason: reason.into(),
        });
    }
}

impl Catalog {
    /// Loads and checks the menus in `dir`.
    ///
    /// # Errors
    /// [`CatalogError`] with every problem found: unreadable or malformed files, missing or
    /// unknown keys, dangling targets, duplicate ids or option keys, texts missing in a language
    /// or with different placeholders, non-GSM-7 characters, bad prices, and screens that could
    /// exceed the screen length with the longest data.
    pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
        let mut problems = Problems::default();
        let mut read = |file: &str| read_table(dir, file, &mut problems);
        let shop = read(SHOP_FILE);
        let screens = read(SCREENS_FILE);
        let catalog = read(CATALOG_FILE);
        let en = read(&text_file(Lang::En));
        let sw = read(&text_file(Lang::Sw));

        let (shop_name, help_phone) = shop
            .map(|table| read_shop(&table, &mut problems))
            .unwrap_or_default();
        let screens = screens
            .map(|table| read_screens(&table, &mut problems))
            .unwrap_or_default();
        let categories = catalog
            .map(|table| read_catalog(&table, &mut problems))
            .unwrap_or_default();
        let texts = PerLang([
            en.map(|table| read_texts(Lang::En, &table, &mut problems))
                .unwrap_or_default(),
            sw.map(|table| read_texts(Lang::Sw, &table, &mut problems))
                .unwrap_or_default(),
        ]);

        let mut product_index = HashMap::new();
        for (c, category) in categories.iter().enumerate() {
            for (p, product) in category.products.iter().enumerate() {
                product_index.insert(product.id.clone(), (c, p));
            }
        }
        let mut catalog = Catalog {
            shop_name,
            help_phone,
            screens,
            texts,
            categories,
            product_index,
            pages: Pages::default(),
            chrome: PerLang([Chrome::default(), Chrome::default()]),
        };
        catalog.chrome = PerLang([
            Chrome::of(&catalog, Lang::En),
            Chrome::of(&catalog, Lang::Sw),
        ]);
        catalog.check_screens(&mut problems);
        catalog.check_texts(&mut problems);
        budget::check(&catalog, &mut problems);

        if problems.0.is_empty() {
            Ok(catalog)
        } else {
            Err(CatalogError {
                dir: dir.to_owned(),
                problems: problems.0,
            })
        }
    }

    pub fn shop_name(&self) -> &str {
        &self.shop_name
    }

    pub fn help_phone(&self) -> &str {
        &self.help_phone
    }

    /// The text `id` in `lang`, with each `{name}` replaced by its value.
    ///
    /// Placeholders without a value are left as they are, so a missing value shows in review
    /// rather than vanishing. An id that does not exist (impossible for the ids in
    /// [`APP_TEXTS`], which the loader requires) comes back as the id itself.
    /// Whether the menus have a text `id` in `lang` (the optional `_till` twins of screens).
    pub fn has_text(&self, lang: Lang, id: &str) -> bool {
        self.texts.get(lang).contains_key(id)
    }

    pub fn text(&self, lang: Lang, id: &str, values: &[(&str, &str)]) -> String {
        match self.texts.get(lang).get(id) {
            Some(template) => fill(template, values),
            None => id.to_owned(),
        }
    }

    /// `98. More` and the navigation line in `lang`.
    pub(crate) fn chrome(&self, lang: Lang) -> &Chrome {
        self.chrome.get(lang)
    }

    /// The laid-out pages of this catalog's fixed screens.
    pub(crate) fn pages(&self) -> &Pages {
        &self.pages
    }

    /// The product with this id, if the catalog sells it.
    pub fn product(&self, id: &str) -> Option<&Product> {
        let (c, p) = *self.product_index.get(id)?;
        self.categories.get(c)?.products.get(p)
    }

    /// The categories in menu order, each with its products in menu order.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// Every product, in menu order.
    pub fn products(&self) -> impl Iterator<Item = &Product> {
        self.categories.iter().flat_map(|c| c.products.iter())
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    /// The static screen with this id (`main` always exists).
    pub fn screen(&self, id: &str) -> Option<&StaticScreen> {
        self.screens.get(id)
    }

    /// The short list of an order's items for `{items}` in the SMS texts: `2 x Sugar 1kg, 1 x
    /// Rice 2kg`, shortened to [`SMS_ITEMS_MAX_SEPTETS`] so that every SMS stays one segment.
    pub fn items_summary(&self, lines: &[OrderLine]) -> String {
        let full = lines
            .iter()
            .map(|line| format!("{} x {}", line.qty, line.name))
            .collect::<Vec<_>>()
            .join(", ");
        gsm7::shorten(&full, SMS_ITEMS_MAX_SEPTETS)
    }

    /// Checks what only the whole of `screens.toml` can tell: targets exist, `main` exists,
    /// every screen is reachable, every label and title is a known text.
    fn check_screens(&self, problems: &mut Problems) {
        if !self.screens.contains_key(crate::menu::engine::MAIN_SCREEN) {
            problems.add(
                SCREENS_FILE,
                crate::menu::engine::MAIN_SCREEN,
                "missing: the main menu is required",
            );
        }
        for screen in self.screens.values() {
            for (i, option) in screen.options.iter().enumerate() {
                if let Target::Screen(target) = &option.target {
                    if !self.screens.contains_key(target) {
                        problems.add(
                            SCREENS_FILE,
                            format!("{}.options[{i}].target", screen.id),
                            format!("no screen {target:?} in screens.toml"),
                        );
                    }
                }
            }
        }
        // A screen no option leads to is almost always a typo in a target.
        let mut reachable = BTreeSet::new();
        let mut queue = vec![crate::menu::engine::MAIN_SCREEN.to_owned()];
        while let Some(id) = queue.pop() {
            if !reachable.insert(id.clone()) {
                continue;
            }
            if let Some(screen) = self.screens.get(&id) {
                for option in &screen.options {
                    if let Target::Screen(target) = &option.target {
                        queue.push(target.clone());
                    }
                }
            }
        }
        if self.screens.contains_key(crate::menu::engine::MAIN_SCREEN) {
            for id in self.screens.keys() {
                if !reachable.contains(id) {
                    problems.add(SCREENS_FILE, id, "no option of any screen leads here");
                }
            }
        }
    }

    /// The text ids `screens.toml` uses, with the key that uses each (for error messages).
    fn screen_text_ids(&self) -> BTreeMap<&str, String> {
        let mut ids = BTreeMap::new();
        for screen in self.screens.values() {
            ids.insert(screen.title.as_str(), format!("{}.title", screen.id));
            if let Some(body) = &screen.body {
                ids.insert(body.as_str(), format!("{}.body", screen.id));
            }
            for (i, option) in screen.options.iter().enumerate() {
                ids.insert(
                    option.label.as_str(),
                    format!("{}.options[{i}].label", screen.id),
                );
            }
        }
        ids
    }

    /// Checks the two text files against each other, against the app's needs and against
    /// `screens.toml`.
    fn check_texts(&self, problems: &mut Problems) {
        let app: BTreeMap<&str, &[&str]> = APP_TEXTS.iter().copied().collect();
        let screen_ids = self.screen_text_ids();
        for (id, used_at) in &screen_ids {
            for lang in Lang::ALL {
                if !self.texts.get(lang).contains_key(*id) && !app.contains_key(id) {
                    problems.add(
                        SCREENS_FILE,
                        used_at,
                        format!("text {id:?} is not in {}", text_file(lang)),
                    );
                }
            }
        }
        for lang in Lang::ALL {
            let file = text_file(lang);
            let other = match lang {
                Lang::En => Lang::Sw,
                Lang::Sw => Lang::En,
            };
            let texts = self.texts.get(lang);
            for (id, _) in APP_TEXTS {
                if !texts.contains_key(*id) {
                    problems.add(&file, *id, "missing: the app uses this text");
                }
            }
            for (id, template) in texts {
                let allowed: Option<&[&str]> =
                    match (app.get(id.as_str()), screen_ids.get(id.as_str())) {
                        (Some(app_placeholders), _) => Some(app_placeholders),
                        (None, Some(_)) => Some(&STATIC_PLACEHOLDERS),
                        // A screen text's till twin (`help.body_till`), shown in till mode.
                        (None, None)
                            if id
                                .strip_suffix("_till")
                                .is_some_and(|stem| screen_ids.contains_key(stem)) =>
                        {
                            Some(&STATIC_PLACEHOLDERS)
                        }
                        (None, None) => None,
                    };
                let Some(allowed) = allowed else {
                    problems.add(
                        &file,
                        id,
                        "not used by the app nor by any screen in screens.toml (a typo?)",
                    );
                    continue;
                };
                if template.trim().is_empty() {
                    problems.add(&file, id, "empty text");
                }
                if let Some(c) = gsm7::first_non_gsm7(template) {
                    problems.add(&file, id, not_gsm7(c));
                }
                if (id.starts_with("sms.") || id.starts_with("reason.")) && template.contains('%') {
                    problems.add(
                        &file,
                        id,
                        "SMS texts must not contain '%' (carriers drop such messages)",
                    );
                }
                let ours = match placeholders(template) {
                    Ok(names) => names,
                    Err(reason) => {
                        problems.add(&file, id, reason);
                        continue;
                    }
                };
                for name in &ours {
                    if !allowed.contains(&name.as_str()) {
                        let known = if allowed.is_empty() {
                            "this text takes none".to_owned()
                        } else {
                            format!("known here: {}", braced(allowed))
                        };
                        problems.add(
                            &file,
                            id,
                            format!("unknown placeholder {{{name}}} ({known})"),
                        );
                    }
                }
                match self.texts.get(other).get(id) {
                    None => problems.add(
                        &text_file(other),
                        id,
                        format!("missing: {file} has this text"),
                    ),
                    Some(other_template) => {
                        // Compared once, from the English side, to report each mismatch once.
                        if lang == Lang::En {
                            if let Ok(theirs) = placeholders(other_template) {
                                if theirs != ours {
                                    problems.add(
                                        &text_file(other),
                                        id,
                                        format!(
                                            "placeholders {} differ from {file}'s {}",
                                            braced_set(&theirs),
                                            braced_set(&ours)
                                        ),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn braced(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn braced_set(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return "(none)".to_owned();
    }
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn not_gsm7(c: char) -> String {
    let instead = match gsm7::plain_for(c) {
        Some(plain) => format!("use {plain} instead"),
        None => "use plain quotes, '-' and '...' instead".to_owned(),
    };
    format!(
        "{c:?} (U+{:04X}) is not a GSM-7 character; it would halve the room on the screen \
         or show as garbage ({instead})",
        u32::from(c)
    )
}

/// The `{name}` placeholders of a template.
///
/// # Errors
/// A reason when a brace is unbalanced or a name is not `a-z` and `_`: there is no escape for
/// a literal brace, which a shop never needs.
pub fn placeholders(template: &str) -> Result<BTreeSet<String>, String> {
    let mut names = BTreeSet::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("a '}' without its '{'".to_owned());
        }
        let after = &rest[open + 1..];
        let close = after
            .find(['{', '}'])
            .filter(|&i| after[i..].starts_with('}'))
            .ok_or_else(|| "a '{' without its '}'".to_owned())?;
        let name = &after[..close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(format!(
                "placeholder {{{name}}} must be lowercase letters and '_'"
            ));
        }
        names.insert(name.to_owned());
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// Replaces each `{name}` with its value; unknown names stay as written.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match values.iter().find(|(key, _)| *key == name) {
                    Some((_, value)) => out.push_str(value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// True for ids made of `a-z`, `0-9`, `-` and `_`, at most [`ID_MAX_LEN`] long.
fn is_id(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= ID_MAX_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

const ID_RULE: &str = "ids are 1 to 24 of a-z, 0-9, '-' and '_'";

fn read_table(dir: &Path, file: &str, problems: &mut Problems) -> Option<toml::Table> {
    let path = dir.join(file);
    let raw = match std::fs::read_to_string(&path) {
        Ok(raw) => raw,
        Err(e) => {
            problems.add(file, "", format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    match raw.parse::<toml::Table>() {
        Ok(table) => Some(table),
        Err(e) => {
            let line = e
                .span()
                .map(|span| raw[..span.start.min(raw.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!("line {l}")).unwrap_or_default();
            problems.add(file, at, format!("not valid TOML: {}", e.message().trim()));
            None
        }
    }
}

/// A table being read, with the file and key path it came from for error messages.
struct Node<'a> {
    file: &'a str,
    path: String,
    table: &'a toml::Table,
}

impl<'a> Node<'a> {
    fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Reports keys other than `known`: a misspelt `prices` would otherwise be silently ignored.
    fn only(&self, known: &[&str], problems: &mut Problems) {
        for key in self.table.keys() {
            if !known.contains(&key.as_str()) {
                problems.add(
                    self.file,
                    self.key(key),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn string(&self, name: &str, problems: &mut Problems) -> Option<String> {
        match self.table.get(name) {
            None => {
                problems.add(self.file, self.key(name), "missing");
                None
            }
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                problems.add(
                    self.file,
                    self.key(name),
                    format!("must be a string, not {}", other.type_str()),
                );
                None
            }
        }
    }

    fn optional_string(&self, name: &str, problems: &mut Problems) -> Option<String> {
        if self.table.contains_key(name) {
            self.string(name, problems)
        } else {
            None
        }
    }

    /// An array of tables (`[[categories]]`, `options = [{...}]`), each with its key path.
    fn tables(&self, name: &str, problems: &mut Problems) -> Vec<Node<'a>> {
        match self.table.get(name) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let path = format!("{}[{i}]", self.key(name));
                    match item {
                        toml::Value::Table(table) => Some(Node {
                            file: self.file,
                            path,
                            table,
                        }),
                        other => {
                            problems.add(
                                self.file,
                                path,
                                format!("must be a table, not {}", other.type_str()),
                            );
                            None
                        }
                    }
                })
                .collect(),
            Some(other) => {
                problems.add(
                    self.file,
                    self.key(name),
                    format!("must be an array of tables, not {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    /// A shopper-visible string: GSM-7, not empty, at most `max` septets when given.
    fn display_string(
        &self,
        name: &str,
        max: Option<usize>,
        problems: &mut Problems,
    ) -> Option<String> {
        let value = self.string(name, problems)?;
        check_display(self.file, &self.key(name), &value, max, problems);
        Some(value)
    }

    /// A name per language: either one string for all, or a table with `en` and `sw`.
    fn names(
        &self,
        name: &str,
        require_each: bool,
        problems: &mut Problems,
    ) -> Option<PerLang<String>> {
        let key = self.key(name);
        match self.table.get(name) {
            None => {
                problems.add(self.file, key, "missing");
                None
            }
            Some(toml::Value::String(s)) if !require_each => {
                check_display(self.file, &key, s, None, problems);
                Some(PerLang([s.clone(), s.clone()]))
            }
            Some(toml::Value::Table(table)) => {
                let node = Node {
                    file: self.file,
                    path: key,
                    table,
                };
                node.only(&["en", "sw"], problems);
                let en = node.display_string("en", None, problems);
                let sw = node.display_string("sw", None, problems);
                Some(PerLang([en?, sw?]))
            }
            Some(other) => {
                let expected = if require_each {
                    "a table with en and sw"
                } else {
                    "a string or a table with en and sw"
                };
                problems.add(
                    self.file,
                    key,
                    format!("must be {expected}, not {}", other.type_str()),
                );
                None
            }
        }
    }

    /// An id (`a-z0-9-_`), unique among `seen`.
    fn id(
        &self,
        seen: &mut BTreeSet<String>,
        what: &str,
        problems: &mut Problems,
    ) -> Option<String> {
        let id = self.string("id", problems)?;
        if !is_id(&id) {
            problems.add(self.file, self.key("id"), format!("{id:?}: {ID_RULE}"));
            return None;
        }
        if !seen.insert(id.clone()) {
            problems.add(
                self.file,
                self.key("id"),
                format!("duplicate {what} id {id:?}"),
            );
            return None;
        }
        Some(id)
    }
}

fn check_display(file: &str, key: &str, value: &str, max: Option<usize>, problems: &mut Problems) {
    if value.trim().is_empty() {
        problems.add(file, key, "empty");
    } else if let Some(c) = gsm7::first_non_gsm7(value) {
        problems.add(file, key, not_gsm7(c));
    } else if let (Some(max), Some(len)) = (max, gsm7::septets(value)) {
        if len > max {
            problems.add(file, key, format!("{len} characters, at most {max}"));
        }
    }
}

fn read_shop(table: &toml::Table, problems: &mut Problems) -> (String, String) {
    let root = Node {
        file: SHOP_FILE,
        path: String::new(),
        table,
    };
    root.only(&["name", "help_phone"], problems);
    let name = root.display_string("name", Some(SHOP_NAME_MAX_SEPTETS), problems);
    let phone = root.display_string("help_phone", Some(HELP_PHONE_MAX_SEPTETS), problems);
    (name.unwrap_or_default(), phone.unwrap_or_default())
}

fn read_screens(table: &toml::Table, problems: &mut Problems) -> BTreeMap<String, StaticScreen> {
    let mut screens = BTreeMap::new();
    for (id, value) in table {
        if !is_id(id) {
            problems.add(SCREENS_FILE, id, format!("screen id {id:?}: {ID_RULE}"));
            continue;
        }
        if Target::FLOWS.iter().any(|(flow, _)| flow == id) {
            problems.add(
                SCREENS_FILE,
                id,
                format!("{id:?} is a built-in flow and cannot be a screen id"),
            );
            continue;
        }
        let toml::Value::Table(table) = value else {
            problems.add(
                SCREENS_FILE,
                id,
                format!("must be a table, not {}", value.type_str()),
            );
            continue;
        };
        let node = Node {
            file: SCREENS_FILE,
            path: id.clone(),
            table,
        };
        node.only(&["title", "body", "options"], problems);
        let title = node.string("title", problems);
        let body = node.optional_string("body", problems);
        let option_nodes = node.tables("options", problems);
        if option_nodes.len() > MAX_OPTIONS {
            problems.add(
                SCREENS_FILE,
                node.key("options"),
                format!("{} options, at most {MAX_OPTIONS}", option_nodes.len()),
            );
        }
        let mut keys = BTreeSet::new();
        let mut options = Vec::new();
        for option in option_nodes {
            option.only(&["key", "label", "target"], problems);
            let key = option.string("key", problems).filter(|key| {
                let reason = if RESERVED_KEYS.contains(&key.as_str()) {
                    Some(format!(
                        "{key:?} is reserved for navigation (0 back, 00 home, 98 more)"
                    ))
                } else if key.is_empty()
                    || key.starts_with('0')
                    || !key.bytes().all(|b| b.is_ascii_digit())
                    || key.parse::<usize>().map_or(true, |n| n > MAX_OPTIONS)
                {
                    Some(format!(
                        "{key:?}: a key is a number from 1 to {MAX_OPTIONS}"
                    ))
                } else if !keys.insert(key.clone()) {
                    Some(format!("duplicate key {key:?} on this screen"))
                } else {
                    None
                };
                if let Some(reason) = &reason {
                    problems.add(SCREENS_FILE, option.key("key"), reason.clone());
                }
                reason.is_none()
            });
            let label = option.string("label", problems);
            let target =
                option
                    .string("target", problems)
                    .and_then(|raw| match Target::parse(&raw) {
                        Ok(target) => Some(target),
                        Err(reason) => {
                            problems.add(SCREENS_FILE, option.key("target"), reason);
                            None
                        }
                    });
            if let (Some(key), Some(label), Some(target)) = (key, label, target) {
                options.push(StaticOption { key, label, target });
            }
        }
        if let Some(title) = title {
            screens.insert(
                id.clone(),
                StaticScreen {
                    id: id.clone(),
                    title,
                    body,
                    options,
                },
            );
        }
    }
    screens
}

fn read_catalog(table: &toml::Table, problems: &mut Problems) -> Vec<Category> {
    let root = Node {
        file: CATALOG_FILE,
        path: String::new(),
        table,
    };
    root.only(&["categories"], problems);
    let category_nodes = root.tables("categories", problems);
    if category_nodes.is_empty() {
        problems.add(
            CATALOG_FILE,
            "categories",
            "the shop needs at least one category",
        );
    }
    if category_nodes.len() > MAX_OPTIONS {
        problems.add(
            CATALOG_FILE,
            "categories",
            format!("{} categories, at most {MAX_OPTIONS}", category_nodes.len()),
        );
    }
    let mut category_ids = BTreeSet::new();
    let mut product_ids = BTreeSet::new();
    let mut categories = Vec::new();
    for node in category_nodes {
        node.only(&["id", "name", "products"], problems);
        let id = node.id(&mut category_ids, "category", problems);
        let names = node.names("name", true, problems);
        let product_nodes = node.tables("products", problems);
        if product_nodes.is_empty() {
            problems.add(
                CATALOG_FILE,
                node.key("products"),
                "a category needs at least one product",
            );
        }
        if product_nodes.len() > MAX_OPTIONS {
            problems.add(
                CATALOG_FILE,
                node.key("products"),
                format!("{} products, at most {MAX_OPTIONS}", product_nodes.len()),
            );
        }
        let mut products = Vec::new();
        for product in product_nodes {
            product.only(&["id", "name", "price"], problems);
            let product_id = product.id(&mut product_ids, "product", problems);
            let product_names = product.names("name", false, problems);
            let price = read_price(&product, problems);
            if let (Some(product_id), Some(product_names), Some(price), Some(category)) =
                (product_id, product_names, price, id.as_ref())
            {
                products.push(Product {
                    id: product_id,
                    name: product_names.get(Lang::En).clone(),
                    price,
                    category: category.clone(),
                    names: product_names,
                });
            }
        }
        if let (Some(id), Some(names)) = (id, names) {
            categories.push(Category {
                id,
                names,
                products,
            });
        }
    }
    categories
}

fn read_price(node: &Node<'_>, problems: &mut Problems) -> Option<Kes> {
    let key = node.key("price");
    let max = crate::menu::engine::MAX_ORDER_TOTAL;
    match node.table.get("price") {
        None => {
            problems.add(CATALOG_FILE, key, "missing");
            None
        }
        Some(toml::Value::Integer(n)) if *n <= 0 => {
            problems.add(
                CATALOG_FILE,
                key,
                format!("{n}: a price must be more than zero"),
            );
            None
        }
        Some(toml::Value::Integer(n)) if *n > max => {
            problems.add(
                CATALOG_FILE,
                key,
                format!("{n}: more than KES {max}, the most one M-Pesa payment can be"),
            );
            None
        }
        Some(toml::Value::Integer(n)) => Some(Kes::whole(*n)),
        Some(toml::Value::Float(f)) => {
            problems.add(
                CATALOG_FILE,
                key,
                format!("{f}: prices are whole shillings (write 230, not 230.5 or 230.0)"),
            );
            None
        }
        Some(other) => {
            problems.add(
                CATALOG_FILE,
                key,
                format!(
                    "must be a whole number of shillings, not {}",
                    other.type_str()
                ),
            );
            None
        }
    }
}

/// Flattens nested tables into dotted ids: `[main]` `shop = ".."` is `main.shop`.
fn read_texts(
    lang: Lang,
    table: &toml::Table,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    fn walk(
        file: &str,
        prefix: &str,
        table: &toml::Table,
        out: &mut BTreeMap<String, String>,
        problems: &mut Problems,
    ) {
        for (key, value) in table {
            let id = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::String(text) => {
                    out.insert(id, text.clone());
                }
                toml::Value::Table(inner) => walk(file, &id, inner, out, problems),
                other => problems.add(
                    file,
                    id,
                    format!("must be a string, not {}", other.type_str()),
                ),
            }
        }
    }
    let mut texts = BTreeMap::new();
    walk(&text_file(lang), "", table, &mut texts, problems);
    texts
}

#[cfg(test)]
mod tests;
