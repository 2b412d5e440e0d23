//! The `promql_query` fuzz target: see `photon_fuzz_checks::promql_query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::promql_query::check(data));
