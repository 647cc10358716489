#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! Proof against the real thing (issue 23): Calico's calico-typha and meshsync's Typha port on the
//! **same** datastore must leave Calico's own client (the syncclient, in the typha-dump peer)
//! holding the same map on all four syncers — after the initial dataset and after each change of
//! a scripted series (creates, updates, deletes, a namespace relabelled, a pod IP change, a policy
//! with a namespaceSelector, a FelixConfiguration change) — on etcd and on a real kube-apiserver.
//! The harness itself is proved able to fail in `typha_differential.rs`.

mod support;

use std::time::Instant;

use support::etcd::Cluster;
use support::typha::{
    CalicoTypha, Differential, Syncer, TyphaDatastore, TyphaServer, meshsync_typha,
};
use support::typha_scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_calico_typha_and_meshsync_serve_the_same_maps() {
    let t0 = Instant::now();
    let cluster = Cluster::start("typha-vs-meshsync-etcd").await;
    typha_scenario::write_etcd_dataset(&cluster.client).await;
    let typha = CalicoTypha::start("reference", &TyphaDatastore::etcd(&cluster.etcd)).await;
    let (_serve, addr) = meshsync_typha(&format!("etcd://{}", cluster.etcd.host_port()));
    let mut diff = Differential::start(
        TyphaServer::calico("calico-typha", &typha),
        TyphaServer::new("meshsync", addr.to_string()),
        &Syncer::ALL,
    );
    typha_scenario::etcd_scenario(&cluster.client, &mut diff).await;
    eprintln!(
        "etcd: calico-typha vs meshsync took {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdd_calico_typha_and_meshsync_serve_the_same_maps() {
    let t0 = Instant::now();
    let api = typha_scenario::api_server_with_kdd_dataset("typha-vs-meshsync-kdd").await;
    let typha = CalicoTypha::start("reference", &TyphaDatastore::kubernetes(&api)).await;
    let (_serve, addr) = meshsync_typha(&format!("kubernetes:{}", api.kubeconfig().display()));
    let mut diff = Differential::start(
        TyphaServer::calico("calico-typha", &typha),
        TyphaServer::new("meshsync", addr.to_string()),
        &Syncer::ALL,
    );
    typha_scenario::kdd_scenario(&api, &mut diff).await;
    eprintln!(
        "KDD: calico-typha vs meshsync took {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
