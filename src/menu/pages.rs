//! Pages whose text the menus alone decide, laid out once per catalog and then served from memory.
//!
//! Most hops show a screen that is the same for every shopper: the main menu, the categories,
//! a category's products, a product's "Enter quantity", Help, "Added 2 x Sugar" (for small
//! quantities). Laying such a page out formats
//! every line and counts its GSM-7 septets to decide what fits, and that was the largest part of
//! a hop's CPU outside the I/O (`callgrind`: about a quarter of the server's instructions, see
//! the README's Performance section). The engine asks [`Pages`] first, for those screens only
//! and only without a hint on top, and lays the page out itself on a miss.
//!
//! A page is kept under everything that decides it: the screen, the language, the first item,
//! the screen budget and where the shop is paid (static screens show the paybill or till). The
//! cache belongs to one [`crate::menu::catalog::Catalog`], so a menus reload starts an empty one
//! and a changed text can never be served stale. The keys are finite (screens × languages ×
//! pages × budgets × payees) but a gateway chooses its budget, so the cache stops growing at
//! [`MAX_PAGES`] and lays out the rest every time.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::menu::engine::Screen;
use crate::menu::{Lang, Payee};

/// The most pages one catalog keeps.
pub const MAX_PAGES: usize = 4096;

/// Everything a catalog-only page depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PageKey {
    pub screen: Screen,
    pub lang: Lang,
    pub at: usize,
    pub max: usize,
    /// `Some` for the static screens, which show where to pay: till or not, and the number.
    pub payee: Option<(bool, String)>,
}

impl PageKey {
    pub(crate) fn payee(payee: Payee<'_>) -> (bool, String) {
        (matches!(payee, Payee::Till(_)), payee.number().to_owned())
    }
}

/// A laid-out page, as the engine shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CachedPage {
    /// The text, already clamped to the budget.
    pub text: String,
    /// The first item of the next page, if any.
    pub next: Option<usize>,
    /// How many items the whole screen has.
    pub items: usize,
}

/// The catalog's laid-out pages.
#[derive(Debug, Default)]
pub(crate) struct Pages {
    map: RwLock<HashMap<PageKey, Arc<CachedPage>>>,
}

impl Pages {
    pub(crate) fn get(&self, key: &PageKey) -> Option<Arc<CachedPage>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Keeps `page` under `key`, unless the cache is full.
    pub(crate) fn put(&self, key: PageKey, page: CachedPage) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() < MAX_PAGES {
            map.insert(key, Arc::new(page));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(at: usize) -> PageKey {
        PageKey {
            screen: Screen::Categories,
            lang: Lang::En,
            at,
            max: 160,
            payee: None,
        }
    }

    fn page(text: &str) -> CachedPage {
        CachedPage {
            text: text.to_owned(),
            next: None,
            items: 1,
        }
    }

    #[test]
    fn keeps_a_page_under_its_whole_key() {
        let pages = Pages::default();
        pages.put(key(0), page("a"));
        assert_eq!(pages.get(&key(0)).unwrap().text, "a");
        assert!(pages.get(&key(1)).is_none());
        let other_budget = PageKey { max: 182, ..key(0) };
        assert!(pages.get(&other_budget).is_none());
    }

    #[test]
    fn stops_growing_at_its_cap() {
        let pages = Pages::default();
        for at in 0..MAX_PAGES + 10 {
            pages.put(key(at), page("x"));
        }
        assert_eq!(pages.len(), MAX_PAGES);
        assert!(pages.get(&key(MAX_PAGES + 5)).is_none());
    }
}
