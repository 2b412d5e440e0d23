//! The `volume_journal` fuzz target: see `photon_fuzz_checks::volume_journal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::volume_journal::check(data));
