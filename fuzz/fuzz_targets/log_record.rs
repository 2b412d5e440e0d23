//! The `log_record` fuzz target: see `photon_fuzz_checks::log_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::log_record::check(data));
