//! Every Redis key Duka writes, built in one place, with the reason for its hash tag.
//!
//! # Why shards, not one tag per phone
//! A Redis Cluster runs a multi-key command or script only when all its keys hash to one slot, and
//! Duka has three atomic steps that span "a shopper" and "an order":
//!
//! 1. a USSD hop (session, cart, profile; at checkout also the new order and its payment job);
//! 2. a payment (the order, the shopper's profile summary of it, the receipt SMS in the outbox);
//! 3. claiming background work (the due-job queue).
//!
//! So every key of a shopper *and* of that shopper's orders carries the same tag `{s<NN>}`, one of
//! [`SHARDS`] shard tags. A phone's shard is a hash of its digits; an order number is drawn at
//! random until its own hash lands on the same shard ([`shard_of`] of both agree), so an order
//! number alone (a paybill account typed by hand) finds its keys without any index. Each shard
//! has its own job queue, so no single slot carries all background traffic, and 64 shards spread
//! evenly over any realistic number of cluster masters.
//!
//! Two indexes live outside the shards, each in a slot of its own, because their lookup value is
//! chosen by someone else: Daraja's `CheckoutRequestID` and Africa's Talking's SMS `messageId`.
//! They are written before the value can arrive and are only ever read, so they need no atomicity
//! with anything.
//!
//! | key | holds | TTL |
//! |---|---|---|
//! | `P{sNN}:sess:<session id>` | USSD session state | `DUKA_SESSION_TTL_S`, default [`SESSION_TTL_MS`] |
//! | `P{sNN}:cart:<msisdn>` | the shopper's cart | [`CART_TTL_MS`] |
//! | `P{sNN}:prof:<msisdn>` | language, last orders' summaries, nudge date | [`PROFILE_TTL_MS`] |
//! | `P{sNN}:order:<number>` | order, attempts, payments, receipt SMS state | order TTL + [`ORDER_RETENTION_MS`] |
//! | `P{sNN}:audit:<number>` | raw payment callbacks of the order | as the order |
//! | `P{sNN}:msg:<id>` | an outbox SMS (`<order>.r` receipt, `<order>.f<n>` notice, `<msisdn>.n<day>` nudge) | [`ORDER_RETENTION_MS`] |
//! | `P{sNN}:stklock:<msisdn>` | "an STK push to this phone is pending" (one at a time) | [`STK_LOCK_TTL_MS`] |
//! | `P{sNN}:day:<YYYYMMDD>` | sorted set of the shard's orders placed that EAT day (score = placed ms), for the console | as the order |
//! | `P{sNN}:jobs` | sorted set of due background jobs (score = due time, ms) | none, on purpose (below) |
//! | `P{stk:<CheckoutRequestID>}` | the order number an STK push belongs to | [`ORDER_RETENTION_MS`] |
//! | `P{atsms:<messageId>}` | the outbox message a delivery report belongs to | [`ORDER_RETENTION_MS`] |
//! | `P{atsms-uncertain:<msisdn>}` | the last message to a phone whose send was ambiguous | one hour |
//! | `P{atsms-orphan:<messageId>}` | a delivery report for an id Duka never saw, raw | one week |
//! | `P{atsms-orphans:<msisdn>}` | the last reports with unknown ids for a phone | one hour |
//! | `P{console:<session id>}` | a signed-in operator console session (its CSRF token) | [`crate::console::auth::SESSION_TTL_MS`] |
//! | `P{funnel:<YYYYMMDD>}` | hash of the menu funnel's counters of an EAT day (`reached:<screen>`, `left:<screen>`) | [`crate::console::funnel::FUNNEL_TTL_MS`] |
//! | `P{c2b-review:<TransID>}` | a paybill confirmation for an unknown account, raw | [`ORDER_RETENTION_MS`] |
//!
//! `P` is the configurable key prefix (`duka` by default; tests use a random one).
//!
//! # Why the job queues have no TTL
//! A TTL on a queue would drop every job in it, due or not: an unsent receipt, the expiry of an
//! unpaid order. So the queues never expire; they are bounded by their members instead. A job is
//! one member per order or message (re-adding moves it, never duplicates it), and every job ends:
//! a push is retried for at most five minutes, an STK query at most [`MAX_QUERIES`] times, an
//! order expires once, an SMS is retried at most `MAX_ATTEMPTS` times. The one open-ended case
//! is an SMS paused because Africa's Talking refuses the account (balance, sender id): it is
//! tried every five minutes until the account is fixed, and `duka_sms_total{outcome="paused"}`
//! rising is the alert for it. A queue therefore holds at most about one job per live order
//! and per unsent message; `ZCARD P{sNN}:jobs` shows it.
//!
//! [`MAX_QUERIES`]: crate::payments::worker::MAX_QUERIES

use crate::msisdn::Msisdn;

/// How many shard tags the keyspace is split into. Changing it moves every key: it is a constant.
pub const SHARDS: u16 = 64;

/// A USSD session outlives the telcos' 180 s limit by a margin, then disappears. The default of
/// `DUKA_SESSION_TTL_S` ([`crate::shop::ShopSettings::session_ttl_ms`] is the one in force).
pub const SESSION_TTL_MS: u64 = 300_000;
/// A cart waits this long for its shopper to come back.
pub const CART_TTL_MS: u64 = 12 * 3_600_000;
/// The profile (language, order summaries) is kept this long after the last visit.
pub const PROFILE_TTL_MS: u64 = 180 * 24 * 3_600_000;
/// Orders, paid or not, are kept this long after they stop being payable, for support and audit.
pub const ORDER_RETENTION_MS: u64 = 90 * 24 * 3_600_000;

/// How long a phone counts as having an STK prompt pending, unless its result comes first.
pub const STK_LOCK_TTL_MS: u64 = 90_000;

/// CRC16/XMODEM, the checksum Redis Cluster uses to place keys in slots.
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// [`crc16`] a byte at a time: the bit-by-bit loop for each of the 256 values, at compile time.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The Redis Cluster slot of a key, honouring `{hash tags}`.
pub fn cluster_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(hashed) % 16384
}

/// The shard of a phone number or an order number.
pub fn shard_of(id: &str) -> u16 {
    crc16(id.as_bytes()) % SHARDS
}

/// Builds keys under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `PREFIX{sNN}:KIND:ID` (`PREFIX{sNN}:KIND` for an empty id), written by hand: a hop
    /// makes four keys, and `format!` made them a tenth of its instructions.
    fn sharded(&self, shard: u16, kind: &str, id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + id.len() + 8);
        key.push_str(&self.prefix);
        key.push_str("{s");
        if shard < 100 {
            key.push(char::from(b'0' + (shard / 10) as u8));
            key.push(char::from(b'0' + (shard % 10) as u8));
        } else {
            key.push_str(&shard.to_string());
        }
        key.push_str("}:");
        key.push_str(kind);
        if !id.is_empty() {
            key.push(':');
            key.push_str(id);
        }
        key
    }

    pub fn session(&self, msisdn: &Msisdn, session_id: &str) -> String {
        self.sharded(shard_of(msisdn.digits()), "sess", session_id)
    }

    pub fn cart(&self, msisdn: &Msisdn) -> String {
        self.sharded(shard_of(msisdn.digits()), "cart", msisdn.digits())
    }

    pub fn profile(&self, msisdn: &Msisdn) -> String {
        self.sharded(shard_of(msisdn.digits()), "prof", msisdn.digits())
    }

    pub fn order(&self, order_number: &str) -> String {
        self.sharded(shard_of(order_number), "order", order_number)
    }

    pub fn audit(&self, order_number: &str) -> String {
        self.sharded(shard_of(order_number), "audit", order_number)
    }

    /// An outbox message, in the shard of its owner (see [`crate::jobs::message_owner`]).
    pub fn message(&self, message_id: &str) -> String {
        self.sharded(
            shard_of(crate::jobs::message_owner(message_id)),
            "msg",
            message_id,
        )
    }

    /// The marker of a pending STK push to a phone.
    pub fn stk_lock(&self, payer: &Msisdn) -> String {
        self.sharded(shard_of(payer.digits()), "stklock", payer.digits())
    }

    /// The orders of a shard placed on one EAT day (`YYYYMMDD`), for the operator console.
    pub fn day_orders(&self, shard: u16, day: &str) -> String {
        self.sharded(shard, "day", day)
    }

    /// The due-job queue of a shard.
    pub fn jobs(&self, shard: u16) -> String {
        self.sharded(shard, "jobs", "")
    }

    pub fn stk_index(&self, checkout_request_id: &str) -> String {
        format!("{}{{stk:{checkout_request_id}}}", self.prefix)
    }

    pub fn sms_index(&self, message_id: &str) -> String {
        format!("{}{{atsms:{message_id}}}", self.prefix)
    }

    pub fn sms_uncertain(&self, msisdn: &Msisdn) -> String {
        format!("{}{{atsms-uncertain:{}}}", self.prefix, msisdn.digits())
    }

    pub fn c2b_review(&self, trans_id: &str) -> String {
        format!("{}{{c2b-review:{trans_id}}}", self.prefix)
    }

    pub fn sms_orphans_of(&self, msisdn: &Msisdn) -> String {
        format!("{}{{atsms-orphans:{}}}", self.prefix, msisdn.digits())
    }

    /// The menu funnel's counters of one EAT day (`YYYYMMDD`).
    pub fn funnel(&self, day: &str) -> String {
        format!("{}{{funnel:{day}}}", self.prefix)
    }

    /// A signed-in operator console session.
    pub fn console_session(&self, session_id: &str) -> String {
        format!("{}{{console:{session_id}}}", self.prefix)
    }

    pub fn sms_orphan(&self, message_id: &str) -> String {
        format!("{}{{atsms-orphan:{message_id}}}", self.prefix)
    }

    /// SMS claimed for sending on EAT day `day` (the shop's daily ceiling), one slot.
    pub fn sms_day_count(&self, day: i64) -> String {
        format!("{}{{sms-day}}:{day}", self.prefix)
    }

    /// When `payer` was last sent STK pushes (prompt-bombing limit), in the payer's shard.
    pub fn push_history(&self, payer: &Msisdn) -> String {
        self.sharded(shard_of(payer.digits()), "pushes", payer.digits())
    }

    /// An operator's lookup of a payment by its receipt (`duka mpesa find`), in the receipt's
    /// shard.
    pub fn lookup(&self, receipt: &str) -> String {
        self.sharded(shard_of(receipt), "find", receipt)
    }

    /// The order a paybill payment named in its C2B validation, by receipt, in the receipt's
    /// shard: what lets `duka mpesa find` place a payment whose confirmation was lost.
    pub fn c2b_seen(&self, receipt: &str) -> String {
        self.sharded(shard_of(receipt), "seen", receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_redis_cluster_reference_value() {
        // The value the Redis Cluster specification gives for "123456789".
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn the_table_driven_crc16_is_the_bitwise_one() {
        fn bitwise(bytes: &[u8]) -> u16 {
            let mut crc: u16 = 0;
            for &byte in bytes {
                crc ^= u16::from(byte) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        let every_byte: Vec<u8> = (0..=255).collect();
        for len in 0..every_byte.len() {
            assert_eq!(crc16(&every_byte[..len]), bitwise(&every_byte[..len]));
        }
        assert_eq!(crc16(b"254712345678"), bitwise(b"254712345678"));
    }

    #[test]
    fn keys_are_spelled_prefix_shard_kind_id() {
        let keys = Keys::new("duka:");
        let msisdn = Msisdn::parse("0712345678").unwrap();
        let shard = shard_of(msisdn.digits());
        assert_eq!(
            keys.session(&msisdn, "ATUid_1"),
            format!("duka:{{s{shard:02}}}:sess:ATUid_1")
        );
        assert_eq!(
            keys.cart(&msisdn),
            format!("duka:{{s{shard:02}}}:cart:254712345678")
        );
        assert_eq!(keys.jobs(7), "duka:{s07}:jobs");
        assert_eq!(keys.day_orders(63, "20261204"), "duka:{s63}:day:20261204");
        assert_eq!(keys.day_orders(100, "d"), "duka:{s100}:day:d");
    }

    #[test]
    fn slots_honour_hash_tags_like_redis_does() {
        assert_eq!(cluster_slot("foo"), 12182);
        assert_eq!(
            cluster_slot("{user1000}.following"),
            cluster_slot("user1000")
        );
        assert_eq!(cluster_slot("foo{}{bar}"), cluster_slot("foo{}{bar}"));
        assert_eq!(cluster_slot("foo{{bar}}zap"), cluster_slot("{bar"));
    }

    #[test]
    fn a_shoppers_keys_share_one_slot() {
        let keys = Keys::new("duka");
        let msisdn = Msisdn::parse("0712345678").unwrap();
        let slot = cluster_slot(&keys.session(&msisdn, "ATUid_1"));
        assert_eq!(cluster_slot(&keys.cart(&msisdn)), slot);
        assert_eq!(cluster_slot(&keys.profile(&msisdn)), slot);
        assert_eq!(cluster_slot(&keys.jobs(shard_of(msisdn.digits()))), slot);
    }

    #[test]
    fn an_orders_audit_receipt_notices_and_lock_share_the_shoppers_slot() {
        let keys = Keys::new("duka");
        let msisdn = Msisdn::parse("0712345678").unwrap();
        let order_number = (0..)
            .map(|i| format!("T{i}"))
            .find(|n| shard_of(n) == shard_of(msisdn.digits()))
            .unwrap();
        let slot = cluster_slot(&keys.profile(&msisdn));
        for key in [
            keys.order(&order_number),
            keys.audit(&order_number),
            keys.message(&format!("{order_number}.r")),
            keys.message(&format!("{order_number}.f2")),
            keys.message(&format!("{}.n20000", msisdn.digits())),
            keys.stk_lock(&msisdn),
            keys.jobs(shard_of(&order_number)),
        ] {
            assert_eq!(cluster_slot(&key), slot, "{key}");
        }
    }

    #[test]
    fn the_prefix_does_not_move_a_shard_to_another_slot() {
        let msisdn = Msisdn::parse("0712345678").unwrap();
        assert_eq!(
            cluster_slot(&Keys::new("duka").cart(&msisdn)),
            cluster_slot(&Keys::new("t0123456789abcdef").cart(&msisdn))
        );
    }

    #[test]
    fn the_shards_have_slots_of_their_own_spread_over_an_even_three_master_split() {
        let keys = Keys::new("duka");
        let slots: std::collections::BTreeSet<u16> =
            (0..SHARDS).map(|s| cluster_slot(&keys.jobs(s))).collect();
        assert_eq!(slots.len(), usize::from(SHARDS));
        // `redis-cli --cluster create` with three masters: 0-5460, 5461-10922, 10923-16383.
        let mut per_master = [0; 3];
        for slot in slots {
            per_master[match slot {
                0..=5460 => 0,
                5461..=10922 => 1,
                _ => 2,
            }] += 1;
        }
        assert_eq!(per_master, [23, 20, 21]);
    }
}
