//! Checking mode: the engine's invariants asserted after every event and at every bin
//! edge ([`Simulation::checking`]). A broken one is a bug in portsim, reported as a
//! [`Violation`], never a property of the input.

use super::Simulation;
use super::fast::exchange::Exchange;
use crate::host::State;
use crate::time::Instant;

/// An invariant the engine broke, found in checking mode: a bug in portsim, not in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at: Instant,
    /// Events processed when it was found.
    pub event: u64,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invariant broken at {:.9} s, event {}: {}",
            self.at.as_secs_f64(),
            self.event,
            self.message
        )
    }
}

impl Simulation {
    pub(super) fn violate(&mut self, message: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                at: self.now,
                event: self.events,
                message,
            });
        }
    }

    /// Checking mode, between two events: the audits, unless a violation is found already;
    /// true while none is.
    pub(super) fn audited(&mut self) -> bool {
        if self.violation.is_none() {
            self.audit_event();
        }
        self.violation.is_none()
    }

    /// The per-event checks of checking mode: O(hosts + workloads).
    pub(super) fn audit_event(&mut self) {
        // A whole exchange's client socket stays SYN-SENT in the table until its TIME-WAIT
        // entry, or is not made until then: its in-flight count is its own.
        for wl in 0..self.exchanges.len() {
            self.catch_up(wl, self.now);
        }
        let (mut a, mut e, mut f) = (0u64, 0u64, 0u64);
        for w in &self.rec.workloads {
            a += w.attempted;
            e += w.established;
            f += w.failed.iter().sum::<u64>();
        }
        let exchanges = self.exchanges.iter().flatten();
        let syn_sent: u64 = self
            .hosts
            .iter()
            .map(|h| u64::from(h.counts[0][State::SynSent as usize]))
            .sum::<u64>()
            - exchanges
                .clone()
                .map(Exchange::syn_sent_sockets)
                .sum::<u64>()
            + exchanges.map(Exchange::in_flight).sum::<u64>();
        if a != e + f + syn_sent {
            self.violate(format!(
                "attempted {a} ≠ established {e} + failed {f} + in flight (SYN-SENT) {syn_sent}"
            ));
        }
        if let Some(m) = self.hosts.iter_mut().find_map(|h| h.violation.take()) {
            self.violate(m);
        }
    }

    pub(super) fn audit_tables(&mut self) {
        if let Some(m) = self.hosts.iter().find_map(|h| h.audit().err()) {
            self.violate(m);
        }
        let counted = self.hosts.iter().fold([0, 0], |[c, s], h| {
            [
                c + h.counts[0][State::TimeWait as usize],
                s + h.counts[1][State::TimeWait as usize],
            ]
        });
        if let Some(h) = self.hosts.first()
            && h.time_wait_total() != counted
        {
            self.violate(format!(
                "TIME-WAIT total {:?} ≠ the hosts' counts {counted:?}",
                h.time_wait_total()
            ));
        }
    }
}
