//! AWS request signing (Signature Version 4) and the event-stream binary framing, as Bedrock
//! needs them. Leaves: they depend on nothing else in the crate. Public so the fake Bedrock in the
//! tests checks signatures and writes frames with the same code.

pub mod eventstream;
/// The signer lives in `flowgate-common` (the worker's S3 client signs with it too).
pub use flowgate_common::aws::sigv4;
