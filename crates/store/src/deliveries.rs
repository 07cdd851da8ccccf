//! Webhook delivery bookkeeping and leases.
//!
//! - Every attempt to deliver an outbox event to a merchant endpoint is recorded, success or
//!   not, so support can see what a merchant's server answered and when.
//! - An operator redelivery starts a new *round*: the event becomes due again and every
//!   endpoint must acknowledge it anew.
//! - Leases make background work single-replica on a shared database without a
//!   backend-specific lock: a row per job, claimed or renewed by compare-and-set on
//!   `(holder, expires_at)`. A replica that dies stops renewing, and its lease lapses.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::{AppName, OrderId};

use crate::conn::on_backend;
use crate::outbox::OutboxEvent;
use crate::schema::{leases, orders, outbox_events, webhook_attempts};
use crate::{EventId, LockKey, Store, StoreError, db_now, db_time, utc};

/// One recorded attempt to deliver an event to one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAttempt {
    /// The attempt's id (`wha_` + ULID).
    pub id: String,
    /// The event delivered.
    pub event_id: EventId,
    /// The delivery round it belongs to.
    pub delivery_round: i64,
    /// The endpoint URL.
    pub endpoint: String,
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status the endpoint answered, if it answered.
    pub response_status: Option<u16>,
    /// Why it failed (transport error or non-2xx), if it did.
    pub error: Option<String>,
}

impl WebhookAttempt {
    /// Whether the endpoint acknowledged the event (any 2xx).
    pub fn acknowledged(&self) -> bool {
        matches!(self.response_status, Some(200..=299))
    }
}

/// An attempt to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhookAttempt {
    /// The event delivered.
    pub event_id: EventId,
    /// The round it belongs to (the event's current `delivery_round`).
    pub delivery_round: i64,
    /// The endpoint URL.
    pub endpoint: String,
    /// When it was made.
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status, if the endpoint answered.
    pub response_status: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_attempts)]
struct AttemptRow {
    id: String,
    event_id: String,
    delivery_round: i64,
    endpoint: String,
    attempted_at: NaiveDateTime,
    response_status: Option<i64>,
    error: Option<String>,
}

impl AttemptRow {
    fn into_attempt(self) -> Result<WebhookAttempt, StoreError> {
        let bad = |reason: String| crate::corrupt("webhook_attempts", &self.id, reason);
        Ok(WebhookAttempt {
            event_id: EventId::parse(&self.event_id).map_err(|e| bad(e.to_string()))?,
            response_status: self
                .response_status
                .map(u16::try_from)
                .transpose()
                .map_err(|e| bad(e.to_string()))?,
            id: self.id,
            delivery_round: self.delivery_round,
            endpoint: self.endpoint,
            attempted_at: utc(self.attempted_at),
            error: self.error,
        })
    }
}

/// Which events `GET /v1/events` lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only this order's events.
    pub order_id: Option<OrderId>,
    /// `Some(true)`: only delivered; `Some(false)`: only undelivered.
    pub delivered: Option<bool>,
    /// Only events of orders of these apps (a scoped merchant key); all when `None`.
    pub apps: Option<Vec<AppName>>,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Store {
    /// Records one delivery attempt.
    pub async fn record_webhook_attempt(
        &self,
        attempt: NewWebhookAttempt,
    ) -> Result<WebhookAttempt, StoreError> {
        let row = AttemptRow {
            id: format!("wha_{}", ulid::Ulid::new()),
            event_id: attempt.event_id.to_string(),
            delivery_round: attempt.delivery_round,
            endpoint: attempt.endpoint,
            attempted_at: db_time(attempt.attempted_at),
            response_status: attempt.response_status.map(i64::from),
            error: attempt.error,
        };
        self.write(LockKey::NewRows, move |conn| {
            diesel::insert_into(webhook_attempts::table)
                .values(&row)
                .execute(conn)?;
            row.into_attempt()
        })
        .await
    }

    /// Every attempt for `event`, oldest first.
    pub async fn webhook_attempts(
        &self,
        event: &EventId,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        let query = webhook_attempts::table
            .filter(webhook_attempts::event_id.eq(event.to_string()))
            .order((
                webhook_attempts::attempted_at.asc(),
                webhook_attempts::id.asc(),
            ))
            .select(AttemptRow::as_select());
        self.run(move |conn| {
            let rows: Vec<AttemptRow> = query.load(conn)?;
            rows.into_iter().map(AttemptRow::into_attempt).collect()
        })
        .await
    }

    /// One event by id.
    pub async fn outbox_event(&self, id: &EventId) -> Result<OutboxEvent, StoreError> {
        let key = id.to_string();
        let query = outbox_events::table
            .find(key.clone())
            .select(crate::outbox::OutboxRow::as_select());
        self.run(move |conn| {
            let row: Option<crate::outbox::OutboxRow> = query.first(conn).optional()?;
            row.ok_or(StoreError::NotFound {
                entity: "outbox event",
                key,
            })?
            .into_event()
        })
        .await
    }

    /// Events matching `filter`, newest first.
    pub async fn list_outbox_events(
        &self,
        filter: EventFilter,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.run(move |conn| {
            let mut query = outbox_events::table
                .inner_join(orders::table)
                .select(crate::outbox::OutboxRow::as_select())
                .order((outbox_events::created_at.desc(), outbox_events::id.desc()))
                .limit(i64::from(filter.limit.clamp(1, 1000)))
                .into_boxed();
            if let Some(order_id) = &filter.order_id {
                query = query.filter(outbox_events::order_id.eq(order_id.to_string()));
            }
            match filter.delivered {
                Some(true) => query = query.filter(outbox_events::delivered_at.is_not_null()),
                Some(false) => query = query.filter(outbox_events::delivered_at.is_null()),
                None => {}
            }
            if let Some(apps) = &filter.apps {
                let names: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
                query = query.filter(orders::app.eq_any(names));
            }
            let rows: Vec<crate::outbox::OutboxRow> = query.load(conn)?;
            rows.into_iter()
                .map(crate::outbox::OutboxRow::into_event)
                .collect()
        })
        .await
    }

    /// Makes `event` due again now, in a new delivery round, so every endpoint receives it
    /// again (an operator's redelivery). Returns the updated event.
    pub async fn redeliver_event(&self, id: &EventId) -> Result<OutboxEvent, StoreError> {
        let key = id.to_string();
        let updated = self
            .write(LockKey::Outbox, move |conn| {
                diesel::update(outbox_events::table.find(key))
                    .set((
                        outbox_events::delivered_at.eq(None::<NaiveDateTime>),
                        outbox_events::next_attempt_at.eq(db_now()),
                        outbox_events::delivery_round.eq(outbox_events::delivery_round + 1),
                    ))
                    .execute(conn)
                    .map_err(StoreError::from)
            })
            .await?;
        if updated == 0 {
            return Err(StoreError::NotFound {
                entity: "outbox event",
                key: id.to_string(),
            });
        }
        self.outbox_event(id).await
    }

    /// Claims or renews the lease `name` for `holder` until `now + ttl`. True when `holder`
    /// holds it afterwards: it was free, expired, or already `holder`'s.
    pub async fn try_claim_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(LockKey::Lease(name.clone()), move |conn| {
            let now = db_now();
            let until = db_time(Utc::now() + ttl);
            let renewed = diesel::update(
                leases::table
                    .filter(leases::name.eq(&name))
                    .filter(leases::holder.eq(&holder).or(leases::expires_at.lt(now))),
            )
            .set((leases::holder.eq(&holder), leases::expires_at.eq(until)))
            .execute(conn)?;
            if renewed == 1 {
                return Ok(true);
            }
            // Nothing inserted: someone else holds a live lease (or inserted it a moment ago).
            // `ON CONFLICT DO NOTHING` rather than a caught unique violation, which on
            // PostgreSQL would take a savepoint of its own (see `writer.rs`).
            let inserted = on_backend!(conn, inner => diesel::insert_into(leases::table)
                .values((
                    leases::name.eq(&name),
                    leases::holder.eq(&holder),
                    leases::expires_at.eq(until),
                ))
                .on_conflict(leases::name)
                .do_nothing()
                .execute(inner)?);
            Ok(inserted == 1)
        })
        .await
    }

    /// Checks that the database takes writes, for readiness: through the same writer as every
    /// other write, inserts a lease row nobody uses and rolls it back, so nothing is kept. A
    /// database that answers reads but refuses writes (read-only, disk full, a lock held by
    /// another process) fails here.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        const PROBE: &str = "paygate-write-probe";
        self.write(LockKey::Lease(PROBE.to_owned()), |conn| {
            let probe = conn.transaction::<(), diesel::result::Error, _>(|conn| {
                diesel::insert_into(leases::table)
                    .values((
                        leases::name.eq(PROBE),
                        leases::holder.eq(PROBE),
                        leases::expires_at.eq(db_now()),
                    ))
                    .execute(conn)?;
                Err(diesel::result::Error::RollbackTransaction)
            });
            match probe {
                Ok(()) | Err(diesel::result::Error::RollbackTransaction) => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    /// Gives the lease up if `holder` has it, so another replica can take over at once
    /// (a clean shutdown).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(LockKey::Lease(name.clone()), move |conn| {
            let long_ago = db_time(DateTime::<Utc>::UNIX_EPOCH);
            diesel::update(
                leases::table
                    .filter(leases::name.eq(&name))
                    .filter(leases::holder.eq(&holder)),
            )
            .set(leases::expires_at.eq(long_ago))
            .execute(conn)?;
            Ok(())
        })
        .await
    }
}
