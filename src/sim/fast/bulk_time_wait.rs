//! TIME-WAIT entries applied in bulk: the entries of whole exchanges counted at the next
//! expiry, bin edge or audit instead of being events.
//!
//! **Equals stepping when** [`applies`]: every connection is a whole exchange from a
//! connect() pool, no entry can overflow `tcp_max_tw_buckets` (§2.2), be skipped
//! (`nolocaltimewait`, §3.2) or become reusable (`tcp_tw_reuse`, §2.3), so the only other
//! change to a TIME-WAIT count is an expiry, before which the entries are applied. **Proved
//! by** the tests of whole exchanges ([`super::exchange`]), which run with it on wherever it
//! applies. **Paths:** as whole exchanges (direct, or across a cloud gateway, `gateway.rs`):
//! client-side only.

use crate::host::{Host, NONE, TimeWait};
use crate::scenario::Scenario;
use crate::sim::Simulation;
use crate::sim::fast::exchange::{Exchange, Flight, StepKind};
use crate::sim::record::note_time_wait_of;
use crate::time::Instant;
use crate::workload::{Closer, Mode};
use std::cmp::Reverse;

/// Whether every TIME-WAIT entry is applied in bulk: every connection of the scenario is a
/// whole exchange drawing its port from a connect() pool, so no entry can overflow
/// `tcp_max_tw_buckets` (a host's pools cannot hold that many ports,
/// [`time_wait_cannot_overflow`]), none is skipped (`nolocaltimewait`) and none becomes
/// reusable (`tcp_tw_reuse`); the only other change to a TIME-WAIT count is an expiry, so
/// entries applied in bulk before each expiry and at each bin edge give the counts, the
/// states and the peak that entering one by one gives.
pub(in crate::sim) fn applies(
    sc: &Scenario,
    hosts: &[Host],
    exchanges: &[Option<Exchange>],
) -> bool {
    exchanges.iter().all(Option::is_some)
        && sc
            .workloads
            .iter()
            .all(|w| matches!(w.mode, Mode::Connect | Mode::BindNoPort))
        && hosts.iter().enumerate().all(|(i, h)| {
            let local = sc.workloads.iter().any(|w| {
                w.sources.iter().any(|s| s.host as usize == i)
                    && w.destinations.iter().any(|d| h.has_ip(d.ip))
            });
            !h.reuses_time_wait()
                && (h.profile.local_time_wait || !local)
                && time_wait_cannot_overflow(sc, i as u16)
        })
}

/// Whether no TIME-WAIT entry on host `h` can find `tcp_max_tw_buckets` reached (§2.2): every
/// socket that can enter TIME-WAIT there holds a port of one of its connect() pools (nothing
/// binds from it, no server on it closes first), and the pools hold no more ports than the
/// limit, so at most limit − 1 others are in TIME-WAIT when one enters.
pub(in crate::sim) fn time_wait_cannot_overflow(sc: &Scenario, h: u16) -> bool {
    let host = &sc.hosts[h as usize];
    let mut pools = std::collections::BTreeSet::new();
    for w in &sc.workloads {
        let sources: Vec<_> = w.sources.iter().filter(|s| s.host == h).collect();
        let serves = w.destinations.iter().any(|d| d.host == h);
        if (!sources.is_empty() && w.mode.binds())
            || (serves && w.closer == Closer::Server && !w.linger_zero)
        {
            return false;
        }
        for s in sources {
            for d in &w.destinations {
                pools.insert((s.ip, d.ip, d.port));
            }
        }
    }
    let n = match host.profile.scope {
        crate::profile::Scope::HostWide => pools.len().min(1),
        crate::profile::Scope::FourTuple => pools.len(),
    };
    let (lo, hi) = host.profile.port_range;
    n as u64 * (u64::from(hi - lo) + 1) <= u64::from(host.profile.max_tw_buckets)
}

/// Flight `f` of a whole exchange enters TIME-WAIT on its client `host` at `entry`, applied
/// in bulk ([`Exchange::bulk_time_wait`]: it cannot overflow): its socket, or only the count
/// where it has none ([`Host::time_wait_unseen`]).
pub(in crate::sim) fn enter_in_bulk(host: &mut Host, f: &Flight, entry: Instant) {
    if f.sock == NONE {
        host.time_wait_unseen();
    } else {
        let tw = TimeWait {
            entry,
            rcv_nxt: 0,
            ts_recent: 0,
            ts_seen: f.ts_seen,
        };
        let ok = host.enter_time_wait(f.sock, tw);
        debug_assert!(ok, "a bulk TIME-WAIT entry overflowed");
    }
}

impl Simulation {
    /// Applies the TIME-WAIT entries of whole exchanges that come before `at`
    /// ([`Exchange::bulk_time_wait`]); their other steps change only what bin edges and
    /// audits read, and those catch up first. The exchanges visited are those
    /// [`super::exchange::TimeWaitDue`] holds before `at`, not every workload: entries of
    /// different exchanges change counts, which add up in any order.
    pub(in crate::sim) fn enter_time_wait_in_bulk(&mut self, at: Instant) {
        let Simulation {
            exchanges,
            hosts,
            rec,
            time_wait_due,
            ..
        } = self;
        let mut entered = false;
        while let Some(&Reverse((t, wl))) = time_wait_due.peek()
            && t < at.0
        {
            time_wait_due.pop();
            let Some(x) = &mut exchanges[wl as usize] else {
                continue;
            };
            x.due = false;
            // The last step: its cursor walks the flights one entry at a time.
            let i = x.steps.len() - 1;
            debug_assert_eq!(x.steps[i].1, StepKind::TimeWait);
            let before = at.0.saturating_sub(x.to_time_wait.0);
            let first = x.next[i];
            let mut n = first;
            while let Some(f) = x.flights.get((n - x.popped) as usize)
                && f.at.0 < before
            {
                enter_in_bulk(&mut hosts[f.client as usize], f, f.at + x.to_time_wait);
                n += 1;
            }
            x.next[i] = n;
            x.entered += n - first;
            entered |= n > first;
            if let Some(f) = x.flights.get((n - x.popped) as usize) {
                time_wait_due.push(Reverse(((f.at + x.to_time_wait).0, wl)));
                x.due = true;
            }
        }
        if entered {
            note_time_wait_of(hosts, rec);
        }
    }
}
