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

/// Go's `time` constants: dates are computed from seconds since an
/// "absolute" zero year, as an unsigned count, with wrapping arithmetic.
/// Prometheus' date functions are `time.Unix(int64(v), 0).UTC()`, so a value
/// far out of range wraps exactly as Go's does.
const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
const UNIX_TO_ABSOLUTE: i64 = 62_135_596_800 + 9_223_371_966_579_724_800;
const SECONDS_PER_DAY: u64 = 86_400;
const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
const DAYS_BEFORE: [u64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];

/// Go's `int64(v)` on amd64: truncation toward zero, and the minimum int64
/// for NaN, the infinities and anything outside the range.
pub(crate) fn go_int64(v: f64) -> i64 {
    // NaN is outside every range.
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

impl DateTime {
    pub fn from_unix_seconds(secs: i64) -> DateTime {
        let abs = secs.wrapping_add(UNIX_TO_ABSOLUTE) as u64;
        let mut d = abs / SECONDS_PER_DAY;
        let mut n = d / DAYS_PER_400_YEARS;
        let mut y = 400 * n;
        d -= DAYS_PER_400_YEARS * n;
        n = d / DAYS_PER_100_YEARS;
        n -= n >> 2;
        y += 100 * n;
        d -= DAYS_PER_100_YEARS * n;
        n = d / DAYS_PER_4_YEARS;
        y += 4 * n;
        d -= DAYS_PER_4_YEARS * n;
        n = d / 365;
        n -= n >> 2;
        y += n;
        d -= 365 * n;
        let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
        let (month, day) = month_day(year, d);
        let second_of_day = abs % SECONDS_PER_DAY;
        // The absolute zero is a Monday; Go adds one day to count from Sunday.
        let weekday =
            ((abs.wrapping_add(SECONDS_PER_DAY)) % (7 * SECONDS_PER_DAY)) / SECONDS_PER_DAY;
        DateTime {
            year,
            month,
            day,
            hour: (second_of_day / 3600) as u32,
            minute: ((second_of_day % 3600) / 60) as u32,
            weekday: weekday as u32,
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

/// Month and day of the zero-based day of the year `yday`, as Go's
/// `absDate` finds them.
fn month_day(year: i64, yday: u64) -> (u32, u32) {
    let mut day = yday;
    if is_leap(year) {
        if day == 31 + 29 - 1 {
            return (2, 29);
        }
        if day > 31 + 29 - 1 {
            day -= 1;
        }
    }
    let mut month = (day / 31) as usize;
    let end = DAYS_BEFORE[month + 1];
    let begin = if day >= end {
        month += 1;
        end
    } else {
        DAYS_BEFORE[month]
    };
    ((month + 1) as u32, (day - begin + 1) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_wrap_as_go_does() {
        // Prometheus 2.42 on amd64: year(vector(NaN)), day_of_week(vector(NaN)),
        // month(vector(-Inf)).
        let nan = DateTime::from_unix_seconds(go_int64(f64::NAN));
        assert_eq!((nan.year, nan.weekday), (292_277_026_596, 0));
        assert_eq!(
            DateTime::from_unix_seconds(go_int64(f64::NEG_INFINITY)).month,
            12
        );
        assert_eq!(go_int64(-1.9), -1);
        assert_eq!(go_int64(1e19), i64::MIN);
    }

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
