//! Stalled clients for the `stalled` scenario: on `stall <count>` some clients stop reading their
//! stream (they stop polling it, so HTTP/2 flow control and then the socket buffers fill and the
//! server sees a peer that does not read), and `resume` lets them read again. A stalled client's
//! deliveries are never counted, so the histogram of a step holds the healthy clients only.
//!
//! After a resume the orchestrator writes a marker stamped with a new generation (`catchup <g>`
//! first): a client has caught up once it holds a value of that generation, whether it read it as
//! a live update, as the coalesced difference of a released stream, or in the snapshot of a new
//! connection after the server closed the stalled one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::watch;

use super::recorder::NO_GENERATION;
use crate::workload::stamp;

pub(super) struct StallControl {
    stalled: Box<[AtomicBool]>,
    stalled_count: AtomicUsize,
    /// `true` while a stall is in force; stalled clients wait for `false`.
    active: watch::Sender<bool>,
    catchup_generation: AtomicU64,
    caught: Box<[AtomicBool]>,
    caught_up: AtomicUsize,
    /// Notified when the last client catches up, so the command loop reports it at once (not at
    /// the next 250 ms progress tick: the `storm` times depend on it).
    pub(super) all_caught: tokio::sync::Notify,
}

impl StallControl {
    pub(super) fn new(n: usize) -> Self {
        StallControl {
            stalled: (0..n).map(|_| AtomicBool::new(false)).collect(),
            stalled_count: AtomicUsize::new(0),
            active: watch::Sender::new(false),
            catchup_generation: AtomicU64::new(NO_GENERATION),
            caught: (0..n).map(|_| AtomicBool::new(false)).collect(),
            caught_up: AtomicUsize::new(0),
            all_caught: tokio::sync::Notify::new(),
        }
    }

    /// Stalls `count` clients spread evenly over the ids (`i × n / count`); returns how many.
    pub(super) fn stall(&self, count: usize) -> usize {
        let n = self.stalled.len();
        let count = count.min(n);
        for i in 0..count {
            self.stalled[i * n / count].store(true, Ordering::Relaxed);
        }
        let stalled = self
            .stalled
            .iter()
            .filter(|s| s.load(Ordering::Relaxed))
            .count();
        self.stalled_count.store(stalled, Ordering::Relaxed);
        self.active.send_replace(stalled > 0);
        stalled
    }

    /// Every client reads again.
    pub(super) fn resume(&self) {
        for s in self.stalled.iter() {
            s.store(false, Ordering::Relaxed);
        }
        self.stalled_count.store(0, Ordering::Relaxed);
        self.active.send_replace(false);
    }

    pub(super) fn is_stalled(&self, client: usize) -> bool {
        self.stalled
            .get(client)
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }

    pub(super) fn stalled(&self) -> usize {
        self.stalled_count.load(Ordering::Relaxed)
    }

    /// Returns at once unless `client` is stalled; then when the stall ends.
    pub(super) async fn wait_while_stalled(&self, client: usize) {
        if !self.is_stalled(client) {
            return;
        }
        let mut active = self.active.subscribe();
        // The flag is cleared before `active` goes false, so this cannot miss a resume.
        let _ = active.wait_for(|stalled| !*stalled).await;
    }

    /// From now on, count the clients that hold a value of generation `generation` or later.
    pub(super) fn expect_catchup(&self, generation: u64) {
        for c in self.caught.iter() {
            c.store(false, Ordering::Relaxed);
        }
        self.caught_up.store(0, Ordering::Relaxed);
        self.catchup_generation.store(generation, Ordering::Relaxed);
    }

    pub(super) fn caught_up(&self) -> usize {
        self.caught_up.load(Ordering::Relaxed)
    }

    /// Looks for the marker among values `client` just applied (live or snapshot).
    pub(super) fn observe<'a>(&self, client: usize, mut values: impl Iterator<Item = &'a [u8]>) {
        let generation = self.catchup_generation.load(Ordering::Relaxed);
        let Some(caught) = self.caught.get(client) else {
            return;
        };
        if generation == NO_GENERATION || caught.load(Ordering::Relaxed) {
            return;
        }
        if values.any(|v| stamp(v).is_some_and(|(g, _)| g >= generation))
            && !caught.swap(true, Ordering::Relaxed)
            && self.caught_up.fetch_add(1, Ordering::Relaxed) + 1 == self.caught.len()
        {
            self.all_caught.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{now_ns, value};

    #[test]
    fn stalls_are_spread_and_resumed() {
        let control = StallControl::new(20);
        assert_eq!(control.stall(2), 2);
        assert!(control.is_stalled(0) && control.is_stalled(10));
        assert!(!control.is_stalled(5));
        assert_eq!(control.stall(0), 2, "a stall adds to the stalled clients");
        control.resume();
        assert_eq!(control.stalled(), 0);
        assert!(!control.is_stalled(0));
        assert_eq!(control.stall(50), 20, "at most every client");
    }

    #[tokio::test]
    async fn a_stalled_client_waits_until_the_resume() {
        let control = std::sync::Arc::new(StallControl::new(4));
        control.stall(1);
        // Not stalled: no wait.
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            control.wait_while_stalled(1),
        )
        .await
        .unwrap();
        let waiting = {
            let control = control.clone();
            tokio::spawn(async move { control.wait_while_stalled(0).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "client 0 is stalled");
        control.resume();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn catching_up_needs_the_marker_generation() {
        let control = StallControl::new(3);
        let old = value(1, 4, now_ns());
        let marker = value(2, 5, now_ns());
        control.observe(0, std::iter::once(&marker[..]));
        assert_eq!(
            control.caught_up(),
            0,
            "nothing counts before expect_catchup"
        );
        control.expect_catchup(5);
        control.observe(0, std::iter::once(&old[..]));
        assert_eq!(control.caught_up(), 0);
        control.observe(0, [&old[..], &marker[..]].into_iter());
        control.observe(0, std::iter::once(&marker[..]));
        control.observe(2, std::iter::once(&marker[..]));
        assert_eq!(control.caught_up(), 2, "each client once");
        control.expect_catchup(6);
        assert_eq!(control.caught_up(), 0);
    }
}
