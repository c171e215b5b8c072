//! Duka: a USSD and SMS shop.
//!
//! # A request, through the modules
//! 1. [`gateway::africastalking`] turns Africa's Talking's form into a gateway-neutral
//!    [`gateway::UssdRequest`], and renders the [`menu::Reply`] back as `CON …`/`END …`.
//! 2. [`session`] reads the session, cart and profile in one round trip, works out the new input
//!    from the cumulative text, and runs [`menu::engine`] (pure: no I/O, no clock).
//! 3. [`session`] commits the new state, and any order the step placed, in a second round trip,
//!    guarded so that two hops of one session can never both win.
//! 4. [`jobs`] picks up the work the commit scheduled (the STK push, the receipt SMS) after the
//!    reply has gone out.
//!
//! [`keys`] documents the Redis key layout and why each key has its hash tag.

pub mod gsm7;
pub mod keys;
pub mod menu;
pub mod money;
pub mod mpesa;
pub mod msisdn;
pub mod orders;
pub mod sandbox;
pub mod sms;
pub mod store;
