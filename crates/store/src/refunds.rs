//! Refunds: reserving an amount without ever over-refunding, and completing a refund together
//! with the order's refunded total and status.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::{Fen, Order, OrderEvent, OrderId, OutRefundNo, RefundId, RefundStatus};

use crate::conn::{DbConnection, on_backend};
use crate::orders::{OrderChangesRow, cas_status, load_order};
use crate::outbox::{NewOutboxEvent, insert_event};
use crate::schema::{orders, refunds};
use crate::{LockKey, Store, StoreError, corrupt, db_now, db_time, fen_column, utc};

/// A refund request accepted by the gateway, before it is sent to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    /// The order to refund.
    pub order_id: OrderId,
    /// The merchant's idempotency key.
    pub out_refund_no: OutRefundNo,
    /// How much to give back (at least 1 fen).
    pub amount: Fen,
    /// Shown to the buyer.
    pub reason: Option<String>,
    /// When the merchant asked (UTC).
    pub created_at: DateTime<Utc>,
}

/// A refund as paygate keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// paygate's id.
    pub id: RefundId,
    /// The refunded order.
    pub order_id: OrderId,
    /// The merchant's idempotency key.
    pub out_refund_no: OutRefundNo,
    /// The amount.
    pub amount: Fen,
    /// Shown to the buyer.
    pub reason: Option<String>,
    /// Where the refund is.
    pub status: RefundStatus,
    /// The provider's refund id, once known.
    pub provider_refund_id: Option<String>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When the money went back.
    pub succeeded_at: Option<DateTime<Utc>>,
    /// Bumped by every update.
    pub version: i64,
}

/// The outcome of [`Store::complete_refund`].
#[derive(Debug, Clone, PartialEq)]
pub enum RefundCompletion {
    /// The refund moved to its final status; `order` shows the new refunded total and status.
    Applied {
        /// The completed refund.
        refund: Refund,
        /// The order after the refund.
        order: Box<Order>,
    },
    /// The refund was already final (another notify or query got there first); nothing was
    /// written. Carries the refund as it is.
    Lost(Refund),
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refunds)]
struct RefundRow {
    id: String,
    order_id: String,
    out_refund_no: String,
    amount: i64,
    reason: Option<String>,
    status: String,
    provider_refund_id: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    succeeded_at: Option<NaiveDateTime>,
    version: i64,
}

impl RefundRow {
    fn into_refund(self) -> Result<Refund, StoreError> {
        let bad = |reason: String| corrupt("refunds", &self.id, reason);
        Ok(Refund {
            id: RefundId::parse(&self.id).map_err(|e| bad(e.to_string()))?,
            order_id: OrderId::parse(&self.order_id).map_err(|e| bad(e.to_string()))?,
            out_refund_no: OutRefundNo::parse(&self.out_refund_no)
                .map_err(|e| bad(e.to_string()))?,
            amount: fen_column("refunds", &self.id, self.amount)?,
            status: RefundStatus::parse(&self.status).map_err(|e| bad(e.to_string()))?,
            reason: self.reason,
            provider_refund_id: self.provider_refund_id,
            created_at: utc(self.created_at),
            updated_at: utc(self.updated_at),
            succeeded_at: self.succeeded_at.map(utc),
            version: self.version,
        })
    }
}

fn into_refunds(rows: Vec<RefundRow>) -> Result<Vec<Refund>, StoreError> {
    rows.into_iter().map(RefundRow::into_refund).collect()
}

fn find_by_out_refund_no(
    conn: &mut DbConnection,
    out_refund_no: &str,
) -> Result<Option<Refund>, StoreError> {
    refunds::table
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .select(RefundRow::as_select())
        .first(conn)
        .optional()?
        .map(RefundRow::into_refund)
        .transpose()
}

fn load_refund(conn: &mut DbConnection, id: &str) -> Result<Refund, StoreError> {
    refunds::table
        .find(id)
        .select(RefundRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            entity: "refund",
            key: id.to_owned(),
        })?
        .into_refund()
}

/// Takes the order's write lock by bumping its version (see the crate docs: write-first
/// transactions). `NotFound` if there is no such order.
fn lock_order(conn: &mut DbConnection, order_id: &str) -> Result<(), StoreError> {
    let locked = diesel::update(orders::table.find(order_id))
        .set(orders::version.eq(orders::version + 1))
        .execute(conn)?;
    if locked == 0 {
        return Err(StoreError::NotFound {
            entity: "order",
            key: order_id.to_owned(),
        });
    }
    Ok(())
}

/// Takes the order's row lock without changing the row (PostgreSQL; SQLite's one writer holds
/// the whole database). Every write routed by an order must lock that order's row before any
/// other row: the batches of two replicas lock rows in [`LockKey`] order, and a write that
/// locked one of the order's refunds first could wait on another replica's batch holding the
/// order while that batch waits for the refund (a deadlock PostgreSQL breaks only after
/// `deadlock_timeout`, failing one of the writes).
fn lock_order_row(conn: &mut DbConnection, order_id: &str) -> Result<(), StoreError> {
    if let DbConnection::Pg(pg) = conn {
        let locked: Option<String> = orders::table
            .find(order_id)
            .select(orders::id)
            .for_update()
            .first(pg)
            .optional()?;
        if locked.is_none() {
            return Err(StoreError::NotFound {
                entity: "order",
                key: order_id.to_owned(),
            });
        }
    }
    Ok(())
}

/// Checks the order and the amounts already reserved, then inserts the refund; runs inside
/// the transaction that holds the order's lock. An error leaves the order's version bumped:
/// the caller's savepoint (the writer's, one per job) rolls that back.
fn reserve_refund(conn: &mut DbConnection, new: &NewRefund) -> Result<Refund, StoreError> {
    let order_id = new.order_id.to_string();
    lock_order(conn, &order_id)?;
    let order = load_order(conn, &order_id)?;
    if !order.status.is_refundable() {
        return Err(StoreError::NotRefundable {
            status: order.status,
        });
    }
    // Processing refunds count: they may still succeed.
    let reserved_amounts: Vec<i64> = refunds::table
        .filter(refunds::order_id.eq(&order_id))
        .filter(refunds::status.ne(RefundStatus::Failed.as_str()))
        .select(refunds::amount)
        .load(conn)?;
    let mut reserved = Fen::ZERO;
    for amount in reserved_amounts {
        reserved = reserved.checked_add(fen_column("refunds", &order_id, amount)?)?;
    }
    let refundable = order.amount.checked_sub(reserved).unwrap_or(Fen::ZERO);
    if new.amount > refundable {
        return Err(StoreError::RefundExceedsPaid { refundable });
    }
    let now = db_now();
    let row = RefundRow {
        id: RefundId::generate().to_string(),
        order_id,
        out_refund_no: new.out_refund_no.to_string(),
        amount: new.amount.get(),
        reason: new.reason.clone(),
        status: RefundStatus::Processing.as_str().to_owned(),
        provider_refund_id: None,
        created_at: db_time(new.created_at),
        updated_at: now,
        succeeded_at: None,
        version: 0,
    };
    // `ON CONFLICT DO NOTHING`, not a caught unique violation, which on PostgreSQL would need
    // a savepoint of its own to leave the transaction usable (see `writer.rs`).
    let inserted = on_backend!(conn, inner => diesel::insert_into(refunds::table)
        .values(&row)
        .on_conflict(refunds::out_refund_no)
        .do_nothing()
        .execute(inner)?);
    if inserted == 0 {
        // Another order's refund took the number since the caller looked it up.
        return Err(match find_by_out_refund_no(conn, &row.out_refund_no)? {
            Some(existing) => StoreError::DuplicateRefund(Box::new(existing)),
            None => StoreError::NotFound {
                entity: "refund",
                key: row.out_refund_no,
            },
        });
    }
    row.into_refund()
}

#[derive(AsChangeset)]
#[diesel(table_name = refunds)]
struct RefundFinalRow {
    status: String,
    provider_refund_id: Option<String>,
    succeeded_at: Option<NaiveDateTime>,
    updated_at: NaiveDateTime,
}

/// Adds a succeeded refund to the order's refunded total and moves its status; runs inside
/// the completing transaction.
fn apply_refund_to_order(
    conn: &mut DbConnection,
    order_id: &str,
    amount: Fen,
) -> Result<Order, StoreError> {
    diesel::update(orders::table.find(order_id))
        .set((
            orders::refunded_amount.eq(orders::refunded_amount + amount.get()),
            orders::updated_at.eq(db_now()),
            orders::version.eq(orders::version + 1),
        ))
        .execute(conn)?;
    let order = load_order(conn, order_id)?;
    let event = OrderEvent::for_refunded_total(order.refunded_amount, order.amount);
    let next = order.status.apply(event)?;
    // This transaction holds the order's row lock, so the compare-and-set cannot lose.
    match cas_status(conn, order_id, order.status, next, &OrderChangesRow::none())? {
        Some(updated) => Ok(updated),
        None => load_order(conn, order_id),
    }
}

impl Store {
    /// Reserves a refund in `processing`. In one transaction holding the order's lock it
    /// checks the order is refundable and that the refunds not failed plus this one stay
    /// within the order amount, so concurrent requests cannot over-refund on either backend.
    /// A reused `out_refund_no` fails with [`StoreError::DuplicateRefund`] carrying the
    /// existing refund (whatever its order or amount).
    pub async fn create_refund(&self, new: NewRefund) -> Result<Refund, StoreError> {
        if new.amount == Fen::ZERO {
            return Err(StoreError::ZeroRefund);
        }
        self.write(LockKey::Order(new.order_id.clone()), move |conn| {
            let out_refund_no = new.out_refund_no.to_string();
            if let Some(existing) = find_by_out_refund_no(conn, &out_refund_no)? {
                return Err(StoreError::DuplicateRefund(Box::new(existing)));
            }
            reserve_refund(conn, &new)
        })
        .await
    }

    /// Moves a processing refund to `Succeeded` or `Failed`. On success it adds the amount to
    /// the order's refunded total and moves the order to partially refunded or refunded, and
    /// writes `outbox`, all in one transaction. A refund that is already final is
    /// [`RefundCompletion::Lost`]; asking for `Processing` is an error.
    ///
    /// The write locks the order's row, so it is routed by the order like every other write
    /// to that row: the refund's order is read first (it never changes).
    pub async fn complete_refund(
        &self,
        id: &RefundId,
        status: RefundStatus,
        provider_refund_id: Option<String>,
        at: DateTime<Utc>,
        outbox: Option<NewOutboxEvent>,
    ) -> Result<RefundCompletion, StoreError> {
        if !RefundStatus::Processing.can_become(status) {
            return Err(StoreError::IllegalRefundTransition {
                from: RefundStatus::Processing,
                to: status,
            });
        }
        let order_id = self.refund(id).await?.order_id;
        let order_row = order_id.to_string();
        let id = id.to_string();
        let changes = RefundFinalRow {
            status: status.as_str().to_owned(),
            provider_refund_id,
            succeeded_at: (status == RefundStatus::Succeeded).then(|| db_time(at)),
            updated_at: db_time(at),
        };
        // No savepoint of its own: an error rolls back the writer's savepoint for this job.
        self.write(LockKey::Order(order_id), move |conn| {
            // The order's row before the refund's (see `lock_order_row`): a refund notify on
            // one replica and the provider's synchronous answer on another complete the same
            // refund, each in a batch that may hold other refunds of the order.
            lock_order_row(conn, &order_row)?;
            let updated = diesel::update(
                refunds::table
                    .filter(refunds::id.eq(&id))
                    .filter(refunds::status.eq(RefundStatus::Processing.as_str())),
            )
            .set((&changes, refunds::version.eq(refunds::version + 1)))
            .execute(conn)?;
            let refund = load_refund(conn, &id)?;
            if updated == 0 {
                return Ok(RefundCompletion::Lost(refund));
            }
            let order_id = refund.order_id.to_string();
            let order = if status == RefundStatus::Succeeded {
                apply_refund_to_order(conn, &order_id, refund.amount)?
            } else {
                load_order(conn, &order_id)?
            };
            if let Some(event) = &outbox {
                insert_event(conn, event)?;
            }
            Ok(RefundCompletion::Applied {
                refund,
                order: Box::new(order),
            })
        })
        .await
    }

    /// One refund by paygate's id.
    pub async fn refund(&self, id: &RefundId) -> Result<Refund, StoreError> {
        let id = id.to_string();
        self.read(move |conn| load_refund(conn, &id)).await
    }

    /// One refund by the merchant's refund number.
    pub async fn refund_by_out_refund_no(
        &self,
        out_refund_no: &OutRefundNo,
    ) -> Result<Refund, StoreError> {
        let out_refund_no = out_refund_no.to_string();
        self.read(move |conn| {
            find_by_out_refund_no(conn, &out_refund_no)?.ok_or(StoreError::NotFound {
                entity: "refund",
                key: out_refund_no.clone(),
            })
        })
        .await
    }

    /// Every refund of an order, oldest first.
    pub async fn refunds_for_order(&self, order_id: &OrderId) -> Result<Vec<Refund>, StoreError> {
        let query = refunds::table
            .filter(refunds::order_id.eq(order_id.to_string()))
            .order(refunds::id.asc())
            .select(RefundRow::as_select());
        self.run(move |conn| into_refunds(query.load(conn)?)).await
    }

    /// Refunds in `status`, oldest first (the reconciler polls `Processing` ones).
    pub async fn refunds_in_status(
        &self,
        status: RefundStatus,
        limit: u32,
    ) -> Result<Vec<Refund>, StoreError> {
        let query = refunds::table
            .filter(refunds::status.eq(status.as_str()))
            .order((refunds::created_at.asc(), refunds::id.asc()))
            .limit(i64::from(limit))
            .select(RefundRow::as_select());
        self.run(move |conn| into_refunds(query.load(conn)?)).await
    }
}
