//! `photon-iam`: who is this, and may they do that?
//!
//! It owns the IAM model as stored in the replicated KV ([`model`],
//! [`records`]), policy evaluation ([`policy`]), access tokens ([`token`]:
//! PASETO v4.public), sealing of secrets with the cluster key ([`seal`]),
//! secret hashing ([`password`]), login rate limiting ([`ratelimit`]) and a
//! node's local view with per-thread verifiers ([`directory`]). The control
//! plane writes the model through Raft; every node (control thread and
//! data-plane shards alike) keeps a local, read-only view fed by KV watches
//! and answers requests from it with no control-plane round trip.
//!
//! It must never import the Raft, RPC or engine crates: data-plane shards link
//! it, and it is tested on its own.

pub mod directory;
pub mod model;
pub mod password;
pub mod policy;
pub mod ratelimit;
pub mod records;
pub mod seal;
pub mod token;

pub use directory::{Directory, Identity, Scope, Snapshot, Verifier};
