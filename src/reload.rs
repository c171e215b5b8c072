//! Menus reloaded without a restart: `kill -HUP` a running `duka serve` and it reads its menus
//! folder again.
//!
//! The new menus go through the same check as start-up and `duka check`; menus with a problem
//! are refused, their findings logged, and the menus in force are kept, so a typo in a file
//! never takes the shop down. Sessions already open continue on the new menus at their next
//! hop (products and categories are remembered by id, not by position).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::shop::Shop;

/// Reloads the menus in `dir` into `shop`, and says so in the log either way.
/// Returns whether the new menus are in force.
pub fn reload_menus(shop: &Shop, dir: &Path) -> bool {
    match shop.reload_catalog(dir) {
        Ok(()) => {
            tracing::info!(menus.dir = %dir.display(), "menus reloaded");
            true
        }
        Err(e) => {
            tracing::error!(
                menus.dir = %dir.display(),
                "menus NOT reloaded, the menus loaded before stay in force: {e}"
            );
            false
        }
    }
}

/// Reloads the menus at every `SIGHUP` until `stop` turns true.
///
/// # Errors
/// The signal handler cannot be installed (then nothing is spawned).
#[cfg(unix)]
pub fn reload_on_hangup(
    shop: Arc<Shop>,
    dir: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed here, before returning, so a SIGHUP sent right after start-up is not lost.
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                received = hangups.recv() => {
                    if received.is_none() {
                        break;
                    }
                    tracing::info!(menus.dir = %dir.display(), "SIGHUP: reloading the menus");
                    let shop = shop.clone();
                    let dir = dir.clone();
                    // Reading and checking files is blocking work.
                    let _ = tokio::task::spawn_blocking(move || reload_menus(&shop, &dir)).await;
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;
    use crate::menu::Catalog;
    use crate::shop::{Clock, ShopSettings};
    use crate::store::memory::MemoryStore;

    const MENUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/menus");

    /// A copy of the shipped menus in a fresh folder, to edit.
    fn menus_copy() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "duka-reload-{}-{}",
            std::process::id(),
            crate::testing::random_prefix()
        ));
        crate::testing::copy_dir(Path::new(MENUS), &dir).unwrap();
        dir
    }

    fn shop(dir: &Path) -> Shop {
        Shop::new(
            Arc::new(MemoryStore::new()),
            Keys::new("t"),
            Arc::new(Catalog::load(dir).unwrap()),
            ShopSettings {
                paybill: "174379".into(),
                order_ttl_ms: 86_400_000,
                query_after_ms: 60_000,
                session_ttl_ms: 300_000,
                resend_window_ms: crate::session::RESEND_WINDOW_MS,
                session_cache: crate::session::cache::DEFAULT_CAPACITY,
                push_limits: crate::limits::Limits::default(),
                till: None,
                order_first: Vec::new(),
            },
            Clock::system(),
            Some(1),
        )
    }

    fn rename_shop(dir: &Path, name: &str) {
        let path = dir.join("shop.toml");
        let raw = std::fs::read_to_string(&path).unwrap();
        let old = shop_name_line(&raw);
        std::fs::write(&path, raw.replace(old, &format!("name = \"{name}\""))).unwrap();
    }

    fn shop_name_line(raw: &str) -> &str {
        raw.lines()
            .find(|line| line.trim_start().starts_with("name"))
            .expect("shop.toml names the shop")
    }

    #[test]
    fn a_valid_change_is_put_in_force_and_a_broken_one_is_refused() {
        let dir = menus_copy();
        let shop = shop(&dir);
        let before = shop.catalog().shop_name().to_owned();
        assert_ne!(before, "Reloaded Duka");

        rename_shop(&dir, "Reloaded Duka");
        assert!(reload_menus(&shop, &dir));
        assert_eq!(shop.catalog().shop_name(), "Reloaded Duka");

        // A screen that leads nowhere: the check refuses it, the renamed shop stays.
        let screens = dir.join("screens.toml");
        let raw = std::fs::read_to_string(&screens).unwrap();
        std::fs::write(
            &screens,
            raw.replace("target = \"help\"", "target = \"nowhere\""),
        )
        .unwrap();
        assert!(Catalog::load(&dir).is_err(), "the edit breaks the menus");
        rename_shop(&dir, "Broken Duka");
        assert!(!reload_menus(&shop, &dir));
        assert_eq!(shop.catalog().shop_name(), "Reloaded Duka");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn sighup_reloads_the_menus_until_stopped() {
        let dir = menus_copy();
        let shop = Arc::new(shop(&dir));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = reload_on_hangup(shop.clone(), dir.clone(), stop_rx).unwrap();

        rename_shop(&dir, "Hung Up Duka");
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while shop.catalog().shop_name() != "Hung Up Duka" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "SIGHUP did not reload the menus"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
