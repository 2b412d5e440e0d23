//! The `qmp` fuzz target: see `photon_fuzz_checks::qmp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::qmp::check(data));
