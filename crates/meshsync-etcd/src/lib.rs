//! A small etcd v3 client on the same tonic stack as the rest of meshsync.
//!
//! The `etcd-client` crate compiles etcd's protos in its build script and so needs a system
//! `protoc`; meshsync must build without one. This crate talks to etcd through a minimal `.proto`
//! of our own (`proto/etcd/etcd.proto`, etcd's public field numbers) for the calls we use: paged
//! prefix listing at a revision, put/delete/transactions, compaction, watches from a
//! revision, and user/password authentication. Values are `Bytes`, shared without copies. It
//! serves the etcd datastore driver, the federation controller's writes, the tests and the
//! benchmark's writers. Helpers only tests need (compaction, prefix deletes) are behind the
//! `test-support` feature.

mod auth;
mod client;
mod config;
mod error;
mod watch;

pub use client::{EtcdClient, prefix_end};
pub use config::{EtcdConfig, EtcdTls};
pub use error::EtcdError;
pub use watch::WatchStream;

/// The generated etcd messages and clients.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}
