use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn menus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("menus")
}

fn shipped() -> Catalog {
    Catalog::load(&menus_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// A copy of the shipped menus in a fresh temporary directory, to break on purpose.
struct TempMenus {
    dir: PathBuf,
}

impl TempMenus {
    fn copy_of_shipped() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "duka-menus-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("text")).unwrap();
        for file in [
            SHOP_FILE,
            SCREENS_FILE,
            CATALOG_FILE,
            "text/en.toml",
            "text/sw.toml",
        ] {
            std::fs::copy(menus_dir().join(file), dir.join(file)).unwrap();
        }
        TempMenus { dir }
    }

    /// Replaces `from` with `to` in `file`, failing if `from` is not there (so that a test can
    /// never pass by editing nothing).
    fn replace(&self, file: &str, from: &str, to: &str) -> &Self {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        self
    }

    fn append(&self, file: &str, extra: &str) -> &Self {
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}\n{extra}\n")).unwrap();
        self
    }

    fn problems(&self) -> Vec<Problem> {
        match Catalog::load(&self.dir) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        }
    }
}

impl Drop for TempMenus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asserts that one of `problems` names `file` and `key` and says `reason` (a fragment).
#[track_caller]
fn assert_problem(problems: &[Problem], file: &str, key: &str, reason: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.file == file && p.key == key && p.reason.contains(reason)),
        "no problem {file}: {key}: ...{reason}... in:\n{}",
        list(problems)
    );
}

// ---------------------------------------------------------------------------------------------
// The shipped shop

#[test]
fn the_shipped_menus_load_without_problems() {
    let catalog = shipped();
    assert_eq!(catalog.shop_name(), "Duka");
    assert_eq!(catalog.help_phone(), "0700 384 012");
}

#[test]
fn the_sample_shop_sells_the_required_products_at_whole_shilling_prices() {
    let catalog = shipped();
    let listed: Vec<(String, Vec<(String, Kes)>)> = catalog
        .categories()
        .iter()
        .map(|c| {
            let products = c
                .products
                .iter()
                .map(|p| (p.name.clone(), p.price))
                .collect();
            (c.name(Lang::En).to_owned(), products)
        })
        .collect();
    let expected = [
        (
            "Groceries",
            vec![
                ("Maize Flour 2kg", 230),
                ("Sugar 1kg", 190),
                ("Rice 2kg", 360),
                ("Cooking Oil 1L", 380),
                ("Milk 500ml", 65),
            ],
        ),
        (
            "Household",
            vec![
                ("Bar Soap 800g", 160),
                ("Washing Powder 1kg", 280),
                ("Toilet Paper 10pk", 450),
                ("Matches 10pk", 60),
                ("Candles 6pk", 120),
            ],
        ),
        (
            "Phone & Data",
            vec![
                ("SIM Card", 50),
                ("Data Bundle 1GB", 250),
                ("Phone Charger", 450),
                ("Earphones", 350),
                ("Power Bank", 1800),
            ],
        ),
    ];
    for (i, (category, products)) in expected.iter().enumerate() {
        assert_eq!(listed[i].0, *category);
        let products: Vec<(String, Kes)> = products
            .iter()
            .map(|(name, price)| ((*name).to_owned(), Kes::whole(*price)))
            .collect();
        assert_eq!(listed[i].1, products);
    }
    assert_eq!(listed.len(), 4);
    assert!(listed[3].1.len() >= 12, "the fourth category needs paging");
}

#[test]
fn products_are_found_by_id_with_their_category_and_names_per_language() {
    let catalog = shipped();
    let product = catalog.product("toilet-paper-10").unwrap();
    assert_eq!(product.name, "Toilet Paper 10pk");
    assert_eq!(product.name_in(Lang::Sw), "Karatasi ya Choo 10pk");
    assert_eq!(product.price, Kes::whole(450));
    assert_eq!(product.category, "household");
    assert_eq!(
        catalog.product("power-bank").unwrap().name_in(Lang::Sw),
        "Power Bank"
    );
    assert!(catalog.product("nothing").is_none());
    assert_eq!(catalog.products().count(), 28);
    assert_eq!(
        catalog.category("household").unwrap().name(Lang::Sw),
        "Vitu vya Nyumbani"
    );
}

#[test]
fn texts_are_filled_by_placeholder_name() {
    let catalog = shipped();
    assert_eq!(
        catalog.text(Lang::En, "checkout.total", &[("total", "900")]),
        "Total KES 900."
    );
    assert_eq!(
        catalog.text(Lang::Sw, "checkout.total", &[("total", "900")]),
        "Jumla KES 900."
    );
    assert_eq!(
        catalog.text(Lang::En, "checkout.total", &[]),
        "Total KES {total}."
    );
    assert_eq!(catalog.text(Lang::En, "no.such.text", &[]), "no.such.text");
}

#[test]
fn every_sms_text_fits_one_segment_with_the_longest_values() {
    let catalog = shipped();
    let total = Kes::whole(crate::menu::engine::MAX_ORDER_TOTAL).to_string();
    let items = "W".repeat(SMS_ITEMS_MAX_SEPTETS);
    for lang in Lang::ALL {
        let longest_reason = [
            "reason.cancelled",
            "reason.wrong_pin",
            "reason.timeout",
            "reason.insufficient_funds",
            "reason.failed",
        ]
        .map(|id| catalog.text(lang, id, &[]))
        .into_iter()
        .max_by_key(String::len)
        .unwrap();
        let messages = [
            catalog.text(
                lang,
                "sms.receipt",
                &[
                    ("shop", "Duka"),
                    ("order", "D7K2Q9"),
                    ("items", &items),
                    ("total", &total),
                    ("receipt", "QKH94M1Z11"),
                ],
            ),
            catalog.text(
                lang,
                "sms.payment_failed",
                &[
                    ("shop", "Duka"),
                    ("order", "D7K2Q9"),
                    ("total", &total),
                    ("paybill", "4085093"),
                    ("reason", &longest_reason),
                ],
            ),
            catalog.text(
                lang,
                "sms.nudge",
                &[
                    ("shop", "Duka"),
                    ("items", &items),
                    ("total", &total),
                    ("shortcode", "*384*12#"),
                ],
            ),
        ];
        for message in messages {
            let (encoding, units, segments) = gsm7::sms_encoding_and_segments(&message);
            assert_eq!(encoding, gsm7::Encoding::Gsm7, "{message}");
            assert!(
                units <= SMS_MAX_SEPTETS && segments == 1,
                "{units}: {message}"
            );
            assert!(
                !message.contains('%') && !message.contains('{'),
                "{message}"
            );
        }
    }
}

#[test]
fn an_items_summary_lists_quantities_and_is_shortened_for_sms() {
    let catalog = shipped();
    let line = |name: &str, qty| OrderLine {
        product: "x".to_owned(),
        name: name.to_owned(),
        unit_price: Kes::whole(1),
        qty,
    };
    assert_eq!(
        catalog.items_summary(&[line("Toilet Paper 10pk", 2), line("Sugar 1kg", 1)]),
        "2 x Toilet Paper 10pk, 1 x Sugar 1kg"
    );
    let many: Vec<OrderLine> = (0..10)
        .map(|_| line("Drinking Chocolate 200g", 99))
        .collect();
    let summary = catalog.items_summary(&many);
    assert!(summary.ends_with(".."), "{summary}");
    assert!(gsm7::septets(&summary).unwrap() <= SMS_ITEMS_MAX_SEPTETS);
}

#[test]
fn placeholders_are_read_and_unbalanced_braces_refused() {
    let names = |t: &str| placeholders(t).map(|s| s.into_iter().collect::<Vec<_>>());
    assert_eq!(
        names("Pay KES {total} to {paybill}, {total}"),
        Ok(vec!["paybill".to_owned(), "total".to_owned()])
    );
    assert_eq!(names("no placeholders"), Ok(vec![]));
    assert!(names("open {total").is_err());
    assert!(names("close total}").is_err());
    assert!(names("nested {a{b}}").is_err());
    assert!(names("empty {}").is_err());
    assert!(names("shout {TOTAL}").is_err());
}

// ---------------------------------------------------------------------------------------------
// Broken menus, each problem named with its file and key

#[test]
fn a_missing_file_is_named() {
    let menus = TempMenus::copy_of_shipped();
    std::fs::remove_file(menus.dir.join("text/sw.toml")).unwrap();
    let problems = menus.problems();
    assert_problem(&problems, "text/sw.toml", "", "cannot read");
}

#[test]
fn a_toml_syntax_error_names_the_file_and_line() {
    let menus = TempMenus::copy_of_shipped();
    menus.replace(SHOP_FILE, "name = \"Duka\"", "name = \"Duka");
    assert_problem(&menus.problems(), SHOP_FILE, "line 5", "not valid TOML");
}

#[test]
fn a_target_that_does_not_exist_is_named() {
    let menus = TempMenus::copy_of_shipped();
    menus.replace(SCREENS_FILE, "target = \"help\"", "target = \"helps\"");
    let problems = menus.problems();
    assert_problem(
        &problems,
        SCREENS_FILE,
        "main.options[4].target",
        "no screen \"helps\"",
    );
    // The help screen is now reachable from nowhere, which is reported too.
    assert_problem(
        &problems,
        SCREENS_FILE,
        "help",
        "no option of any screen leads here",
    );
}

#[test]
fn an_unknown_flow_or_language_is_named() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(
            SCREENS_FILE,
            "target = \"language:sw\"",
            "target = \"language:fr\"",
        )
        .replace(SCREENS_FILE, "target = \"shop\"", "target = \"Shop!\"");
    let problems = menus.problems();
    assert_problem(
        &problems,
        SCREENS_FILE,
        "language.options[1].target",
        "unknown language",
    );
    assert_problem(
        &problems,
        SCREENS_FILE,
        "main.options[0].target",
        "neither a screen id",
    );
}

#[test]
fn duplicate_and_reserved_option_keys_are_named() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(
            SCREENS_FILE,
            "{ key = \"2\", label = \"main.cart\"",
            "{ key = \"1\", label = \"main.cart\"",
        )
        .replace(
            SCREENS_FILE,
            "{ key = \"1\", label = \"language.en\"",
            "{ key = \"0\", label = \"language.en\"",
        )
        .replace(
            SCREENS_FILE,
            "{ key = \"2\", label = \"language.sw\"",
            "{ key = \"98\", label = \"language.sw\"",
        )
        .replace(SCREENS_FILE, "{ key = \"5\",", "{ key = \"00\",");
    let problems = menus.problems();
    assert_problem(
        &problems,
        SCREENS_FILE,
        "main.options[1].key",
        "duplicate key \"1\"",
    );
    assert_problem(
        &problems,
        SCREENS_FILE,
        "language.options[0].key",
        "reserved",
    );
    assert_problem(
        &problems,
        SCREENS_FILE,
        "language.options[1].key",
        "reserved",
    );
    assert_problem(&problems, SCREENS_FILE, "main.options[4].key", "reserved");
}

#[test]
fn the_main_screen_is_required_and_flows_are_not_screen_ids() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(SCREENS_FILE, "[main]", "[home]")
        .replace(SCREENS_FILE, "[help]", "[shop]");
    let problems = menus.problems();
    assert_problem(&problems, SCREENS_FILE, "main", "the main menu is required");
    assert_problem(&problems, SCREENS_FILE, "shop", "built-in flow");
}

#[test]
fn a_text_missing_in_one_language_is_named_in_that_file() {
    let menus = TempMenus::copy_of_shipped();
    menus.replace("text/sw.toml", "help = \"Msaada\"\n", "");
    let problems = menus.problems();
    assert_problem(
        &problems,
        "text/sw.toml",
        "main.help",
        "missing: text/en.toml has this text",
    );
    assert_problem(
        &problems,
        SCREENS_FILE,
        "main.options[4].label",
        "not in text/sw.toml",
    );
}

#[test]
fn a_text_the_app_needs_is_required_in_both_languages() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace("text/en.toml", "more = \"More\"\n", "")
        .replace("text/sw.toml", "more = \"Zaidi\"\n", "");
    let problems = menus.problems();
    assert_problem(
        &problems,
        "text/en.toml",
        "nav.more",
        "the app uses this text",
    );
    assert_problem(
        &problems,
        "text/sw.toml",
        "nav.more",
        "the app uses this text",
    );
}

#[test]
fn different_placeholders_between_languages_are_named() {
    let menus = TempMenus::copy_of_shipped();
    menus.replace(
        "text/sw.toml",
        "title = \"Karibu {shop}\"",
        "title = \"Karibu\"",
    );
    assert_problem(
        &menus.problems(),
        "text/sw.toml",
        "main.title",
        "placeholders (none) differ from text/en.toml's {shop}",
    );
}

#[test]
fn an_unknown_placeholder_is_named_with_the_known_ones() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(
            "text/en.toml",
            "total = \"Total KES {total}\"",
            "total = \"Total KES {amount}\"",
        )
        .replace(
            "text/sw.toml",
            "total = \"Jumla KES {total}\"",
            "total = \"Jumla KES {amount}\"",
        )
        .replace(
            "text/en.toml",
            "title = \"Welcome to {shop}\"",
            "title = \"Welcome to {shopp}\"",
        )
        .replace(
            "text/sw.toml",
            "title = \"Karibu {shop}\"",
            "title = \"Karibu {shopp}\"",
        );
    let problems = menus.problems();
    assert_problem(
        &problems,
        "text/en.toml",
        "cart.total",
        "unknown placeholder {amount} (known here: {total})",
    );
    assert_problem(
        &problems,
        "text/sw.toml",
        "cart.total",
        "unknown placeholder {amount}",
    );
    assert_problem(
        &problems,
        "text/en.toml",
        "main.title",
        "unknown placeholder {shopp} (known here: {shop} {help_phone} {paybill} {till})",
    );
}

#[test]
fn a_text_nothing_uses_is_named_as_a_likely_typo() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .append("text/en.toml", "[extra]\ngreeting = \"Hello\"")
        .append("text/sw.toml", "[extra]\ngreeting = \"Habari\"");
    assert_problem(
        &menus.problems(),
        "text/en.toml",
        "extra.greeting",
        "not used",
    );
}

#[test]
fn characters_outside_gsm7_are_refused_naming_the_character() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace("text/en.toml", "shop = \"Shop\"", "shop = \"Shop…\"")
        .replace(
            CATALOG_FILE,
            "name = \"Earphones\"",
            "name = \"Earphones “Pro”\"",
        )
        .replace(SHOP_FILE, "name = \"Duka\"", "name = \"Duká\"");
    let problems = menus.problems();
    assert_problem(
        &problems,
        "text/en.toml",
        "main.shop",
        "'…' (U+2026) is not a GSM-7 character",
    );
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[2].products[3].name",
        "'“' (U+201C)",
    );
    assert_problem(&problems, SHOP_FILE, "name", "'á' (U+00E1)");
}

#[test]
fn a_curly_quote_in_a_product_name_is_named_with_its_code_and_no_made_up_length() {
    let menus = TempMenus::copy_of_shipped();
    menus.replace(
        CATALOG_FILE,
        "name = \"Earphones\"",
        "name = \"Earphones \u{2019}Pro\u{2019}\"",
    );
    let problems = menus.problems();
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[2].products[3].name",
        "'\u{2019}' (U+2019) is not a GSM-7 character",
    );
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[2].products[3].name",
        "use ' instead",
    );
    // Only that one finding: no screen is measured with a length GSM-7 cannot give it.
    assert_eq!(problems.len(), 1, "{}", list(&problems));
    assert!(!list(&problems).contains(&usize::MAX.to_string()));
}

#[test]
fn prices_must_be_positive_whole_shillings_within_the_mpesa_limit() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(CATALOG_FILE, "price = 230", "price = 230.5")
        .replace(CATALOG_FILE, "price = 190", "price = 0")
        .replace(CATALOG_FILE, "price = 360", "price = \"360\"")
        .replace(CATALOG_FILE, "price = 65", "price = 300000");
    let problems = menus.problems();
    let key = |p: usize| format!("categories[0].products[{p}].price");
    assert_problem(&problems, CATALOG_FILE, &key(0), "whole shillings");
    assert_problem(&problems, CATALOG_FILE, &key(1), "more than zero");
    assert_problem(&problems, CATALOG_FILE, &key(2), "not string");
    assert_problem(&problems, CATALOG_FILE, &key(4), "more than KES 250000");
}

#[test]
fn duplicate_ids_and_malformed_ids_are_named() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(
            CATALOG_FILE,
            "id = \"sugar-1kg\"",
            "id = \"maize-flour-2kg\"",
        )
        .replace(CATALOG_FILE, "id = \"household\"", "id = \"groceries\"")
        .replace(CATALOG_FILE, "id = \"rice-2kg\"", "id = \"Rice 2kg\"");
    let problems = menus.problems();
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[0].products[1].id",
        "duplicate product id",
    );
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[1].id",
        "duplicate category id",
    );
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[0].products[2].id",
        "ids are 1 to 24",
    );
}

#[test]
fn unknown_and_missing_keys_are_named() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(CATALOG_FILE, "price = 230", "prices = 230")
        .replace(CATALOG_FILE, "name.sw = \"Vyakula\"\n", "");
    let problems = menus.problems();
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[0].products[0].prices",
        "unknown key",
    );
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[0].products[0].price",
        "missing",
    );
    assert_problem(&problems, CATALOG_FILE, "categories[0].name.sw", "missing");
}

#[test]
fn a_category_name_must_be_given_in_each_language() {
    let menus = TempMenus::copy_of_shipped();
    menus.replace(
        CATALOG_FILE,
        "name.en = \"Groceries\"\nname.sw = \"Vyakula\"",
        "name = \"Groceries\"",
    );
    assert_problem(
        &menus.problems(),
        CATALOG_FILE,
        "categories[0].name",
        "a table with en and sw",
    );
}

#[test]
fn a_list_longer_than_97_options_is_refused() {
    let menus = TempMenus::copy_of_shipped();
    let products: String = (0..98)
        .map(|i| {
            format!(
                "[[categories.products]]\nid = \"extra-{i}\"\nname = \"Extra {i}\"\nprice = 10\n"
            )
        })
        .collect();
    menus.append(
        CATALOG_FILE,
        &format!("[[categories]]\nid = \"extras\"\nname.en = \"Extras\"\nname.sw = \"Ziada\"\n{products}"),
    );
    assert_problem(
        &menus.problems(),
        CATALOG_FILE,
        "categories[4].products",
        "98 products, at most 97",
    );
}

#[test]
fn an_empty_category_is_refused() {
    let menus = TempMenus::copy_of_shipped();
    menus.append(
        CATALOG_FILE,
        "[[categories]]\nid = \"empty\"\nname.en = \"Empty\"\nname.sw = \"Tupu\"",
    );
    assert_problem(
        &menus.problems(),
        CATALOG_FILE,
        "categories[4].products",
        "at least one product",
    );
}

#[test]
fn a_product_name_too_long_for_its_screens_is_named() {
    let menus = TempMenus::copy_of_shipped();
    let long =
        "Extra Large Family Size Maize Flour Premium Grade Sifted White Fortified With Vitamins \
                And Minerals For Ugali Chapati And Porridge From The Highlands Of Kenya 2kg";
    menus.replace(
        CATALOG_FILE,
        "name = \"Soda 500ml\"",
        &format!("name = \"{long}\""),
    );
    let problems = menus.problems();
    assert_problem(
        &problems,
        CATALOG_FILE,
        "categories[3].products[0].name",
        "the quantity screen in en can be",
    );
    // In lists the name is shortened, so the product list itself still fits.
    assert!(
        !problems.iter().any(|p| p.key == "categories[3]"),
        "{}",
        list(&problems)
    );
}

#[test]
fn a_translation_too_long_for_its_screen_is_named_once() {
    let menus = TempMenus::copy_of_shipped();
    menus.replace(
        "text/sw.toml",
        "continue = \"Endelea kununua\"",
        "continue = \"Endelea kununua bidhaa nyingine nyingi zaidi kutoka kwenye duka letu zuri \
         la mtandaoni kwa bei nafuu sana kila siku ya wiki\"",
    );
    let problems = menus.problems();
    assert_problem(
        &problems,
        "text/sw.toml",
        "added.title",
        "the added screen in sw can be",
    );
    assert_eq!(problems.len(), 1, "{}", list(&problems));
}

#[test]
fn a_help_text_too_long_with_a_hint_is_named_on_its_screen() {
    let menus = TempMenus::copy_of_shipped();
    menus.replace(
        "text/en.toml",
        "Account: order number.",
        "Account: order number. We are open every day from seven in the morning.",
    );
    assert_problem(
        &menus.problems(),
        SCREENS_FILE,
        "help",
        "the help screen in en can be",
    );
}

#[test]
fn an_sms_longer_than_one_segment_or_with_a_percent_sign_is_named() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(
            "text/sw.toml",
            "Asante!",
            "Asante sana kwa kununua nasi, karibu tena siku nyingine!",
        )
        .replace("text/en.toml", "wrong PIN", "wrong PIN (100% sure)")
        .replace(
            "text/sw.toml",
            "PIN si sahihi",
            "PIN si sahihi (100% hakika)",
        );
    let problems = menus.problems();
    assert_problem(
        &problems,
        "text/sw.toml",
        "sms.receipt",
        "more than one SMS (160)",
    );
    assert_problem(
        &problems,
        "text/en.toml",
        "reason.wrong_pin",
        "must not contain '%'",
    );
}

#[test]
fn a_shop_name_or_help_phone_too_long_is_named() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(
            SHOP_FILE,
            "name = \"Duka\"",
            "name = \"Duka la Mama Njeri na Wanawe\"",
        )
        .replace(
            SHOP_FILE,
            "help_phone = \"0700 384 012\"",
            "help_phone = \"+254 700 384 012 ext 5\"",
        );
    let problems = menus.problems();
    assert_problem(&problems, SHOP_FILE, "name", "at most 20");
    assert_problem(&problems, SHOP_FILE, "help_phone", "at most 16");
}

#[test]
fn every_problem_is_collected_and_listed_one_per_line_with_file_and_key() {
    let menus = TempMenus::copy_of_shipped();
    menus
        .replace(
            SCREENS_FILE,
            "target = \"orders\"",
            "target = \"order-list\"",
        )
        .replace(CATALOG_FILE, "price = 280", "price = -1")
        .replace("text/sw.toml", "back = \"Rudi\"", "back = \"R{x}\"");
    let error = Catalog::load(&menus.dir).unwrap_err();
    assert_eq!(error.problems.len(), 4, "{error}");
    let text = error.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with("have 4 problem(s):"), "{text}");
    assert!(
        lines.contains(
            &"  catalog.toml: categories[1].products[1].price: -1: a price must be more than zero"
        ),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  screens.toml: main.options[2].target: ")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  text/sw.toml: nav.back: unknown placeholder {x}")),
        "{text}"
    );
    assert!(
        lines.contains(
            &"  text/sw.toml: nav.back: placeholders {x} differ from text/en.toml's (none)"
        ),
        "{text}"
    );
}
