//! Generated code of the control plane's Cap'n Proto schemas (every
//! `*.capnp` in this crate's folder: `error`, `kv`, `iam`, `raft`, `buckets`,
//! `volumes`, `lb`, ...), which are the public API contract, one
//! `<name>_capnp` module each, and `SCHEMA_SOURCES`: the source text of every
//! schema by file name. The files import each other by bare name (`import
//! "iam.capnp"`), so written side by side into one directory they load on
//! their own: this is what `photon api schemas` ships to clients in other
//! languages. Nothing else lives here; build.rs finds the schemas.

#![allow(
    clippy::all,
    missing_docs,
    unused_qualifications,
    unsafe_op_in_unsafe_fn
)]

include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
