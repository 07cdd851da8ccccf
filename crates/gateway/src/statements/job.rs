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

/// One app's bill day, as the job tracks it.
type Slot = (ProviderKind, AppName, NaiveDate);

/// What the job remembers between passes: when each app may be tried again.
#[derive(Debug, Default)]
pub struct JobState {
    next_attempt: HashMap<Slot, DateTime<Utc>>,
}

/// What an attempt at a day's bill came to, as the schedule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Reconciled (by this job or anyone else), or never possible: not tried again that day.
    Settled,
    /// Not ready, missing, or failed: tried again `retry_minutes` later.
    TryAgain,
}

impl JobState {
    /// Whether `slot` may be tried at `now`.
    fn due(&self, slot: &Slot, now: DateTime<Utc>) -> bool {
        self.next_attempt.get(slot).is_none_or(|at| *at <= now)
    }

    /// Records an attempt at `now`; `true` when the day is still not reconciled past the alert
    /// deadline, which is when the alert is raised.
    fn record(
        &mut self,
        slot: Slot,
        attempt: Attempt,
        schedule: &Schedule,
        now: DateTime<Utc>,
    ) -> bool {
        match attempt {
            Attempt::Settled => {
                self.next_attempt.insert(slot, DateTime::<Utc>::MAX_UTC);
                false
            }
            Attempt::TryAgain => {
                self.next_attempt.insert(slot, now + schedule.retry);
                past_deadline(schedule, now)
            }
        }
    }

    /// Forgets the days before `day`: only yesterday is looked at.
    fn keep_day(&mut self, day: NaiveDate) {
        self.next_attempt.retain(|(_, _, d), _| *d == day);
    }
}

/// The day the job reconciles at `now`, if it is time: yesterday in Beijing, from `run_at`.
pub fn due_day(schedule: &Schedule, now: DateTime<Utc>) -> Option<NaiveDate> {
    let local = now.with_timezone(&BEIJING);
    (local.time() >= schedule.run_at).then(|| local.date_naive() - TimeDelta::days(1))
}

/// Whether `now` is past the Beijing alert deadline of the due day.
fn past_deadline(schedule: &Schedule, now: DateTime<Utc>) -> bool {
    now.with_timezone(&BEIJING).time() >= schedule.alert_after
}

/// One pass at `now` (the clock is the caller's, so tests can move it): every app without a
/// stored run for the due day whose retry time has come.
pub async fn pass(
    state: &AppState,
    schedule: &Schedule,
    job: &mut JobState,
    lease: &mut Lease,
    now: DateTime<Utc>,
) {
    let Some(day) = due_day(schedule, now) else {
        return;
    };
    job.keep_day(day);
    for app in state.registry.iter() {
        if !lease.hold().await {
            return;
        }
        let slot = (app.kind(), app.name.clone(), day);
        let key = BillDayKey {
            app: app.name.clone(),
            provider: app.kind(),
            bill_day: day,
        };
        // Looked up before the retry time: a day finance reconciled by hand between two
        // attempts clears its alert at once, not at the next attempt.
        match state.store.reconciliation_run(&key).await {
            Ok(Some(_)) => {
                set_overdue(state, &key, false);
                job.record(slot, Attempt::Settled, schedule, now);
                continue;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot read reconciliation runs; retrying next pass");
                return;
            }
        }
        if !job.due(&slot, now) {
            continue;
        }
        let outcome = reconcile_day(state, app, day, BillSource::Download).await;
        let attempt = match &outcome {
            Ok(DayOutcome::Reconciled { run, paid }) => {
                tracing::info!(app = %key.app, provider = %key.provider, %day, status = %run.status.as_str(),
                    differences = run.differences_count, paid = paid.len(), "bill reconciled");
                Attempt::Settled
            }
            Ok(DayOutcome::Unsupported) => Attempt::Settled,
            Ok(DayOutcome::NotReady | DayOutcome::BillMissing) => Attempt::TryAgain,
            Err(error) => {
                tracing::warn!(%error, app = %key.app, %day, "bill reconciliation failed; retrying later");
                Attempt::TryAgain
            }
        };
        let overdue = job.record(slot, attempt, schedule, now);
        if overdue {
            tracing::warn!(app = %key.app, provider = %key.provider, %day, outcome = ?outcome.as_ref().ok(),
                "yesterday's bill is still not reconciled after the alert deadline");
        }
        set_overdue(state, &key, overdue);
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
            pass(&state, &schedule, &mut job, lease, Utc::now()).await;
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

    /// Beijing wall time on the 16th of January 2024.
    fn beijing(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 16, hour, minute, 0).unwrap() - TimeDelta::hours(8)
    }

    #[test]
    fn a_bill_not_ready_is_tried_every_30_minutes_and_alerted_from_the_deadline_on() {
        let schedule = StatementSettings::default().schedule().unwrap();
        let mut job = JobState::default();
        let day = NaiveDate::from_ymd_opt(2024, 1, 15).unwrap();
        let slot: Slot = (ProviderKind::WECHAT, AppName::parse("shop").unwrap(), day);
        // A clock stepped minute by minute from 09:00 to 15:59; the bill is ready at 14:45.
        let (mut attempts, mut alerts) = (Vec::new(), Vec::new());
        for minute in 9 * 60..16 * 60 {
            let now = beijing(minute / 60, minute % 60);
            if due_day(&schedule, now) != Some(day) || !job.due(&slot, now) {
                continue;
            }
            attempts.push(format!("{:02}:{:02}", minute / 60, minute % 60));
            let attempt = if minute >= 14 * 60 + 45 {
                Attempt::Settled
            } else {
                Attempt::TryAgain
            };
            if job.record(slot.clone(), attempt, &schedule, now) {
                alerts.push(format!("{:02}:{:02}", minute / 60, minute % 60));
            }
        }
        assert_eq!(
            attempts,
            [
                "10:00", "10:30", "11:00", "11:30", "12:00", "12:30", "13:00", "13:30", "14:00",
                "14:30", "15:00"
            ],
            "from run_at, every retry_minutes, and not again once reconciled"
        );
        assert_eq!(
            alerts,
            ["14:00", "14:30"],
            "only past alert_after, and not once reconciled"
        );
    }

    #[test]
    fn the_retry_interval_and_deadline_are_the_configured_ones() {
        let schedule = StatementSettings {
            run_at: "08:00".into(),
            retry_minutes: 5,
            alert_after: "08:10".into(),
            ..StatementSettings::default()
        }
        .schedule()
        .unwrap();
        let mut job = JobState::default();
        let slot: Slot = (
            ProviderKind::ALIPAY,
            AppName::parse("shop").unwrap(),
            NaiveDate::from_ymd_opt(2024, 1, 15).unwrap(),
        );
        assert!(!job.record(slot.clone(), Attempt::TryAgain, &schedule, beijing(8, 0)));
        assert!(!job.due(&slot, beijing(8, 4)));
        assert!(job.due(&slot, beijing(8, 5)));
        assert!(job.record(slot.clone(), Attempt::TryAgain, &schedule, beijing(8, 10)));
        // Another app's slot is its own.
        let other = (ProviderKind::WECHAT, slot.1.clone(), slot.2);
        assert!(job.due(&other, beijing(8, 11)));
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
