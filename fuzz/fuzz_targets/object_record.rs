//! The `object_record` fuzz target: see `photon_fuzz_checks::object_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::object_record::check(data));
