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
    let naive = parse_wire_time(text).ok_or_else(|| AlipayError::BadField {
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

/// Reads exactly `yyyy-MM-dd HH:mm:ss` with an optional `.S` to `.SSSSSSSSS`. Hand-written
/// because chrono's format-string parser dominates the cost of typing a notify.
fn parse_wire_time(text: &str) -> Option<NaiveDateTime> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = bytes.get(range)?;
        digits.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, sep)| bytes.get(at) != Some(&sep))
    {
        return None;
    }
    let nanos = match bytes.get(19..) {
        None | Some([]) => 0,
        Some([b'.', fraction @ ..]) if (1..=9).contains(&fraction.len()) => {
            let value = number(20..bytes.len())?;
            let scale = 10u32.pow(u32::try_from(9 - fraction.len()).ok()?);
            value * scale
        }
        Some(_) => return None,
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    chrono::NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?.and_hms_nano_opt(
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        nanos,
    )
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

    #[test]
    fn impossible_or_misshapen_times_are_refused() {
        for bad in [
            "2024-02-30 00:00:00",
            "2024-01-02 24:00:00",
            "2024-01-02 03:04",
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05.",
            "2024-01-02 03:04:05.1234567890",
            "2024-01-02 03:04:05Z",
            "+024-01-02 03:04:05",
            "２０24-01-02 03:04:05",
        ] {
            assert!(parse_china_time("t", bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_time_parser_never_panics(text in ".{0,32}") {
            let _ = parse_china_time("t", &text);
        }

        #[test]
        fn formatting_then_parsing_gives_the_instant_back(seconds in 0i64..4_102_444_800) {
            let instant = DateTime::from_timestamp(seconds, 0).unwrap();
            proptest::prop_assert_eq!(parse_china_time("t", &format_china_time(instant)).unwrap(), instant);
        }
    }
}
