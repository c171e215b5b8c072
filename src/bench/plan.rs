//! What each simulated shopper buys, worked out from the catalog before the run starts.
//!
//! Shopper `i` buys product `i mod P` of the catalog (categories in menu order, products in list
//! order), so the first `P` shoppers between them pick every product of every category, including
//! those that sit on a later page of a long list. The quantity cycles through 1 to
//! [`QTY_CYCLE`] with each round of the catalog, so totals from two digits up to thousands (with
//! their separators) all appear on the checkout screen.
//!
//! The expected total is computed here, in whole shillings, and formatted by
//! [`group_thousands`], independently of the server's own money formatting: the bench checks the
//! server, so it does not borrow the code under test to do it.

use rust_decimal::prelude::ToPrimitive;

use crate::menu::Catalog;

/// Quantities cycle through `1..=QTY_CYCLE`.
pub const QTY_CYCLE: u32 = 12;

/// Why the catalog cannot drive a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the catalog has no products to buy")]
    NoProducts,
    #[error("product {0} has a price that is not a positive whole number of shillings")]
    Price(String),
}

/// One product as a shopper reaches it: which category to choose and which list number to type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The category's index in the catalog (its list number is one more).
    pub category: usize,
    /// The product's list number in its category, continuous across pages (1-based).
    pub number: usize,
    /// The catalog id of the product.
    pub product: String,
    /// The unit price in whole shillings.
    pub price: u64,
}

/// Every product of the catalog, in the order shoppers are assigned to them.
#[derive(Clone, Debug)]
pub struct Plan {
    items: Vec<Item>,
}

/// What one simulated shopper does in one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shopper {
    /// The shopper's number in this run, from 0.
    pub index: u64,
    /// A session id no other shopper of any run is likely to share.
    pub session_id: String,
    /// `+2547XXXXXXXX`, unique within the run.
    pub phone: String,
    pub item: Item,
    pub qty: u32,
    /// `item.price * qty`, in whole shillings.
    pub total: u64,
}

impl Plan {
    /// Lists every product of the catalog.
    ///
    /// # Errors
    /// [`PlanError`] when the catalog sells nothing, or a price is not whole shillings (the
    /// catalog's own check refuses such prices, so this is a guard).
    pub fn from_catalog(catalog: &Catalog) -> Result<Self, PlanError> {
        let mut items = Vec::new();
        for (category, entry) in catalog.categories().iter().enumerate() {
            for (i, product) in entry.products.iter().enumerate() {
                let price = product
                    .price
                    .is_whole()
                    .then(|| product.price.decimal().to_u64())
                    .flatten()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| PlanError::Price(product.id.clone()))?;
                items.push(Item {
                    category,
                    number: i + 1,
                    product: product.id.clone(),
                    price,
                });
            }
        }
        if items.is_empty() {
            return Err(PlanError::NoProducts);
        }
        Ok(Self { items })
    }

    /// How many distinct products there are: the first this many shoppers buy one each.
    pub fn products(&self) -> usize {
        self.items.len()
    }

    /// Shopper `index` of a run tagged `run` (a random number drawn once per run, so that two
    /// runs against the same Redis use different phones and sessions).
    pub fn shopper(&self, run: u32, index: u64) -> Shopper {
        let count = self.items.len() as u64;
        let item = self.items[(index % count) as usize].clone();
        let qty = 1 + ((index / count) % u64::from(QTY_CYCLE)) as u32;
        Shopper {
            index,
            session_id: format!("ATUid_bench_{run:08x}_{index}"),
            phone: phone(run, index),
            total: item.price * u64::from(qty),
            item,
            qty,
        }
    }
}

/// `+25471` and seven digits, a Safaricom range (every gateway's shopper can then pay by STK
/// push, whether or not the gateway reports the network): consecutive shoppers get consecutive
/// numbers from a per-run start, so numbers are unique within a run of up to 10^7 shoppers.
pub fn phone(run: u32, index: u64) -> String {
    let subscriber = u64::from(run).wrapping_add(index) % 10_000_000;
    format!("+25471{subscriber:07}")
}

/// `1800` as `1,800`: how a shopper reads a whole-shilling amount on a screen.
pub fn group_thousands(amount: u64) -> String {
    let digits = amount.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;
    use crate::menu::engine::MAX_ORDER_TOTAL;
    use crate::msisdn::Msisdn;

    fn catalog() -> Catalog {
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("menus")).unwrap()
    }

    #[test]
    fn amounts_are_grouped_in_thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(65), "65");
        assert_eq!(group_thousands(900), "900");
        assert_eq!(group_thousands(1_800), "1,800");
        assert_eq!(group_thousands(21_600), "21,600");
        assert_eq!(group_thousands(250_000), "250,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_first_round_of_shoppers_buys_every_product_of_every_category() {
        let catalog = catalog();
        let plan = Plan::from_catalog(&catalog).unwrap();
        let bought: HashSet<String> = (0..plan.products() as u64)
            .map(|i| plan.shopper(7, i).item.product)
            .collect();
        let sold: HashSet<String> = catalog.products().map(|p| p.id.clone()).collect();
        assert_eq!(bought, sold);
        let categories: HashSet<usize> = (0..plan.products() as u64)
            .map(|i| plan.shopper(7, i).item.category)
            .collect();
        assert_eq!(categories.len(), catalog.categories().len());
    }

    #[test]
    fn list_numbers_are_the_positions_in_the_category() {
        let catalog = catalog();
        let plan = Plan::from_catalog(&catalog).unwrap();
        for i in 0..plan.products() as u64 {
            let item = plan.shopper(0, i).item;
            let category = &catalog.categories()[item.category];
            assert_eq!(category.products[item.number - 1].id, item.product);
        }
    }

    #[test]
    fn quantities_cycle_and_totals_stay_payable() {
        let plan = Plan::from_catalog(&catalog()).unwrap();
        let rounds = u64::from(QTY_CYCLE) * plan.products() as u64;
        let qtys: HashSet<u32> = (0..rounds).map(|i| plan.shopper(0, i).qty).collect();
        assert_eq!(qtys, (1..=QTY_CYCLE).collect());
        for i in 0..rounds {
            let shopper = plan.shopper(0, i);
            assert_eq!(shopper.total, shopper.item.price * u64::from(shopper.qty));
            assert!(shopper.total <= MAX_ORDER_TOTAL as u64, "{shopper:?}");
        }
        assert!(
            (0..rounds).any(|i| plan.shopper(0, i).total >= 1_000),
            "some totals need a thousands separator"
        );
    }

    #[test]
    fn phones_are_safaricom_mobiles_and_unique_within_a_run() {
        let plan = Plan::from_catalog(&catalog()).unwrap();
        let run = 99_999_990;
        let mut seen = HashSet::new();
        for i in 0..20_000 {
            let shopper = plan.shopper(run, i);
            let msisdn = Msisdn::parse(&shopper.phone).unwrap();
            assert!(msisdn.is_safaricom(), "{msisdn:?}");
            assert_eq!(shopper.phone.len(), 13);
            assert!(seen.insert(shopper.phone));
        }
    }

    #[test]
    fn session_ids_use_only_the_characters_the_gateway_accepts() {
        let plan = Plan::from_catalog(&catalog()).unwrap();
        let shopper = plan.shopper(u32::MAX, u64::MAX);
        assert!(shopper
            .session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)));
    }
}
