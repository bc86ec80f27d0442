//! Timestamps for people: the wire carries milliseconds since the Unix epoch (see
//! [`crate::metrics::Sample::timestamp_ms`]); logs and exports write them as RFC 3339 UTC.
//! Kept here so the agent's log lines and `lab`'s CSV export read the same.

/// `2026-11-23T10:01:40.123Z` for milliseconds since the Unix epoch.
pub fn rfc3339_utc_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// `13:04:05`: the UTC time of day of milliseconds since the Unix epoch (timelines, `lab top`).
pub fn clock_utc(ms: u64) -> String {
    let secs = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian, after Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_leap_day_and_now() {
        assert_eq!(rfc3339_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc_ms(951_786_123_456), "2000-02-29T01:02:03.456Z");
        assert_eq!(
            rfc3339_utc_ms(1_795_428_100_123),
            "2026-11-23T10:01:40.123Z"
        );
    }

    #[test]
    fn clock_is_the_utc_time_of_day() {
        assert_eq!(clock_utc(0), "00:00:00");
        assert_eq!(clock_utc((13 * 3600 + 4 * 60 + 5) * 1000 + 999), "13:04:05");
        assert_eq!(clock_utc(1_795_428_100_123), "10:01:40");
    }
}
