//! A small etcd v3 client on the same tonic stack as the rest of meshsync.
//!
//! The `etcd-client` crate compiles etcd's protos in its build script and so needs a system
//! `protoc`; meshsync must build without one. This crate talks to etcd through a minimal `.proto`
//! of our own (`proto/etcd/etcd.proto`, etcd's public field numbers) for the calls we use: paged
//! prefix listing at a revision, put/delete/transactions (the compare-and-swap builders are in
//! [`txn`]), compaction, watches from a revision, and user/password authentication. TLS
//! material comes inline ([`EtcdTls`]) or as files read at each connect ([`TlsFiles`]). Values
//! are `Bytes`, shared without copies. It serves the etcd datastore driver, the federation
//! controller, the tests and the benchmark's writers. Helpers only tests need (compaction,
//! prefix deletes) are behind the `test-support` feature.

mod auth;
mod client;
mod config;
mod error;
pub mod txn;
mod watch;

pub use client::{EtcdClient, prefix_end};
pub use config::{EtcdConfig, EtcdTls, TlsFiles};
pub use error::EtcdError;
pub use watch::WatchStream;

/// The generated etcd messages and clients.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}
