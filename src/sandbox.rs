//! Built-in stand-ins for the outside APIs, speaking their exact wire formats over real HTTP.
//!
//! `duka serve` starts them when no credentials are configured, so the demo pays and texts
//! without any account; the tests start them to drive every failure the real APIs have.

pub mod demo;
pub mod mpesa;
pub mod sms;

/// How many records of each kind (requests, pushes, callbacks, messages, reports) a sandbox
/// keeps. Tests look at a handful; a demo or a benchmark run can send hundreds of thousands, and
/// the sandbox must not grow without bound inside `duka serve`.
pub const MAX_RECORDS: usize = 2_000;

/// Appends a record, forgetting the oldest beyond [`MAX_RECORDS`] (in batches, so the cost of
/// forgetting is spread out).
pub(crate) fn record<T>(records: &mut Vec<T>, item: T) {
    records.push(item);
    if records.len() > MAX_RECORDS + MAX_RECORDS / 4 {
        records.drain(..records.len() - MAX_RECORDS);
    }
}
