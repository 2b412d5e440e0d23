//! The `nbd` fuzz target: see `photon_fuzz_checks::nbd`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::nbd::check(data));
