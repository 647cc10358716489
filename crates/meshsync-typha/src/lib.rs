//! Typha's protocol and Calico's v1 data model, as meshsync's Typha front end speaks them —
//! types and pure functions, no I/O (as `meshsync-proto` is for gRPC).
//!
//! - [`gob`]: the subset of Go's `encoding/gob` Typha's messages need, byte for byte where Go
//!   is strict (type definitions per stream, interface type names, zero fields omitted,
//!   `time.Time`).
//! - [`messages`]: Typha's message set (`MsgClientHello` … `MsgKVs`) on top of it.
//! - [`snappy`]: the snappy framing format a client switches to after a decoder restart.
//! - [`v1`]: the keys and values Calico's update processors make of v3 resources, per syncer and
//!   dialect (v3.31's policy keys, or v3.32's modern ones).

pub mod gob;
pub mod messages;
pub mod snappy;
pub mod v1;
