//! One USSD hop, from a gateway-neutral request to the reply, in one round trip in steady state.
//!
//! 1. The session, the cart and the profile (they share the shopper's shard) come from this
//!    node's [`cache`] when this node served the session's previous hop: no read at all.
//!    Otherwise one `MGET` reads them (a cold hop: another node served the previous one, this
//!    node restarted, or the entry was dropped).
//! 2. [`plan`] works out what the shopper typed: the new part of a cumulative text, every input
//!    of a deep dial, or nothing at all for a retransmission (answered from the stored reply,
//!    with no write and no side effect repeated).
//! 3. [`crate::menu::engine`] computes the next screen and state, purely.
//! 4. One guarded commit ([`crate::store::Store::commit_reading`]) writes the session, the cart,
//!    the profile and, at checkout, the order and its jobs. The guards hold the three values as
//!    read or cached, so when two hops of one session race (on one node or two), or the cache
//!    is stale, the commit writes nothing and returns the current values, and the hop is
//!    re-planned against them without another read: usually it is then a retransmission.
//!
//! A guard that holds means the store holds exactly the bytes the plan was made from, so a hop
//! planned from the cache does what a hop planned from a read would have done. The one thing a
//! guard cannot check is a retransmission, which writes nothing: planned from the cache, it
//! reads (one round trip, as it always cost) and is planned again from what it read, so it gets
//! the reply the store holds, whichever node wrote it.
//!
//! The session record keeps the last text and reply so that retransmissions cost one read.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::gateway::{HopInput, UssdRequest};
use crate::jobs::{Job, JobQueue};
use crate::keys::{shard_of, CART_TTL_MS, ORDER_RETENTION_MS, PROFILE_TTL_MS};
use crate::menu::{self, Cart, Effect, Hop, Lang, MenuState, Profile, Reply};
use crate::orders::Order;
use crate::shop::Shop;
use crate::store::{to_json, Batch, Guarded, StoreError};

pub mod cache;

use cache::{Known, Records};

/// How many times a hop re-reads and re-plans after losing a race before giving up.
const MAX_CONFLICTS: usize = 5;

/// A session as stored between hops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The cumulative input text this session has processed (empty before any input).
    #[serde(rename = "t")]
    pub text: String,
    /// The reply sent for that text: a retransmission gets it again.
    #[serde(rename = "r")]
    pub reply: Reply,
    #[serde(rename = "m")]
    pub menu: MenuState,
    /// Hops answered, retransmissions excluded.
    #[serde(rename = "h")]
    pub hops: u32,
    /// The gateway's number for the last hop, when it sends one (Hubtel's `Sequence`).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub hop_id: Option<String>,
    /// When the last hop was answered (shop clock, ms): a per-hop gateway's same input again
    /// within [`RESEND_WINDOW_MS`] is a retransmission.
    #[serde(rename = "a", default)]
    pub at_ms: i64,
    /// Until when the prompt-bombing limit holds STK pushes to this phone, as read at the
    /// session's last read of the store (its first hop, or a hop on another node): a cached
    /// hop reads nothing, so checkout learns the limit from here. The push job enforces it.
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub push_blocked_until_ms: Option<i64>,
}

impl SessionRecord {
    /// The record as stored: JSON, written into a buffer the size of a typical record (a few
    /// hundred bytes, most of it the reply), so that it is not regrown on every hop.
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(512);
        serde_json::to_writer(&mut bytes, self).expect("a session record always serialises");
        bytes
    }
}

/// How soon the same input again, on a per-hop gateway that numbers no hops, is taken for the
/// gateway resending the hop rather than the shopper typing it twice.
///
/// A person cannot read a screen, type and have the network carry the answer in under about
/// two seconds; a gateway that lost our answer resends within its own timeout of a few. Taking
/// a real second input for a resend only shows the same screen again (the shopper types it
/// once more); taking a resend for a second input could add a cart line twice. So the window
/// leans long. `DUKA_USSD_RESEND_WINDOW_MS` changes it (0 turns it off).
pub const RESEND_WINDOW_MS: i64 = 3_000;

/// What the shopper's latest request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// A new session: show the first screen, then apply these inputs (a deep dial's).
    Start(Vec<String>),
    /// An existing session: apply these inputs.
    Continue(Vec<String>),
    /// The same request again: answer with the stored reply, change nothing.
    Repeat,
}

/// Works out the inputs of a hop from what the gateway sent and what the session has seen.
///
/// For a cumulative text, the new input is the text beyond the one already processed, minus the
/// `*` separator: a `*` the shopper typed inside an input survives. Only a deep dial (the first
/// hop of a session arriving with text) is split on `*`, since there the `*`s are the dial's.
///
/// For a per-hop gateway, a dial on a session that exists is a duplicate start and a typed
/// input is a retransmission when it carries the last hop's number, or, from a gateway that
/// numbers no hops, when it is the last input again within [`RESEND_WINDOW_MS`]. A typed input
/// for a session Duka does not know (it expired, or the store lost it) starts one: the shopper
/// sees the first screen rather than an error.
pub fn plan(
    session: Option<&SessionRecord>,
    input: &HopInput,
    hop_id: Option<&str>,
    now_ms: i64,
    resend_window_ms: i64,
) -> Plan {
    match (session, input) {
        (None, HopInput::Cumulative(text)) if text.is_empty() => Plan::Start(Vec::new()),
        (None, HopInput::Cumulative(text)) => {
            Plan::Start(text.split('*').map(str::to_owned).collect())
        }
        (None, HopInput::Dial(inputs)) => Plan::Start(inputs.clone()),
        (None, HopInput::Typed(_)) => Plan::Start(Vec::new()),
        // A dial on a session that ended a while ago is the shopper dialling again under a
        // session id the gateway reuses (Nalo without `SESSIONID` keys sessions by phone);
        // soon after, it is the gateway resending the first hop.
        (Some(session), HopInput::Dial(inputs))
            if session.reply.end && now_ms.saturating_sub(session.at_ms) >= resend_window_ms =>
        {
            Plan::Start(inputs.clone())
        }
        (Some(session), _) if session.reply.end => Plan::Repeat,
        (Some(session), HopInput::Cumulative(text)) => {
            if *text == session.text {
                Plan::Repeat
            } else if session.text.is_empty() {
                Plan::Continue(vec![text.clone()])
            } else if let Some(new) = text
                .strip_prefix(session.text.as_str())
                .and_then(|rest| rest.strip_prefix('*'))
            {
                Plan::Continue(vec![new.to_owned()])
            } else {
                // Not an extension of what we saw: a gateway out of step. Show the current
                // screen again rather than guess which input was meant.
                tracing::warn!(
                    "cumulative text does not extend the session's text; repeating the screen"
                );
                Plan::Repeat
            }
        }
        (Some(_), HopInput::Dial(_)) => Plan::Repeat,
        (Some(session), HopInput::Typed(typed)) => {
            let resent = match (hop_id, session.hop_id.as_deref()) {
                (Some(id), Some(last)) => id == last,
                (Some(_), None) => false,
                (None, _) => {
                    session.hops > 1
                        && *typed == session.text
                        && now_ms.saturating_sub(session.at_ms) < resend_window_ms
                }
            };
            if resent {
                Plan::Repeat
            } else {
                Plan::Continue(vec![typed.clone()])
            }
        }
    }
}

/// The answer to a hop.
#[derive(Clone, Debug)]
pub struct HopResult {
    pub reply: Reply,
    pub lang: Lang,
    /// The screen now shown, for logs.
    pub screen: String,
    pub repeated: bool,
    /// The order placed by this hop, if any.
    pub placed_order: Option<String>,
    /// The screen the session was on before this hop (`None`: a new session), for the funnel.
    pub from_screen: Option<String>,
}

/// Why a hop could not be answered normally. Rendered as an `END` apology.
#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error("the store failed during the hop")]
    Store {
        #[source]
        source: StoreError,
        lang: Lang,
    },
    #[error("the session kept changing under the hop ({MAX_CONFLICTS} conflicts)")]
    Contended { lang: Lang },
}

impl HopError {
    /// The shopper's language, as far as the hop got to know it.
    pub fn lang(&self) -> Lang {
        match self {
            HopError::Store { lang, .. } | HopError::Contended { lang } => *lang,
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(raw: Option<&[u8]>, what: &str) -> Option<T> {
    let raw = raw?;
    match serde_json::from_slice(raw) {
        Ok(value) => Some(value),
        Err(e) => {
            // A value we cannot read (an older format, a manual edit) is treated as absent
            // rather than failing every hop of this shopper forever.
            tracing::warn!(error.message = %e, "ignoring an unreadable stored {what}");
            None
        }
    }
}

/// Until when the prompt-bombing limit holds pushes to the phone whose history this is.
fn push_blocked_until(shop: &Shop, history: Option<&Option<Vec<u8>>>) -> Option<i64> {
    let history: crate::payments::push_limit::PushHistory =
        crate::store::from_json(history.and_then(Option::as_deref)).unwrap_or_default();
    crate::payments::push_limit::check(&history, shop.clock.now_ms(), &shop.settings.push_limits)
        .err()
}

/// The records with their decoded values; an unreadable one counts as absent.
fn decoded(records: Records) -> Known {
    Known {
        session: decode(records.session.as_deref(), "session"),
        cart: decode(records.cart.as_deref(), "cart").unwrap_or_default(),
        profile: decode(records.profile.as_deref(), "profile").unwrap_or_default(),
        records,
    }
}

/// The session, cart and profile from the first three values of a read or a conflict.
fn records_of(values: Vec<Option<Vec<u8>>>) -> Result<Records, StoreError> {
    let mut values = values.into_iter();
    match (values.next(), values.next(), values.next()) {
        (Some(session), Some(cart), Some(profile)) => Ok(Records {
            session,
            cart,
            profile,
        }),
        _ => Err(StoreError::Protocol(
            "the store returned too few values for a hop".into(),
        )),
    }
}

/// What the engine made of a hop's inputs.
struct Walked {
    state: MenuState,
    reply: Reply,
    cart: Cart,
    profile: Profile,
    effects: Vec<Effect>,
}

/// Runs the engine over a hop's inputs: the first screen of a new session (or the resumed
/// one), then each input against the cart and profile as the previous step left them.
fn walk(
    shop: &Shop,
    req: &UssdRequest,
    (cart, profile): (&Cart, &Profile),
    resumed: Option<(&MenuState, &Reply)>,
    inputs: &[String],
    order_number: &str,
    (now_ms, push_blocked_until_ms): (i64, Option<i64>),
) -> Walked {
    let mut walked = Walked {
        state: MenuState::default(),
        reply: Reply::con(""),
        cart: cart.clone(),
        profile: profile.clone(),
        effects: Vec::new(),
    };
    let catalog = shop.catalog();
    // Each step is handed the state the previous one left (moved, not copied).
    let run = |walked: &mut Walked, engine: &dyn Fn(&Hop<'_>, MenuState) -> menu::Step| {
        let state = std::mem::take(&mut walked.state);
        let step = engine(
            &Hop {
                catalog: &catalog,
                msisdn: &req.msisdn,
                mpesa: req.msisdn.mpesa_payable(req.network_code.as_deref()),
                screen_max: req.screen_max,
                cart: &walked.cart,
                profile: &walked.profile,
                payee: shop.settings.payee(),
                new_order_number: order_number,
                now_ms,
                push_blocked_until_ms,
            },
            state,
        );
        walked.cart = step.cart;
        walked.profile = step.profile;
        walked.effects.extend(step.effects);
        walked.state = step.state;
        walked.reply = step.reply;
    };
    match resumed {
        Some((state, reply)) => {
            walked.state = state.clone();
            walked.reply = reply.clone();
        }
        None => run(&mut walked, &|hop, _| menu::start(hop)),
    }
    for input in inputs {
        if walked.reply.end {
            break;
        }
        run(&mut walked, &|hop, state| menu::advance(hop, state, input));
    }
    walked
}

/// Answers one hop. See the module docs for the steps.
///
/// # Errors
/// [`HopError`] when the store fails or the session is contended past reason; the caller
/// answers with an apology in [`HopError::lang`].
#[tracing::instrument(name = "hop", skip_all, fields(menu.id))]
pub async fn handle_hop(shop: &Shop, req: &UssdRequest) -> Result<HopResult, HopError> {
    let session_key = shop.keys.session(&req.msisdn, &req.session_id);
    let cart_key = shop.keys.cart(&req.msisdn);
    let profile_key = shop.keys.profile(&req.msisdn);
    // The limit as this hop read it; `None` when it planned from the cache or a conflict.
    let mut read_block: Option<Option<i64>> = None;
    let mut lang = Lang::default();
    // What the store holds, as far as this hop knows: the cache's guess first, if any; then
    // what a read or a conflicting commit returned.
    let mut known = shop.session_cache.get(&session_key);
    let mut guessed = known.is_some();

    // A wrong guess from the cache is not a race: it does not count against MAX_CONFLICTS.
    for _ in 0..MAX_CONFLICTS + usize::from(guessed) {
        let current = match known.take() {
            Some(known) => known,
            None => {
                guessed = false;
                // The phone's push history rides along: checkout needs the prompt limit.
                let keys = [
                    session_key.clone(),
                    cart_key.clone(),
                    profile_key.clone(),
                    shop.keys.push_history(&req.msisdn),
                ];
                let values = shop
                    .store
                    .get(&keys)
                    .await
                    .map_err(|source| HopError::Store { source, lang })?;
                read_block = Some(push_blocked_until(shop, values.get(3)));
                Arc::new(decoded(
                    records_of(values).map_err(|source| HopError::Store { source, lang })?,
                ))
            }
        };
        let Known {
            records:
                Records {
                    session: session_raw,
                    cart: cart_raw,
                    profile: profile_raw,
                },
            session,
            cart,
            profile,
        } = &*current;
        lang = profile.lang();
        let now_ms = shop.clock.now_ms();
        let push_blocked_until_ms =
            read_block.unwrap_or_else(|| session.as_ref().and_then(|s| s.push_blocked_until_ms));

        let (inputs, resumed, hops) = match (
            plan(
                session.as_ref(),
                &req.input,
                req.hop_id.as_deref(),
                now_ms,
                shop.settings.resend_window_ms,
            ),
            session,
        ) {
            (Plan::Repeat, Some(_)) if guessed => {
                // A retransmission writes nothing, so no guard would check the guess: read.
                // (Answering from the cache could repeat a screen another node has moved on
                // from; one read is what a retransmission always cost.)
                continue;
            }
            (Plan::Repeat, Some(session)) => {
                if !session.reply.end {
                    shop.session_cache.put(&session_key, current.clone());
                }
                tracing::Span::current().record("menu.id", session.menu.screen_id());
                return Ok(HopResult {
                    screen: session.menu.screen_id().to_owned(),
                    reply: session.reply.clone(),
                    lang,
                    repeated: true,
                    placed_order: None,
                    from_screen: None,
                });
            }
            (Plan::Continue(inputs), Some(session)) => {
                (inputs, Some((&session.menu, &session.reply)), session.hops)
            }
            // `plan` repeats or continues only a session that exists; anything else starts one.
            (Plan::Start(inputs) | Plan::Continue(inputs), _) => (inputs, None, 0),
            (Plan::Repeat, None) => (Vec::new(), None, 0),
        };

        let walk = |order_number: &str| {
            walk(
                shop,
                req,
                (cart, profile),
                resumed,
                &inputs,
                order_number,
                (now_ms, push_blocked_until_ms),
            )
        };
        // Only a checkout needs an order number, and drawing one costs ~64 tries: walk without
        // one, and again with a fresh number if the walk placed an order (the engine is pure).
        let mut walked = walk("");
        if walked
            .effects
            .iter()
            .any(|e| matches!(e, Effect::PlaceOrder { .. }))
        {
            walked = walk(&shop.draw_order_number(&req.msisdn));
        }
        let Walked {
            state,
            reply,
            cart: new_cart,
            profile: new_profile,
            effects,
        } = walked;
        lang = new_profile.lang();

        let text = match &req.input {
            HopInput::Cumulative(text) | HopInput::Typed(text) => text.clone(),
            HopInput::Dial(_) => String::new(),
        };
        let record = SessionRecord {
            text,
            reply: reply.clone(),
            menu: state,
            hops: hops + 1,
            hop_id: req.hop_id.clone(),
            at_ms: now_ms,
            push_blocked_until_ms,
        };

        let mut batch = Batch::new();
        let encoded = record.encode();
        batch
            .guard(&session_key, session_raw.as_deref())
            .guard(&cart_key, cart_raw.as_deref())
            .guard(&profile_key, profile_raw.as_deref())
            .set(
                &session_key,
                encoded.clone(),
                Some(shop.settings.session_ttl_ms),
            );
        let mut written = Records {
            session: Some(encoded),
            cart: cart_raw.clone(),
            profile: profile_raw.clone(),
        };
        if new_cart != *cart {
            if new_cart.is_empty() {
                batch.delete(&cart_key);
                written.cart = None;
            } else {
                let value = to_json(&new_cart);
                written.cart = Some(value.clone());
                batch.set(&cart_key, value, Some(CART_TTL_MS));
            }
        }
        if new_profile != *profile {
            let value = to_json(&new_profile);
            written.profile = Some(value.clone());
            batch.set(&profile_key, value, Some(PROFILE_TTL_MS));
        }
        let mut placed_order = None;
        let mut wake = Vec::new();
        for effect in effects {
            match effect {
                Effect::PlaceOrder {
                    number,
                    lines,
                    total: _,
                    lang,
                    payer,
                } => {
                    let mut order = Order::place(
                        number.clone(),
                        req.msisdn.clone(),
                        lang,
                        lines,
                        payer.clone().unwrap_or_else(|| req.msisdn.clone()),
                        now_ms,
                        shop.settings.order_ttl_ms,
                    );
                    if payer.is_none() {
                        // Paid to the paybill: no prompt is sent, so no attempt is open.
                        order.attempts.clear();
                    }
                    let order_key = shop.keys.order(&number);
                    let retention = shop.settings.order_ttl_ms as u64 + ORDER_RETENTION_MS;
                    batch
                        .guard(&order_key, None)
                        .set(&order_key, to_json(&order), Some(retention));
                    // The console's per-day list: same shard as the order, kept as long.
                    let day_key = shop
                        .keys
                        .day_orders(shard_of(&number), &crate::console::eat_day(now_ms));
                    batch
                        .zadd(&day_key, now_ms, number.clone())
                        .expire(&day_key, retention);
                    if payer.is_some() {
                        let push = Job::Push {
                            order: number.clone(),
                            attempt: 1,
                        };
                        JobQueue::schedule(shop, &mut batch, &push, now_ms);
                        wake.push(push.shard());
                    }
                    JobQueue::schedule(
                        shop,
                        &mut batch,
                        &Job::Expire {
                            order: number.clone(),
                        },
                        order.expires_at_ms,
                    );
                    placed_order = Some(number);
                }
                Effect::PayAgain { number, payer } => {
                    let job = Job::PayAgain {
                        order: number,
                        payer: payer.digits().to_owned(),
                    };
                    JobQueue::schedule(shop, &mut batch, &job, now_ms);
                    wake.push(job.shard());
                }
            }
        }

        match shop.store.commit_reading(&batch).await {
            Ok(Guarded::Applied) => {
                let screen = record.menu.screen_id().to_owned();
                // An ended session only ever gets retransmissions, which read anyway.
                if reply.end {
                    shop.session_cache.forget(&session_key);
                } else {
                    let known = Known {
                        records: written,
                        session: Some(record),
                        cart: new_cart,
                        profile: new_profile,
                    };
                    shop.session_cache.put(&session_key, Arc::new(known));
                }
                for shard in wake {
                    shop.jobs.wake(shard);
                }
                tracing::Span::current().record("menu.id", screen.as_str());
                return Ok(HopResult {
                    reply,
                    lang,
                    screen,
                    repeated: false,
                    placed_order,
                    from_screen: resumed
                        .as_ref()
                        .map(|(menu, _)| menu.screen_id().to_owned()),
                });
            }
            Ok(Guarded::Conflict(current)) => {
                tracing::debug!(
                    ussd.shard = shard_of(req.msisdn.digits()),
                    guessed,
                    "hop lost a race or guessed stale; planning again from the current values"
                );
                known = Some(Arc::new(decoded(
                    records_of(current).map_err(|source| HopError::Store { source, lang })?,
                )));
                guessed = false;
                continue;
            }
            Err(source) => {
                // The commit may or may not have been applied: the cache cannot tell.
                shop.session_cache.forget(&session_key);
                return Err(HopError::Store { source, lang });
            }
        }
    }
    Err(HopError::Contended { lang })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(text: &str, end: bool) -> SessionRecord {
        SessionRecord {
            text: text.to_owned(),
            reply: Reply {
                end,
                text: "screen".into(),
            },
            menu: MenuState::default(),
            hops: 1,
            hop_id: None,
            at_ms: 0,
            push_blocked_until_ms: None,
        }
    }

    /// A per-hop session after `hops` hops, the last typed `text` at 10 s, numbered `hop_id`.
    fn per_hop(text: &str, hops: u32, hop_id: Option<&str>) -> SessionRecord {
        SessionRecord {
            hops,
            hop_id: hop_id.map(str::to_owned),
            at_ms: 10_000,
            ..session(text, false)
        }
    }

    fn plan(session: Option<&SessionRecord>, input: &HopInput) -> Plan {
        super::plan(session, input, None, 0, RESEND_WINDOW_MS)
    }

    fn cumulative(text: &str) -> HopInput {
        HopInput::Cumulative(text.to_owned())
    }

    #[test]
    fn the_first_hop_starts_the_session() {
        assert_eq!(plan(None, &cumulative("")), Plan::Start(vec![]));
    }

    #[test]
    fn a_deep_dial_applies_every_input_of_the_dial() {
        assert_eq!(
            plan(None, &cumulative("1*2")),
            Plan::Start(vec!["1".into(), "2".into()])
        );
    }

    #[test]
    fn the_new_input_is_the_text_beyond_the_previous_one() {
        assert_eq!(
            plan(Some(&session("", false)), &cumulative("1")),
            Plan::Continue(vec!["1".into()])
        );
        assert_eq!(
            plan(Some(&session("1*2", false)), &cumulative("1*2*3")),
            Plan::Continue(vec!["3".into()])
        );
    }

    #[test]
    fn a_star_typed_inside_an_input_survives() {
        assert_eq!(
            plan(Some(&session("1*2", false)), &cumulative("1*2*0712*345")),
            Plan::Continue(vec!["0712*345".into()])
        );
        assert_eq!(
            plan(Some(&session("", false)), &cumulative("5*5")),
            Plan::Continue(vec!["5*5".into()])
        );
    }

    #[test]
    fn the_same_text_again_is_a_retransmission() {
        assert_eq!(
            plan(Some(&session("1*2", false)), &cumulative("1*2")),
            Plan::Repeat
        );
        assert_eq!(
            plan(Some(&session("", false)), &cumulative("")),
            Plan::Repeat
        );
    }

    #[test]
    fn an_ended_session_only_repeats_its_last_screen() {
        assert_eq!(
            plan(Some(&session("1", true)), &cumulative("1*1")),
            Plan::Repeat
        );
    }

    #[test]
    fn a_text_that_does_not_extend_the_session_repeats_the_screen() {
        assert_eq!(
            plan(Some(&session("1*2", false)), &cumulative("3")),
            Plan::Repeat
        );
        assert_eq!(
            plan(Some(&session("1*2", false)), &cumulative("1*23")),
            Plan::Repeat
        );
    }

    #[test]
    fn a_per_hop_dial_starts_with_its_deep_dial_inputs() {
        let dial = HopInput::Dial(vec!["2".into()]);
        assert_eq!(plan(None, &dial), Plan::Start(vec!["2".into()]));
        assert_eq!(
            plan(None, &HopInput::Dial(vec![])),
            Plan::Start(vec![]),
            "a plain dial"
        );
    }

    #[test]
    fn a_dial_on_a_session_that_exists_is_a_duplicate_start() {
        let dial = HopInput::Dial(vec![]);
        assert_eq!(plan(Some(&per_hop("", 1, None)), &dial), Plan::Repeat);
        assert_eq!(plan(Some(&per_hop("3", 4, None)), &dial), Plan::Repeat);
    }

    #[test]
    fn a_dial_after_an_ended_session_starts_again_once_the_resend_window_is_over() {
        let ended = SessionRecord {
            reply: Reply::end("Bye"),
            ..per_hop("", 2, None)
        };
        let dial = HopInput::Dial(vec![]);
        assert_eq!(
            super::plan(
                Some(&ended),
                &dial,
                None,
                10_000 + RESEND_WINDOW_MS - 1,
                RESEND_WINDOW_MS
            ),
            Plan::Repeat,
            "the first hop resent"
        );
        assert_eq!(
            super::plan(
                Some(&ended),
                &dial,
                None,
                10_000 + RESEND_WINDOW_MS,
                RESEND_WINDOW_MS
            ),
            Plan::Start(vec![]),
            "a new dial under a reused id"
        );
        assert_eq!(
            super::plan(
                Some(&ended),
                &HopInput::Typed("1".into()),
                None,
                60_000,
                RESEND_WINDOW_MS
            ),
            Plan::Repeat,
            "input to an ended session changes nothing"
        );
    }

    #[test]
    fn a_typed_input_is_taken_whole_star_included() {
        let typed = HopInput::Typed("0712*345".into());
        assert_eq!(
            plan(Some(&per_hop("", 1, None)), &typed),
            Plan::Continue(vec!["0712*345".into()])
        );
    }

    #[test]
    fn the_same_hop_number_again_is_a_retransmission() {
        let typed = HopInput::Typed("2".into());
        let session = per_hop("2", 3, Some("3"));
        assert_eq!(
            super::plan(Some(&session), &typed, Some("3"), 60_000, RESEND_WINDOW_MS),
            Plan::Repeat,
            "however late it comes"
        );
        assert_eq!(
            super::plan(Some(&session), &typed, Some("4"), 10_100, RESEND_WINDOW_MS),
            Plan::Continue(vec!["2".into()]),
            "a new number is a new hop, even with the same input at once"
        );
    }

    #[test]
    fn without_hop_numbers_the_same_input_soon_after_is_a_retransmission() {
        let typed = HopInput::Typed("2".into());
        let session = per_hop("2", 3, None);
        assert_eq!(
            super::plan(
                Some(&session),
                &typed,
                None,
                10_000 + RESEND_WINDOW_MS - 1,
                RESEND_WINDOW_MS
            ),
            Plan::Repeat
        );
        assert_eq!(
            super::plan(
                Some(&session),
                &typed,
                None,
                10_000 + RESEND_WINDOW_MS,
                RESEND_WINDOW_MS
            ),
            Plan::Continue(vec!["2".into()]),
            "typed again later is the shopper's"
        );
        assert_eq!(
            super::plan(
                Some(&session),
                &HopInput::Typed("1".into()),
                None,
                10_001,
                RESEND_WINDOW_MS
            ),
            Plan::Continue(vec!["1".into()]),
            "another input is never a resend"
        );
        assert_eq!(
            super::plan(Some(&session), &typed, None, 10_000, 0),
            Plan::Continue(vec!["2".into()]),
            "with the window turned off, only hop numbers tell"
        );
        assert_eq!(
            super::plan(
                Some(&session),
                &HopInput::Typed("1".into()),
                None,
                10_001,
                RESEND_WINDOW_MS
            ),
            Plan::Continue(vec!["1".into()]),
            "another input is never a resend"
        );
    }

    #[test]
    fn a_typed_input_for_an_unknown_session_shows_the_first_screen() {
        assert_eq!(
            plan(None, &HopInput::Typed("2".into())),
            Plan::Start(vec![])
        );
    }

    #[test]
    fn old_session_records_without_the_new_fields_still_load() {
        let mut old = serde_json::to_value(per_hop("1*2", 2, Some("9"))).unwrap();
        let fields = old.as_object_mut().unwrap();
        assert!(fields.remove("k").is_some() && fields.remove("a").is_some());
        let record: SessionRecord = serde_json::from_value(old).unwrap();
        assert_eq!((record.hop_id, record.at_ms, record.hops), (None, 0, 2));
        let record = per_hop("2", 3, Some("7"));
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""k":"7""#) && json.contains(r#""a":10000"#));
        assert_eq!(
            serde_json::from_str::<SessionRecord>(&json).unwrap(),
            record
        );
        let plain = serde_json::to_string(&session("1", false)).unwrap();
        assert!(!plain.contains(r#""k""#), "no hop id, no key: {plain}");
    }
}
