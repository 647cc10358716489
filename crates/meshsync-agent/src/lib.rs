//! The meshsync client library: a node agent's reconnecting subscription ([`Agent`], also usable
//! as a `Stream` of [`AgentEvent`]s) and the local [`Mirror`] it keeps. The `meshsync agent`
//! command, the benchmark's simulated agents and the federation controller are built on it.

mod agent;
mod codec;
mod connect;
mod mirror;

pub use agent::{Agent, AgentConfig, AgentError, AgentEvent, CAPABILITY_RECONNECT, sync_path_name};
pub use connect::{ClientTls, ConnectError, connect, endpoint};
/// For the library's users: the server's strings (reasons, errors, names) reach a log only
/// through it, as the library's own do.
pub use meshsync_proto::LogSafe;
pub use mirror::{
    ClusterInfo, DigestMismatch, Dump, Mirror, MirrorEntry, MirrorKey, cluster_state_name,
    sync_state_name,
};
