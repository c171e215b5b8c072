//! A simulated shopper walking one session, and the worker loop that runs shoppers one after
//! the other on one connection.
//!
//! The walk is dial, Shop, category, product (sending `98` while the product is on a later
//! page), quantity, Checkout, and then Pay with M-Pesa, which ends with `END Order …`; without
//! paying it stops at the checkout screen. Every hop is sent as the chosen gateway sends it
//! (`--gateway`; Africa's Talking's cumulative text by default), and every reply is read back
//! through the same gateway and checked before the next hop is sent. The first failed check
//! ends the session: the next hop would only measure the server answering nonsense.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::check::{ErrorKind, Expected, Failure, ListMove, Screen};
use super::client::{Connection, SAFARICOM, SERVICE_CODE};
use super::plan::{Plan, Shopper};
use super::report::Tally;
use crate::gateway::{ClientHop, Gateway};
use crate::menu::render::MORE_KEY;
use crate::menu::Reply;
use crate::msisdn::Msisdn;

/// The most pages a list may take before the wanted number shows; more is a wrong screen.
const MAX_PAGES: usize = 16;

/// How the shoppers reach the server.
pub struct Through {
    /// The gateway whose requests the shoppers send.
    pub gateway: &'static dyn Gateway,
    /// How long a shopper waits before typing the same input again, on a gateway where that
    /// would look like a resend (zero: no wait).
    pub resend_pause: std::time::Duration,
}

/// Everything the workers share: the plan, the limits and the live counters.
pub struct Run {
    pub gateway: &'static dyn Gateway,
    pub resend_pause: std::time::Duration,
    pub plan: Plan,
    pub expected: Expected,
    /// Tags this run's phones and session ids.
    pub tag: u32,
    pub sessions: u64,
    /// No hop is sent after this instant.
    pub deadline: Instant,
    pub pay: bool,
    /// The next shopper's index.
    next: AtomicU64,
    pub live: Live,
}

/// Counters the progress line reads while the run goes on.
#[derive(Default)]
pub struct Live {
    pub hops: AtomicU64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

impl Run {
    pub fn new(
        Through {
            gateway,
            resend_pause,
        }: Through,
        plan: Plan,
        expected: Expected,
        tag: u32,
        sessions: u64,
        deadline: Instant,
        pay: bool,
    ) -> Self {
        Self {
            gateway,
            resend_pause,
            plan,
            expected,
            tag,
            sessions,
            deadline,
            pay,
            next: AtomicU64::new(0),
            live: Live::default(),
        }
    }
}

/// Runs shoppers on one connection until the sessions are all taken or the time is up.
pub async fn work(run: Arc<Run>, mut connection: Connection) -> Tally {
    let mut tally = Tally::new();
    while Instant::now() < run.deadline {
        let index = run.next.fetch_add(1, Ordering::Relaxed);
        if index >= run.sessions {
            break;
        }
        let shopper = run.plan.shopper(run.tag, index);
        let Ok(msisdn) = Msisdn::parse(&shopper.phone) else {
            tally.fail(Failure::new(
                ErrorKind::WrongScreen,
                format!("the plan made an invalid phone {:?}", shopper.phone),
            ));
            continue;
        };
        let mut walk = Walk {
            run: &run,
            connection: &mut connection,
            tally: &mut tally,
            shopper: &shopper,
            msisdn,
            typed: Vec::with_capacity(8),
        };
        match walk.session().await {
            Ok(()) => {
                tally.completed += 1;
                run.live.completed.fetch_add(1, Ordering::Relaxed);
            }
            Err(Stop::Failed(failure)) => {
                tally.fail(failure);
                run.live.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(Stop::CutOff) => tally.cut_off += 1,
        }
    }
    tally
}

/// Why a session stopped before its end.
enum Stop {
    Failed(Failure),
    /// The run's time was up before the next hop.
    CutOff,
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Stop::Failed(failure)
    }
}

struct Walk<'a> {
    run: &'a Run,
    connection: &'a mut Connection,
    tally: &'a mut Tally,
    shopper: &'a Shopper,
    msisdn: Msisdn,
    /// What the shopper typed since the dial.
    typed: Vec<String>,
}

impl Walk<'_> {
    async fn session(&mut self) -> Result<(), Stop> {
        let (run, shopper) = (self.run, self.shopper);
        let expected = &run.expected;
        let item = &shopper.item;

        let reply = self.send(None).await?;
        let shop = expected.main_menu(&read(&reply)?)?;
        let reply = self.send(Some(shop)).await?;
        let reply = self
            .choose(reply, item.category + 1, |screen| {
                expected.categories(screen, item)
            })
            .await?;
        let reply = self
            .choose(reply, item.number, |screen| expected.products(screen, item))
            .await?;
        expected.quantity(&read(&reply)?, item)?;
        let reply = self.send(Some(&shopper.qty.to_string())).await?;
        let checkout = expected.added(&read(&reply)?, shopper)?.to_owned();
        let reply = self.send(Some(&checkout)).await?;
        let pay = expected.checkout(&read(&reply)?, shopper)?.to_owned();
        if !run.pay {
            return Ok(());
        }
        let reply = self.send(Some(&pay)).await?;
        expected.placed(&read(&reply)?, shopper)?;
        Ok(())
    }

    /// On a list screen, sends `number`, paging on with `98` until the number shows.
    async fn choose(
        &mut self,
        mut reply: Reply,
        number: usize,
        check: impl Fn(&Screen<'_>) -> Result<ListMove, Failure>,
    ) -> Result<Reply, Stop> {
        for _ in 0..MAX_PAGES {
            match check(&read(&reply)?)? {
                ListMove::Choose => return self.send(Some(&number.to_string())).await,
                ListMove::NextPage => reply = self.send(Some(MORE_KEY)).await?,
            }
        }
        Err(Failure::new(
            ErrorKind::WrongScreen,
            format!("option {number} did not show within {MAX_PAGES} pages"),
        )
        .into())
    }

    /// Sends the next hop: the dial (`None`) or one more input.
    async fn send(&mut self, input: Option<&str>) -> Result<Reply, Stop> {
        if Instant::now() >= self.run.deadline {
            return Err(Stop::CutOff);
        }
        if let Some(input) = input {
            let repeat = self.typed.last().is_some_and(|last| last == input);
            if repeat
                && self.run.gateway.repeats_look_like_resends()
                && !self.run.resend_pause.is_zero()
            {
                // A person's pace, not a hop: the wait is not in the latency figures.
                tokio::time::sleep(self.run.resend_pause).await;
                if Instant::now() >= self.run.deadline {
                    return Err(Stop::CutOff);
                }
            }
            self.typed.push(input.to_owned());
        }
        let request = self.run.gateway.hop_request(&ClientHop {
            session_id: &self.shopper.session_id,
            phone: &self.msisdn,
            service_code: SERVICE_CODE,
            network_code: SAFARICOM,
            dial: &[],
            typed: &self.typed,
            seq: self.typed.len() as u32 + 1,
        });
        let started = Instant::now();
        let reply = self.connection.send(request).await?;
        self.tally.hop(started.elapsed());
        self.run.live.hops.fetch_add(1, Ordering::Relaxed);
        if reply.status != 200 {
            let text = String::from_utf8_lossy(&reply.body[..reply.body.len().min(120)]);
            return Err(Failure::new(
                ErrorKind::Status,
                format!("HTTP {}: {text:?}", reply.status),
            )
            .into());
        }
        self.run
            .gateway
            .read_reply(reply.status, &reply.headers, &reply.body)
            .map_err(|why| Failure::new(ErrorKind::NotUssd, why).into())
    }
}

fn read(reply: &Reply) -> Result<Screen<'_>, Failure> {
    Ok(Screen {
        end: reply.end,
        text: &reply.text,
    })
}
