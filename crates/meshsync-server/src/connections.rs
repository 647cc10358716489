//! Counting connected agents and refusing new ones above the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The number of streaming agents, shared by the service and the `Status` call.
#[derive(Debug, Default)]
pub struct Connections {
    active: AtomicUsize,
}

/// Held by a stream while it is open; dropping it releases the slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    connections: Arc<Connections>,
}

impl Connections {
    /// Takes a slot unless `limit` are already taken.
    pub fn try_acquire(self: &Arc<Self>, limit: usize) -> Option<ConnectionGuard> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionGuard {
                connections: self.clone(),
            })
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_release() {
        let c = Arc::new(Connections::default());
        let a = c.try_acquire(2).unwrap();
        let _b = c.try_acquire(2).unwrap();
        assert!(c.try_acquire(2).is_none());
        drop(a);
        assert_eq!(c.active(), 1);
        assert!(c.try_acquire(2).is_some());
    }
}
