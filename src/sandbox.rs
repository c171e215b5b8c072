//! Built-in stand-ins for the outside APIs, speaking their exact wire formats over real HTTP.
//!
//! `duka serve` starts them when no credentials are configured, so the demo pays and texts
//! without any account; the tests start them to drive every failure the real APIs have.

pub mod mpesa;
pub mod sms;
