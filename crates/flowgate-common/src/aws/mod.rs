//! AWS request signing (Signature Version 4, over `ring`) and a minimal client for S3-compatible
//! object storage (AWS S3, MinIO, Ceph, R2...) signed with it.

pub mod s3;
pub mod sigv4;
