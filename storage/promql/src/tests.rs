//! Evaluation tests, many ported from the semantics of Prometheus'
//! promql/testdata files, written as Rust with a small loader for
//! Prometheus' series notation (`0+10x10`, `_`, `stale`).

mod harness;

mod aggregations;
mod aggregators_ported;
mod at_modifier;
mod functions;
mod histograms;
mod operators;
mod operators_ported;
mod selectors;
mod subqueries;
