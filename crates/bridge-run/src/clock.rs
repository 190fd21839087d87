//! Wall-clock formatting for the log and for recording folder names (UTC, no time zone
//! database needed), and seconds since the UNIX epoch for recorded time stamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the UNIX epoch, as the Bridge stack records `time_stamp`.
pub fn unix_time_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
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

fn split(unix_s: f64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let whole = unix_s.floor() as i64;
    let millis = ((unix_s - whole as f64) * 1000.0).floor() as u32;
    let (year, month, day) = civil_from_days(whole.div_euclid(86_400));
    let secs = whole.rem_euclid(86_400) as u32;
    (
        year,
        month,
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        millis.min(999),
    )
}

/// `2024-05-07T15:22:34.123Z` for the log.
pub fn log_timestamp(unix_s: f64) -> String {
    let (y, mo, d, h, mi, s, ms) = split(unix_s);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `2024-05-07_15-22-34`, the date-time folder name of the Bridge raw layout (the readers take
/// the collection date from it).
pub fn folder_timestamp(unix_s: f64) -> String {
    let (y, mo, d, h, mi, s, _) = split(unix_s);
    format!("{y:04}-{mo:02}-{d:02}_{h:02}-{mi:02}-{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(log_timestamp(0.0), "1970-01-01T00:00:00.000Z");
        // 2021-07-23 12:34:56.789 UTC
        assert_eq!(log_timestamp(1_627_043_696.789), "2021-07-23T12:34:56.789Z");
        assert_eq!(folder_timestamp(1_627_043_696.789), "2021-07-23_12-34-56");
        // A leap day.
        assert_eq!(folder_timestamp(951_782_400.0), "2000-02-29_00-00-00");
        assert!(unix_time_s() > 1.6e9);
    }
}
