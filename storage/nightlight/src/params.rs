//! Parameters of Prometheus' HTTP API: form and query-string decoding,
//! times (RFC 3339 or Unix seconds) and durations (`15s`, `1m30s`, or
//! seconds as a float), with Prometheus' error texts.

use percent_encoding::percent_decode_str;

/// Decoded `name=value` pairs of a query string or a form body, in order
/// (names may repeat: `match[]`).
#[derive(Debug, Default, Clone)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(text: &str) -> Form {
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            percent_decode_str(&s).decode_utf8_lossy().into_owned()
        };
        Form(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((n, v)) => (decode(n), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect(),
        )
    }

    pub fn extend(&mut self, other: Form) {
        self.0.extend(other.0);
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':'
        || b[16] != b':'
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let padded = format!("{digits:0<3}");
        frac_ms = padded[..3].parse().ok()?;
    }
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let hh: i64 = tz[1..3].parse().ok()?;
            let mm: i64 = tz[4..6].parse().ok()?;
            let v = hh * 3600 + mm * 60;
            if tz.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(secs * 1000 + frac_ms)
}

/// A time parameter in milliseconds: Unix seconds (a float) or RFC 3339.
pub fn parse_time(name: &str, s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let ms = (f * 1000.0).round();
            if ms.abs() < 9.2e18 {
                return Ok(ms as i64);
            }
        }
        return Err(format!(
            "invalid parameter {name:?}: cannot parse {s:?} to a valid timestamp"
        ));
    }
    rfc3339_ms(s).ok_or_else(|| {
        format!("invalid parameter {name:?}: cannot parse {s:?} to a valid timestamp")
    })
}

/// A duration parameter in milliseconds: seconds as a float or a Prometheus
/// duration (`1h30m`).
pub fn parse_duration(name: &str, s: &str) -> Result<i64, String> {
    let bad = || format!("invalid parameter {name:?}: cannot parse {s:?} to a valid duration");
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if f.is_finite() && ms.abs() < 9.2e18 {
            return Ok(ms as i64);
        }
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit_ms: i64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_parse_as_prometheus_does() {
        assert_eq!(parse_time("t", "1700000000.5").unwrap(), 1_700_000_000_500);
        assert_eq!(
            parse_time("t", "2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("t", "2023-11-14T23:13:20.25+01:00").unwrap(),
            1_700_000_000_250
        );
        assert!(parse_time("t", "yesterday").is_err());
        assert_eq!(parse_duration("d", "1m30s").unwrap(), 90_000);
        assert_eq!(parse_duration("d", "15").unwrap(), 15_000);
        assert_eq!(parse_duration("d", "0.5").unwrap(), 500);
        assert!(parse_duration("d", "5x").is_err());
    }

    #[test]
    fn forms_decode_repeats_and_escapes() {
        let f = Form::parse("match%5B%5D=up&match[]=a%7Bb%3D%22c%22%7D&q=a+b");
        assert_eq!(f.all("match[]"), vec!["up", "a{b=\"c\"}"]);
        assert_eq!(f.get("q"), Some("a b"));
    }
}
