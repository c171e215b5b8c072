use super::*;

fn menus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("menus")
}

#[test]
fn the_shipped_menus_load_without_problems() {
    match Catalog::load(&menus_dir()) {
        Ok(catalog) => assert_eq!(catalog.shop_name(), "Duka"),
        Err(e) => panic!("{e}"),
    }
}
