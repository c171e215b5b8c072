//! The integration tests: one binary that drives Duka over HTTP the way Africa's Talking and
//! Safaricom do, against a real `redis-server` the harness starts itself.

mod cluster;
mod demo;
mod dial;
mod fixtures;
mod gateways;
mod helpers;
mod operations;
mod payments;
mod robustness;
mod sms;
mod soak;
mod ussd_menus;
