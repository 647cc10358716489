//! The retained history: the breadcrumbs of the last few minutes, kept so that an agent that
//! reconnects to the same server (same epoch) can resume from where it was and be sent only what
//! changed since, coalesced per key, instead of the whole snapshot.
//!
//! Breadcrumbs are linked forward and share their snapshots' structure, so keeping one costs only
//! what changed after it. The history keeps every breadcrumb from the oldest it still covers to the
//! head and drops the oldest while the changes it spans exceed `max_bytes` or it is older than
//! `max_age` (checked when a breadcrumb is published: a quiet cache keeps what it has, which is
//! still correct and costs nothing new).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::breadcrumb::Breadcrumb;

/// How much history to keep for resuming agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Most bytes of changes (the breadcrumbs' running `bytes` total) between the oldest retained
    /// breadcrumb and the head. 0 keeps only the head: no resume.
    pub max_bytes: u64,
    /// Oldest breadcrumb kept.
    pub max_age: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(600),
        }
    }
}

/// The retained breadcrumbs, oldest first, the head last.
pub(crate) struct History {
    config: HistoryConfig,
    crumbs: Mutex<VecDeque<Arc<Breadcrumb>>>,
}

impl History {
    pub(crate) fn new(config: HistoryConfig, genesis: Arc<Breadcrumb>) -> Self {
        History {
            config,
            crumbs: Mutex::new(VecDeque::from([genesis])),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Breadcrumb>>> {
        self.crumbs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a newly published head and trims what fell out of the window.
    pub(crate) fn push(&self, head: Arc<Breadcrumb>) {
        let mut crumbs = self.lock();
        let (bytes, max_bytes, max_age) = (head.bytes, self.config.max_bytes, self.config.max_age);
        crumbs.push_back(head);
        while crumbs.len() > 1 {
            let front = &crumbs[0];
            if bytes.saturating_sub(front.bytes) > max_bytes || front.created.elapsed() > max_age {
                crumbs.pop_front();
            } else {
                break;
            }
        }
    }

    /// The newest retained breadcrumb at or before `seq`: its snapshot holds nothing newer than
    /// `seq`, so a difference from it to the head covers every change an agent at `seq` may
    /// lack. `None` when `seq` is older than the history.
    pub(crate) fn at_or_before(&self, seq: u64) -> Option<Arc<Breadcrumb>> {
        let crumbs = self.lock();
        let after = crumbs.partition_point(|c| c.seq <= seq);
        after.checked_sub(1).map(|i| crumbs[i].clone())
    }

    /// The oldest retained sequence number and how many breadcrumbs are kept.
    pub(crate) fn span(&self) -> (u64, usize) {
        let crumbs = self.lock();
        (crumbs.front().map(|c| c.seq).unwrap_or(0), crumbs.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breadcrumb::Snapshot;
    use crate::status::SyncStatus;

    fn crumb(seq: u64, bytes: u64) -> Arc<Breadcrumb> {
        let mut c = Breadcrumb::new(
            seq,
            0,
            Snapshot::new(),
            Vec::new(),
            Arc::new(SyncStatus::new()),
            false,
        );
        c.bytes = bytes;
        Arc::new(c)
    }

    #[test]
    fn keeps_the_window_of_bytes_and_finds_the_crumb_at_or_before() {
        let history = History::new(
            HistoryConfig {
                max_bytes: 1000,
                max_age: Duration::from_secs(600),
            },
            crumb(0, 0),
        );
        for (seq, bytes) in [(5, 400), (9, 800), (12, 1200)] {
            history.push(crumb(seq, bytes));
        }
        // 1200 − 0 > 1000: the genesis went; 1200 − 400 = 800 stays.
        assert_eq!(history.span(), (5, 3));
        assert_eq!(history.at_or_before(4).map(|c| c.seq), None);
        assert_eq!(history.at_or_before(5).map(|c| c.seq), Some(5));
        assert_eq!(history.at_or_before(8).map(|c| c.seq), Some(5));
        assert_eq!(history.at_or_before(9).map(|c| c.seq), Some(9));
        assert_eq!(history.at_or_before(100).map(|c| c.seq), Some(12));
        history.push(crumb(20, 2500));
        assert_eq!(
            history.span(),
            (20, 1),
            "one big batch leaves only the head"
        );
    }

    #[test]
    fn zero_bytes_keeps_only_the_head_and_age_trims() {
        let history = History::new(
            HistoryConfig {
                max_bytes: 0,
                max_age: Duration::from_secs(600),
            },
            crumb(0, 0),
        );
        history.push(crumb(1, 10));
        assert_eq!(history.span(), (1, 1));
        let aged = History::new(
            HistoryConfig {
                max_bytes: u64::MAX,
                max_age: Duration::ZERO,
            },
            crumb(0, 0),
        );
        std::thread::sleep(Duration::from_millis(2));
        aged.push(crumb(3, 10));
        assert_eq!(aged.span(), (3, 1), "older than max_age");
    }
}
