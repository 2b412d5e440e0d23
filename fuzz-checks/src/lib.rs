//! The checks behind every fuzz target (`fuzz/fuzz_targets/*.rs`, run with
//! cargo-fuzz on nightly): each `check` takes one input and panics on a
//! finding. They live in this crate of the main workspace so that the
//! ordinary test run replays every committed corpus and a bounded number of
//! seeded mutations of it (`tests/replay.rs`), on stable, with no sanitizer
//! build; the long runs are cargo-fuzz's (docs/fuzzing.md).
//!
//! Never imported by production code.

pub mod log_record;
pub mod metrics_wire;
pub mod nbd;
pub mod object_record;
pub mod promql_query;
pub mod qmp;
pub mod raft_wire;
pub mod s3_headers;
pub mod s3_xml;
pub mod sigv4;
pub mod tsdb_disk;
pub mod volume_journal;

/// A target's check: panics on a finding.
pub type Check = fn(&[u8]);

/// Every target: its name (the corpus folder) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("log_record", log_record::check),
    ("metrics_wire", metrics_wire::check),
    ("nbd", nbd::check),
    ("object_record", object_record::check),
    ("promql_query", promql_query::check),
    ("qmp", qmp::check),
    ("raft_wire", raft_wire::check),
    ("s3_headers", s3_headers::check),
    ("s3_xml", s3_xml::check),
    ("sigv4", sigv4::check),
    ("tsdb_disk", tsdb_disk::check),
    ("volume_journal", volume_journal::check),
];
