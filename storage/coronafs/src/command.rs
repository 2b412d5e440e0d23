//! What the control-plane thread asks of a volume's owner shard: operations
//! on extent maps that must be durable before a record names them.

use tokio::sync::oneshot;

/// An operation on the owner shard's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeOp {
    /// Map `to` becomes a copy of map `from` (snapshot, clone); durable on reply.
    Copy { from: u64, to: u64 },
    /// Map `id` is deleted; durable on reply.
    Drop { id: u64 },
    /// Bytes of data map `id` references.
    Usage { id: u64 },
}

/// A [`VolumeOp`] with the channel its answer goes back on (a number of
/// bytes for `Usage`, 0 otherwise, or the reason it failed).
#[derive(Debug)]
pub struct VolumeCommand {
    pub op: VolumeOp,
    pub reply: oneshot::Sender<Result<u64, String>>,
}
