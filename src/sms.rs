//! SMS: the receipt and notice messages, and the client that sends them.

pub mod africastalking;
pub mod messages;
pub mod outbox;
