//! CoronaFS's per-shard volume store: thin-provisioned extent maps with
//! copy-on-write snapshots and clones over one data file per shard
//! (O_DIRECT through io_uring), made durable by a checksummed metadata
//! journal with group commit. See docs/design/0007-coronafs.md.
//!
//! The store knows maps by id (a volume, a snapshot, a clone) and nothing of
//! names, sizes or tenants: the control plane owns those.

pub mod journal;
pub mod layout;
pub mod state;
mod store;

#[cfg(test)]
mod tests;

pub use store::{Chunk, Result, Store, StoreConfig, StoreError, StoreStats};
