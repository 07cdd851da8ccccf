//! China Standard Time (UTC+8, no daylight saving) for the v2 timestamps: `time_start` /
//! `time_expire` / `time_end` as `yyyyMMddHHmmss` and refund `success_time` as
//! `yyyy-MM-dd HH:mm:ss`. The offset is fixed here rather than taken from the server's zone,
//! so a gateway running in UTC still sends Beijing wall-clock times.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};

const COMPACT: &str = "%Y%m%d%H%M%S";
const DASHED: &str = "%Y-%m-%d %H:%M:%S";

/// A WeChat timestamp that is not in the documented shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a China-time timestamp in the expected format")]
pub struct TimeError(pub String);

/// UTC+8, checked at compile time.
const CHINA: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

/// Formats an instant as `yyyyMMddHHmmss` Beijing time, for `time_start` / `time_expire`.
pub fn to_china_compact(instant: DateTime<Utc>) -> String {
    instant.with_timezone(&CHINA).format(COMPACT).to_string()
}

/// Parses a `yyyyMMddHHmmss` Beijing time (`time_end`) into a UTC instant.
pub fn parse_china_compact(text: &str) -> Result<DateTime<Utc>, TimeError> {
    parse_strict(text, COMPACT, 14)
}

/// Parses a `yyyy-MM-dd HH:mm:ss` Beijing time (refund `success_time`) into a UTC instant.
pub fn parse_china_dashed(text: &str) -> Result<DateTime<Utc>, TimeError> {
    parse_strict(text, DASHED, 19)
}

fn parse_strict(text: &str, format: &str, len: usize) -> Result<DateTime<Utc>, TimeError> {
    // chrono accepts shorter fields ("2024011" as a year-month-day prefix); the fixed length
    // and ASCII check make the parse exact.
    if text.len() != len || !text.is_ascii() {
        return Err(TimeError(text.to_owned()));
    }
    let naive =
        NaiveDateTime::parse_from_str(text, format).map_err(|_| TimeError(text.to_owned()))?;
    naive
        .and_local_timezone(CHINA)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| TimeError(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn beijing_noon_is_four_in_the_morning_utc() {
        let noon_utc4 = Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap();
        assert_eq!(to_china_compact(noon_utc4), "20240101120000");
        assert_eq!(parse_china_compact("20240101120000"), Ok(noon_utc4));
    }

    #[test]
    fn the_china_date_rolls_over_at_sixteen_utc() {
        let late = Utc.with_ymd_and_hms(2023, 12, 31, 16, 30, 5).unwrap();
        assert_eq!(to_china_compact(late), "20240101003005");
        assert_eq!(parse_china_dashed("2024-01-01 00:30:05"), Ok(late));
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "2024010112000",
            "202401011200000",
            "20241301120000",
            "2024-01-01T00:30:05",
            "２０２４0101120000",
        ] {
            assert!(parse_china_compact(bad).is_err(), "{bad}");
        }
        assert!(parse_china_dashed("2024-01-01 0:30:05").is_err());
    }
}
