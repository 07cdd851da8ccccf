//! What the reconciler needs beyond the order queries: a fair queue of pending orders due for
//! a provider query, their per-order back-off, and which orders it cannot act on because their
//! provider app is no longer configured.
//!
//! The queue: every pending order has a next-query time (`next_query_at`, its creation time
//! until first queried) and a count of queries that found it unpaid (`query_attempts`). A pass
//! of `limit` takes at most half of it by fewest attempts, newest due first, and fills the
//! rest longest-overdue first. The first half reaches a new order at the first pass after it
//! becomes due however many older orders wait (unless more than that half become due between
//! two passes); the second half serves every due order in due-time order, so none waits more
//! than (orders due before it) / ⌈limit / 2⌉ passes. docs/reliability.md states the bound.

use chrono::{DateTime, Utc};
use diesel::dsl::not;
use diesel::prelude::*;
use paygate_core::{AppName, Order, OrderId, OrderStatus, ProviderKind};

use crate::conn::Db;
use crate::orders::{OrderRow, into_orders};
use crate::schema::{anomalies, orders, outbox_events};
use crate::{AnomalyKind, LockKey, Store, StoreError, db_time};

/// The oldest work still waiting, for the gauges operators alert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// When the oldest merchant webhook event not yet delivered was created.
    pub undelivered_event: Option<DateTime<Utc>>,
    /// When the oldest pending order was created.
    pub pending_order: Option<DateTime<Utc>>,
}

/// A pending order due for a provider query.
#[derive(Debug, Clone, PartialEq)]
pub struct DueQuery {
    /// The order.
    pub order: Order,
    /// How many earlier queries found it unpaid (0 for its first query).
    pub attempts: u32,
}

/// When to query an order again after a query that found it unpaid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAgain {
    /// The order queried.
    pub order: OrderId,
    /// Its queries so far, this one included.
    pub attempts: u32,
    /// Not before this.
    pub at: DateTime<Utc>,
}

/// The provider apps paygate is configured for; the reconciler only picks their orders.
pub type ConfiguredApps = [(ProviderKind, AppName)];

/// A condition on order rows, boxed so its shape can follow the configured apps.
type OrderCondition =
    Box<dyn BoxableExpression<orders::table, Db, SqlType = diesel::sql_types::Bool>>;

/// `(provider, app)` is one of `apps`: one `provider = ? AND app IN (…)` per provider, so the
/// providers need not be known here.
fn of_apps(apps: &ConfiguredApps) -> OrderCondition {
    let mut by_provider: std::collections::BTreeMap<ProviderKind, Vec<String>> =
        std::collections::BTreeMap::new();
    for (provider, name) in apps {
        by_provider
            .entry(*provider)
            .or_default()
            .push(name.to_string());
    }
    // No apps: an empty `IN ()` matches nothing.
    let mut condition: OrderCondition = Box::new(orders::app.eq_any(Vec::<String>::new()));
    for (provider, names) in by_provider {
        condition = Box::new(
            condition.or(orders::provider
                .eq(provider.as_str().to_owned())
                .and(orders::app.eq_any(names))),
        );
    }
    condition
}

fn to_attempts(stored: i64) -> u32 {
    u32::try_from(stored.max(0)).unwrap_or(u32::MAX)
}

fn into_due(rows: Vec<(OrderRow, i64)>) -> Result<Vec<DueQuery>, StoreError> {
    rows.into_iter()
        .map(|(row, attempts)| {
            Ok(DueQuery {
                order: row.into_order()?,
                attempts: to_attempts(attempts),
            })
        })
        .collect()
}

impl Store {
    /// The oldest undelivered event and the oldest pending order: two indexed `MIN`s.
    pub async fn oldest_backlog(&self) -> Result<Backlog, StoreError> {
        use diesel::dsl::min;
        self.run(move |conn| {
            let event: Option<chrono::NaiveDateTime> = outbox_events::table
                .filter(outbox_events::delivered_at.is_null())
                .select(min(outbox_events::created_at))
                .first(conn)?;
            let order: Option<chrono::NaiveDateTime> = orders::table
                .filter(orders::status.eq(OrderStatus::Pending.as_str()))
                .select(min(orders::created_at))
                .first(conn)?;
            Ok(Backlog {
                undelivered_event: event.map(crate::utc),
                pending_order: order.map(crate::utc),
            })
        })
        .await
    }

    /// Up to `limit` pending orders of `apps` due for a query at `now` (first queries only for
    /// orders created before `first_query_before`): at most half by fewest attempts, newest
    /// due first, the rest longest-overdue first.
    pub async fn pending_orders_due(
        &self,
        apps: &ConfiguredApps,
        first_query_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueQuery>, StoreError> {
        let (first_query_before, now) = (db_time(first_query_before), db_time(now));
        let due = move || {
            orders::table
                .into_boxed::<Db>()
                .filter(orders::status.eq(OrderStatus::Pending.as_str()))
                .filter(orders::next_query_at.le(now))
                .filter(orders::created_at.lt(first_query_before))
                .filter(of_apps(apps))
        };
        let priority = due()
            .order((
                orders::query_attempts.asc(),
                orders::next_query_at.desc(),
                orders::id.desc(),
            ))
            .limit(i64::from(limit / 2))
            .select((OrderRow::as_select(), orders::query_attempts));
        let overdue = due()
            .order((orders::next_query_at.asc(), orders::id.asc()))
            .limit(i64::from(limit))
            .select((OrderRow::as_select(), orders::query_attempts));
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.run(move |conn| {
            let mut picked: Vec<(OrderRow, i64)> = priority.load(conn)?;
            let overdue: Vec<(OrderRow, i64)> = overdue.load(conn)?;
            for row in overdue {
                if picked.len() >= limit {
                    break;
                }
                if !picked.iter().any(|(p, _)| p.id == row.0.id) {
                    picked.push(row);
                }
            }
            into_due(picked)
        })
        .await
    }

    /// Closed orders of `apps` the reconciler watches, due at `now`: closed while the provider
    /// had no trade (so the buyer may still open and pay one) and expiring after
    /// `expiring_after`. Longest-overdue first, at most `limit`.
    pub async fn closed_orders_to_watch(
        &self,
        apps: &ConfiguredApps,
        expiring_after: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueQuery>, StoreError> {
        let query = orders::table
            .into_boxed::<Db>()
            .filter(orders::status.eq(OrderStatus::Closed.as_str()))
            .filter(orders::next_query_at.le(db_time(now)))
            .filter(orders::expires_at.gt(db_time(expiring_after)))
            .filter(of_apps(apps))
            .order((orders::next_query_at.asc(), orders::id.asc()))
            .limit(i64::from(limit))
            .select((OrderRow::as_select(), orders::query_attempts));
        self.run(move |conn| into_due(query.load(conn)?)).await
    }

    /// Records queries that found their orders unpaid: their attempt counts and when each is
    /// due again. Only pending and watched closed orders are touched (a watched order has a
    /// next query time; one closed for good has none). Each order's update locks its row, so
    /// it is a write routed by that order, all sent at once (the writer commits them together
    /// where they share a lane); an error is the first one met, the others are still applied.
    pub async fn reschedule_queries(&self, queried: Vec<QueryAgain>) -> Result<(), StoreError> {
        let mut writes = tokio::task::JoinSet::new();
        for again in queried {
            let store = self.clone();
            writes.spawn(async move {
                store
                    .write(LockKey::Order(again.order.clone()), move |conn| {
                        diesel::update(
                            orders::table
                                .filter(orders::id.eq(again.order.to_string()))
                                .filter(orders::status.eq_any([
                                    OrderStatus::Pending.as_str(),
                                    OrderStatus::Closed.as_str(),
                                ]))
                                .filter(orders::next_query_at.is_not_null()),
                        )
                        .set((
                            orders::query_attempts.eq(i64::from(again.attempts)),
                            orders::next_query_at.eq(Some(db_time(again.at))),
                        ))
                        .execute(conn)?;
                        Ok(())
                    })
                    .await
            });
        }
        let mut first_error = None;
        while let Some(joined) = writes.join_next().await {
            if let Err(error) = crate::unpanic(joined) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Pending orders of `apps` whose `expires_at` is at or before `now`, soonest-expired
    /// first, for the reconciler to close (after checking with the provider).
    pub async fn expired_pending_orders(
        &self,
        apps: &ConfiguredApps,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let query = orders::table
            .into_boxed::<Db>()
            .filter(orders::status.eq(OrderStatus::Pending.as_str()))
            .filter(orders::expires_at.le(db_time(now)))
            .filter(of_apps(apps))
            .order((orders::expires_at.asc(), orders::id.asc()))
            .limit(i64::from(limit))
            .select(OrderRow::as_select());
        self.run(move |conn| into_orders(query.load(conn)?)).await
    }

    /// Up to `limit` pending orders of apps **not** in `apps` that have no `kind` anomaly yet,
    /// oldest first: orders the reconciler can neither query nor close, to be reported once.
    pub async fn unconfigured_pending_orders_unreported(
        &self,
        apps: &ConfiguredApps,
        kind: AnomalyKind,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let reported = anomalies::table
            .filter(anomalies::kind.eq(kind.as_str()))
            .filter(anomalies::order_id.is_not_null())
            .select(anomalies::order_id);
        let query = orders::table
            .into_boxed::<Db>()
            .filter(orders::status.eq(OrderStatus::Pending.as_str()))
            .filter(not(of_apps(apps)))
            .filter(orders::id.nullable().ne_all(reported))
            .order(orders::id.asc())
            .limit(i64::from(limit))
            .select(OrderRow::as_select());
        self.run(move |conn| into_orders(query.load(conn)?)).await
    }
}
