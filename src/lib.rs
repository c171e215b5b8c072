//! Duka: a USSD and SMS shop.
//!
//! # A request, through the modules
//! 0. [`bounds`] bounds every request in size and time, and logs the failed ones.
//! 1. An adapter in [`gateway`] (one file per aggregator: Africa's Talking, Hubtel, …) turns its
//!    wire request into a gateway-neutral [`gateway::UssdRequest`]; [`ussd::answer`] owns the hop
//!    (span, recording, metrics, the apology), and the adapter renders the [`menu::Reply`] back
//!    in its wire format.
//! 2. [`session`] reads the session, cart and profile in one round trip (or takes them from the
//!    node's cache of what it last wrote), works out the new input from the cumulative text, and
//!    runs [`menu::engine`] (pure: no I/O, no clock).
//! 3. [`session`] commits the new state, and any order the step placed, in one more round trip,
//!    guarded so that two hops of one session can never both win.
//! 4. [`jobs`] picks up the work the commit scheduled (the STK push, the receipt SMS) after the
//!    reply has gone out.
//!
//! Money arrives through [`payments::callbacks`] (Safaricom's STK and paybill callbacks), where
//! [`payments`] decides what each event does to the order, and leaves through [`sms`]'s outbox.
//!
//! [`keys`] documents the Redis key layout and why each key has its hash tag; [`store`] the
//! four primitives everything is built from. The tools for people are [`operator`] (`duka
//! order`), [`fixtures`] (`duka replay`, `serve --record`), [`dial`] (`duka dial`) and [`bench`]
//! (`duka bench`).

// Domain types, parsed at the edge.
pub mod money;
pub mod msisdn;
pub mod orders;
// The menus and the pure engine.
pub mod gsm7;
pub mod menu;
// Storage.
pub mod keys;
pub mod store;
// The request path.
pub mod gateway;
pub mod reload;
pub mod session;
pub mod shop;
pub mod shops;
pub mod ussd;
// Background work, payments and SMS.
pub mod background;
pub mod jobs;
pub mod mpesa;
pub mod payments;
pub mod sandbox;
pub mod sms;
// The server.
pub mod bench;
pub mod bounds;
pub mod config;
pub mod console;
pub mod dial;
pub mod durability;
pub mod error;
pub mod fixtures;
pub mod graph;
pub mod limits;
pub mod metrics;
pub mod operator;
pub mod serve;
pub mod soak;
pub mod startup;
pub mod telemetry;
pub mod testing;
