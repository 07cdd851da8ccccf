//! Finance summaries: counts and fen sums grouped by day, provider, app or status.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use paygate_core::{Fen, OrderStatus};

use crate::conn::DbConnection;
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

/// One group's totals as the database sums them.
#[derive(QueryableByName)]
struct GroupTotals {
    #[diesel(sql_type = Nullable<Text>)]
    key: Option<String>,
    #[diesel(sql_type = BigInt)]
    order_count: i64,
    #[diesel(sql_type = BigInt)]
    paid_count: i64,
    #[diesel(sql_type = BigInt)]
    paid_amount: i64,
    #[diesel(sql_type = BigInt)]
    refunded_amount: i64,
    #[diesel(sql_type = BigInt)]
    unknown_status: i64,
}

/// `'a', 'b', …`: the names of the statuses `keep` selects, as SQL literals. They come from
/// [`OrderStatus`], never from input.
fn status_literals(keep: impl Fn(OrderStatus) -> bool) -> String {
    OrderStatus::ALL
        .iter()
        .filter(|s| keep(**s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The aggregate query for one grouping on one backend. `placeholders` are the backend's two
/// bind markers for `[from, to)`. Every value spliced into the text is ours (column names,
/// status names, an `i32` offset), so the query stays injection-free without binds for them.
fn summary_sql(group_by: GroupBy, zone: ReportZone, postgres: bool) -> String {
    let offset = zone.offset_seconds();
    let key = match group_by {
        // Both spellings shift the naive UTC timestamp by the zone's offset, then take the date.
        GroupBy::Day if postgres => {
            format!("to_char(paid_at + INTERVAL '{offset} seconds', 'YYYY-MM-DD')")
        }
        GroupBy::Day => format!("strftime('%Y-%m-%d', paid_at, '{offset:+} seconds')"),
        GroupBy::Provider => "provider".to_owned(),
        GroupBy::App => "app".to_owned(),
        GroupBy::Status => "status".to_owned(),
    };
    let time = if group_by == GroupBy::Status {
        "created_at"
    } else {
        "paid_at"
    };
    let (from, to) = if postgres { ("$1", "$2") } else { ("?", "?") };
    let paid = status_literals(OrderStatus::is_paid);
    let known = status_literals(|_| true);
    format!(
        "SELECT {key} AS key, \
           CAST(COUNT(*) AS BIGINT) AS order_count, \
           CAST(SUM(CASE WHEN status IN ({paid}) THEN 1 ELSE 0 END) AS BIGINT) AS paid_count, \
           CAST(SUM(CASE WHEN status IN ({paid}) THEN amount ELSE 0 END) AS BIGINT) AS paid_amount, \
           CAST(SUM(CASE WHEN status IN ({paid}) THEN refunded_amount ELSE 0 END) AS BIGINT) \
             AS refunded_amount, \
           CAST(SUM(CASE WHEN status IN ({known}) THEN 0 ELSE 1 END) AS BIGINT) AS unknown_status \
         FROM orders WHERE {time} >= {from} AND {time} < {to} GROUP BY 1"
    )
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
    /// `paid_at` in `zone`. The database does the grouping and summing (`GROUP BY`), so
    /// memory holds one row per group, not per order, whatever the range; sums are exact
    /// `BIGINT` fen (an overflow is a database error, never a wrap).
    pub async fn summary_in(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: GroupBy,
        zone: ReportZone,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        let (from, to) = (db_time(from), db_time(to));
        let groups = self
            .run(move |conn| {
                let postgres = matches!(conn, DbConnection::Pg(_));
                let query = diesel::sql_query(summary_sql(group_by, zone, postgres))
                    .bind::<Timestamp, _>(from)
                    .bind::<Timestamp, _>(to);
                let groups: Vec<GroupTotals> = match conn {
                    DbConnection::Pg(pg) => query.load(pg)?,
                    DbConnection::Sqlite(sqlite) => query.load(sqlite)?,
                };
                Ok(groups)
            })
            .await?;
        let mut rows = groups
            .into_iter()
            .map(|group| {
                let key = group
                    .key
                    .ok_or_else(|| corrupt("orders", "summary", "a paid_at that is not a date"))?;
                if group.unknown_status > 0 {
                    return Err(corrupt(
                        "orders",
                        &key,
                        format!("{} orders with an unknown status", group.unknown_status),
                    ));
                }
                let paid_amount = fen_column("orders", &key, group.paid_amount)?;
                let refunded_amount = fen_column("orders", &key, group.refunded_amount)?;
                let count = |n: i64| u64::try_from(n).map_err(|e| corrupt("orders", &key, e));
                Ok(SummaryRow {
                    order_count: count(group.order_count)?,
                    paid_count: count(group.paid_count)?,
                    net_amount: paid_amount.checked_sub(refunded_amount)?,
                    paid_amount,
                    refunded_amount,
                    key,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here, byte-wise, so both backends agree whatever the database's collation.
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(rows)
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
