//! Time as Daraja sees it: an injectable [`Clock`], and Nairobi-time timestamps.
//!
//! Daraja's `Timestamp` and `TransactionDate` are `YYYYMMDDHHmmss` in East Africa Time (UTC+3,
//! no daylight saving). Containers usually run in UTC, and a UTC timestamp gets `400.002.02
//! "Invalid Timestamp"` (reported), so the offset is applied here as a fixed +03:00 and the host's
//! zone is never consulted.
//!
//! The client and the sandbox both take an `Arc<dyn Clock>`, so a test can share one
//! [`ManualClock`] between them and move time forward without sleeping.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Moves the clock forward; a duration too large for chrono leaves it where it is.
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(later) = chrono::Duration::from_std(by)
            .ok()
            .and_then(|by| now.checked_add_signed(by))
        {
            *now = later;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// East Africa Time, UTC+3 all year. The offset is checked when the crate compiles.
pub const EAT: FixedOffset = match FixedOffset::east_opt(3 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+3 is a valid offset"),
};

/// Daraja's `YYYYMMDDHHmmss` for an instant, in Nairobi time.
pub fn eat_timestamp(at: DateTime<Utc>) -> String {
    at.with_timezone(&EAT).format("%Y%m%d%H%M%S").to_string()
}

/// Reads a Daraja `YYYYMMDDHHmmss` (Nairobi time) back into an instant; `None` unless it is
/// exactly 14 digits naming a real date and time.
pub fn parse_eat_timestamp(raw: &str) -> Option<DateTime<FixedOffset>> {
    if raw.len() != 14 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(raw, "%Y%m%d%H%M%S").ok()?;
    EAT.from_local_datetime(&naive).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    #[test]
    fn the_golden_instant_is_written_in_nairobi_time() {
        assert_eq!(eat_timestamp(utc("2026-11-24T11:30:05Z")), "20261124143005");
    }

    #[test]
    fn late_evening_utc_is_already_tomorrow_in_nairobi() {
        // This is the case a host-zone or UTC timestamp gets wrong by a whole day.
        assert_eq!(eat_timestamp(utc("2026-12-31T22:00:00Z")), "20270101010000");
    }

    #[test]
    fn the_timestamp_does_not_depend_on_the_zone_the_instant_was_written_in() {
        let in_utc = utc("2026-11-24T11:30:05Z");
        let in_new_york: DateTime<Utc> = "2026-11-24T06:30:05-05:00".parse().unwrap();
        assert_eq!(eat_timestamp(in_utc), eat_timestamp(in_new_york));
    }

    #[test]
    fn a_timestamp_reads_back_as_the_same_instant() {
        let parsed = parse_eat_timestamp("20261124143005").unwrap();
        assert_eq!(parsed.with_timezone(&Utc), utc("2026-11-24T11:30:05Z"));
        assert_eq!(parse_eat_timestamp("2026112414300"), None);
        assert_eq!(parse_eat_timestamp("20261324143005"), None);
        assert_eq!(parse_eat_timestamp("2026112414300a"), None);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(utc("2026-11-24T11:30:05Z"));
        clock.advance(std::time::Duration::from_secs(60));
        assert_eq!(clock.now(), utc("2026-11-24T11:31:05Z"));
        clock.set(utc("2026-01-01T00:00:00Z"));
        assert_eq!(clock.now(), utc("2026-01-01T00:00:00Z"));
    }
}
