//! SMS: what Duka texts shoppers, and how it makes sure each text goes out once.
//!
//! - [`messages`] renders the texts (receipt, payment not completed, drop-off nudge) from `menus/`;
//! - [`outbox`] is the durable queue they wait in, and documents the at-most-once rules;
//! - [`ceiling`] caps the messages sent per day;
//! - [`worker`] delivers one message through [`africastalking`]'s client;
//! - [`delivery`] records the delivery reports Africa's Talking posts back, [`report_guard`] says who may;
//! - [`nudge`] decides when a dropped-off shopper gets a reminder.

pub mod africastalking;
pub mod ceiling;
pub mod delivery;
pub mod messages;
pub mod nudge;
pub mod outbox;
pub mod report_guard;
pub mod worker;

pub use africastalking::SmsError;
