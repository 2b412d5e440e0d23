//! The resource layer: one module per kind of record the control plane
//! keeps (its KV prefix, reads from the applied state, validation and
//! limits, guarded writes, typed errors). The RPC services are adapters over
//! it; the data-plane followers decode the same records.
//!
//! Every write goes through [`txn::update`], the one guarded
//! read-modify-write loop. A new kind follows docs/design/0010-resources.md.

/// Implements [`Refusal`] for a kind's error enum whose `Commit` variant
/// wraps a [`CommitError`], with the API code of every other variant:
/// `refusal!(BucketWriteError { Self::NoSuchBucket => NotFound, ... })`.
macro_rules! refusal {
    ($error:ty { $($pattern:pat => $code:ident),* $(,)? }) => {
        impl $crate::resource::Refusal for $error {
            fn commit(&self) -> Option<&$crate::resource::CommitError> {
                match self {
                    Self::Commit(e) => Some(e),
                    _ => None,
                }
            }

            fn code(&self) -> $crate::api_error::Code {
                match self {
                    $($pattern => $crate::api_error::Code::$code,)*
                }
            }
        }
    };
}

pub mod bucket;
pub mod iam;
pub mod lb;
pub mod node;
pub mod txn;
pub mod vm;
pub mod volume;

pub use txn::{CommitError, Plan};

/// A resource kind's write error: its text is the protocol's message, and
/// it says whether a failed commit is behind it (so the adapters can mark
/// the retryable ones).
pub trait Refusal: std::fmt::Display {
    /// The commit failure behind this refusal, if that is what it is.
    fn commit(&self) -> Option<&CommitError>;
    /// The API error code of a refusal that is not a commit failure.
    fn code(&self) -> crate::api_error::Code;
}

#[cfg(test)]
mod tests;
