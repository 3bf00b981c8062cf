//! Retries counted in bulk: closed-loop workers waiting out an exhausted pool.
//!
//! **Equals stepping when** the worker's connect() (connect() or IP_BIND_ADDRESS_NO_PORT)
//! found its pool with no free port and its next attempts are certain to repeat this one
//! ([`Simulation::park`]): one source and destination picked round robin, a fixed RTT, no
//! limit or stop before the end, a fixed retry period equal to the other parked workers'; each retry into a pool
//! with no free port fails the same way and changes no state, so it is counted bin by bin,
//! each keeping the place in the event order its event would have had; the next retry is
//! queued for real at that place once the pool has a free port. **Proved by**
//! `retries_counted_in_bulk_give_the_report_stepping_gives` (tests/scenarios.rs) and the
//! tests with every shortcut off. **Paths:** any (connect() fails before a segment leaves);
//! `a_router_on_every_path_changes_no_report`. Design: `notes/bulk-retries.md`.

use crate::engine::Class;
use crate::host::Errno;
use crate::sim::Simulation;
use crate::sim::run::Event;
use crate::time::{Duration, Instant};
use crate::workload::AfterFailure;

/// A closed-loop worker waiting out an exhausted pool, its retries not queued.
///
/// Its connect() failed on the `pool.free == 0` path, which changes no state and costs the
/// same probes each time, and its policy retries after a fixed `wait`. While its pool stays
/// exhausted every retry fails the same way, so the retries are counted in bulk, bin by bin,
/// as the run reaches them (O(1) per bin and worker, not per retry). Each virtual retry has
/// the place in the event order it would have had if queued: `(next, App, after, sub)`,
/// `after` being the last sequence number scheduled before it was (virtually) queued. A real
/// event runs before it if it sorts before that key. When an event leaves the pool with a
/// free port, the worker's next retry is queued for real at that same place
/// ([`crate::engine::Queue::push_between`]), so the report is the one stepping through every retry gives.
#[derive(Clone, Copy, Debug)]
pub(in crate::sim) struct Parked {
    pub(in crate::sim) wl: u32,
    pub(in crate::sim) slot: u32,
    pub(in crate::sim) host: u16,
    pub(in crate::sim) pool: u32,
    /// The retry number of the next attempt.
    pub(in crate::sim) retry: u32,
    /// Whether the retry number counts up (`retry` policy) or stays 0 (`count`).
    pub(in crate::sim) counting: bool,
    pub(in crate::sim) next: Instant,
    pub(in crate::sim) wait: Duration,
    pub(in crate::sim) after: u64,
    /// Among retries queued after the same event, queue order.
    pub(in crate::sim) sub: u32,
    pub(in crate::sim) errno: Errno,
    pub(in crate::sim) probes: u32,
}

impl Simulation {
    /// Parks a closed-loop worker whose connect() found its pool exhausted, if its next
    /// attempts are certain to repeat this one: one source and destination (the pick does
    /// not vary), a fixed RTT (no random draw per attempt), no limit and no stop before the
    /// end of the run (every retry is made), and a retry period that stays fixed (`count`,
    /// or `retry` with no backoff and no retry limit), the same period as the workers already
    /// parked (equal periods keep their order from round to round), and no client pool (its
    /// requests take connections from each other).
    /// Counts this failure as `fail` would. False when the worker must step.
    pub(in crate::sim) fn park(
        &mut self,
        wl: u32,
        slot: u32,
        retry: u32,
        errno: Errno,
        probes: u32,
        (host, pool, busy): (u16, u32, Duration),
    ) -> bool {
        let w = &self.workloads[wl as usize];
        if w.sources.len() != 1
            || w.destinations.len() != 1
            || w.spread != crate::workload::Spread::RoundRobin
            || !matches!(w.rtt, crate::workload::Dist::Fixed(_))
            || w.limit.is_set()
            || w.stop < self.end
            || w.threads.is_some()
            || w.pool.is_some()
            || self.parked.len() >= 1 << 16
        {
            return false;
        }
        let counting = match w.on_error {
            crate::workload::OnError::Count { .. } => false,
            crate::workload::OnError::Retry {
                backoff,
                max_retries,
                ..
            } if backoff == 1.0 && max_retries == u32::MAX => true,
            _ => return false,
        };
        let (next, gave_up) = w.on_error.after_failure(retry, true);
        let AfterFailure::Start { wait, retry: again } = next else {
            return false;
        };
        // The next attempt waits from the end of this one's port search, as long each time.
        let wait = wait + busy;
        if gave_up || wait.0 == 0 || self.parked.first().is_some_and(|p| p.wait != wait) {
            return false;
        }
        self.rec.failed(self.now, wl as usize, errno);
        let (after, sub) = self.next_place();
        self.parked.push(Parked {
            wl,
            slot,
            host,
            pool,
            retry: again,
            counting,
            next: self.now + wait,
            wait,
            after,
            sub,
            errno,
            probes,
        });
        true
    }

    /// The place in the event order of a retry queued now: after the latest scheduled event
    /// and after the virtual retries already queued since.
    fn next_place(&mut self) -> (u64, u32) {
        let after = self.queue.seq();
        if self.sub_for.0 != after {
            self.sub_for = (after, 0);
        }
        self.sub_for.1 = self.sub_for.1.saturating_add(1);
        self.sub_for
    }

    /// Runs, as failures counted in bulk, the parked retries that come before the next event
    /// `(at, class, place)`, closing the bins they cross (nothing else ran, so the gauges are
    /// as they were).
    pub(in crate::sim) fn run_parked(&mut self, (at, class, place): (Instant, Class, (u64, u32))) {
        let mut parked = std::mem::take(&mut self.parked);
        // Stepping order: by the place each worker's pending retry was queued at.
        parked.sort_by_key(|p| (p.after, p.sub));
        let mut ran = vec![false; parked.len()];
        // Retries strictly before `at`, bin by bin.
        loop {
            let seg_end = Instant(self.rec.bin_end.0.min(at.0));
            for (i, p) in parked.iter_mut().enumerate() {
                if p.next >= seg_end {
                    continue;
                }
                let n = (seg_end.0 - p.next.0).div_ceil(p.wait.0);
                self.count_parked(p, n);
                ran[i] = true;
            }
            if seg_end >= at {
                break;
            }
            let end = self.rec.bin_end;
            self.close_bin(end);
        }
        // Each queued its next retry as it ran; workers of one period that ran in this gap
        // keep the order they ran in.
        for (i, p) in parked.iter_mut().enumerate() {
            if ran[i] {
                (p.after, p.sub) = self.next_place();
            }
        }
        // A retry at `at` itself runs first if the next event sorts after it: an App event
        // scheduled after the retry was (virtually) queued.
        if class == Class::App {
            parked.sort_by_key(|p| (p.after, p.sub));
            for p in parked.iter_mut() {
                if p.next == at && place > (p.after, p.sub) {
                    self.close_bins_to(at);
                    self.count_parked(p, 1);
                    (p.after, p.sub) = self.next_place();
                }
            }
        }
        self.parked = parked;
    }

    /// Counts `n` failed retries of a parked worker, from its next one on.
    fn count_parked(&mut self, p: &mut Parked, n: u64) {
        self.count_failures(p.wl, p.retry > 0, p.errno, p.probes, n);
        p.next = p.next + Duration(n * p.wait.0);
        if p.counting {
            p.retry = p.retry.saturating_add(n.min(u64::from(u32::MAX)) as u32);
        }
    }

    /// Queues for real the next retry of each parked worker whose pool has a free port now,
    /// at the place in the order it had.
    pub(in crate::sim) fn release_parked(&mut self) {
        let freed = |s: &Self, p: &Parked| s.hosts[p.host as usize].pools[p.pool as usize].free > 0;
        if !self.parked.iter().any(|p| freed(self, p)) {
            return;
        }
        let parked = std::mem::take(&mut self.parked);
        for p in &parked {
            if freed(self, p) {
                self.queue.push_between(
                    p.next,
                    Class::App,
                    p.after,
                    p.sub,
                    Event::Start {
                        wl: p.wl,
                        slot: p.slot,
                        retry: p.retry,
                    },
                );
            } else {
                self.parked.push(*p);
            }
        }
    }
}
