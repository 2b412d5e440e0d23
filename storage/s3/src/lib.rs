//! `photon-s3`: the S3 protocol as LightningStor speaks it, free of I/O so
//! it can be tested against real clients' bytes and fuzzed: AWS Signature V4
//! ([`sigv4`]: Authorization header, presigned URLs, streaming chunk
//! signatures), the S3 error codes with their XML ([`error`]), and the XML
//! bodies of requests and responses ([`xml`]).
//!
//! It must never import the engine, the control plane or any storage
//! engine: the HTTP front end and the object store build on it.

pub mod error;
pub mod sigv4;
pub mod xml;
