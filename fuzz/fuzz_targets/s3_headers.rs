//! The `s3_headers` fuzz target: see `photon_fuzz_checks::s3_headers`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::s3_headers::check(data));
