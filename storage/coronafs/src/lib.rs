//! CoronaFS: block volumes for VMs, served over NBD by every shard.
//!
//! A connection may land on any shard (SO_REUSEPORT). That shard runs the
//! handshake, checks the attach token (the export name) and finds the
//! volume's owner shard; the connection's socket then moves to the owner,
//! which serves every request from its own store (`photon-volume`), so the
//! data path never crosses threads. Volume records live in the control
//! plane's KV ([`VolumeCatalog`]); snapshot, clone and delete reach the
//! owner shard as [`VolumeCommand`]s from the control-plane thread.

mod catalog;
mod command;
pub mod config;
pub mod handshake;
mod metrics;
mod service;
pub mod transmission;

pub use catalog::{
    decode as decode_volume, volume_feed, VolumeCatalog, VolumeControlEnd, VolumeEvent, VolumeFeed,
    VolumeLink,
};
pub use command::{VolumeCommand, VolumeOp};
pub use config::NbdConfig;
pub use service::{NbdParams, NbdRequest, NbdService};
