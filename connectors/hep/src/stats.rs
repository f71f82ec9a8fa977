//! [`HepStats`]: counters of one collector instance, shared with whoever holds the
//! connector's [`stats`](crate::HepConnector::stats) handle.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Live counters of a collector. Cheap to update from any task; read them with
/// [`snapshot`](Self::snapshot).
#[derive(Debug, Default)]
pub struct HepStats {
    packets: AtomicU64,
    hep_errors: AtomicU64,
    sip_errors: AtomicU64,
    auth_failures: AtomicU64,
    duplicates: AtomicU64,
    ignored: AtomicU64,
    queue_full: AtomicU64,
    events: AtomicU64,
    tcp_connections: AtomicU64,
    calls_tracked: AtomicU64,
    calls_evicted: AtomicU64,
    udp_addr: Mutex<Option<SocketAddr>>,
    tcp_addr: Mutex<Option<SocketAddr>>,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// HEP packets taken from the receive queue.
    pub packets: u64,
    /// Packets that were not valid HEPv3 (or TCP streams that lost their framing).
    pub hep_errors: u64,
    /// SIP payloads that could not be used (malformed, unusable Call-ID).
    pub sip_errors: u64,
    /// Packets dropped for a missing or wrong auth key.
    pub auth_failures: u64,
    /// SIP messages recognised as copies of one already seen.
    pub duplicates: u64,
    /// Valid packets with no effect on any call (non-SIP HEP, ACK, OPTIONS, …).
    pub ignored: u64,
    /// UDP packets dropped because the processing queue was full.
    pub queue_full: u64,
    /// Events handed to the hub.
    pub events: u64,
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// Calls tracked at the last update.
    pub calls_tracked: u64,
    /// Calls dropped to stay within `max_calls`.
    pub calls_evicted: u64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    Packets,
    HepErrors,
    SipErrors,
    AuthFailures,
    Duplicates,
    Ignored,
    QueueFull,
    Events,
    TcpConnections,
}

impl HepStats {
    fn counter(&self, c: Counter) -> &AtomicU64 {
        match c {
            Counter::Packets => &self.packets,
            Counter::HepErrors => &self.hep_errors,
            Counter::SipErrors => &self.sip_errors,
            Counter::AuthFailures => &self.auth_failures,
            Counter::Duplicates => &self.duplicates,
            Counter::Ignored => &self.ignored,
            Counter::QueueFull => &self.queue_full,
            Counter::Events => &self.events,
            Counter::TcpConnections => &self.tcp_connections,
        }
    }

    pub(crate) fn bump(&self, c: Counter) {
        self.counter(c).fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_calls(&self, tracked: usize, evicted: u64) {
        self.calls_tracked.store(
            u64::try_from(tracked).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.calls_evicted.store(evicted, Ordering::Relaxed);
    }

    pub(crate) fn set_addrs(&self, udp: Option<SocketAddr>, tcp: Option<SocketAddr>) {
        *self.udp_addr.lock().unwrap_or_else(|e| e.into_inner()) = udp;
        *self.tcp_addr.lock().unwrap_or_else(|e| e.into_inner()) = tcp;
    }

    /// The UDP address the collector is bound to while it runs (useful with port 0).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        *self.udp_addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The TCP address the collector listens on while it runs, if configured.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        *self.tcp_addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            packets: get(&self.packets),
            hep_errors: get(&self.hep_errors),
            sip_errors: get(&self.sip_errors),
            auth_failures: get(&self.auth_failures),
            duplicates: get(&self.duplicates),
            ignored: get(&self.ignored),
            queue_full: get(&self.queue_full),
            events: get(&self.events),
            tcp_connections: get(&self.tcp_connections),
            calls_tracked: get(&self.calls_tracked),
            calls_evicted: get(&self.calls_evicted),
        }
    }
}

/// Lets one WARN line through per interval and counts the rest, so a flood of bad
/// packets cannot flood the log.
#[derive(Debug)]
pub(crate) struct WarnGate {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Default for WarnGate {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            last: None,
            suppressed: 0,
        }
    }
}

impl WarnGate {
    /// `Some(n)` when a line may be logged now, `n` being how many were held back since
    /// the last one; `None` when this one is to be held back.
    pub(crate) fn check(&mut self, now: Instant) -> Option<u64> {
        let open = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if open {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_addrs() {
        let s = HepStats::default();
        s.bump(Counter::Packets);
        s.bump(Counter::Packets);
        s.bump(Counter::AuthFailures);
        s.set_calls(3, 1);
        let snap = s.snapshot();
        assert_eq!(snap.packets, 2);
        assert_eq!(snap.auth_failures, 1);
        assert_eq!(snap.calls_tracked, 3);
        assert_eq!(snap.calls_evicted, 1);
        assert_eq!(s.udp_addr(), None);
        s.set_addrs(Some("127.0.0.1:9".parse().unwrap()), None);
        assert_eq!(s.udp_addr().unwrap().port(), 9);
        assert_eq!(s.tcp_addr(), None);
    }

    #[test]
    fn warn_gate_rate_limits() {
        let mut g = WarnGate::default();
        let t0 = Instant::now();
        assert_eq!(g.check(t0), Some(0));
        assert_eq!(g.check(t0 + Duration::from_secs(1)), None);
        assert_eq!(g.check(t0 + Duration::from_secs(9)), None);
        assert_eq!(g.check(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(g.check(t0 + Duration::from_secs(11)), None);
    }
}
