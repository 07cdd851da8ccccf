//! The daily statement job: on Beijing day T+1, from a configurable time (10:00 by default,
//! WeChat's advice), every configured app's bill of day T is reconciled, under a database
//! lease so one replica does it. "Not ready" and a missing bill are retried every
//! `retry_minutes` (30, as WeChat asks); past `alert_after` (14:00) a day still not reconciled
//! sets the `paygate_statement_overdue` gauge and logs a warning each attempt.
//!
//! Only yesterday is looked at: a day the job missed entirely (the service was down all of
//! T+1) is reconciled with `paygate reconcile` or `POST /v1/reconciliation/runs`.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use paygate_core::bill::BEIJING;
use paygate_core::{AppName, ProviderKind};
use paygate_store::BillDayKey;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{BillSource, DayOutcome, reconcile_day};
use crate::config::ConfigError;
use crate::reconciler::{Lease, run_leased};
use crate::state::AppState;

/// The lease that makes one replica at a time run the job.
pub const LEASE: &str = "statements";

/// `[statements]`: the daily reconciliation job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StatementSettings {
    /// Run the job in `serve`.
    pub enabled: bool,
    /// Beijing time (`HH:MM`) from which yesterday's bills are fetched.
    pub run_at: String,
    /// Minutes between attempts while a bill is not ready (or missing).
    pub retry_minutes: u64,
    /// Beijing time (`HH:MM`) after which a day still not reconciled is alerted.
    pub alert_after: String,
    /// How often the job wakes to look, in milliseconds.
    pub interval_ms: u64,
}

impl Default for StatementSettings {
    fn default() -> Self {
        StatementSettings {
            enabled: true,
            run_at: "10:00".to_owned(),
            retry_minutes: 30,
            alert_after: "14:00".to_owned(),
            interval_ms: 60_000,
        }
    }
}

fn clock(key: &str, text: &str) -> Result<NaiveTime, ConfigError> {
    NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| ConfigError::Invalid {
        key: key.to_owned(),
        reason: format!("{text:?} is not a Beijing time HH:MM"),
    })
}

/// The checked schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    run_at: NaiveTime,
    alert_after: NaiveTime,
    retry: TimeDelta,
    interval: Duration,
}

impl StatementSettings {
    /// Checks the times and intervals; a bad value stops start-up.
    pub fn schedule(&self) -> Result<Schedule, ConfigError> {
        let positive = |key: &str, value: u64| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    reason: "must be positive".to_owned(),
                })
            } else {
                Ok(value)
            }
        };
        let retry = positive("statements.retry_minutes", self.retry_minutes)?;
        Ok(Schedule {
            run_at: clock("statements.run_at", &self.run_at)?,
            alert_after: clock("statements.alert_after", &self.alert_after)?,
            retry: TimeDelta::minutes(i64::try_from(retry).unwrap_or(i64::MAX / 120)),
            interval: Duration::from_millis(positive("statements.interval_ms", self.interval_ms)?),
        })
    }
}

/// What the job remembers between passes: when each app may be tried again.
#[derive(Debug, Default)]
pub struct JobState {
    next_attempt: HashMap<(ProviderKind, AppName, NaiveDate), DateTime<Utc>>,
}

/// The day the job reconciles at `now`, if it is time: yesterday in Beijing, from `run_at`.
pub fn due_day(schedule: &Schedule, now: DateTime<Utc>) -> Option<NaiveDate> {
    let local = now.with_timezone(&BEIJING);
    (local.time() >= schedule.run_at).then(|| local.date_naive() - TimeDelta::days(1))
}

/// One pass: every app without a stored run for the due day whose retry time has come.
pub async fn pass(state: &AppState, schedule: &Schedule, job: &mut JobState, lease: &mut Lease) {
    let now = Utc::now();
    let Some(day) = due_day(schedule, now) else {
        return;
    };
    job.next_attempt.retain(|(_, _, d), _| *d == day);
    let overdue = now.with_timezone(&BEIJING).time() >= schedule.alert_after;
    for app in state.registry.iter() {
        if !lease.hold().await {
            return;
        }
        let slot = (app.kind(), app.name.clone(), day);
        if job.next_attempt.get(&slot).is_some_and(|at| *at > now) {
            continue;
        }
        let key = BillDayKey {
            app: app.name.clone(),
            provider: app.kind(),
            bill_day: day,
        };
        match state.store.reconciliation_run(&key).await {
            Ok(Some(_)) => {
                // Done (by this job, the CLI or finance): nothing to alert.
                set_overdue(state, &key, false);
                job.next_attempt.insert(slot, DateTime::<Utc>::MAX_UTC);
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read reconciliation runs; retrying next pass");
                return;
            }
        }
        let outcome = reconcile_day(state, app, day, BillSource::Download).await;
        let retry = match &outcome {
            Ok(DayOutcome::Reconciled { run, paid }) => {
                tracing::info!(app = %key.app, provider = %key.provider, %day, status = %run.status.as_str(),
                    differences = run.differences_count, paid = paid.len(), "bill reconciled");
                set_overdue(state, &key, false);
                false
            }
            Ok(DayOutcome::Unsupported) => {
                job.next_attempt
                    .insert(slot.clone(), DateTime::<Utc>::MAX_UTC);
                false
            }
            Ok(DayOutcome::NotReady | DayOutcome::BillMissing) => true,
            Err(error) => {
                tracing::warn!(%error, app = %key.app, %day, "bill reconciliation failed; retrying later");
                true
            }
        };
        if retry {
            job.next_attempt.insert(slot, now + schedule.retry);
            if overdue {
                tracing::warn!(app = %key.app, provider = %key.provider, %day, outcome = ?outcome.as_ref().ok(),
                    "yesterday's bill is still not reconciled after the alert deadline");
                set_overdue(state, &key, true);
            }
        }
    }
}

fn set_overdue(state: &AppState, key: &BillDayKey, overdue: bool) {
    state
        .metrics
        .statement_overdue
        .with_label_values(&[key.provider.as_str(), key.app.as_str()])
        .set(i64::from(overdue));
}

/// Runs the job until `shutdown` flips.
pub async fn run(
    state: web::Data<AppState>,
    schedule: Schedule,
    holder: String,
    shutdown: watch::Receiver<bool>,
) {
    let lease = Lease::new(state.store.clone(), LEASE, holder, schedule.interval);
    let job = std::sync::Arc::new(tokio::sync::Mutex::new(JobState::default()));
    run_leased(lease, schedule.interval, shutdown, |lease| {
        let (state, job) = (state.clone(), job.clone());
        Box::pin(async move {
            let mut job = job.lock().await;
            pass(&state, &schedule, &mut job, lease).await;
        })
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn yesterday_is_the_beijing_day_before_from_the_run_time() {
        let schedule = StatementSettings::default().schedule().unwrap();
        // 01:30 UTC is 09:30 in Beijing: too early.
        let early = Utc.with_ymd_and_hms(2024, 1, 16, 1, 30, 0).unwrap();
        assert_eq!(due_day(&schedule, early), None);
        // 02:00 UTC is 10:00 Beijing on the 16th: the 15th is due.
        let due = Utc.with_ymd_and_hms(2024, 1, 16, 2, 0, 0).unwrap();
        assert_eq!(
            due_day(&schedule, due),
            NaiveDate::from_ymd_opt(2024, 1, 15)
        );
        // 20:00 UTC on the 15th is 04:00 on the 16th in Beijing (the UTC date would say the
        // 15th is today): still too early for the 15th's bill.
        let night = Utc.with_ymd_and_hms(2024, 1, 15, 20, 0, 0).unwrap();
        assert_eq!(due_day(&schedule, night), None);
    }

    #[test]
    fn bad_times_stop_start_up() {
        let bad = StatementSettings {
            run_at: "25:00".into(),
            ..StatementSettings::default()
        };
        assert!(bad.schedule().unwrap_err().to_string().contains("run_at"));
        let zero = StatementSettings {
            retry_minutes: 0,
            ..StatementSettings::default()
        };
        assert!(zero.schedule().is_err());
    }
}
