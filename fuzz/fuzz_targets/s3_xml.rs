//! The `s3_xml` fuzz target: see `photon_fuzz_checks::s3_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| photon_fuzz_checks::s3_xml::check(data));
