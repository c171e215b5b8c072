//! The gateway-neutral USSD entry point: one hop in, one reply out, whatever the gateway.
//!
//! Adapters under [`crate::gateway`] only parse and render. Everything a hop means beyond its
//! wire format happens here, once for every gateway: the request's span (session id, masked
//! phone, gateway), the recorder (`duka serve --record`), the hop metrics, the "order placed"
//! log line, and the apology when the hop fails inside Duka. The apology is a normal reply
//! (`end` with a short text in the shopper's language), because on every gateway an HTTP error
//! ends the shopper's session with a cryptic network message; the failure itself is logged here
//! with its whole cause chain.
//!
//! [`session_ended`] is the neutral end-of-session event: every gateway that reports one (a
//! separate notification, a `Release`, a cleanup request) feeds the drop-off nudge and the
//! recorder through it.

use std::time::Instant;

use tracing::Instrument as _;

use crate::error::error_chain;
use crate::gateway::{SessionEnd, UssdRequest};
use crate::menu::Reply;
use crate::startup::AppState;

/// Answers one hop: the next screen, or an apology if Duka could not work it out.
pub async fn answer(app: &AppState, req: &UssdRequest) -> Reply {
    // A shop of `DUKA_SHOPS` may share the default shop's routes, told apart by service code.
    let app = app.for_service_code(&req.service_code);
    let span = tracing::info_span!(
        "ussd",
        gateway = req.gateway,
        ussd.session_id = %req.session_id,
        msisdn.masked = %req.msisdn.masked(),
    );
    answer_in_span(app, req).instrument(span).await
}

async fn answer_in_span(app: &AppState, req: &UssdRequest) -> Reply {
    let started = Instant::now();
    if let Some(recorder) = &app.recorder {
        recorder.before_hop(req).await;
    }
    let outcome = crate::session::handle_hop(&app.shop, req).await;
    if let Some(recorder) = &app.recorder {
        recorder.after_hop(req, outcome.as_ref().ok());
    }
    app.metrics.observe_hop(started.elapsed());
    match outcome {
        Ok(result) => {
            let outcome = if result.repeated { "repeated" } else { "ok" };
            if !result.repeated {
                let now_ms = app.shop.clock.now_ms();
                let from = result.from_screen.as_deref();
                app.funnel.hop(&app.metrics, now_ms, from, &result.screen);
            }
            app.metrics.inc(
                "duka_ussd_hops_total",
                &[("gateway", req.gateway), ("outcome", outcome)],
            );
            if let Some(order) = &result.placed_order {
                tracing::info!(order.number = %order, "order placed");
            }
            result.reply
        }
        Err(error) => {
            app.metrics.inc(
                "duka_ussd_hops_total",
                &[("gateway", req.gateway), ("outcome", "apology")],
            );
            tracing::error!(
                error.message = %error,
                error.cause_chain = %error_chain(&error),
                "USSD hop failed; answered with an apology"
            );
            crate::menu::engine::apology(&app.shop.catalog(), error.lang())
        }
    }
}

/// The session is over on the phone: nudge a shopper who dropped off with a full cart, and
/// finish the session's recording.
pub async fn session_ended(app: &AppState, gateway: &'static str, end: &SessionEnd) {
    let span = tracing::info_span!("ussd_session_end", gateway, ussd.session_id = %end.session_id);
    async {
        match crate::sms::nudge::nudge_after_drop_off(&app.shop, end).await {
            Ok(true) => {
                app.metrics.inc("duka_sms_nudges_total", &[]);
                tracing::info!(msisdn.masked = %end.msisdn.masked(), "shopper dropped off with a full cart; nudge queued");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error.message = %e, "could not queue a drop-off nudge"),
        }
        if let Some(recorder) = &app.recorder {
            recorder.session_ended(end);
        }
    }
    .instrument(span)
    .await;
}
