//! What the reconciler needs beyond the order queries: which pending orders are due for a
//! provider query, and a per-order back-off so abandoned orders are not queried every pass.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use paygate_core::{Order, OrderId, OrderStatus};

use crate::orders::{OrderRow, into_orders};
use crate::schema::orders;
use crate::{Store, StoreError, db_time};

impl Store {
    /// Pending orders created before `created_before` whose back-off has passed at `now`,
    /// longest-waiting first.
    pub async fn pending_orders_due(
        &self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let now = db_time(now);
        let query = orders::table
            .filter(orders::status.eq(OrderStatus::Pending.as_str()))
            .filter(orders::created_at.lt(db_time(created_before)))
            .filter(
                orders::reconcile_after
                    .is_null()
                    .or(orders::reconcile_after.le(now)),
            )
            .order((orders::created_at.asc(), orders::id.asc()))
            .limit(i64::from(limit))
            .select(OrderRow::as_select());
        self.run(move |conn| into_orders(query.load(conn)?)).await
    }

    /// Skips `order` in [`Store::pending_orders_due`] until `until`.
    pub async fn defer_reconcile(
        &self,
        order: &OrderId,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = order.to_string();
        self.write_locking(Some(id.to_string()), move |conn| {
            diesel::update(orders::table.find(id))
                .set(orders::reconcile_after.eq(Some(db_time(until))))
                .execute(conn)?;
            Ok(())
        })
        .await
    }
}
