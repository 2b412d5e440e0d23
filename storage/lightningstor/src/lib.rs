//! `lightningstor`: the S3-compatible object service of PhotonCloud, one
//! instance per shard.
//!
//! It owns the HTTP front end of S3 ([`api`]: addressing, SigV4 through
//! IAM access keys, IAM policy per action, bucket ownership), the S3 APIs
//! ([`bucket_ops`], [`object_ops`], [`multipart`], [`list_ops`]), how object
//! bytes are cut into chunks spread over shards ([`data`], [`meta`]), the
//! per-shard store requests over the engine mesh ([`shard`]), and the
//! per-shard bucket copies fed by the control plane ([`catalog`]). Which
//! request headers each operation honours is one table ([`headers`]): any
//! other `x-amz-*` header is refused before anything is stored; the
//! additional checksums are in [`checksum`].
//!
//! It never imports the control plane (Raft, RPC): bucket changes go to the
//! control-plane thread as [`catalog::BucketRequest`] messages on the
//! service's typed link and come back as [`catalog::S3Event`]s that update
//! each shard's [`catalog::ShardCatalog`]. The
//! protocol pieces (SigV4, XML, error codes) are in `photon-s3`, the disk
//! format in `photon-object`.

pub mod api;
pub mod auth;
pub mod body;
pub mod bucket_ops;
pub mod catalog;
pub mod checksum;
pub mod conditions;
pub mod config;
pub mod data;
pub mod headers;
pub mod list_ops;
pub mod meta;
pub mod multipart;
pub mod object_ops;
pub mod request;
pub mod response;
pub mod service;
pub mod shard;

pub use catalog::{
    bucket_feed, BucketEmptyQuery, BucketFeed, BucketOp, BucketOpError, BucketRequest,
    S3ControlEnd, S3Event, S3Link, ShardCatalog,
};
pub use config::{S3Config, S3Limits, S3Params};
pub use service::S3Service;
