//! The short chaos soak: `duka soak` with 150 shoppers, one `kill -9` of Duka and one of Redis
//! (restarted from its AOF), Daraja and SMS outages; it must settle and its books must balance.

use std::process::Command;

#[test]
fn a_short_soak_keeps_the_books_through_kills_and_outages() {
    let dir =
        std::env::temp_dir().join(format!("duka-soak-test-{}", duka::testing::random_prefix()));
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_duka"))
        .args([
            "soak",
            "--shoppers",
            "150",
            "--concurrency",
            "32",
            "--seed",
            "14",
        ])
        .args([
            "--duka-kills",
            "1",
            "--redis-kills",
            "1",
            "--settle-s",
            "60",
        ])
        .arg("--dir")
        .arg(&dir)
        .env("DUKA_MENUS", concat!(env!("CARGO_MANIFEST_DIR"), "/menus"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    for line in [
        "duka serve killed -9, back after 1 s down",
        "redis-server killed -9, restarted from its AOF",
        "settled: yes",
        ": balanced",
        "orders paid twice without a flag: 0",
        "receipts sent twice: 0",
        "without a receipt: 0",
        "refund-flagged orders: ",
        "books: OK",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    // The soak really moved money and really killed something under the shoppers.
    let placed = stdout
        .split(" orders placed")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(placed >= 140, "{stdout}");
    assert!(!stdout.contains(" 0 redials"), "{stdout}");
    assert!(
        started.elapsed().as_secs() < 120,
        "took {:?}",
        started.elapsed()
    );
}
