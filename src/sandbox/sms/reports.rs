//! The sandbox's delivery reports: a plan of statuses per message, posted to Duka's
//! `/sms/delivery` after delays, as a form (what AT is believed to send) or as JSON.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{SentSms, Shared, State};
use crate::sms::africastalking::{DeliveryReport, DeliveryStatus};

/// Where and how to post delivery reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReports {
    /// Duka's report URL, `DUKA_PUBLIC_URL` + `/sms/delivery`.
    pub url: String,
    pub encoding: ReportEncoding,
    /// The reports each accepted message gets, unless its number has its own plan.
    pub plan: ReportPlan,
}

impl DeliveryReports {
    /// Form-encoded reports on the default path `Sent → Submitted → Success`.
    pub fn to(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            encoding: ReportEncoding::Form,
            plan: ReportPlan::delivered(),
        }
    }

    pub fn json(mut self) -> Self {
        self.encoding = ReportEncoding::Json;
        self
    }

    pub fn with_plan(mut self, plan: ReportPlan) -> Self {
        self.plan = plan;
        self
    }
}

/// How a report body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportEncoding {
    /// `application/x-www-form-urlencoded`, like AT's other callbacks.
    Form,
    /// `application/json`.
    Json,
}

/// Which `id` a report carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportId {
    /// The message's own `messageId`.
    Real,
    /// A fresh `ATXid_…` Duka never saw: an orphan report.
    Unknown,
}

/// One report of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportStep {
    /// The wait before this report, counted from the previous one (or from acceptance).
    pub after: Duration,
    pub status: DeliveryStatus,
    pub failure_reason: Option<String>,
    pub id: ReportId,
}

impl ReportStep {
    pub fn new(status: DeliveryStatus) -> Self {
        Self {
            after: DEFAULT_GAP,
            status,
            failure_reason: None,
            id: ReportId::Real,
        }
    }
}

/// The gap between two reports of a ready-made plan: short enough for tests, long enough that
/// the reports of one message arrive in order over HTTP.
const DEFAULT_GAP: Duration = Duration::from_millis(20);

/// The reports one message gets, in the order they are posted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportPlan {
    pub steps: Vec<ReportStep>,
}

impl ReportPlan {
    /// `Sent → Submitted → Success`: the default.
    pub fn delivered() -> Self {
        Self::path([
            DeliveryStatus::Sent,
            DeliveryStatus::Submitted,
            DeliveryStatus::Success,
        ])
    }

    /// `Sent → Submitted → Failed`, with this `failureReason` on the last.
    pub fn failed(reason: &str) -> Self {
        Self::path([
            DeliveryStatus::Sent,
            DeliveryStatus::Submitted,
            DeliveryStatus::Failed,
        ])
        .with_final_reason(reason)
    }

    /// `Sent → Rejected`, with this `failureReason` on the last.
    pub fn rejected(reason: &str) -> Self {
        Self::path([DeliveryStatus::Sent, DeliveryStatus::Rejected]).with_final_reason(reason)
    }

    /// Any list of statuses, unknown ones included, with the default gap between them.
    pub fn path(statuses: impl IntoIterator<Item = DeliveryStatus>) -> Self {
        Self {
            steps: statuses.into_iter().map(ReportStep::new).collect(),
        }
    }

    /// Every report posted twice in a row, as AT's retries do.
    pub fn repeated(self) -> Self {
        Self {
            steps: self
                .steps
                .into_iter()
                .flat_map(|step| [step.clone(), step])
                .collect(),
        }
    }

    /// The reports in reverse order (the final one first), keeping the gaps.
    pub fn reversed(mut self) -> Self {
        let gaps: Vec<Duration> = self.steps.iter().map(|s| s.after).collect();
        self.steps.reverse();
        for (step, gap) in self.steps.iter_mut().zip(gaps) {
            step.after = gap;
        }
        self
    }

    /// Every report carries an id Duka never saw.
    pub fn with_unknown_id(mut self) -> Self {
        for step in &mut self.steps {
            step.id = ReportId::Unknown;
        }
        self
    }

    /// The same gap before every report.
    pub fn with_gap(mut self, gap: Duration) -> Self {
        for step in &mut self.steps {
            step.after = gap;
        }
        self
    }

    fn with_final_reason(mut self, reason: &str) -> Self {
        if let Some(last) = self.steps.last_mut() {
            last.failure_reason = Some(reason.to_owned());
        }
        self
    }
}

/// A report the sandbox posted, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedReport {
    pub url: String,
    pub encoding: ReportEncoding,
    pub report: DeliveryReport,
    pub posted_at: DateTime<Utc>,
    /// Duka's HTTP status, or `None` when the post failed.
    pub response_status: Option<u16>,
    /// Why the post failed, when it did.
    pub error: Option<String>,
}

/// The delivery settings and plan for a newly accepted message, if reports are on.
pub(super) fn plan_for(state: &State, sms: &SentSms) -> Option<(DeliveryReports, ReportPlan)> {
    let delivery = state.delivery_reports.clone()?;
    let plan = state
        .number_plans
        .get(sms.to.as_str())
        .cloned()
        .unwrap_or_else(|| delivery.plan.clone());
    Some((delivery, plan))
}

/// Posts the plan's reports for `sms` in the background.
pub(super) fn schedule(
    shared: &Arc<Shared>,
    delivery: DeliveryReports,
    plan: ReportPlan,
    sms: SentSms,
) {
    let task_shared = Arc::clone(shared);
    let task = tokio::spawn(async move {
        for step in plan.steps {
            tokio::time::sleep(step.after).await;
            let id = match step.id {
                ReportId::Real => sms.message_id.clone(),
                ReportId::Unknown => task_shared.state().fresh_id(),
            };
            let report = DeliveryReport {
                id,
                status: step.status,
                phone_number: Some(sms.to.clone()),
                network_code: Some(task_shared.network_code.clone()),
                failure_reason: step.failure_reason,
                retry_count: None,
            };
            post_and_record(&task_shared, &delivery.url, delivery.encoding, report).await;
        }
    });
    let mut state = shared.state();
    state.report_tasks.retain(|t| !t.is_finished());
    state.report_tasks.push(task.abort_handle());
}

/// Posts one report and records the outcome.
pub(super) async fn post_and_record(
    shared: &Shared,
    url: &str,
    encoding: ReportEncoding,
    report: DeliveryReport,
) -> PostedReport {
    let request = shared.http.post(url);
    let request = match encoding {
        ReportEncoding::Form => request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(report.to_form()),
        ReportEncoding::Json => request.json(&report),
    };
    let posted_at = shared.now();
    let (response_status, error) = match request.send().await {
        Ok(response) => (Some(response.status().as_u16()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    if let Some(error) = &error {
        tracing::warn!(
            sms.message_id = %report.id,
            error.message = %error,
            "SMS sandbox could not post a delivery report"
        );
    }
    let posted = PostedReport {
        url: url.to_owned(),
        encoding,
        report,
        posted_at,
        response_status,
        error,
    };
    crate::sandbox::record(&mut shared.state().reports, posted.clone());
    shared.bump(|p| p.reports += 1);
    posted
}
