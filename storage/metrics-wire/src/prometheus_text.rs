//! Prometheus' text exposition format (0.0.4): `# HELP` and `# TYPE` lines
//! (kept as metadata), other comments ignored, and samples
//! `name[{label="value",...}] value [timestamp_ms]`. Label values escape
//! `\\`, `\"` and `\n`; values are Go float syntax including `NaN`, `+Inf`
//! and `-Inf`. A sample without a timestamp is stamped `now_ms`.

use photon_tsdb::{Sample, METRIC_NAME};

use crate::batch::BatchBuilder;
use crate::error::{Place, WireError};
use crate::labels::{check_count, is_metric_name, quoted, series_labels};
use crate::{Limits, WriteBatch};

const BLANKS: [char; 2] = [' ', '\t'];

/// Parses an exposition body; any malformed line refuses the request.
pub fn parse_prometheus_text(
    body: &[u8],
    now_ms: i64,
    limits: &Limits,
) -> Result<WriteBatch, WireError> {
    crate::check_text_body(body, limits)?;
    let mut builder = BatchBuilder::new(limits);
    for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let line =
            std::str::from_utf8(raw).map_err(|_| WireError::syntax(number, "not valid UTF-8"))?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start_matches(BLANKS);
        if line.trim_end_matches(BLANKS).is_empty() {
            continue;
        }
        match line.strip_prefix('#') {
            Some(comment) => comment_line(comment, number, &mut builder)?,
            None => sample_line(line, number, now_ms, limits, &mut builder)?,
        }
    }
    Ok(builder.finish())
}

/// The text up to the first blank, and the rest from there.
fn token(text: &str) -> (&str, &str) {
    text.split_at(text.find(BLANKS).unwrap_or(text.len()))
}

fn comment_line(
    comment: &str,
    number: usize,
    builder: &mut BatchBuilder<'_>,
) -> Result<(), WireError> {
    let (keyword, rest) = token(comment.trim_start_matches(BLANKS));
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(());
    }
    let (family, rest) = token(rest.trim_start_matches(BLANKS));
    if !is_metric_name(family) {
        return Err(WireError::syntax(
            number,
            format!("invalid metric name {:?} in # {keyword}", quoted(family)),
        ));
    }
    let text = rest.trim_start_matches(BLANKS);
    if keyword == "HELP" {
        builder.metadata(family)?.help = unescape_help(text);
        return Ok(());
    }
    let kind = match text.trim_end_matches(BLANKS) {
        kind @ ("counter" | "gauge" | "histogram" | "summary") => kind,
        // Prometheus calls an untyped family "unknown" in its metadata.
        "untyped" => "unknown",
        other => {
            return Err(WireError::syntax(
                number,
                format!("unknown metric type {:?} for {family}", quoted(other)),
            ))
        }
    };
    builder.metadata(family)?.kind = kind.to_string();
    Ok(())
}

/// HELP text escapes only `\\` and `\n`; other backslashes are literal.
fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('\\')) => out.push('\\'),
            ('\\', Some('n')) => out.push('\n'),
            _ => {
                out.push(c);
                continue;
            }
        }
        chars.next();
    }
    out
}

fn sample_line(
    line: &str,
    number: usize,
    now_ms: i64,
    limits: &Limits,
    builder: &mut BatchBuilder<'_>,
) -> Result<(), WireError> {
    let syntax = |reason: String| WireError::syntax(number, reason);
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(syntax(format!(
            "expected a metric name at {:?}",
            quoted(line)
        )));
    }
    let mut pairs = vec![(METRIC_NAME.to_string(), name.to_string())];
    let mut rest = line[name_end..].trim_start_matches(BLANKS);
    if let Some(after) = rest.strip_prefix('{') {
        rest = label_list(after, number, limits, &mut pairs)?;
    }
    let (value, rest) = token(rest.trim_start_matches(BLANKS));
    // Go's float syntax, which Rust's parser shares for NaN, Inf and
    // exponents; a hex float is refused.
    let v = value
        .parse::<f64>()
        .map_err(|_| syntax(format!("invalid sample value {:?}", quoted(value))))?;
    let (timestamp, rest) = token(rest.trim_start_matches(BLANKS));
    let t = match timestamp {
        "" => now_ms,
        text => text
            .parse::<i64>()
            .map_err(|_| syntax(format!("invalid timestamp {:?}", quoted(text))))?,
    };
    if !rest.trim_matches(BLANKS).is_empty() {
        return Err(syntax(format!(
            "unexpected {:?} after the timestamp",
            quoted(rest.trim_matches(BLANKS))
        )));
    }
    let labels = series_labels(pairs, limits).map_err(|problem| WireError::Label {
        at: Place::Line(number),
        problem,
    })?;
    builder.push_sample(labels, Sample { t, v })
}

/// Reads `label="value", ...}` into `pairs`; returns what follows the `}`.
fn label_list<'a>(
    mut rest: &'a str,
    number: usize,
    limits: &Limits,
    pairs: &mut Vec<(String, String)>,
) -> Result<&'a str, WireError> {
    let syntax = |reason: String| WireError::syntax(number, reason);
    loop {
        rest = rest.trim_start_matches(BLANKS);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if name.is_empty() {
            return Err(syntax(format!(
                "expected a label name or '}}' at {:?}",
                quoted(rest)
            )));
        }
        rest = rest[end..].trim_start_matches(BLANKS);
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| syntax(format!("expected '=' after label name {name}")))?
            .trim_start_matches(BLANKS);
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| syntax(format!("expected '\"' to open the value of label {name}")))?;
        let (value, after) = label_value(rest)
            .ok_or_else(|| syntax(format!("unterminated value of label {name}")))?;
        pairs.push((name.to_string(), value));
        check_count(pairs.len(), limits).map_err(|problem| WireError::Label {
            at: Place::Line(number),
            problem,
        })?;
        rest = after.trim_start_matches(BLANKS);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(syntax(format!("expected ',' or '}}' after label {name}")));
        }
    }
}

/// A quoted label value after its opening quote: the value unescaped and
/// the text after its closing quote. `\\`, `\"` and `\n` are escapes; any
/// other backslash is kept, as Prometheus' parser keeps it.
fn label_value(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[at + 1..])),
            '\\' => match chars.next()? {
                (_, 'n') => out.push('\n'),
                (_, escaped @ ('\\' | '"')) => out.push(escaped),
                (_, other) => {
                    out.push('\\');
                    out.push(other);
                }
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metadata;
    use photon_tsdb::STALE_NAN;

    fn parse(body: &str) -> Result<WriteBatch, WireError> {
        parse_prometheus_text(body.as_bytes(), 42, &Limits::default())
    }

    #[test]
    fn an_exposition_parses() {
        let batch = parse(
            "# HELP http_requests_total The total.\\nSecond \\\\ line.\n\
             # TYPE http_requests_total counter\n\
             # a free comment\n\
             http_requests_total{method=\"post\",code=\"200\",} 1027 1395066363000\n\
             http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
             \n\
             # TYPE temp untyped\n\
             temp{path=\"C:\\\\dir\\\\\",quote=\"\\\"\",nl=\"a\\nb\"} -Inf\n\
             temp NaN\r\n\
             temp +Inf 5\n\
             metric_without_labels 1.5e3\n",
        )
        .unwrap();
        assert_eq!(batch.series.len(), 5);
        assert_eq!(
            batch.series[0].labels.to_string(),
            "http_requests_total{code=\"200\", method=\"post\"}"
        );
        assert_eq!(
            batch.series[0].samples,
            [Sample {
                t: 1_395_066_363_000,
                v: 1027.0
            }]
        );
        let temp = &batch.series[2];
        assert_eq!(temp.labels.get("path"), Some("C:\\dir\\"));
        assert_eq!(temp.labels.get("quote"), Some("\""));
        assert_eq!(temp.labels.get("nl"), Some("a\nb"));
        assert_eq!(
            temp.samples[0],
            Sample {
                t: 42,
                v: f64::NEG_INFINITY
            }
        );
        let plain = &batch.series[3];
        assert!(plain.samples[0].v.is_nan() && plain.samples[0].v.to_bits() != STALE_NAN);
        assert_eq!(
            plain.samples[1],
            Sample {
                t: 5,
                v: f64::INFINITY
            }
        );
        assert_eq!(batch.series[4].samples[0].v, 1500.0);
        assert_eq!(
            batch.metadata,
            [
                Metadata {
                    metric_family: "http_requests_total".into(),
                    kind: "counter".into(),
                    help: "The total.\nSecond \\ line.".into(),
                    unit: String::new(),
                },
                Metadata {
                    metric_family: "temp".into(),
                    kind: "unknown".into(),
                    help: String::new(),
                    unit: String::new(),
                }
            ]
        );
    }

    #[test]
    fn every_error_names_its_line() {
        let cases = [
            ("{a=\"b\"} 1", "line 2: expected a metric name"),
            ("1up 1", "line 2: expected a metric name"),
            ("up", "line 2: invalid sample value \"\""),
            ("up x", "line 2: invalid sample value \"x\""),
            ("up 1 1.5", "line 2: invalid timestamp \"1.5\""),
            ("up 1 2 3", "line 2: unexpected \"3\" after the timestamp"),
            ("up{a=\"1\" 1", "line 2: expected ',' or '}' after label a"),
            ("up{a=\"1} 1", "line 2: unterminated value of label a"),
            (
                "up{a=1} 1",
                "line 2: expected '\"' to open the value of label a",
            ),
            ("up{a} 1", "line 2: expected '=' after label name a"),
            ("up{,} 1", "line 2: expected a label name or '}'"),
            ("up{1a=\"x\"} 1", "line 2: invalid label name \"1a\""),
            ("up{a=\"1\",a=\"2\"} 1", "line 2: duplicate label name a"),
            (
                "up{__name__=\"x\"} 1",
                "line 2: duplicate label name __name__",
            ),
            (
                "# TYPE up countr",
                "line 2: unknown metric type \"countr\" for up",
            ),
            ("# TYPE up", "line 2: unknown metric type \"\""),
            (
                "# HELP 1up x",
                "line 2: invalid metric name \"1up\" in # HELP",
            ),
        ];
        for (line, message) in cases {
            let e = parse(&format!("ok 1\n{line}\n")).unwrap_err();
            assert!(e.to_string().starts_with(message), "{line}: {e}");
            assert_eq!(e.status(), 400);
        }
        let e = parse_prometheus_text(b"up{a=\"\xff\"} 1", 0, &Limits::default());
        assert_eq!(e.unwrap_err().to_string(), "line 1: not valid UTF-8");
    }

    #[test]
    fn limits_refuse() {
        let limits = Limits {
            labels_per_series_max: 2,
            label_value_bytes_max: 3,
            series_per_request_max: 1,
            ..Limits::default()
        };
        let run = |body: &str| parse_prometheus_text(body.as_bytes(), 0, &limits);
        assert!(matches!(
            run("up{a=\"1\",b=\"2\"} 1"),
            Err(WireError::Label { .. })
        ));
        assert!(run("up{a=\"1234\"} 1")
            .unwrap_err()
            .to_string()
            .contains("over the limit"));
        assert_eq!(run("up 1\nupp 1").unwrap_err().status(), 413);
        // Empty values are absent labels.
        let batch = run("up{a=\"\"} 1\nup 2").unwrap();
        assert_eq!(batch.series.len(), 1);
    }
}
