//! Influx line protocol:
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//!
//! Series are named as VictoriaMetrics names them by default: each field
//! becomes the series `{measurement}_{field}` with the tags as labels, also
//! when the field is called `value` (VictoriaMetrics drops the field name
//! only behind its `-influxSkipSingleField` flag; NightLight has none).
//! Tag keys and the resulting metric names must be valid Prometheus names;
//! an invalid one refuses the request with its line number rather than
//! being rewritten, so that what is queried is what was sent.
//!
//! Field values: floats (`1`, `-1.5e3`), integers (`1i`), unsigned (`1u`)
//! and booleans (`t`, `true`, `True`, `TRUE`, `f`, ... as 1 and 0). String
//! fields refuse the request: only numbers are stored. Integers beyond 2^53
//! lose precision as float64, as in every Prometheus-model store.

use photon_tsdb::{Sample, METRIC_NAME};

use crate::batch::BatchBuilder;
use crate::error::{Place, WireError};
use crate::labels::{check_count, quoted, series_labels};
use crate::{Limits, WriteBatch};

/// The unit of an Influx body's timestamps, from the `precision` query
/// parameter. Without one, Influx takes nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
    /// Minutes (1.x only).
    M,
    /// Hours (1.x only).
    H,
}

impl Precision {
    /// The 1.x `/write` spelling: `n`, `u`, `ms`, `s`, `m`, `h` (also `ns`,
    /// `us`; empty is nanoseconds).
    pub fn parse_v1(text: &str) -> Result<Self, WireError> {
        match text {
            "" | "n" | "ns" => Ok(Precision::Ns),
            "u" | "us" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            "m" => Ok(Precision::M),
            "h" => Ok(Precision::H),
            _ => Err(WireError::UnknownPrecision(quoted(text))),
        }
    }

    /// The 2.x `/api/v2/write` spelling: `ns`, `us`, `ms`, `s` (empty is
    /// nanoseconds).
    pub fn parse_v2(text: &str) -> Result<Self, WireError> {
        match text {
            "" | "ns" => Ok(Precision::Ns),
            "us" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            _ => Err(WireError::UnknownPrecision(quoted(text))),
        }
    }

    /// Milliseconds since the epoch; finer units round down (towards the
    /// past, also before 1970), coarser ones must not overflow.
    fn to_ms(self, t: i64) -> Option<i64> {
        match self {
            Precision::Ns => Some(t.div_euclid(1_000_000)),
            Precision::Us => Some(t.div_euclid(1_000)),
            Precision::Ms => Some(t),
            Precision::S => t.checked_mul(1_000),
            Precision::M => t.checked_mul(60_000),
            Precision::H => t.checked_mul(3_600_000),
        }
    }
}

/// Parses a line-protocol body; `now_ms` stamps lines without a timestamp.
pub fn parse_influx(
    body: &[u8],
    precision: Precision,
    now_ms: i64,
    limits: &Limits,
) -> Result<WriteBatch, WireError> {
    crate::check_text_body(body, limits)?;
    let mut builder = BatchBuilder::new(limits);
    for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = trim(raw);
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let point = Point {
            number: index + 1,
            precision,
            now_ms,
            limits,
        };
        point.parse(line, &mut builder)?;
    }
    Ok(builder.finish())
}

/// The context of one line.
struct Point<'a> {
    number: usize,
    precision: Precision,
    now_ms: i64,
    limits: &'a Limits,
}

impl Point<'_> {
    fn syntax(&self, reason: impl Into<String>) -> WireError {
        WireError::syntax(self.number, reason)
    }

    fn text(&self, raw: &[u8], what: &str) -> Result<String, WireError> {
        String::from_utf8(unescape(raw))
            .map_err(|_| self.syntax(format!("{what} is not valid UTF-8")))
    }

    fn parse(&self, line: &[u8], builder: &mut BatchBuilder<'_>) -> Result<(), WireError> {
        let key_end = find_unescaped(line, b' ', false).ok_or_else(|| {
            self.syntax("no fields (expected `measurement[,tags] fields [timestamp]`)")
        })?;
        let (key, rest) = line.split_at(key_end);
        let rest = trim(rest);
        let fields_end = find_unescaped(rest, b' ', true).unwrap_or(rest.len());
        let (fields, tail) = rest.split_at(fields_end);
        let t = self.timestamp(trim(tail))?;

        let mut pieces = Split::new(key, b',', false);
        let measurement = self.text(pieces.next().unwrap_or_default(), "measurement")?;
        if measurement.is_empty() {
            return Err(self.syntax("empty measurement"));
        }
        let mut tags = Vec::new();
        for tag in pieces {
            let Some(eq) = find_unescaped(tag, b'=', false) else {
                return Err(self.syntax(format!(
                    "tag {:?} has no `=value`",
                    quoted(&String::from_utf8_lossy(tag))
                )));
            };
            let name = self.text(&tag[..eq], "tag key")?;
            if name.is_empty() {
                return Err(self.syntax("empty tag key"));
            }
            tags.push((name, self.text(&tag[eq + 1..], "tag value")?));
            // One more for the metric name.
            check_count(tags.len() + 1, self.limits).map_err(|problem| WireError::Label {
                at: Place::Line(self.number),
                problem,
            })?;
        }
        for field in Split::new(fields, b',', true) {
            let Some(eq) = find_unescaped(field, b'=', false) else {
                return Err(self.syntax(format!(
                    "field {:?} has no `=value`",
                    quoted(&String::from_utf8_lossy(field))
                )));
            };
            let name = self.text(&field[..eq], "field key")?;
            if name.is_empty() {
                return Err(self.syntax("empty field key"));
            }
            let v = self.value(&name, &field[eq + 1..])?;
            let mut pairs = tags.clone();
            pairs.push((METRIC_NAME.to_string(), format!("{measurement}_{name}")));
            let labels = series_labels(pairs, self.limits).map_err(|problem| WireError::Label {
                at: Place::Line(self.number),
                problem,
            })?;
            builder.push_sample(labels, Sample { t, v })?;
        }
        Ok(())
    }

    fn timestamp(&self, raw: &[u8]) -> Result<i64, WireError> {
        if raw.is_empty() {
            return Ok(self.now_ms);
        }
        std::str::from_utf8(raw)
            .ok()
            .filter(|text| !text.starts_with('+'))
            .and_then(|text| text.parse::<i64>().ok())
            .and_then(|t| self.precision.to_ms(t))
            .ok_or_else(|| {
                self.syntax(format!(
                    "invalid timestamp {:?}",
                    quoted(&String::from_utf8_lossy(raw))
                ))
            })
    }

    fn value(&self, field: &str, raw: &[u8]) -> Result<f64, WireError> {
        let number = |text: &[u8]| std::str::from_utf8(text).ok().map(str::to_owned);
        let parsed = match raw {
            [b'"', ..] => {
                return Err(WireError::StringField {
                    at: Place::Line(self.number),
                    field: quoted(field),
                })
            }
            b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(1.0),
            b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(0.0),
            [digits @ .., b'i'] => number(digits)
                .and_then(|d| d.parse::<i64>().ok())
                .map(|i| i as f64),
            [digits @ .., b'u'] => number(digits)
                .and_then(|d| d.parse::<u64>().ok())
                .map(|u| u as f64),
            // Influx has no NaN or infinity literals; Rust would read some.
            _ if raw
                .iter()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(b)) =>
            {
                number(raw).and_then(|d| d.parse::<f64>().ok())
            }
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.syntax(format!(
                "field {:?} has an invalid value {:?}",
                quoted(field),
                quoted(&String::from_utf8_lossy(raw))
            ))
        })
    }
}

fn trim(raw: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = raw.iter().position(|b| !is_space(b)).unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |at| at + 1);
    &raw[start..end.max(start)]
}

/// Where the first `stop` byte is that no backslash escapes (and, with
/// `quotes`, that is outside a double-quoted string value).
fn find_unescaped(text: &[u8], stop: u8, quotes: bool) -> Option<usize> {
    let mut in_quotes = false;
    let mut at = 0;
    while at < text.len() {
        match text[at] {
            b'\\' => at += 1,
            b'"' if quotes => in_quotes = !in_quotes,
            byte if byte == stop && !in_quotes => return Some(at),
            _ => {}
        }
        at += 1;
    }
    None
}

/// The pieces of `text` between unescaped separators, without allocating
/// (a hostile line of commas must not become a vector of pieces).
struct Split<'a> {
    rest: Option<&'a [u8]>,
    separator: u8,
    quotes: bool,
}

impl<'a> Split<'a> {
    fn new(text: &'a [u8], separator: u8, quotes: bool) -> Self {
        Split {
            rest: Some(text),
            separator,
            quotes,
        }
    }
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match find_unescaped(rest, self.separator, self.quotes) {
            Some(at) => {
                self.rest = Some(&rest[at + 1..]);
                Some(&rest[..at])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Removes the backslash of `\,`, `\ `, `\=`, `\"` and `\\`; any other
/// backslash is literal, as in Influx.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        match (raw[at], raw.get(at + 1)) {
            (b'\\', Some(&next @ (b',' | b' ' | b'=' | b'"' | b'\\'))) => {
                out.push(next);
                at += 2;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use photon_tsdb::Labels;

    fn parse(body: &str) -> Result<WriteBatch, WireError> {
        parse_influx(body.as_bytes(), Precision::Ns, 42, &Limits::default())
    }

    fn names(batch: &WriteBatch) -> Vec<String> {
        batch.series.iter().map(|s| s.labels.to_string()).collect()
    }

    #[test]
    fn fields_become_series_named_after_the_measurement() {
        let batch = parse(
            "# a comment\n\
             \n\
             cpu,host=a,region=eu usage_idle=1.5,value=2i,up=t,big=3u 1700000000123456789\n\
             cpu,host=a usage_idle=-2e1\r\n",
        )
        .unwrap();
        assert_eq!(
            names(&batch),
            [
                "cpu_usage_idle{host=\"a\", region=\"eu\"}",
                "cpu_value{host=\"a\", region=\"eu\"}",
                "cpu_up{host=\"a\", region=\"eu\"}",
                "cpu_big{host=\"a\", region=\"eu\"}",
                "cpu_usage_idle{host=\"a\"}",
            ]
        );
        assert_eq!(
            batch.series[0].samples,
            [Sample {
                t: 1_700_000_000_123,
                v: 1.5
            }]
        );
        assert_eq!(batch.series[1].samples[0].v, 2.0);
        assert_eq!(batch.series[2].samples[0].v, 1.0);
        assert_eq!(batch.series[3].samples[0].v, 3.0);
        assert_eq!(batch.series[4].samples, [Sample { t: 42, v: -20.0 }]);
    }

    #[test]
    fn escapes_and_booleans() {
        let batch = parse(r#"m,tag=a\ b\,c\=d\\e f=FALSE,g=F"#).unwrap();
        let expected = Labels::new(vec![
            ("__name__".into(), "m_f".into()),
            ("tag".into(), r"a b,c=d\e".into()),
        ]);
        assert_eq!(batch.series[0].labels, expected);
        assert_eq!(batch.series[0].samples[0].v, 0.0);
        // Samples of one series across lines group together.
        let batch = parse("m f=1 1000000\nm f=2 2000000").unwrap();
        assert_eq!(batch.series.len(), 1);
        assert_eq!(
            batch.series[0].samples,
            [Sample { t: 1, v: 1.0 }, Sample { t: 2, v: 2.0 }]
        );
    }

    #[test]
    fn precisions() {
        let at = |p: Precision, t: &str| {
            parse_influx(format!("m f=1 {t}").as_bytes(), p, 0, &Limits::default())
                .map(|b| b.series[0].samples[0].t)
        };
        assert_eq!(at(Precision::Us, "1500").unwrap(), 1);
        assert_eq!(at(Precision::Ns, "-1").unwrap(), -1);
        assert_eq!(at(Precision::Ms, "5").unwrap(), 5);
        assert_eq!(at(Precision::S, "5").unwrap(), 5_000);
        assert_eq!(at(Precision::M, "1").unwrap(), 60_000);
        assert_eq!(at(Precision::H, "1").unwrap(), 3_600_000);
        assert!(at(Precision::H, &i64::MAX.to_string()).is_err());
        assert_eq!(Precision::parse_v1("n").unwrap(), Precision::Ns);
        assert_eq!(Precision::parse_v1("h").unwrap(), Precision::H);
        assert_eq!(Precision::parse_v2("us").unwrap(), Precision::Us);
        assert!(Precision::parse_v2("h").is_err());
        assert_eq!(Precision::parse_v1("x").unwrap_err().status(), 400);
    }

    #[test]
    fn every_error_names_its_line() {
        let cases = [
            (
                "m,a=1 s=\"text, with space\" 1",
                "line 2: field \"s\" is a string",
            ),
            ("m", "line 2: no fields"),
            ("m f=1 12x", "line 2: invalid timestamp \"12x\""),
            ("m f=1 1 2", "line 2: invalid timestamp \"1 2\""),
            (
                "m f=abc",
                "line 2: field \"f\" has an invalid value \"abc\"",
            ),
            ("m f=nan", "line 2: field \"f\" has an invalid value"),
            ("m f=1.5i", "line 2: field \"f\" has an invalid value"),
            ("m f=-1u", "line 2: field \"f\" has an invalid value"),
            ("m f=", "line 2: field \"f\" has an invalid value \"\""),
            ("m f", "line 2: field \"f\" has no `=value`"),
            ("m =1", "line 2: empty field key"),
            (",a=b f=1", "line 2: empty measurement"),
            ("m,a f=1", "line 2: tag \"a\" has no `=value`"),
            ("m,=a f=1", "line 2: empty tag key"),
            ("m,a-b=1 f=1", "line 2: invalid label name \"a-b\""),
            ("m,a=1,a=2 f=1", "line 2: duplicate label name a"),
            ("m,__name__=x f=1", "line 2: duplicate label name __name__"),
            ("cpu.load f=1", "line 2: invalid metric name \"cpu.load_f\""),
        ];
        for (line, message) in cases {
            let e = parse(&format!("ok f=1\n{line}\n")).unwrap_err();
            assert!(e.to_string().starts_with(message), "{line}: {e}");
        }
        let e = parse_influx(b"m,a=\xff f=1", Precision::Ns, 0, &Limits::default());
        assert!(e.unwrap_err().to_string().contains("not valid UTF-8"));
        let e = parse("m f=1 99999999999999999999").unwrap_err();
        assert!(e.to_string().contains("invalid timestamp"));
    }

    #[test]
    fn limits_refuse() {
        let limits = Limits {
            labels_per_series_max: 2,
            samples_per_request_max: 2,
            decoded_bytes_max: 64,
            ..Limits::default()
        };
        let run = |body: &str| parse_influx(body.as_bytes(), Precision::Ns, 0, &limits);
        assert!(matches!(run("m,a=1,b=2 f=1"), Err(WireError::Label { .. })));
        assert_eq!(run("m f=1,g=2,h=3").unwrap_err().status(), 413);
        assert_eq!(run(&"m f=1\n".repeat(20)).unwrap_err().status(), 413);
    }
}
