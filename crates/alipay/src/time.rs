//! China time. Alipay writes and expects wall-clock times in UTC+8 (`yyyy-MM-dd HH:mm:ss`)
//! whatever the server's zone; the Java SDK forces GMT+8, while the PHP, Python and Node SDKs use
//! the local clock and so are an hour-or-eight off on a UTC server. Everything inside paygate is
//! UTC; this module is the only place that converts.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};

use crate::AlipayError;

/// UTC+8, the zone of every Alipay timestamp. China has no daylight saving time.
pub const CHINA: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+8 is a valid offset"),
};

const WIRE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Writes an instant as Alipay's China wall-clock text, e.g. for `timestamp` and `time_expire`.
pub fn format_china_time(instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&CHINA)
        .format(WIRE_FORMAT)
        .to_string()
}

/// Reads Alipay's China wall-clock text (`gmt_payment`, `send_pay_date`, `gmt_refund` with its
/// optional `.SSS`) as a UTC instant.
pub fn parse_china_time(field: &'static str, text: &str) -> Result<DateTime<Utc>, AlipayError> {
    let naive = NaiveDateTime::parse_from_str(text, WIRE_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .map_err(|_| AlipayError::BadField {
            field,
            reason: format!("{text:?} is not yyyy-MM-dd HH:mm:ss"),
        })?;
    naive
        .and_local_timezone(CHINA)
        .single()
        .map(|china| china.with_timezone(&Utc))
        .ok_or_else(|| AlipayError::BadField {
            field,
            reason: format!("{text:?} is not a China-time instant"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn utc_midnight_is_eight_in_the_morning_in_china() {
        let instant = Utc.with_ymd_and_hms(2024, 1, 1, 19, 4, 5).unwrap();
        assert_eq!(format_china_time(instant), "2024-01-02 03:04:05");
    }

    #[test]
    fn china_text_reads_back_as_utc() {
        let instant = parse_china_time("gmt_payment", "2024-01-02 03:04:11").unwrap();
        assert_eq!(
            instant,
            Utc.with_ymd_and_hms(2024, 1, 1, 19, 4, 11).unwrap()
        );
    }

    #[test]
    fn refund_times_with_milliseconds_are_read() {
        let instant = parse_china_time("gmt_refund", "2024-01-03 10:00:00.123").unwrap();
        assert_eq!(instant.timestamp_subsec_millis(), 123);
        assert_eq!(
            instant,
            Utc.with_ymd_and_hms(2024, 1, 3, 2, 0, 0).unwrap()
                + chrono::Duration::milliseconds(123)
        );
    }

    #[test]
    fn malformed_times_name_the_field() {
        let err = parse_china_time("gmt_payment", "2024/01/02").unwrap_err();
        assert!(err.to_string().contains("gmt_payment"), "{err}");
    }
}
