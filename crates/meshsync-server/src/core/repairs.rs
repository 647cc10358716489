//! The budget of private repairs in flight, per client and in total.
//!
//! A repair (a resume's coalesced difference, anti-entropy's differing buckets) is encoded for one
//! stream alone, while a full snapshot is shared by every stream. The cache already turns a
//! repair of more than half the snapshot into the shared snapshot; this budget bounds how many
//! smaller ones are held at once. A client that opens many streams asking for repairs and never
//! reads them would otherwise make the server hold one private copy per stream until the write
//! timeout. Past the budget a stream gets the shared full snapshot instead: as complete a repair,
//! only more bytes on the wire.
//!
//! A client is its IP address (an IPv6 one by its /64, which one host can fill with addresses): an
//! honest node agent has one stream, and nodes have distinct addresses. The total is counted in
//! entries against the cache's size, so it bounds memory in units of the snapshot whatever the
//! cluster's size, and many honest agents resuming after a blip with a few changes each fit.
//! A stream holds its reservation ([`RepairSlot`]) until the repair's frames have been handed to
//! HTTP/2, or until it ends: a stalled stream keeps its slot, which is the point.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::core::accept::RateLimit;

/// Private repairs in flight per client (IP address); more go the shared snapshot way.
pub const MAX_PRIVATE_REPAIRS_PER_CLIENT: usize = 2;
/// Entries in all private repairs in flight, as a multiple of the keys the cache holds.
pub const PRIVATE_REPAIR_SNAPSHOTS: u64 = 4;

/// Why a repair was not made private.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The client already holds its [`MAX_PRIVATE_REPAIRS_PER_CLIENT`].
    Client,
    /// Private repairs in flight already hold [`PRIVATE_REPAIR_SNAPSHOTS`] times the cache's keys.
    Total,
}

impl Refusal {
    /// Why the stream gets the shared snapshot, for log lines and the resume refusal.
    pub(crate) fn reason(self) -> String {
        match self {
            Refusal::Client => format!(
                "this client already has {MAX_PRIVATE_REPAIRS_PER_CLIENT} private repairs in flight: the shared snapshot instead"
            ),
            Refusal::Total => format!(
                "private repairs in flight already hold {PRIVATE_REPAIR_SNAPSHOTS} times the cache's entries: the shared snapshot instead"
            ),
        }
    }
}

/// Who a reservation is charged to: the peer's IP address, an IPv6 one masked to its /64.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    Ip(IpAddr),
    /// A peer address that does not parse (a test calling the service directly): as given.
    Other(String),
}

impl Client {
    pub(crate) fn of_peer(peer: &str) -> Client {
        match peer.parse::<SocketAddr>() {
            Ok(addr) => Client::Ip(match addr.ip().to_canonical() {
                IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
                v4 => v4,
            }),
            Err(_) => Client::Other(peer.to_string()),
        }
    }
}

#[derive(Debug, Default)]
struct InFlight {
    by_client: HashMap<Client, usize>,
    entries: u64,
}

/// The private repairs in flight; cheap to clone (shared).
#[derive(Debug, Default, Clone)]
pub(crate) struct RepairBudget {
    in_flight: Arc<Mutex<InFlight>>,
    /// Logging the fallbacks at most once per interval (a hostile client asks many times).
    pub(crate) log: Arc<RateLimit>,
}

/// A private repair in flight; dropping it gives its share of the budget back.
#[derive(Debug)]
pub(crate) struct RepairSlot {
    budget: RepairBudget,
    client: Client,
    entries: u64,
}

impl RepairBudget {
    /// Reserves a private repair of `entries` for `client` while the cache holds `cache_keys`.
    pub(crate) fn try_reserve(
        &self,
        client: &Client,
        entries: u64,
        cache_keys: u64,
    ) -> Result<RepairSlot, Refusal> {
        // An empty repair still takes a slot: the count is bounded even for repairs of nothing.
        let entries = entries.max(1);
        let mut in_flight = self.lock();
        if in_flight.by_client.get(client).copied().unwrap_or(0) >= MAX_PRIVATE_REPAIRS_PER_CLIENT {
            return Err(Refusal::Client);
        }
        let total = cache_keys.saturating_mul(PRIVATE_REPAIR_SNAPSHOTS);
        if in_flight.entries.saturating_add(entries) > total {
            return Err(Refusal::Total);
        }
        *in_flight.by_client.entry(client.clone()).or_default() += 1;
        in_flight.entries += entries;
        Ok(RepairSlot {
            budget: self.clone(),
            client: client.clone(),
            entries,
        })
    }

    /// Private repairs in flight, and the entries they hold.
    pub(crate) fn in_flight(&self) -> (usize, u64) {
        let in_flight = self.lock();
        (in_flight.by_client.values().sum(), in_flight.entries)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::core::connections::Connections {
    /// Reserves a private repair of `entries` for the stream of `node` at `peer` (a `path`
    /// repair) while the cache holds `cache_keys`. When the budget is taken, counts the fallback
    /// to the shared snapshot, logs it (rate limited: a hostile client asks many times) and says
    /// why.
    pub(crate) fn reserve_private_repair(
        &self,
        peer: &str,
        node: &str,
        path: &str,
        entries: u64,
        cache_keys: u64,
    ) -> Result<RepairSlot, Refusal> {
        let refusal = match self
            .repairs
            .try_reserve(&Client::of_peer(peer), entries, cache_keys)
        {
            Ok(slot) => return Ok(slot),
            Err(refusal) => refusal,
        };
        self.repairs_shared_fallback
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(suppressed) = self.repairs.log.hit() {
            let (in_flight, in_flight_entries) = self.repairs.in_flight();
            tracing::info!(peer = %peer, node = %node, path, entries, in_flight,
                in_flight_entries, suppressed, reason = %refusal.reason(),
                "private repair budget taken; sending the shared snapshot");
        }
        Err(refusal)
    }
}

impl Drop for RepairSlot {
    fn drop(&mut self) {
        let mut in_flight = self.budget.lock();
        in_flight.entries = in_flight.entries.saturating_sub(self.entries);
        if let Some(n) = in_flight.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                in_flight.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_client_and_in_total_and_given_back() {
        let budget = RepairBudget::default();
        let a = Client::of_peer("10.0.0.1:1000");
        let a_again = Client::of_peer("10.0.0.1:2000");
        assert_eq!(a, a_again);
        let slots: Vec<_> = (0..MAX_PRIVATE_REPAIRS_PER_CLIENT)
            .map(|_| budget.try_reserve(&a, 10, 100).unwrap())
            .collect();
        assert_eq!(
            budget.try_reserve(&a_again, 10, 100).unwrap_err(),
            Refusal::Client
        );
        let b = Client::of_peer("10.0.0.2:1000");
        let c = Client::of_peer("10.0.0.3:1000");
        let big = budget.try_reserve(&b, 380, 100).unwrap();
        assert_eq!(budget.try_reserve(&c, 1, 100).unwrap_err(), Refusal::Total);
        assert_eq!(budget.in_flight(), (3, 400));
        drop(big);
        drop(slots);
        assert_eq!(budget.in_flight(), (0, 0));
        assert!(budget.try_reserve(&a, 10, 100).is_ok());
        assert!(
            budget.lock().by_client.is_empty(),
            "released clients are forgotten"
        );
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_a_mapped_ipv4_is_the_ipv4() {
        assert_eq!(
            Client::of_peer("[2001:db8:1:2::1]:5"),
            Client::of_peer("[2001:db8:1:2:ffff::9]:6")
        );
        assert_ne!(
            Client::of_peer("[2001:db8:1:2::1]:5"),
            Client::of_peer("[2001:db8:1:3::1]:5")
        );
        assert_eq!(
            Client::of_peer("[::ffff:10.0.0.1]:5"),
            Client::of_peer("10.0.0.1:7")
        );
    }
}
