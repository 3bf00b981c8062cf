//! Arrivals counted in bulk: open-loop arrivals into an exhausted pool.
//!
//! **Equals stepping when** the workload qualifies ([`pool`]: one source and destination
//! picked round robin, a fixed RTT, `count` on error, connect() or IP_BIND_ADDRESS_NO_PORT,
//! no limit), its pool has no free port and no retry is parked: every arrival before the next queued event fails the same way
//! (`pool.free == 0` gives the same probes and changes no state) and is counted, bin by bin;
//! the first at or after that event is queued. **Proved by**
//! `open_loop_arrivals_counted_in_bulk_give_the_report_stepping_gives` (tests/scenarios.rs)
//! and the tests with every shortcut off. **Paths:** any (connect() fails before a segment
//! leaves); `a_router_on_every_path_changes_no_report`.

use crate::engine::{Class, packed};
use crate::host::{Host, NONE, Refused};
use crate::sim::Simulation;
use crate::sim::fast::stream::NO_EVENT;
use crate::time::Instant;
use crate::workload::{Arrival, Dist, Mode, Spread, Workload};

/// The pool whose exhaustion lets `w`'s open-loop arrivals be counted in bulk: one source,
/// one destination, a fixed RTT (no latency draw), `count` on error (it never stops),
/// connect() or IP_BIND_ADDRESS_NO_PORT, no limit, no client pool (an arrival is a request).
pub(in crate::sim) fn pool(w: &Workload, hosts: &[Host]) -> Option<(u16, u32)> {
    let eligible = !matches!(w.arrival, Arrival::Closed { .. })
        && w.pool.is_none()
        && w.sources.len() == 1
        && w.destinations.len() == 1
        && w.spread == Spread::RoundRobin
        && matches!(w.rtt, Dist::Fixed(_))
        && matches!(w.on_error, crate::workload::OnError::Count { .. })
        && matches!(w.mode, Mode::Connect | Mode::BindNoPort)
        && !w.limit.is_set();
    let (src, dst) = (w.sources[0], w.destinations[0]);
    eligible
        .then(|| hosts[src.host as usize].pool_of(src.ip, dst.ip, dst.port))
        .flatten()
        .map(|pool| (src.host, pool))
}

impl Simulation {
    /// Open-loop arrivals into an exhausted pool, counted in bulk. This arrival runs as
    /// stepping runs it; the arrivals after it that come strictly before the next queued
    /// event (nothing else happens in between, so each fails the same way: `pool.free == 0`
    /// returns the same probes and changes no state) are counted bin by bin without being
    /// queued; the first one at or after it is queued. It sorts after every event queued now,
    /// as it would have if queued by the arrival before it, and before every event queued
    /// later.
    pub(in crate::sim) fn arrivals_in_bulk(&mut self, wl: u32) {
        let w = &self.workloads[wl as usize];
        let mut next = self.runners[wl as usize].next_arrival(w);
        // This connect() fails as `start` would make it fail, changing nothing but counts.
        let (src, dst) = (w.sources[0], w.destinations[0]);
        let pool = self.conn_pools[wl as usize][0].1;
        let refused = self.hosts[src.host as usize].connect_in(
            pool,
            self.now,
            src.ip,
            dst.ip,
            dst.port,
            w.local_port_range,
            NONE,
        );
        let Err(Refused { errno, probes }) = refused else {
            unreachable!("a connect into an exhausted pool succeeded");
        };
        self.rec.workloads[wl as usize]
            .first_failure
            .get_or_insert(self.now);
        // The next event: the queue's, or this stream's next TIME-WAIT entry.
        let fin = self.streams[wl as usize].fin;
        let fin = Instant((fin >> 64).min(u128::from(self.end.0)) as u64);
        let horizon = self.queue.next_time().unwrap_or(self.end).min(fin);
        let mut pending = 1u64;
        loop {
            // The arrivals of this bin before the horizon, then a bin edge or the horizon.
            let w = &self.workloads[wl as usize];
            let bound = horizon.min(self.rec.bin_end);
            let (n, last, after) = self.runners[wl as usize].arrivals_before(w, next, bound);
            pending += n;
            if let Some(t) = last {
                self.now = t;
            }
            next = after;
            match next {
                Some(t) if t < horizon => {
                    self.count_failures(wl, false, errno, probes, pending);
                    pending = 0;
                    self.close_bins_to(t);
                }
                _ => break,
            }
        }
        self.count_failures(wl, false, errno, probes, pending);
        let next = next.map_or(NO_EVENT, |t| packed(t.0, self.queue.next_key(Class::App)));
        self.streams[wl as usize].arrival = next;
    }
}
