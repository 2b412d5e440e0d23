//! Generated code of the control plane's Cap'n Proto schemas (`kv.capnp`,
//! `iam.capnp`, `raft.capnp`, `buckets.capnp`, `volumes.capnp`, `lb.capnp`),
//! which are the public API contract. Nothing else lives here.

#![allow(
    clippy::all,
    missing_docs,
    unused_qualifications,
    unsafe_op_in_unsafe_fn
)]

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
