//! The integration tests: one binary that drives Duka over HTTP the way Africa's Talking and
//! Safaricom do, against a real `redis-server` the harness starts itself.

mod abuse;
mod cluster;
mod console;
mod demo;
mod dial;
mod durability;
mod find;
mod fixtures;
mod gateways;
mod helpers;
mod operations;
mod payments;
mod refunds;
mod robustness;
mod round_trips;
mod shops;
mod sms;
mod soak;
mod till;
mod ussd_menus;
