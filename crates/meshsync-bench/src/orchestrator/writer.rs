//! The writer: the etcd client that preloads the keys and then puts stamped values at a fixed
//! rate — the same writes for every system.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshsync_etcd::{EtcdClient, EtcdConfig};
use tokio::sync::Semaphore;

use super::bar;
use crate::workload;

pub(super) async fn etcd_client(url: &str) -> anyhow::Result<EtcdClient> {
    let mut config = EtcdConfig::new(vec![url.to_string()]);
    config.request_timeout = Duration::from_secs(60);
    Ok(EtcdClient::connect(&config).await?)
}

/// Writes keys `0..keys` once (generation 0), many in flight.
pub(super) async fn preload(client: &EtcdClient, keys: usize) -> anyhow::Result<()> {
    let pb = bar(keys as u64, "preload");
    let permits = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(keys);
    for i in 0..keys {
        let permit = permits.clone().acquire_owned().await?;
        let client = client.clone();
        let pb = pb.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .put(workload::key(i), workload::value(i, 0, workload::now_ns()))
                .await;
            drop(permit);
            pb.inc(1);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    pb.finish_and_clear();
    Ok(())
}

/// Puts stamped values at `rate`/s, round-robin over the keys, many in flight.
pub(super) async fn write_load(
    client: &EtcdClient,
    keys: usize,
    rate: f64,
    duration: Duration,
    generation: u64,
) -> anyhow::Result<(u64, Duration)> {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let pb = bar(total, &format!("writes {rate}/s"));
    let permits = Arc::new(Semaphore::new(512));
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut issued = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = Vec::new();
    while issued < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while issued < due {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break; // the writer is saturated: carry on at the next tick
            };
            let i = (issued as usize) % keys;
            let client = client.clone();
            let failures = failures.clone();
            tasks.push(tokio::spawn(async move {
                let value = workload::value(i, generation, workload::now_ns());
                if client.put(workload::key(i), value).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            }));
            issued += 1;
        }
        pb.set_position(issued);
        if start.elapsed() > duration * 3 {
            break; // far behind schedule: report the achieved rate
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    let failed = failures.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} writes failed");
    Ok((issued, elapsed))
}
