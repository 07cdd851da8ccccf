//! The outbox of merchant events: written in the same transaction as the change it reports,
//! delivered later by a worker, so an event exists if and only if its change committed.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::{OrderId, RefundId};

use crate::conn::DbConnection;
use crate::schema::outbox_events;
use crate::text::text_enum;
use crate::{EventId, LockKey, Store, StoreError, corrupt, db_now, db_time, utc};

text_enum!(
    /// What happened, as merchants receive it in the event's `type`.
    EventKind {
        /// An order became paid.
        OrderPaid => "order.paid",
        /// An order was closed unpaid.
        OrderClosed => "order.closed",
        /// A refund succeeded.
        RefundSucceeded => "refund.succeeded",
        /// A refund failed.
        RefundFailed => "refund.failed",
        /// Something finance must look at happened to an order (e.g. a payment confirmed
        /// after the order was closed).
        AnomalyDetected => "anomaly.detected",
    }
);

/// An event to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxEvent {
    /// What happened.
    pub kind: EventKind,
    /// The order it concerns.
    pub order_id: OrderId,
    /// The refund it concerns, for refund events.
    pub refund_id: Option<RefundId>,
    /// The body merchants receive.
    pub payload: serde_json::Value,
}

/// An enqueued event and its delivery state.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// The event's id, stable across delivery attempts.
    pub id: EventId,
    /// What happened.
    pub kind: EventKind,
    /// The order it concerns.
    pub order_id: OrderId,
    /// The refund it concerns.
    pub refund_id: Option<RefundId>,
    /// The body merchants receive.
    pub payload: serde_json::Value,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When the merchant acknowledged it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// How many deliveries failed so far.
    pub attempts: i64,
    /// When the worker should try next.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Which delivery round is current: 0 at first, plus one per operator redelivery. An
    /// endpoint's acknowledgement counts only in the round it was given.
    pub delivery_round: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = outbox_events)]
pub(crate) struct OutboxRow {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) order_id: String,
    pub(crate) refund_id: Option<String>,
    pub(crate) payload: String,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) delivered_at: Option<NaiveDateTime>,
    pub(crate) attempts: i64,
    pub(crate) next_attempt_at: NaiveDateTime,
    pub(crate) last_error: Option<String>,
    pub(crate) delivery_round: i64,
}

impl OutboxRow {
    pub(crate) fn into_event(self) -> Result<OutboxEvent, StoreError> {
        let bad = |reason: String| corrupt("outbox_events", &self.id, reason);
        Ok(OutboxEvent {
            id: EventId::parse(&self.id).map_err(|e| bad(e.to_string()))?,
            kind: EventKind::parse(&self.kind)
                .ok_or_else(|| bad(format!("unknown kind {:?}", self.kind)))?,
            order_id: OrderId::parse(&self.order_id).map_err(|e| bad(e.to_string()))?,
            refund_id: self
                .refund_id
                .as_deref()
                .map(RefundId::parse)
                .transpose()
                .map_err(|e| bad(e.to_string()))?,
            payload: serde_json::from_str(&self.payload)
                .map_err(|e| bad(format!("payload: {e}")))?,
            created_at: utc(self.created_at),
            delivered_at: self.delivered_at.map(utc),
            attempts: self.attempts,
            next_attempt_at: utc(self.next_attempt_at),
            last_error: self.last_error,
            delivery_round: self.delivery_round,
        })
    }
}

/// Inserts an event due now, on the caller's connection (and so in the caller's transaction).
pub(crate) fn insert_event(
    conn: &mut DbConnection,
    event: &NewOutboxEvent,
) -> Result<EventId, StoreError> {
    let (id, row) = new_outbox_row(event);
    insert_outbox_row(conn, &row)?;
    Ok(id)
}

/// Inserts an event row built beforehand, so a hot write serializes its payload and draws
/// its id before it queues for the writer rather than on the writer's thread.
pub(crate) fn insert_outbox_row(
    conn: &mut DbConnection,
    row: &OutboxRow,
) -> Result<(), StoreError> {
    crate::prepared::InsertOutboxRow(row).execute(conn)?;
    Ok(())
}

/// The row a new event is stored as, under a fresh id, due for delivery now.
pub(crate) fn new_outbox_row(event: &NewOutboxEvent) -> (EventId, OutboxRow) {
    let id = EventId::generate();
    let now = db_now();
    let row = OutboxRow {
        id: id.to_string(),
        kind: event.kind.as_str().to_owned(),
        order_id: event.order_id.to_string(),
        refund_id: event.refund_id.as_ref().map(|r| r.to_string()),
        payload: event.payload.to_string(),
        created_at: now,
        delivered_at: None,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        delivery_round: 0,
    };
    (id, row)
}

/// How a claimed event's delivery ended, for [`Store::finish_event_claim`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// Every endpoint acknowledged it in its round.
    Delivered(DateTime<Utc>),
    /// An endpoint failed it: count a failed round and wait until `next_attempt_at`.
    Failed {
        /// Which endpoint failed and how.
        error: String,
        /// When to try again (the back-off).
        next_attempt_at: DateTime<Utc>,
    },
    /// Not finished, not failed (an endpoint was busy, or the process is stopping): give the
    /// event back, due again at `next_attempt_at` or as it was.
    Released {
        /// When it is due again; `None` leaves its due time as it was.
        next_attempt_at: Option<DateTime<Utc>>,
    },
}

/// `NotFound` when an update touched no event.
fn require_event(updated: usize, id: &EventId) -> Result<(), StoreError> {
    if updated == 0 {
        return Err(StoreError::NotFound {
            entity: "outbox event",
            key: id.to_string(),
        });
    }
    Ok(())
}

impl Store {
    /// Enqueues an event on its own (events tied to a status change go through
    /// [`Store::transition_order`] or [`Store::complete_refund`] instead).
    pub async fn insert_outbox_event(&self, event: NewOutboxEvent) -> Result<EventId, StoreError> {
        self.write_rerunnable(LockKey::NewRows, move |conn| insert_event(conn, &event))
            .await
    }

    /// Undelivered events due at `now`, oldest due first.
    pub async fn pending_outbox_events(
        &self,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let query = outbox_events::table
            .filter(outbox_events::delivered_at.is_null())
            .filter(outbox_events::next_attempt_at.le(db_time(now)))
            .order((
                outbox_events::next_attempt_at.asc(),
                outbox_events::id.asc(),
            ))
            .limit(i64::from(limit))
            .select(OutboxRow::as_select());
        self.run(move |conn| {
            let rows: Vec<OutboxRow> = query.load(conn)?;
            rows.into_iter().map(OutboxRow::into_event).collect()
        })
        .await
    }

    /// Claims for `holder` until `until` up to `limit` undelivered events due at `now` that no
    /// live claim holds, and returns them oldest due first. Claiming is a compare-and-set, so
    /// two replicas never both claim one event; only the claim's holder sends it.
    pub async fn claim_due_events(
        &self,
        holder: &str,
        limit: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        use outbox_events::{claimed_by, claimed_until, delivered_at, id, next_attempt_at};
        let (holder, now, until) = (holder.to_owned(), db_time(now), db_time(until));
        self.write(LockKey::Outbox, move |conn| {
            let unclaimed = || claimed_until.is_null().or(claimed_until.lt(now));
            let due: Vec<String> = outbox_events::table
                .filter(delivered_at.is_null())
                .filter(next_attempt_at.le(now))
                .filter(unclaimed())
                .order((next_attempt_at.asc(), id.asc()))
                .limit(i64::from(limit))
                .select(id)
                .load(conn)?;
            if due.is_empty() {
                return Ok(Vec::new());
            }
            // The same conditions again, so an event claimed or delivered in between is not
            // taken (PostgreSQL re-checks them on the locked row).
            diesel::update(
                outbox_events::table
                    .filter(id.eq_any(&due))
                    .filter(delivered_at.is_null())
                    .filter(unclaimed()),
            )
            .set((claimed_by.eq(Some(&holder)), claimed_until.eq(Some(until))))
            .execute(conn)?;
            let rows: Vec<OutboxRow> = outbox_events::table
                .filter(id.eq_any(&due))
                .filter(claimed_by.eq(&holder))
                .filter(claimed_until.eq(until))
                .order((next_attempt_at.asc(), id.asc()))
                .select(OutboxRow::as_select())
                .load(conn)?;
            rows.into_iter().map(OutboxRow::into_event).collect()
        })
        .await
    }

    /// Extends `holder`'s claims on `events` to `until`. Returns how many are still `holder`'s
    /// and undelivered (the others were taken over by another replica, or delivered).
    pub async fn renew_event_claims(
        &self,
        holder: &str,
        events: &[EventId],
        until: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        use outbox_events::{claimed_by, claimed_until, delivered_at, id};
        let ids: Vec<String> = events.iter().map(|e| e.to_string()).collect();
        let (holder, until) = (holder.to_owned(), db_time(until));
        self.write(LockKey::Outbox, move |conn| {
            let renewed = diesel::update(
                outbox_events::table
                    .filter(id.eq_any(&ids))
                    .filter(claimed_by.eq(&holder))
                    .filter(delivered_at.is_null()),
            )
            .set(claimed_until.eq(Some(until)))
            .execute(conn)?;
            Ok(renewed)
        })
        .await
    }

    /// Ends `holder`'s claim on `event` (claimed in round `round`) with `outcome`, clearing the
    /// claim. Nothing is recorded when `holder` no longer holds it (another replica took over),
    /// and only the claim is released when an operator started a new round meanwhile. True
    /// when the outcome was recorded.
    pub async fn finish_event_claim(
        &self,
        event: &EventId,
        round: i64,
        holder: &str,
        outcome: ClaimOutcome,
    ) -> Result<bool, StoreError> {
        use outbox_events::{
            attempts, claimed_by, claimed_until, delivered_at, delivery_round, id, last_error,
            next_attempt_at,
        };
        let (key, holder) = (event.to_string(), holder.to_owned());
        self.write(LockKey::Outbox, move |conn| {
            let mine = || {
                outbox_events::table
                    .filter(id.eq(key.clone()))
                    .filter(claimed_by.eq(holder.clone()))
            };
            let unclaim = || {
                (
                    claimed_by.eq(None::<String>),
                    claimed_until.eq(None::<NaiveDateTime>),
                )
            };
            let this_round = mine().filter(delivery_round.eq(round));
            let recorded = match outcome {
                ClaimOutcome::Delivered(at) => diesel::update(this_round)
                    .set((delivered_at.eq(Some(db_time(at))), unclaim()))
                    .execute(conn)?,
                ClaimOutcome::Failed {
                    error,
                    next_attempt_at: next,
                } => diesel::update(this_round)
                    .set((
                        attempts.eq(attempts + 1),
                        last_error.eq(Some(error)),
                        next_attempt_at.eq(db_time(next)),
                        unclaim(),
                    ))
                    .execute(conn)?,
                ClaimOutcome::Released {
                    next_attempt_at: Some(next),
                } => diesel::update(this_round)
                    .set((next_attempt_at.eq(db_time(next)), unclaim()))
                    .execute(conn)?,
                ClaimOutcome::Released {
                    next_attempt_at: None,
                } => diesel::update(this_round).set(unclaim()).execute(conn)?,
            };
            if recorded == 0 {
                diesel::update(mine()).set(unclaim()).execute(conn)?;
            }
            Ok(recorded == 1)
        })
        .await
    }

    /// Releases every claim `holder` still has (a stopping process), so another replica can
    /// deliver those events at once instead of after the claims' deadlines. Returns how many.
    pub async fn release_event_claims(&self, holder: &str) -> Result<usize, StoreError> {
        use outbox_events::{claimed_by, claimed_until};
        let holder = holder.to_owned();
        self.write(LockKey::Outbox, move |conn| {
            let released = diesel::update(outbox_events::table.filter(claimed_by.eq(&holder)))
                .set((
                    claimed_by.eq(None::<String>),
                    claimed_until.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)?;
            Ok(released)
        })
        .await
    }

    /// All events of one order, oldest first (for support and tests).
    pub async fn outbox_events_for_order(
        &self,
        order_id: &OrderId,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let query = outbox_events::table
            .filter(outbox_events::order_id.eq(order_id.to_string()))
            .order(outbox_events::id.asc())
            .select(OutboxRow::as_select());
        self.run(move |conn| {
            let rows: Vec<OutboxRow> = query.load(conn)?;
            rows.into_iter().map(OutboxRow::into_event).collect()
        })
        .await
    }

    /// Records that the merchant acknowledged the event.
    pub async fn mark_event_delivered(
        &self,
        id: &EventId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.write(LockKey::Outbox, move |conn| {
            let updated = diesel::update(outbox_events::table.find(id.as_str()))
                .set(outbox_events::delivered_at.eq(Some(db_time(at))))
                .execute(conn)?;
            require_event(updated, &id)
        })
        .await
    }

    /// Records a failed attempt and when to try again.
    pub async fn mark_event_failed(
        &self,
        id: &EventId,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (id, error) = (id.clone(), error.to_owned());
        self.write(LockKey::Outbox, move |conn| {
            let updated = diesel::update(outbox_events::table.find(id.as_str()))
                .set((
                    outbox_events::attempts.eq(outbox_events::attempts + 1),
                    outbox_events::last_error.eq(Some(error)),
                    outbox_events::next_attempt_at.eq(db_time(next_attempt_at)),
                ))
                .execute(conn)?;
            require_event(updated, &id)
        })
        .await
    }
}
