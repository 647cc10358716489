//! The meshsync wire protocol (`proto/meshsync/v1/sync.proto`).
//!
//! Messages and the client are generated from the `.proto`. The server side is generated with a
//! different output type, [`Frame`]: a `SyncEvent` that has already been encoded. The cache encodes
//! each batch once per subscription type and every connected stream sends the same bytes, so the
//! hot path never serializes an update per client ("encode once, send many").

pub mod compression;
pub mod digest;
mod frame;
pub mod limits;
mod logsafe;

pub use frame::{Frame, GRPC_HEADER_LEN};
pub use logsafe::LogSafe;

#[allow(clippy::all, missing_docs)]
mod generated {
    tonic::include_proto!("meshsync.v1");
}
pub use generated::*;

/// The server half of the `meshsync.v1.Sync` service, streaming pre-encoded [`Frame`]s.
#[allow(clippy::all, missing_docs)]
pub mod server {
    include!(concat!(env!("OUT_DIR"), "/meshsync.v1.Sync.rs"));
}
