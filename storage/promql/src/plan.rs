//! Before evaluation: converting the parser's selectors to storage
//! matchers, resolving `offset` and `@`, and computing every time range the
//! evaluation will read (Prometheus' `getTimeRangesForSelector`).

use std::time::{Duration, SystemTime};

use photon_tsdb::{MatchOp, Matcher, METRIC_NAME};
use promql_parser::label::MatchOp as ParserOp;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use crate::{QueryError, QueryParams, Selection};

/// Times, offsets, ranges and steps beyond this (about 31,700 years) are
/// refused, so sums of a few of them never overflow an i64.
pub(crate) const TIME_ABS_MAX_MS: i64 = 1_000_000_000_000_000;

fn bounded(ms: i64, what: &str) -> Result<i64, QueryError> {
    if ms.checked_abs().is_some_and(|a| a <= TIME_ABS_MAX_MS) {
        Ok(ms)
    } else {
        Err(QueryError::bad(format!("{what} out of range: {ms}ms")))
    }
}

/// Refuses query parameters whose arithmetic could overflow.
pub(crate) fn check_params(p: &QueryParams) -> Result<(), QueryError> {
    bounded(p.start_ms, "start time")?;
    bounded(p.end_ms, "end time")?;
    bounded(p.step_ms, "step")?;
    bounded(p.lookback_ms, "lookback delta")?;
    bounded(p.default_subquery_step_ms, "subquery step")?;
    Ok(())
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An offset in milliseconds, negative for `offset -5m`.
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

/// The fixed evaluation time an `@` modifier sets, if any.
pub(crate) fn at_ms(at: &Option<AtModifier>, params: &QueryParams) -> Option<i64> {
    match at.as_ref()? {
        AtModifier::Start => Some(params.start_ms),
        AtModifier::End => Some(params.end_ms),
        AtModifier::At(t) => Some(system_time_ms(t)),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

/// The storage matchers of a selector, including its metric name.
pub(crate) fn matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, QueryError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::bad(
            "the `or` operator in label matchers is not supported (Prometheus 2.x)",
        ));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            ParserOp::Equal => MatchOp::Equal,
            ParserOp::NotEqual => MatchOp::NotEqual,
            ParserOp::Re(_) => MatchOp::Regex,
            ParserOp::NotRe(_) => MatchOp::NotRegex,
        };
        let converted =
            Matcher::new(&m.name, op, &m.value).map_err(|e| QueryError::bad(e.to_string()))?;
        if !out.contains(&converted) {
            out.push(converted);
        }
    }
    Ok(out)
}

/// Offsets, ranges and `@` of the subqueries around a node.
#[derive(Debug, Clone, Copy, Default)]
struct SubqueryContext {
    offset_ms: i64,
    range_ms: i64,
    at_ms: Option<i64>,
}

/// Every selector node (by address, for the evaluator's prefetch map)
/// with what it reads.
pub(crate) fn plan(
    expr: &Expr,
    params: &QueryParams,
) -> Result<Vec<(usize, Selection)>, QueryError> {
    let mut out = Vec::new();
    walk(expr, SubqueryContext::default(), params, &mut out)?;
    Ok(out)
}

fn walk(
    expr: &Expr,
    ctx: SubqueryContext,
    params: &QueryParams,
    out: &mut Vec<(usize, Selection)>,
) -> Result<(), QueryError> {
    match expr {
        Expr::VectorSelector(vs) => out.push(select(vs, 0, ctx, params)?),
        Expr::MatrixSelector(ms) => out.push(select(&ms.vs, duration_ms(&ms.range), ctx, params)?),
        Expr::Subquery(sq) => {
            bounded(offset_ms(&sq.offset), "offset")?;
            bounded(duration_ms(&sq.range), "subquery range")?;
            bounded(sq.step.as_ref().map_or(0, duration_ms), "subquery step")?;
            bounded(at_ms(&sq.at, params).unwrap_or(0), "@ time")?;
            let inner = match at_ms(&sq.at, params) {
                Some(at) => SubqueryContext {
                    offset_ms: offset_ms(&sq.offset),
                    range_ms: duration_ms(&sq.range),
                    at_ms: Some(at),
                },
                None => SubqueryContext {
                    offset_ms: ctx.offset_ms + offset_ms(&sq.offset),
                    range_ms: ctx.range_ms + duration_ms(&sq.range),
                    at_ms: ctx.at_ms,
                },
            };
            walk(&sq.expr, inner, params, out)?;
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                walk(p, ctx, params, out)?;
            }
            walk(&a.expr, ctx, params, out)?;
        }
        Expr::Unary(u) => walk(&u.expr, ctx, params, out)?,
        Expr::Binary(b) => {
            walk(&b.lhs, ctx, params, out)?;
            walk(&b.rhs, ctx, params, out)?;
        }
        Expr::Paren(p) => walk(&p.expr, ctx, params, out)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, ctx, params, out)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

fn select(
    vs: &VectorSelector,
    range_ms: i64,
    ctx: SubqueryContext,
    params: &QueryParams,
) -> Result<(usize, Selection), QueryError> {
    bounded(range_ms, "range")?;
    bounded(offset_ms(&vs.offset), "offset")?;
    bounded(at_ms(&vs.at, params).unwrap_or(0), "@ time")?;
    let (mut start, mut end) = (params.start_ms, params.end_ms);
    if let Some(at) = ctx.at_ms {
        (start, end) = (at, at);
    }
    if let Some(at) = at_ms(&vs.at, params) {
        // The selector's own `@` overrides every enclosing time.
        (start, end) = (at, at);
    } else {
        start -= ctx.offset_ms + ctx.range_ms;
        end -= ctx.offset_ms;
    }
    start -= if range_ms == 0 {
        params.lookback_ms
    } else {
        range_ms
    };
    let offset = offset_ms(&vs.offset);
    let sel = Selection {
        matchers: matchers(vs)?,
        mint_ms: start - offset,
        maxt_ms: end - offset,
    };
    Ok((vs as *const VectorSelector as usize, sel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(q: &str, params: &QueryParams) -> Vec<(i64, i64)> {
        let e = crate::parse(q).unwrap();
        plan(&e, params)
            .unwrap()
            .into_iter()
            .map(|(_, s)| (s.mint_ms, s.maxt_ms))
            .collect()
    }

    #[test]
    fn ranges_cover_lookback_offset_at_and_subqueries() {
        let p = QueryParams::range(1_000_000, 2_000_000, 10_000);
        assert_eq!(ranges("x", &p), vec![(700_000, 2_000_000)]);
        assert_eq!(
            ranges("rate(x[1m] offset 1m)", &p),
            vec![(880_000, 1_940_000)]
        );
        assert_eq!(ranges("x @ 500", &p), vec![(200_000, 500_000)]);
        assert_eq!(ranges("x @ end()", &p), vec![(1_700_000, 2_000_000)]);
        assert_eq!(
            ranges("max_over_time(rate(x[1m])[10m:1m] offset 1m)", &p),
            vec![(1_000_000 - 60_000 - 600_000 - 60_000, 1_940_000)]
        );
        // An `@` on a subquery fixes its time; enclosing ranges no longer apply.
        assert_eq!(
            ranges("max_over_time(max_over_time(x[1m:] @ 100)[5m:])", &p),
            vec![(100_000 - 60_000 - 300_000, 100_000)]
        );
    }

    #[test]
    fn name_becomes_a_matcher() {
        let e = crate::parse("up{job=~\"a|b\"}").unwrap();
        let Expr::VectorSelector(vs) = &e else {
            panic!()
        };
        let m = matchers(vs).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], Matcher::equal("__name__", "up"));
    }
}
