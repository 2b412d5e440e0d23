//! HTTP preconditions (RFC 9110 as S3 applies them) and byte ranges.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use photon_s3::error::{S3Error, S3ErrorCode};

/// What the preconditions decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// 304 (GET/HEAD only).
    NotModified,
    /// 412.
    Failed,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.trim_start_matches("W/").trim_matches('"') == etag
    })
}

fn parse_date(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text.trim()).ok()
}

/// Last-Modified at HTTP's one-second resolution.
pub fn last_modified(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ms / 1000)
}

/// Evaluates `<prefix>if-match`, `if-none-match`, `if-modified-since` and
/// `if-unmodified-since` against an object (`prefix` is `""` for GET/HEAD
/// and `"x-amz-copy-source-"` for a copy source).
pub fn evaluate(headers: &HeaderMap, prefix: &str, etag: &str, modified_ms: u64) -> Verdict {
    let modified = last_modified(modified_ms);
    let if_match = header(headers, &format!("{prefix}if-match"));
    let if_none_match = header(headers, &format!("{prefix}if-none-match"));
    if let Some(list) = if_match {
        if !etag_list_matches(list, etag) {
            return Verdict::Failed;
        }
    } else if let Some(date) =
        header(headers, &format!("{prefix}if-unmodified-since")).and_then(parse_date)
    {
        if modified > date {
            return Verdict::Failed;
        }
    }
    let read_only = prefix.is_empty();
    if let Some(list) = if_none_match {
        if etag_list_matches(list, etag) {
            return if read_only {
                Verdict::NotModified
            } else {
                Verdict::Failed
            };
        }
    } else if let Some(date) =
        header(headers, &format!("{prefix}if-modified-since")).and_then(parse_date)
    {
        if modified <= date {
            return if read_only {
                Verdict::NotModified
            } else {
                Verdict::Failed
            };
        }
    }
    Verdict::Proceed
}

/// A resolved byte range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` against `size`. `Ok(None)`:
/// serve the whole object (no header, or one S3 ignores such as several
/// ranges or bad syntax); `Err`: 416 InvalidRange.
pub fn parse_range(value: Option<&str>, size: u64) -> Result<Option<ByteRange>, S3Error> {
    let Some(value) = value else { return Ok(None) };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let unsatisfiable = || {
        S3Error::with_message(
            S3ErrorCode::InvalidRange,
            "the requested range is not satisfiable",
        )
        .with_extra("RangeRequested", value.to_owned())
        .with_extra("ActualObjectSize", size.to_string())
    };
    let range = if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else {
            return Ok(None);
        };
        if suffix == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        ByteRange {
            start: size.saturating_sub(suffix),
            end: size,
        }
    } else {
        let Ok(start) = first.parse::<u64>() else {
            return Ok(None);
        };
        let end = if last.is_empty() {
            size
        } else {
            let Ok(last) = last.parse::<u64>() else {
                return Ok(None);
            };
            if last < start {
                return Ok(None);
            }
            last.saturating_add(1).min(size)
        };
        if start >= size {
            return Err(unsatisfiable());
        }
        ByteRange { start, end }
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(*n, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ranges() {
        let r = |v: &str| parse_range(Some(v), 100);
        assert_eq!(
            r("bytes=0-9").unwrap(),
            Some(ByteRange { start: 0, end: 10 })
        );
        assert_eq!(
            r("bytes=90-").unwrap(),
            Some(ByteRange {
                start: 90,
                end: 100
            })
        );
        assert_eq!(
            r("bytes=-10").unwrap(),
            Some(ByteRange {
                start: 90,
                end: 100
            })
        );
        assert_eq!(
            r("bytes=50-1000").unwrap(),
            Some(ByteRange {
                start: 50,
                end: 100
            })
        );
        assert_eq!(
            r("bytes=-1000").unwrap(),
            Some(ByteRange { start: 0, end: 100 })
        );
        assert!(r("bytes=100-").is_err());
        assert!(r("bytes=-0").is_err());
        assert_eq!(r("bytes=0-1,5-6").unwrap(), None);
        assert_eq!(r("items=0-1").unwrap(), None);
        assert_eq!(r("bytes=5-1").unwrap(), None);
        assert!(parse_range(Some("bytes=0-"), 0).is_err());
        assert_eq!(parse_range(None, 10).unwrap(), None);
    }

    #[test]
    fn preconditions() {
        let t = 1_700_000_000_000;
        let before = httpdate::fmt_http_date(last_modified(t - 10_000));
        let after = httpdate::fmt_http_date(last_modified(t + 10_000));
        assert_eq!(
            evaluate(&headers(&[("if-match", "\"abc\"")]), "", "abc", t),
            Verdict::Proceed
        );
        assert_eq!(
            evaluate(&headers(&[("if-match", "\"x\"")]), "", "abc", t),
            Verdict::Failed
        );
        assert_eq!(
            evaluate(&headers(&[("if-none-match", "\"abc\"")]), "", "abc", t),
            Verdict::NotModified
        );
        assert_eq!(
            evaluate(
                &headers(&[("if-none-match", "\"abc\"")]),
                "x-amz-copy-source-",
                "abc",
                t
            ),
            Verdict::Proceed
        );
        assert_eq!(
            evaluate(
                &headers(&[("x-amz-copy-source-if-none-match", "\"abc\"")]),
                "x-amz-copy-source-",
                "abc",
                t
            ),
            Verdict::Failed
        );
        assert_eq!(
            evaluate(&headers(&[("if-modified-since", &after)]), "", "abc", t),
            Verdict::NotModified
        );
        assert_eq!(
            evaluate(&headers(&[("if-modified-since", &before)]), "", "abc", t),
            Verdict::Proceed
        );
        assert_eq!(
            evaluate(&headers(&[("if-unmodified-since", &before)]), "", "abc", t),
            Verdict::Failed
        );
        // If-Match wins over If-Unmodified-Since, If-None-Match over If-Modified-Since.
        assert_eq!(
            evaluate(
                &headers(&[("if-match", "\"abc\""), ("if-unmodified-since", &before)]),
                "",
                "abc",
                t
            ),
            Verdict::Proceed
        );
        assert_eq!(
            evaluate(
                &headers(&[("if-none-match", "\"zzz\""), ("if-modified-since", &after)]),
                "",
                "abc",
                t
            ),
            Verdict::Proceed
        );
    }
}
