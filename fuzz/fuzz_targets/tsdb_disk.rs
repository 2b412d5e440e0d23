//! The `tsdb_disk` fuzz target: see `photon_fuzz_checks::tsdb_disk`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::tsdb_disk::check(data));
