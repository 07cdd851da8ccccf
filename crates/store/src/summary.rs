//! Finance summaries: counts and fen sums grouped by day, provider, app or status.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::{Fen, OrderStatus};

use crate::schema::orders;
use crate::{Store, StoreError, corrupt, db_time, fen_column};

/// How [`Store::summary`] groups orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// The UTC calendar date of `paid_at` (`YYYY-MM-DD`); the gateway may regroup for another
    /// time zone.
    Day,
    /// The provider (`wechat`, `alipay`).
    Provider,
    /// The provider app.
    App,
    /// The order status; this grouping covers orders *created* in the range, paid or not.
    Status,
}

/// One line of a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// The group: a date, provider, app or status name.
    pub key: String,
    /// Orders in the group.
    pub order_count: u64,
    /// Of those, orders whose money was received (paid, partially refunded, refunded).
    pub paid_count: u64,
    /// Sum of the amounts of the paid orders.
    pub paid_amount: Fen,
    /// Sum of what succeeded refunds gave back on those orders.
    pub refunded_amount: Fen,
    /// `paid_amount - refunded_amount`.
    pub net_amount: Fen,
}

/// The columns a summary needs from one order.
type SummaryColumns = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<NaiveDateTime>,
);

#[derive(Default)]
struct Totals {
    order_count: u64,
    paid_count: u64,
    paid_amount: Fen,
    refunded_amount: Fen,
}

impl Store {
    /// Sums over orders PAID in `[from, to)` (for [`GroupBy::Status`]: CREATED in
    /// `[from, to)`), grouped by `group_by`, sorted by key. Day keys are UTC dates of
    /// `paid_at`. Sums are exact `i64` fen; the grouping happens here rather than in SQL
    /// because day truncation has no portable SQL spelling across the two backends.
    pub async fn summary(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        let (from, to) = (db_time(from), db_time(to));
        let columns = (
            orders::id,
            orders::provider,
            orders::app,
            orders::status,
            orders::amount,
            orders::refunded_amount,
            orders::paid_at,
        );
        self.run(move |conn| {
            let rows: Vec<SummaryColumns> = if group_by == GroupBy::Status {
                orders::table
                    .filter(orders::created_at.ge(from))
                    .filter(orders::created_at.lt(to))
                    .select(columns)
                    .load(conn)?
            } else {
                orders::table
                    .filter(orders::paid_at.ge(from))
                    .filter(orders::paid_at.lt(to))
                    .select(columns)
                    .load(conn)?
            };
            let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
            for (id, provider, app, status_text, amount, refunded, paid_at) in rows {
                let status =
                    OrderStatus::parse(&status_text).map_err(|e| corrupt("orders", &id, e))?;
                let key = match group_by {
                    GroupBy::Day => paid_at
                        .map(|at| at.date().format("%Y-%m-%d").to_string())
                        .ok_or_else(|| corrupt("orders", &id, "paid_at vanished"))?,
                    GroupBy::Provider => provider,
                    GroupBy::App => app,
                    GroupBy::Status => status_text,
                };
                let totals = groups.entry(key).or_default();
                totals.order_count += 1;
                if status.is_paid() {
                    totals.paid_count += 1;
                    totals.paid_amount = totals
                        .paid_amount
                        .checked_add(fen_column("orders", &id, amount)?)?;
                    totals.refunded_amount = totals
                        .refunded_amount
                        .checked_add(fen_column("orders", &id, refunded)?)?;
                }
            }
            groups
                .into_iter()
                .map(|(key, t)| {
                    Ok(SummaryRow {
                        net_amount: t.paid_amount.checked_sub(t.refunded_amount)?,
                        key,
                        order_count: t.order_count,
                        paid_count: t.paid_count,
                        paid_amount: t.paid_amount,
                        refunded_amount: t.refunded_amount,
                    })
                })
                .collect()
        })
        .await
    }
}
