//! Calendar arithmetic for the date functions (`hour`, `month`, ...), in
//! UTC, without a date library.

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    /// 0 = Sunday
    pub weekday: u32,
}

impl DateTime {
    pub fn from_unix_seconds(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let second_of_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (second_of_day / 3600) as u32,
            minute: ((second_of_day % 3600) / 60) as u32,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    /// 1-based day of the year.
    pub fn day_of_year(&self) -> u32 {
        let before: u32 = (1..self.month).map(|m| days_in_month(self.year, m)).sum();
        before + self.day
    }

    pub fn days_in_month(&self) -> u32 {
        days_in_month(self.year, self.month)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 to (year, month, day), by Howard Hinnant's
/// `civil_from_days` (exact for the proleptic Gregorian calendar).
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
    fn known_dates() {
        let d = DateTime::from_unix_seconds(0);
        assert_eq!((d.year, d.month, d.day, d.weekday), (1970, 1, 1, 4));
        // 2024-02-29 13:45:00 UTC, a Thursday.
        let d = DateTime::from_unix_seconds(1_709_214_300);
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.minute),
            (2024, 2, 29, 13, 45)
        );
        assert_eq!((d.weekday, d.day_of_year(), d.days_in_month()), (4, 60, 29));
        // 1969-12-31 23:59:59, a Wednesday.
        let d = DateTime::from_unix_seconds(-1);
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.weekday),
            (1969, 12, 31, 23, 3)
        );
        assert_eq!(d.day_of_year(), 365);
    }
}
