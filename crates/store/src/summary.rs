//! Finance summaries: counts and fen sums grouped by day, provider, app or status.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use paygate_core::{Fen, OrderStatus};

use crate::schema::orders;
use crate::{Store, StoreError, corrupt, db_time, fen_column};

/// How [`Store::summary`] groups orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// The calendar date of `paid_at` (`YYYY-MM-DD`) in the summary's [`ReportZone`].
    Day,
    /// The provider (`wechat`, `alipay`).
    Provider,
    /// The provider app.
    App,
    /// The order status; this grouping covers orders *created* in the range, paid or not.
    Status,
}

/// The zone report days are counted in. Every accepted zone is a fixed offset, Asia/Shanghai
/// included: China has kept +08:00 without daylight saving since 1991, so the fixed offset is
/// exact for every instant paygate can hold, and no time-zone database is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReportZone {
    /// Beijing time, the days finance staff close their books in (the default).
    #[default]
    Shanghai,
    /// UTC.
    Utc,
    /// A fixed offset east of UTC, in minutes (within ±14:00, the range real zones use).
    Offset(i16),
}

/// The largest offset a real zone uses (Pacific/Kiritimati, +14:00), in minutes.
const MAX_OFFSET_MINUTES: i16 = 14 * 60;

impl ReportZone {
    /// Parses `Asia/Shanghai`, `UTC` or a fixed offset `+HH:MM` / `-HH:MM` (at most 14:00);
    /// anything else is `None`, so the accepted set stays closed.
    pub fn parse(text: &str) -> Option<ReportZone> {
        match text {
            "Asia/Shanghai" => return Some(ReportZone::Shanghai),
            "UTC" => return Some(ReportZone::Utc),
            _ => {}
        }
        let (sign, rest) = match text.as_bytes().first()? {
            b'+' => (1, &text[1..]),
            b'-' => (-1, &text[1..]),
            _ => return None,
        };
        let (hours, minutes) = rest.split_once(':')?;
        let two_digits = |part: &str| {
            (part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<i16>().ok())
                .flatten()
        };
        let (hours, minutes) = (two_digits(hours)?, two_digits(minutes)?);
        let total = hours * 60 + minutes;
        (minutes < 60 && total <= MAX_OFFSET_MINUTES).then_some(ReportZone::Offset(sign * total))
    }

    /// The zone as the API names it back: `Asia/Shanghai`, `UTC` or `+HH:MM`.
    pub fn name(self) -> String {
        match self {
            ReportZone::Shanghai => "Asia/Shanghai".to_owned(),
            ReportZone::Utc => "UTC".to_owned(),
            ReportZone::Offset(minutes) => {
                let sign = if minutes < 0 { '-' } else { '+' };
                let minutes = minutes.unsigned_abs();
                format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
            }
        }
    }

    /// Seconds east of UTC.
    pub fn offset_seconds(self) -> i32 {
        match self {
            ReportZone::Shanghai => 8 * 3600,
            ReportZone::Utc => 0,
            ReportZone::Offset(minutes) => i32::from(minutes) * 60,
        }
    }
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
    /// [`Store::summary_in`] with days counted in UTC.
    pub async fn summary(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        self.summary_in(from, to, group_by, ReportZone::Utc).await
    }

    /// Sums over orders PAID in `[from, to)` (for [`GroupBy::Status`]: CREATED in
    /// `[from, to)`), grouped by `group_by`, sorted by key. Day keys are the dates of
    /// `paid_at` in `zone`. Sums are exact `i64` fen.
    pub async fn summary_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: GroupBy,
        zone: ReportZone,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        let (from, to) = (db_time(from), db_time(to));
        let offset = Duration::seconds(i64::from(zone.offset_seconds()));
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
                        .map(|at| (at + offset).date().format("%Y-%m-%d").to_string())
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

#[cfg(test)]
mod tests {
    use super::ReportZone;

    #[test]
    fn zones_are_a_closed_set_of_fixed_offsets() {
        assert_eq!(ReportZone::default(), ReportZone::Shanghai);
        assert_eq!(
            ReportZone::parse("Asia/Shanghai"),
            Some(ReportZone::Shanghai)
        );
        assert_eq!(ReportZone::parse("UTC"), Some(ReportZone::Utc));
        for (text, seconds) in [
            ("+08:00", 28_800),
            ("-05:30", -19_800),
            ("+14:00", 50_400),
            ("-00:00", 0),
        ] {
            let zone = ReportZone::parse(text).unwrap();
            assert_eq!(zone.offset_seconds(), seconds, "{text}");
            assert_eq!(
                ReportZone::parse(&zone.name()),
                Some(zone),
                "{text} round-trips"
            );
        }
        assert_eq!(ReportZone::Shanghai.offset_seconds(), 8 * 3600);
        for refused in [
            "",
            "Asia/Tokyo",
            "utc",
            "+8",
            "+08",
            "+0800",
            "+14:01",
            "+08:60",
            "08:00",
            "+0a:00",
            "+١٢:00",
        ] {
            assert_eq!(ReportZone::parse(refused), None, "{refused}");
        }
    }
}
