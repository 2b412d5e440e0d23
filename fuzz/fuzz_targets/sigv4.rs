//! The `sigv4` fuzz target: see `photon_fuzz_checks::sigv4`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::sigv4::check(data));
