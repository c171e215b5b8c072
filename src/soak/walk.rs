//! One soak shopper: dials through their gateway, walks to the order as the bench does (the
//! same plan and the same expected screens), reads the order number off the `END` screen, and
//! then pays at the paybill if their script says so.
//!
//! Duka is killed under the shoppers' feet: a hop that gets no answer is sent again (a redial
//! after a pause, as a person would) until Duka is back, and each one is counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::script::Fate;
use crate::bench::check::{Expected, ListMove, Screen};
use crate::bench::client::{SAFARICOM, SERVICE_CODE};
use crate::bench::plan::{Plan, Shopper};
use crate::gateway::phone::{Phone, PhoneError};
use crate::gateway::{Gateway, GATEWAYS};
use crate::menu::render::MORE_KEY;
use crate::menu::Reply;
use crate::msisdn::Msisdn;
use crate::sandbox::mpesa::{MpesaSandbox, PayBill, PayBillResult};

/// How long a shopper keeps redialling a Duka that does not answer.
const GIVE_UP_AFTER: Duration = Duration::from_secs(90);
const REDIAL_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAGES: usize = 16;

/// What every shopper shares.
pub struct World {
    pub duka_url: String,
    pub plan: Plan,
    pub expected: Expected,
    pub seed: u64,
    pub tag: u32,
    pub mpesa: Arc<MpesaSandbox>,
    /// Duka's resend window: a shopper typing the same input twice waits it out.
    pub resend_window: Duration,
    /// The apology Duka ends a hop with when its store failed (Redis down): worth a redial.
    pub apology: String,
    pub redials: AtomicU64,
    pub hops: AtomicU64,
    pub done: AtomicU64,
}

/// A paybill payment a shopper made.
#[derive(Clone, Debug)]
pub struct PaybillPaid {
    pub order: String,
    pub trans_id: String,
    pub amount: u64,
    pub confirmed: bool,
}

/// How one shopper's session went.
#[derive(Clone, Debug)]
pub struct Walked {
    pub fate: Fate,
    pub gateway: &'static str,
    /// The order number, when the `END` screen came back.
    pub order: Option<String>,
    /// Why the walk stopped before the order, if it did.
    pub abandoned: Option<String>,
    pub paybill: Option<PaybillPaid>,
}

pub async fn shopper(world: Arc<World>, index: u64) -> Walked {
    let shopper = world.plan.shopper(world.tag, index);
    let fate = Fate::draw(world.seed, index);
    let gateway: &'static dyn Gateway =
        GATEWAYS[(world.seed.wrapping_add(index) % GATEWAYS.len() as u64) as usize];
    let mut walked = Walked {
        fate,
        gateway: gateway.name(),
        order: None,
        abandoned: None,
        paybill: None,
    };
    let msisdn = match Msisdn::parse(&shopper.phone) {
        Ok(m) => m,
        Err(e) => {
            walked.abandoned = Some(format!("invalid phone: {e}"));
            return walked;
        }
    };
    world.mpesa.set_outcome_for(&msisdn, fate.outcome());
    let phone = Phone::new(
        &world.duka_url,
        gateway,
        msisdn.clone(),
        SERVICE_CODE,
        SAFARICOM,
        Duration::from_secs(10),
    );
    let mut walk = Walk {
        world: &world,
        phone,
        shopper: &shopper,
    };
    match walk.walk_to_order().await {
        Ok(order) => walked.order = Some(order),
        Err(why) => walked.abandoned = Some(why),
    }
    world.done.fetch_add(1, Ordering::Relaxed);
    if let (Some(order), Some(amount)) = (&walked.order, fate.paybill(shopper.total)) {
        // After the push has been answered: cancelled first, or paid first for a double payment.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let payment = PayBill {
            phone: msisdn.digits().to_owned(),
            ..PayBill::new(order.clone(), amount.to_string())
        };
        match world.mpesa.pay_bill_with(payment).await {
            Ok(outcome) => {
                walked.paybill = Some(PaybillPaid {
                    order: order.clone(),
                    trans_id: outcome.trans_id,
                    amount,
                    confirmed: outcome.result == PayBillResult::Confirmed,
                });
            }
            Err(e) => walked.abandoned = Some(format!("paybill refused: {e}")),
        }
    }
    walked
}

struct Walk<'a> {
    world: &'a World,
    phone: Phone,
    shopper: &'a Shopper,
}

impl Walk<'_> {
    async fn walk_to_order(&mut self) -> Result<String, String> {
        let expected = &self.world.expected;
        let (shopper, item) = (self.shopper, &self.shopper.item);
        let session = format!("{}_soak", shopper.session_id);
        let reply = self.hop(Some(&session), "").await?;
        let shop = expected.main_menu(&screen(&reply)).map_err(|f| f.detail)?;
        let mut reply = self.hop(None, shop).await?;
        for (number, categories) in [(item.category + 1, true), (item.number, false)] {
            let mut pages = 0;
            loop {
                let read = screen(&reply);
                let step = if categories {
                    expected.categories(&read, item)
                } else {
                    expected.products(&read, item)
                };
                match step.map_err(|f| f.detail)? {
                    ListMove::Choose => break,
                    ListMove::NextPage if pages < MAX_PAGES => {
                        pages += 1;
                        reply = self.hop(None, MORE_KEY).await?;
                    }
                    ListMove::NextPage => return Err("too many pages".into()),
                }
            }
            reply = self.hop(None, &number.to_string()).await?;
        }
        expected
            .quantity(&screen(&reply), item)
            .map_err(|f| f.detail)?;
        let reply = self.hop(None, &shopper.qty.to_string()).await?;
        let checkout = expected
            .added(&screen(&reply), shopper)
            .map_err(|f| f.detail)?
            .to_owned();
        let reply = self.hop(None, &checkout).await?;
        let pay = expected
            .checkout(&screen(&reply), shopper)
            .map_err(|f| f.detail)?
            .to_owned();
        let reply = self.hop(None, &pay).await?;
        expected
            .placed(&screen(&reply), shopper)
            .map_err(|f| f.detail)?;
        order_number(&reply.text).ok_or_else(|| format!("no order number in {:?}", reply.text))
    }

    /// Dials (`session` given) or types `input`; while Duka does not answer, redials the same
    /// request after a pause.
    async fn hop(&mut self, session: Option<&str>, input: &str) -> Result<Reply, String> {
        if session.is_none() && self.phone.would_look_like_a_resend(input) {
            tokio::time::sleep(self.world.resend_window + Duration::from_millis(100)).await;
        }
        self.world.hops.fetch_add(1, Ordering::Relaxed);
        let mut result = match session {
            Some(id) => self.phone.dial(id, Vec::new()).await,
            None => self.phone.press(input).await,
        };
        let started = std::time::Instant::now();
        loop {
            match result {
                Ok(reply)
                    if reply.end
                        && reply.text == self.world.apology
                        && started.elapsed() < GIVE_UP_AFTER =>
                {
                    self.world.redials.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(REDIAL_PAUSE).await;
                    result = self.phone.resend().await;
                }
                Ok(reply) => return Ok(reply),
                Err(PhoneError::Unreachable(why)) | Err(PhoneError::Unreadable { why, .. })
                    if started.elapsed() < GIVE_UP_AFTER =>
                {
                    let _ = why;
                    self.world.redials.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(REDIAL_PAUSE).await;
                    result = self.phone.resend().await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

fn screen(reply: &Reply) -> Screen<'_> {
    Screen {
        end: reply.end,
        text: &reply.text,
    }
}

/// `Order K7Q2MX. Enter your…` → `K7Q2MX`.
pub fn order_number(text: &str) -> Option<String> {
    let rest = text.split("Order ").nth(1)?;
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!number.is_empty()).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_number_is_read_off_the_end_screen() {
        assert_eq!(
            order_number("Order K7Q2MX. Enter your M-Pesa PIN").as_deref(),
            Some("K7Q2MX")
        );
        assert_eq!(order_number("Thank you"), None);
    }
}
