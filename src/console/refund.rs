//! The console's refund button: an operator approves a refund of a flagged payment from the
//! "Needs attention" page, exactly as `duka refund ORDER_NO [--amount KES]` does.
//!
//! The button posts to `/console/orders/{n}/refund` (behind the sign-in and its CSRF check) and
//! goes through [`crate::operator::refund::approve`], the one approval path: the payment state
//! machine decides what is refundable and refuses a second refund of the same payment, so a
//! double click or a second operator cannot pay out twice.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::Operator;
use super::page::frame;
use crate::money::Kes;
use crate::operator::refund::{approve as approve_refund, ApproveError};
use crate::orders::{Order, OrderFlag};
use crate::startup::AppState;

/// The button's form: an optional amount in whole shillings (empty: all that is refundable).
#[derive(Debug, Deserialize)]
pub struct RefundForm {
    #[serde(default)]
    amount: String,
}

/// Whether the order has a payment an operator may want to give back.
pub fn offers_refund(order: &Order) -> bool {
    order.flags.iter().any(|flag| {
        matches!(
            flag,
            OrderFlag::Overpaid | OrderFlag::PaidAfterExpiry | OrderFlag::Underpaid
        )
    }) || order.payments.len() > 1
}

/// The refund form for one order, for the "what to do" column.
pub fn button(number: &str, csrf: &str) -> Markup {
    html! {
        form.refund method="post" action={(super::at("/console/orders/")) (number) "/refund"} {
            input type="hidden" name="csrf" value=(csrf);
            input type="number" name="amount" min="1" step="1" placeholder="all" size="6"
                aria-label="amount to refund, KES";
            " " button data-refund=(number) { "Refund" }
        }
    }
}

/// `POST /console/orders/{n}/refund`.
pub async fn approve(
    State(app): State<AppState>,
    Extension(operator): Extension<Operator>,
    Path(number): Path<String>,
    Form(form): Form<RefundForm>,
) -> Response {
    let amount = match form.amount.trim() {
        "" => None,
        raw => match Kes::parse(raw) {
            Ok(amount) => Some(amount),
            Err(e) => return outcome(&operator, &number, StatusCode::BAD_REQUEST, &e.to_string()),
        },
    };
    match approve_refund(&app.shop, &number, amount).await {
        Ok(refund) => {
            tracing::info!(order = %number, amount = %refund.amount, "refund approved in the console");
            let text = crate::operator::refund::render(&number, &refund);
            outcome(&operator, &number, StatusCode::OK, text.trim_end())
        }
        Err(e @ (ApproveError::NoOrder(_) | ApproveError::Refused(_))) => {
            outcome(&operator, &number, StatusCode::CONFLICT, &e.to_string())
        }
        Err(e) => {
            tracing::error!(order = %number, error = %e, "refund approval failed");
            outcome(
                &operator,
                &number,
                StatusCode::SERVICE_UNAVAILABLE,
                "the store could not be reached; nothing was approved, try again",
            )
        }
    }
}

fn outcome(operator: &Operator, number: &str, status: StatusCode, text: &str) -> Response {
    let page = frame(
        "Refund",
        Some(&operator.csrf),
        html! {
            h1 { "Refund, order " (number) }
            p id="refund-outcome" { (text) }
            p { a href={(super::at("/console/orders/")) (number)} { "Back to the order" } }
        },
    );
    (status, page).into_response()
}
