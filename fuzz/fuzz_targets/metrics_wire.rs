//! The `metrics_wire` fuzz target: see `photon_fuzz_checks::metrics_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::metrics_wire::check(data));
