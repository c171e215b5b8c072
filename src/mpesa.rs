//! Safaricom Daraja (M-Pesa): our own thin client, and the wire types of what Daraja sends us.
//!
//! # What this module owns
//! - [`client`]: [`DarajaClient`], the calls Duka makes: OAuth token, STK push (M-Pesa Express to
//!   the paybill), STK query, C2B URL registration.
//! - [`error`]: [`MpesaError`], sorted by the one question a payment caller must answer after a
//!   failed push: *can the prompt be on the phone?* (see [`Disposition`]).
//! - [`callbacks`]: parsers for what Daraja POSTs to us ([`StkCallback`], [`C2bRequest`]), the
//!   reply bodies it expects, and [`result_code_meaning`].
//! - [`urls`]: [`check_callback_url`], Daraja's rules for the URLs it will call.
//! - [`clock`]: the injectable [`Clock`] and the EAT timestamp every request carries.
//!
//! # What it deliberately does not do
//! Order and attempt state, deciding to retry, the HTTP routes that receive callbacks, and
//! reconciliation all belong to the payment domain built on top of this. The stand-in server that
//! speaks this protocol for the demo and the tests is [`crate::sandbox::mpesa`].
//!
//! # Protocol quirks, in one place
//! - Types change from message to message: `expires_in` is a string; `ResultCode` is a string in
//!   the push reply and the query but a number in the callback; the callback's `Amount` is `450`
//!   or `450.00`; C2B's `TransAmount` is a string. Every parser here accepts both spellings.
//! - The push `Timestamp` is Nairobi time (UTC+3, no DST), never the host's zone.
//! - C2B registration answers `OriginatorCoversationID`, misspelled by Safaricom.
//! - A query before the shopper answers is an *error envelope* (`500.001.1001`), which
//!   [`DarajaClient::stk_query`] turns into [`StkQueryOutcome::Pending`].
//! - Daraja signs nothing; callback URLs must not contain "mpesa" or "safaricom".
//! - Real `CheckoutRequestID`s end with the payer's number without `254`
//!   (`ws_CO_…417712345678`): treat the id as personal data in logs kept for long.

pub mod callbacks;
pub mod client;
pub mod clock;
pub mod error;
pub mod refunds;
pub mod status;
pub mod urls;
pub mod wire;

pub use callbacks::{
    result_code_meaning, C2bConfirmationAck, C2bRejectCode, C2bRequest, C2bValidationReply,
    CallbackError, OpaqueMsisdn, ResultKind, StkCallback, StkCallbackAck, StkPaymentMetadata,
};
pub use client::{
    C2bUrlsRegistered, DarajaClient, DarajaConfig, StkPush, StkPushAccepted, StkQueryOutcome,
    StkQueryResult,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{DarajaError, Disposition, ErrorCode, MpesaError, PushRefusal};
pub use urls::{check_callback_url, CallbackUrlError};
pub use wire::Endpoint;
