//! Several shops on one Duka: `DUKA_SHOPS=beta,gamma`, each shop beside the default one.
//!
//! Each shop named in `DUKA_SHOPS` is a whole shop of its own, mounted under `/shops/<id>`: its
//! USSD routes (`/shops/<id>/ussd/<gateway>`, the URL its service code's aggregator calls), its
//! payment and SMS callbacks, `/metrics` and the demo's controls. It has its own menus folder,
//! Redis key prefix (so carts, orders, sessions and job queues are its own), paybill or till with
//! its passkey, SMS sender id, job worker and M-Pesa and SMS clients; the Redis connection and the
//! listener are shared. The default shop stays where it is, configured as before, and needs
//! nothing new: without `DUKA_SHOPS` nothing changes.
//!
//! A shop's settings are read like the default shop's, each variable first as
//! `DUKA_SHOP_<ID>_<NAME>` (the id upper-cased, `-` as `_`, a `DUKA_` name without its `DUKA_`:
//! `DUKA_SHOP_BETA_MENUS`, `DUKA_SHOP_BETA_MPESA_SHORTCODE`), then as `<NAME>`: so the Redis URL,
//! the Daraja app and the Africa's Talking account are shared unless a shop sets its own. Some are
//! never inherited, because sharing them would mix two shops' money or data: [`OWN`].
//!
//! Order numbers never collide across shops: a shop's start with its one-character
//! `DUKA_SHOP_<ID>_ORDER_PREFIX`, and the default shop's never start with any of those.

use crate::config::Settings;

/// What every shop must have of its own (never inherited from the default shop).
pub const OWN: &[&str] = &[
    "DUKA_MENUS",
    "DUKA_KEY_PREFIX",
    "DUKA_PUBLIC_URL",
    "MPESA_SHORTCODE",
    "MPESA_PASSKEY",
    "MPESA_TILL",
    "DUKA_SHOPS",
    "DUKA_SERVICE_CODE",
];

/// One shop of `DUKA_SHOPS`.
#[derive(Clone, Debug)]
pub struct ExtraShop {
    /// Its id, as in `/shops/<id>`.
    pub id: String,
    /// The first character of every order number of this shop.
    pub order_prefix: u8,
    pub settings: Settings,
}

impl ExtraShop {
    /// Where the shop is mounted: `/shops/<id>`.
    pub fn path(&self) -> String {
        format!("{MOUNT_PREFIX}{}", self.id)
    }
}

/// What every shop's mount starts with: `/shops/<id>`.
pub const MOUNT_PREFIX: &str = "/shops/";

/// Where a shop records its fixtures when the deployment records into `dir`: a folder of its
/// own, since they replay against its own menus.
pub fn fixture_dir(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    dir.join(id)
}

/// The environment variable of `name` for shop `id`: `DUKA_SHOP_<ID>_<NAME>`, without a second
/// `DUKA_` (`DUKA_MENUS` of shop `beta` is `DUKA_SHOP_BETA_MENUS`).
pub fn variable(id: &str, name: &str) -> String {
    let name = name.strip_prefix("DUKA_").unwrap_or(name);
    format!(
        "DUKA_SHOP_{}_{name}",
        id.to_ascii_uppercase().replace('-', "_")
    )
}

fn valid_id(id: &str) -> bool {
    (1..=24).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads the shops of `DUKA_SHOPS` through `lookup` (the default shop's `main` gives what they
/// derive from). `problems` gets every misconfiguration, named.
pub fn from_lookup(
    lookup: &dyn Fn(&str) -> Option<String>,
    main: &Settings,
    problems: &mut Vec<String>,
) -> Vec<ExtraShop> {
    let Some(list) = lookup("DUKA_SHOPS") else {
        return Vec::new();
    };
    let mut shops: Vec<ExtraShop> = Vec::new();
    for (index, id) in list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        if !valid_id(id) {
            problems.push(format!(
                "DUKA_SHOPS: {id:?} is not a shop id (1 to 24 of a-z, 0-9 and -)"
            ));
            continue;
        }
        if shops.iter().any(|s| s.id == id) {
            problems.push(format!("DUKA_SHOPS: {id} is named twice"));
            continue;
        }
        let own = |name: &str| lookup(&variable(id, name)).filter(|v| !v.trim().is_empty());
        let derived = |name: &str| -> Option<String> {
            if let Some(value) = own(name) {
                return Some(value);
            }
            match name {
                // Its own data: under its own prefix unless it names one.
                "DUKA_KEY_PREFIX" => Some(format!("{}-{id}", main.key_prefix)),
                "DUKA_PUBLIC_URL" => main.public_url.as_ref().map(|u| format!("{u}/shops/{id}")),
                "DUKA_RECORD_DIR" => lookup(name).map(|dir| {
                    fixture_dir(std::path::Path::new(&dir), id)
                        .display()
                        .to_string()
                }),
                _ if OWN.contains(&name) => None,
                _ => lookup(name),
            }
        };
        if own("DUKA_MENUS").is_none() {
            problems.push(format!(
                "{}: shop {id} needs its own menus folder",
                variable(id, "DUKA_MENUS")
            ));
        }
        let prefix_var = variable(id, "ORDER_PREFIX");
        let order_prefix = match own("ORDER_PREFIX").as_deref().map(str::trim) {
            Some(p)
                if p.len() == 1
                    && crate::orders::ORDER_ALPHABET
                        .contains(&p.as_bytes()[0].to_ascii_uppercase()) =>
            {
                p.as_bytes()[0].to_ascii_uppercase()
            }
            Some(p) => {
                problems.push(format!(
                    "{prefix_var}: {p:?} is not one order-number character (2-9, A-Z without I and O)"
                ));
                b'?'
            }
            None => {
                problems.push(format!(
                    "{prefix_var}: shop {id} needs the first character of its order numbers"
                ));
                b'?'
            }
        };
        if order_prefix != b'?' && shops.iter().any(|s| s.order_prefix == order_prefix) {
            problems.push(format!(
                "{prefix_var}: {} is already another shop's",
                char::from(order_prefix)
            ));
        }
        match Settings::from_lookup(derived) {
            Ok(mut settings) => {
                if matches!(main.mpesa, crate::config::MpesaSettings::Daraja { .. })
                    && matches!(settings.mpesa, crate::config::MpesaSettings::Sandbox)
                {
                    problems.push(format!(
                        "{}: shop {id} needs its own paybill (and {}) on Daraja",
                        variable(id, "MPESA_SHORTCODE"),
                        variable(id, "MPESA_PASSKEY")
                    ));
                }
                if settings.key_prefix == main.key_prefix
                    || shops
                        .iter()
                        .any(|s| s.settings.key_prefix == settings.key_prefix)
                {
                    problems.push(format!(
                        "{}: shop {id} shares the key prefix {:?} with another shop",
                        variable(id, "DUKA_KEY_PREFIX"),
                        settings.key_prefix
                    ));
                }
                // The demo gives each shop's sandbox a paybill of its own.
                settings.sandbox_shortcode = Some((174_380 + index).to_string());
                settings.order_first_chars = vec![order_prefix];
                shops.push(ExtraShop {
                    id: id.to_owned(),
                    order_prefix,
                    settings,
                });
            }
            Err(e) => problems.extend(e.problems.into_iter().map(|p| {
                format!(
                    "shop {id}: {p} (a shop's own as {})",
                    variable(id, "<NAME>")
                )
            })),
        }
    }
    shops
}

/// A service code as the gateways disagree on writing it: `*384*13#`, `384*13` → `384*13`.
pub fn normalise_service_code(raw: &str) -> String {
    raw.trim()
        .trim_end_matches('#')
        .trim_matches('*')
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '*')
        .collect()
}

/// The first characters the default shop's order numbers may start with: all but the other
/// shops' prefixes.
pub fn default_first_chars(shops: &[ExtraShop]) -> Vec<u8> {
    crate::orders::ORDER_ALPHABET
        .iter()
        .copied()
        .filter(|c| !shops.iter().any(|s| s.order_prefix == *c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| env.get(name).cloned())
    }

    #[test]
    fn a_shop_gets_its_own_menus_prefix_and_order_letter_and_shares_the_rest() {
        let settings = load(&[
            ("DUKA_SHOPS", "mama-mboga"),
            ("DUKA_SHOP_MAMA_MBOGA_MENUS", "/shops/mboga"),
            ("DUKA_SHOP_MAMA_MBOGA_ORDER_PREFIX", "m"),
            ("DUKA_SHOP_MAMA_MBOGA_AT_SENDER_ID", "MBOGA"),
            ("DUKA_PUBLIC_URL", "https://shop.example.com"),
            ("DUKA_MENUS", "/shops/default"),
        ])
        .unwrap();
        let shop = &settings.shops[0];
        assert_eq!(shop.id, "mama-mboga");
        assert_eq!(shop.order_prefix, b'M');
        assert_eq!(
            shop.settings.menus_dir,
            std::path::PathBuf::from("/shops/mboga")
        );
        assert_eq!(shop.settings.key_prefix, "duka-mama-mboga");
        assert_eq!(
            shop.settings.public_url.as_deref(),
            Some("https://shop.example.com/shops/mama-mboga")
        );
        assert_eq!(shop.settings.order_first_chars, vec![b'M']);
        assert!(!settings.order_first_chars.contains(&b'M'));
        assert_eq!(
            settings.order_first_chars.len(),
            crate::orders::ORDER_ALPHABET.len() - 1
        );
        assert!(shop.settings.shops.is_empty());
    }

    #[test]
    fn service_codes_compare_however_a_gateway_writes_them() {
        assert_eq!(normalise_service_code("*384*13#"), "384*13");
        assert_eq!(normalise_service_code(" 384*13 "), "384*13");
        assert_ne!(
            normalise_service_code("*384*12#"),
            normalise_service_code("*384*13#")
        );
    }

    #[test]
    fn a_shop_records_its_fixtures_in_a_folder_of_its_own() {
        let settings = load(&[
            ("DUKA_SHOPS", "beta"),
            ("DUKA_SHOP_BETA_MENUS", "/b"),
            ("DUKA_SHOP_BETA_ORDER_PREFIX", "B"),
            ("DUKA_RECORD_DIR", "/srv/fixtures"),
        ])
        .unwrap();
        assert_eq!(
            settings.shops[0].settings.record_dir,
            Some(std::path::PathBuf::from("/srv/fixtures/beta"))
        );
    }

    #[test]
    fn serve_record_records_every_shop_each_in_its_own_folder_with_the_same_filters() {
        let mut settings = load(&[
            ("DUKA_SHOPS", "beta"),
            ("DUKA_SHOP_BETA_MENUS", "/b"),
            ("DUKA_SHOP_BETA_ORDER_PREFIX", "B"),
            ("DUKA_RECORD_SAMPLE", "0.5"),
        ])
        .unwrap();
        assert_eq!(settings.shops[0].settings.record_dir, None);
        let flags = crate::fixtures::record::RecordFilter {
            sample: None,
            phone: Some(crate::msisdn::Msisdn::parse("0712345678").unwrap()),
            service_code: None,
        };

        settings.record_into(Some("/srv/rec".into()), &flags);

        assert_eq!(settings.record_dir, Some("/srv/rec".into()));
        let beta = &settings.shops[0].settings;
        assert_eq!(beta.record_dir, Some("/srv/rec/beta".into()));
        for filter in [&settings.record_filter, &beta.record_filter] {
            assert_eq!(filter.sample, Some(0.5), "the environment's sample stays");
            assert_eq!(filter.phone, flags.phone, "the flag's phone applies");
        }
    }

    #[test]
    fn a_shop_sends_its_sms_under_its_own_sender_id_on_the_shared_account() {
        let settings = load(&[
            ("AT_BASE_URL", "https://api.africastalking.com"),
            ("AT_USERNAME", "duka"),
            ("AT_API_KEY", "k3y"),
            ("AT_SENDER_ID", "DUKA"),
            ("DUKA_SHOPS", "beta"),
            ("DUKA_SHOP_BETA_MENUS", "/b"),
            ("DUKA_SHOP_BETA_ORDER_PREFIX", "B"),
            ("DUKA_SHOP_BETA_AT_SENDER_ID", "BETA"),
        ])
        .unwrap();
        let sender = |s: &Settings| match &s.sms {
            crate::config::SmsSettings::AfricasTalking {
                username,
                sender_id,
                ..
            } => (username.clone(), sender_id.clone()),
            crate::config::SmsSettings::Sandbox => panic!("AT is configured"),
        };
        assert_eq!(
            sender(&settings),
            ("duka".to_owned(), Some("DUKA".to_owned()))
        );
        assert_eq!(
            sender(&settings.shops[0].settings),
            ("duka".to_owned(), Some("BETA".to_owned()))
        );
    }

    #[test]
    fn every_misconfigured_shop_is_named() {
        let err = load(&[
            ("DUKA_SHOPS", "beta,Bad Id,beta,gamma"),
            ("DUKA_SHOP_BETA_ORDER_PREFIX", "B"),
            ("DUKA_SHOP_GAMMA_MENUS", "/g"),
            ("DUKA_SHOP_GAMMA_ORDER_PREFIX", "b"),
        ])
        .unwrap_err()
        .to_string();
        for expected in [
            "DUKA_SHOP_BETA_MENUS: shop beta needs its own menus folder",
            "\"Bad Id\" is not a shop id",
            "beta is named twice",
            "DUKA_SHOP_GAMMA_ORDER_PREFIX: B is already another shop's",
        ] {
            assert!(err.contains(expected), "{expected:?} not in {err}");
        }
    }

    #[test]
    fn on_daraja_each_shop_needs_its_own_paybill() {
        let err = load(&[
            ("MPESA_BASE_URL", "https://sandbox.safaricom.co.ke"),
            ("MPESA_CONSUMER_KEY", "k"),
            ("MPESA_CONSUMER_SECRET", "s"),
            ("MPESA_SHORTCODE", "174379"),
            ("MPESA_PASSKEY", "p"),
            (
                "MPESA_CALLBACK_SECRET",
                "a-long-enough-callback-secret-1234",
            ),
            ("DUKA_SHOPS", "beta"),
            ("DUKA_SHOP_BETA_MENUS", "/b"),
            ("DUKA_SHOP_BETA_ORDER_PREFIX", "B"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("shop beta: M-Pesa is half configured"),
            "{err}"
        );
        assert!(err.contains("MPESA_SHORTCODE"), "{err}");
        assert!(err.contains("DUKA_SHOP_BETA_<NAME>"), "{err}");
    }
}
