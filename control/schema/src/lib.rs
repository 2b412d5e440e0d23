//! Generated code of the control plane's Cap'n Proto schemas (`error.capnp`, `kv.capnp`,
//! `iam.capnp`, `raft.capnp`, `buckets.capnp`, `volumes.capnp`, `lb.capnp`),
//! which are the public API contract. Nothing else lives here.

#![allow(
    clippy::all,
    missing_docs,
    unused_qualifications,
    unsafe_op_in_unsafe_fn
)]

pub mod error_capnp {
    include!(concat!(env!("OUT_DIR"), "/error_capnp.rs"));
}

pub mod kv_capnp {
    include!(concat!(env!("OUT_DIR"), "/kv_capnp.rs"));
}

pub mod iam_capnp {
    include!(concat!(env!("OUT_DIR"), "/iam_capnp.rs"));
}

pub mod raft_capnp {
    include!(concat!(env!("OUT_DIR"), "/raft_capnp.rs"));
}

pub mod buckets_capnp {
    include!(concat!(env!("OUT_DIR"), "/buckets_capnp.rs"));
}

pub mod volumes_capnp {
    include!(concat!(env!("OUT_DIR"), "/volumes_capnp.rs"));
}

pub mod lb_capnp {
    include!(concat!(env!("OUT_DIR"), "/lb_capnp.rs"));
}

/// The source text of every schema, as compiled into this crate, by file
/// name. The files import each other by bare name (`import "iam.capnp"`),
/// so written side by side into one directory they load on their own: this
/// is what `photon api schemas` ships to clients in other languages.
pub const SCHEMA_SOURCES: [(&str, &str); 7] = [
    ("error.capnp", include_str!("../error.capnp")),
    ("kv.capnp", include_str!("../kv.capnp")),
    ("iam.capnp", include_str!("../iam.capnp")),
    ("raft.capnp", include_str!("../raft.capnp")),
    ("buckets.capnp", include_str!("../buckets.capnp")),
    ("volumes.capnp", include_str!("../volumes.capnp")),
    ("lb.capnp", include_str!("../lb.capnp")),
];
