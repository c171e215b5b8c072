//! Built-in stand-ins for the outside APIs, speaking their exact wire formats over real HTTP.
//!
//! `duka serve` starts them when no credentials are configured, so the demo pays and texts
//! without any account; the tests start them to drive every failure the real APIs have.

pub mod demo;
pub mod mpesa;
pub mod sms;

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many records of each kind (requests, pushes, callbacks, messages, reports) a sandbox
/// keeps by default. Tests look at a handful; a demo or a benchmark run can send hundreds of
/// thousands, and the sandbox must not grow without bound inside `duka serve`.
pub const MAX_RECORDS: usize = 2_000;

static RECORD_LIMIT: AtomicUsize = AtomicUsize::new(MAX_RECORDS);

/// How many records of each kind the sandboxes of this process keep.
pub fn record_limit() -> usize {
    RECORD_LIMIT.load(Ordering::Relaxed)
}

/// Keeps `limit` records of each kind from now on: `duka soak` draws its books from what the
/// sandboxes saw, so it keeps every record of its run (memory grows with the run, by design).
pub fn keep_records(limit: usize) {
    RECORD_LIMIT.store(limit.max(1), Ordering::Relaxed);
}

/// Appends a record, forgetting the oldest beyond [`record_limit`] (in batches, so the cost of
/// forgetting is spread out).
pub(crate) fn record<T>(records: &mut Vec<T>, item: T) {
    records.push(item);
    let limit = record_limit();
    if records.len() > limit + limit / 4 {
        records.drain(..records.len() - limit);
    }
}
