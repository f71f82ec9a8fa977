//! Calls from telephony connectors: the normalized steps of a call, and the pure rules that
//! fold them into its record.
//!
//! Connectors deliver at least once and, over UDP or webhooks, not always in order. So each
//! step is applied by rules that make the order matter as little as possible: a call never
//! goes back from ended to ringing or answered, a late `answered` after the hang-up only
//! fills in the answer time, and a `missed` after an answer is an ordinary end.

use serde::{Deserialize, Serialize};

use super::{Call, CallDirection, CallStatus, Id, OpenInterest, Timestamp};

/// One normalized call event, as the pipeline hands it to the store.
#[derive(Debug, Clone)]
pub struct IngestCall {
    /// Connector instance.
    pub connector_id: String,
    /// Channel name of the instance (the Feed and new leads carry it as their source).
    pub channel: String,
    /// Department of the instance: its supervisors see the calls, new leads join it.
    pub department_id: Option<Id>,
    /// The event's idempotency key.
    pub external_id: String,
    /// The PBX's id of the call (Asterisk `Linkedid`, SIP `Call-ID`, …).
    pub call_external_id: String,
    /// When it happened, by the PBX's clock.
    pub occurred_at: Timestamp,
    /// What happened.
    pub step: CallStep,
    /// Call tracking's traffic source (`raw.traffic_source` of the event), if any.
    pub traffic_source: Option<serde_json::Value>,
    /// When the call opens an Interest for its party.
    pub open_interest: OpenInterest,
}

/// What happened in a call. Stored as JSON with the event, so an event that arrives before
/// its call can be applied later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallStep {
    /// It rings (at an extension, if known).
    Ringing {
        /// Calling number.
        from: String,
        /// Called number.
        to: String,
        /// Direction.
        direction: CallDirection,
        /// The extension it rings at.
        extension: Option<String>,
    },
    /// Picked up.
    Answered {
        /// The extension that answered.
        by_extension: Option<String>,
    },
    /// Transferred to another extension or number.
    Transferred {
        /// Where.
        to_extension: String,
    },
    /// Ended after an answer.
    HungUp {
        /// Talk time, if the PBX says.
        duration_secs: Option<u64>,
        /// Hang-up cause as the PBX states it.
        cause: Option<String>,
    },
    /// Ended unanswered: `cancelled`, `busy`, `no_answer`, `rejected`.
    Missed {
        /// Why.
        reason: String,
    },
    /// A click-to-call the PBX refused.
    Failed {
        /// Why, in the PBX's words.
        reason: String,
    },
    /// A recording can be fetched.
    Recording {
        /// From where.
        url: String,
    },
}

impl CallStep {
    /// Stored name of the step.
    pub fn kind(&self) -> &'static str {
        match self {
            CallStep::Ringing { .. } => "ringing",
            CallStep::Answered { .. } => "answered",
            CallStep::Transferred { .. } => "transferred",
            CallStep::HungUp { .. } => "hung_up",
            CallStep::Missed { .. } => "missed",
            CallStep::Failed { .. } => "failed",
            CallStep::Recording { .. } => "recording",
        }
    }

    /// The extension this step names, whose operator the call then belongs to.
    pub fn extension(&self) -> Option<&str> {
        match self {
            CallStep::Ringing { extension, .. } => extension.as_deref(),
            CallStep::Answered { by_extension } => by_extension.as_deref(),
            CallStep::Transferred { to_extension } => Some(to_extension),
            _ => None,
        }
    }
}

/// What storing a call event did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CallOutcome {
    /// The event was stored before: nothing changed.
    Duplicate,
    /// The call has not started (no `ringing` yet): the event waits for it.
    Waiting,
    /// Applied to the call.
    Applied {
        /// The call after the event (and any that were waiting for it).
        call: Box<Call>,
        /// Whether this event opened the call.
        created: bool,
        /// A new lead made for an unknown caller.
        new_lead: Option<Id>,
        /// The callback task a missed call created.
        callback_task: Option<Id>,
        /// Callback tasks an answered call with the same number completed.
        callbacks_done: Vec<Id>,
    },
}

/// Folds `step` at time `at` into call `k`. `operator` is the user whose extension the step
/// names, if any. Pure: the store does the lookups and the writes.
pub fn apply_call_step(k: &mut Call, step: &CallStep, at: Timestamp, operator: Option<Id>) {
    let ended = k.status.is_final();
    match step {
        CallStep::Ringing { extension, .. } => {
            // Another leg ringing (a queue trying the next agent) moves the call along while
            // nobody has answered.
            if k.status == CallStatus::Ringing {
                if let Some(x) = extension {
                    k.extension = Some(x.clone());
                    if operator.is_some() {
                        k.operator_id = operator;
                    }
                }
            }
        }
        CallStep::Answered { by_extension } => {
            if k.answered_at.is_none() {
                k.answered_at = Some(at);
            }
            if !ended {
                k.status = CallStatus::Answered;
            }
            if k.status != CallStatus::Missed {
                if let Some(x) = by_extension {
                    k.extension = Some(x.clone());
                    if operator.is_some() {
                        k.operator_id = operator;
                    }
                }
            }
            if k.status == CallStatus::Completed && k.duration_secs.is_none() {
                k.duration_secs = k.ended_at.map(|e| secs_between(at, e));
            }
        }
        CallStep::Transferred { to_extension } => {
            if !ended {
                k.extension = Some(to_extension.clone());
                if operator.is_some() {
                    k.operator_id = operator;
                }
            }
        }
        CallStep::HungUp { duration_secs, .. } => {
            if !ended {
                k.status = CallStatus::Completed;
                k.ended_at = Some(at);
                k.duration_secs = duration_secs
                    .and_then(|d| i64::try_from(d).ok())
                    .or_else(|| k.answered_at.map(|a| secs_between(a, at)));
            }
        }
        CallStep::Missed { reason } => {
            if !ended {
                if k.answered_at.is_some() {
                    // Answered on one leg, "missed" on another: the call was taken.
                    k.status = CallStatus::Completed;
                    k.duration_secs = k.answered_at.map(|a| secs_between(a, at));
                } else {
                    k.status = CallStatus::Missed;
                    k.missed_reason = Some(reason.clone());
                }
                k.ended_at = Some(at);
            }
        }
        CallStep::Failed { .. } => {
            if !ended && k.answered_at.is_none() {
                k.status = CallStatus::Missed;
                k.missed_reason = Some("failed".to_owned());
                k.ended_at = Some(at);
            }
        }
        CallStep::Recording { url } => {
            k.recording_url = Some(url.clone());
        }
    }
}

fn secs_between(from: Timestamp, to: Timestamp) -> i64 {
    ((to.micros() - from.micros()) / 1_000_000).max(0)
}

/// A one-line summary of a traffic source for the `source` of a lead or Interest:
/// `yandex / cpc / spring_sale / chairs`, or the provider's tracking number, or (a form
/// without UTM tags) the referring site: `referral: www.google.com`.
pub fn traffic_summary(ts: &serde_json::Value) -> Option<String> {
    let summary = utm_summary(ts).or_else(|| {
        let referrer = ts.get("referrer").and_then(serde_json::Value::as_str)?;
        let host = referrer
            .trim()
            .split_once("://")
            .map(|(_, rest)| rest)?
            .split(['/', '?', '#'])
            .next()?
            .rsplit('@')
            .next()?
            .split(':')
            .next()?
            .to_ascii_lowercase();
        (!host.is_empty()).then(|| format!("referral: {host}"))
    })?;
    Some(summary.chars().take(200).collect())
}

fn utm_summary(ts: &serde_json::Value) -> Option<String> {
    let parts: Vec<&str> = ["utm_source", "utm_medium", "utm_campaign", "utm_term"]
        .iter()
        .filter_map(|k| ts.get(*k).and_then(serde_json::Value::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let s = if parts.is_empty() {
        ["marker", "tracking_number", "provider"]
            .iter()
            .find_map(|k| ts.get(*k).and_then(serde_json::Value::as_str))?
            .trim()
            .to_owned()
    } else {
        parts.join(" / ")
    };
    (!s.is_empty()).then(|| s.chars().take(200).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_traffic_source_sums_up_as_utm_tags_then_marker_then_referrer() {
        use serde_json::json;
        let ts =
            json!({"utm_source": "google", "utm_medium": "cpc", "referrer": "https://x.example/"});
        assert_eq!(traffic_summary(&ts).as_deref(), Some("google / cpc"));
        let ts = json!({"provider": "mango", "referrer": "https://x.example/"});
        assert_eq!(traffic_summary(&ts).as_deref(), Some("mango"));
        let ts = json!({"referrer": "https://user@WWW.Google.com:443/search?q=chairs"});
        assert_eq!(
            traffic_summary(&ts).as_deref(),
            Some("referral: www.google.com")
        );
        assert_eq!(traffic_summary(&json!({"referrer": "not a url"})), None);
        assert_eq!(traffic_summary(&json!({"utm_source": "  "})), None);
        assert_eq!(traffic_summary(&json!({})), None);
    }

    fn t(s: i64) -> Timestamp {
        Timestamp(1_700_000_000_000_000 + s * 1_000_000)
    }

    fn call() -> Call {
        Call {
            id: 1,
            connector_id: "pbx".into(),
            external_id: "c1".into(),
            direction: CallDirection::Inbound,
            from_number: "+74951234567".into(),
            to_number: "101".into(),
            status: CallStatus::Ringing,
            missed_reason: None,
            operator_id: None,
            extension: Some("101".into()),
            client_id: None,
            contact_id: None,
            lead_id: Some(1),
            interest_id: None,
            started_at: t(0),
            answered_at: None,
            ended_at: None,
            duration_secs: None,
            recording_url: None,
            traffic_source: None,
            created_at: t(0),
            updated_at: t(0),
        }
    }

    fn answered(x: &str) -> CallStep {
        CallStep::Answered {
            by_extension: Some(x.into()),
        }
    }

    const HANGUP: CallStep = CallStep::HungUp {
        duration_secs: None,
        cause: None,
    };

    #[test]
    fn answered_then_hung_up_counts_talk_time() {
        let mut k = call();
        apply_call_step(&mut k, &answered("102"), t(5), Some(7));
        assert_eq!(k.status, CallStatus::Answered);
        assert_eq!(
            (k.extension.as_deref(), k.operator_id),
            (Some("102"), Some(7))
        );
        apply_call_step(&mut k, &HANGUP, t(65), None);
        assert_eq!(k.status, CallStatus::Completed);
        assert_eq!(k.duration_secs, Some(60));
        // A late duplicate-ish "missed" from another leg changes nothing.
        apply_call_step(
            &mut k,
            &CallStep::Missed {
                reason: "cancelled".into(),
            },
            t(66),
            None,
        );
        assert_eq!(k.status, CallStatus::Completed);
        assert_eq!(k.missed_reason, None);
    }

    #[test]
    fn a_late_answer_after_the_hang_up_only_fills_in_the_times() {
        let mut k = call();
        apply_call_step(&mut k, &HANGUP, t(70), None);
        assert_eq!(k.status, CallStatus::Completed);
        apply_call_step(&mut k, &answered("101"), t(10), Some(3));
        assert_eq!(k.status, CallStatus::Completed);
        assert_eq!(k.answered_at, Some(t(10)));
        assert_eq!(k.duration_secs, Some(60));
    }

    #[test]
    fn missed_unless_answered_and_never_back_to_ringing() {
        let mut k = call();
        apply_call_step(
            &mut k,
            &CallStep::Missed {
                reason: "busy".into(),
            },
            t(20),
            None,
        );
        assert_eq!(
            (k.status, k.missed_reason.as_deref()),
            (CallStatus::Missed, Some("busy"))
        );
        let ring = CallStep::Ringing {
            from: "+74951234567".into(),
            to: "101".into(),
            direction: CallDirection::Inbound,
            extension: Some("103".into()),
        };
        apply_call_step(&mut k, &ring, t(21), Some(9));
        assert_eq!(k.status, CallStatus::Missed);
        assert_eq!(k.extension.as_deref(), Some("101"));

        let mut k = call();
        apply_call_step(&mut k, &answered("101"), t(3), None);
        apply_call_step(
            &mut k,
            &CallStep::Missed {
                reason: "cancelled".into(),
            },
            t(9),
            None,
        );
        assert_eq!(k.status, CallStatus::Completed, "answered on one leg");
        assert_eq!(k.duration_secs, Some(6));
    }

    #[test]
    fn a_refused_click_to_call_is_missed_as_failed() {
        let mut k = call();
        apply_call_step(
            &mut k,
            &CallStep::Failed {
                reason: "no such extension".into(),
            },
            t(1),
            None,
        );
        assert_eq!(
            (k.status, k.missed_reason.as_deref()),
            (CallStatus::Missed, Some("failed"))
        );
        apply_call_step(
            &mut k,
            &CallStep::Recording {
                url: "https://pbx/r.wav".into(),
            },
            t(2),
            None,
        );
        assert_eq!(k.recording_url.as_deref(), Some("https://pbx/r.wav"));
    }

    #[test]
    fn traffic_summaries() {
        let ts = serde_json::json!({"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "spring", "provider": "roistat"});
        assert_eq!(
            traffic_summary(&ts).as_deref(),
            Some("yandex / cpc / spring")
        );
        let ts = serde_json::json!({"tracking_number": "+74950000000", "provider": "mango"});
        assert_eq!(traffic_summary(&ts).as_deref(), Some("+74950000000"));
        assert_eq!(
            traffic_summary(&serde_json::json!({"utm_source": " "})),
            None
        );
        assert_eq!(traffic_summary(&serde_json::json!([])), None);
    }
}
