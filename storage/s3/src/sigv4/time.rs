//! UTC calendar arithmetic and the date formats SigV4 uses (no time crate needed for these few conversions).

use super::*;

// ------------------------------------------------------------------- time

pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's `civil_from_days`; shared with the XML timestamps.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the Unix epoch.
pub(super) fn parse_amz_date(value: &str) -> Option<u64> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let number = |range: Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Reject 20130231 and the like: the date must round-trip.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()
}

/// Parses an ISO 8601 UTC timestamp as S3 documents carry them
/// (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`) into whole seconds since the epoch.
pub fn parse_iso8601_seconds(value: &str) -> Option<u64> {
    let value = value.trim();
    let b = value.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let fraction = value.get(19..)?.strip_suffix('Z')?;
    if !fraction.is_empty() {
        let digits = fraction.strip_prefix('.')?;
        if digits.is_empty() || !digits.bytes().all(|d| d.is_ascii_digit()) {
            return None;
        }
    }
    let compact = format!(
        "{}{}{}T{}{}{}Z",
        value.get(0..4)?,
        value.get(5..7)?,
        value.get(8..10)?,
        value.get(11..13)?,
        value.get(14..16)?,
        value.get(17..19)?
    );
    parse_amz_date(&compact)
}

/// Formats seconds since the Unix epoch as `YYYYMMDDTHHMMSSZ`.
pub(super) fn format_amz_date(seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 2);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// An HTTP date (IMF-fixdate, RFC 850 or asctime); the `-0000`/`+0000`
/// zone Python's `formatdate` writes is read as GMT.
pub(super) fn parse_http_date(value: &[u8]) -> Option<u64> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let value: Cow<str> = match value
        .strip_suffix(" -0000")
        .or_else(|| value.strip_suffix(" +0000"))
    {
        Some(stem) => format!("{stem} GMT").into(),
        None => value.into(),
    };
    let time = httpdate::parse_http_date(&value).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

pub(super) fn unix_seconds(time: SystemTime) -> Option<u64> {
    let seconds = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    // Four-digit years only, as in X-Amz-Date.
    (seconds <= UNIX_S_MAX).then_some(seconds)
}
