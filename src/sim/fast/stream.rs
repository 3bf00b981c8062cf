//! Streams: an open-loop workload's arrivals and its whole exchanges' TIME-WAIT entries as
//! one queue source, whose next event runs at once when it comes next.
//!
//! **Equals stepping when** the event run at once sorts before everything queued, falls
//! before the end, and no retry is parked ([`Simulation::stream`]): the run loop would have
//! taken it next. Both kinds are known ahead (the next arrival is drawn when one runs;
//! entries come in connect() order), so most events of a busy stream never touch the queue.
//! **Proved by** `every_shipped_scenario_gives_one_report_with_every_shortcut_off` and
//! `two_hundred_random_scenarios_give_one_report_with_every_shortcut_off` ([`Simulation::stepping`]
//! queues every one). **Paths:** any; `a_router_on_every_path_changes_no_report`.

use crate::engine::{Class, packed};
use crate::sim::Simulation;
use crate::time::Instant;

/// The packed `(at, key)` of no event: it sorts after every event.
pub(in crate::sim) const NO_EVENT: u128 = u128::MAX;

/// An open-loop workload's events as one queue source: its next arrival and, for whole
/// exchanges whose TIME-WAIT entries are events, its next entry ([`super::exchange::Exchange::next_fin`]).
/// The source's event is the earlier; when it runs, the one after it runs at once if nothing
/// else comes first ([`Simulation::stream`]).
pub(in crate::sim) struct Stream {
    /// The queue source; `usize::MAX` for a closed loop, which has no stream.
    pub(in crate::sim) source: usize,
    /// The packed `(at, key)` of the next arrival (its key given when the arrival before it
    /// ran, as queueing it then would have), [`NO_EVENT`] once arrivals stop.
    pub(in crate::sim) arrival: u128,
    /// The packed `(at, key)` of the next TIME-WAIT entry of its whole exchanges when
    /// entries are events ([`super::exchange::Exchange::next_fin`]), else [`NO_EVENT`].
    pub(in crate::sim) fin: u128,
    /// The packed `(at, key)` the source is set to, [`NO_EVENT`] when not set.
    pub(in crate::sim) scheduled: u128,
}

impl Stream {
    /// A closed loop's: no source, nothing pending.
    pub(in crate::sim) fn none() -> Stream {
        Stream::new(usize::MAX, NO_EVENT)
    }

    /// The stream of queue source `source`, its first arrival `arrival` (packed).
    pub(in crate::sim) fn new(source: usize, arrival: u128) -> Stream {
        Stream {
            source,
            arrival,
            fin: NO_EVENT,
            scheduled: NO_EVENT,
        }
    }

    /// The earliest pending event, packed; [`NO_EVENT`] for none.
    #[inline]
    fn head(&self) -> u128 {
        self.arrival.min(self.fin)
    }
}

impl Simulation {
    /// Sets `wl`'s source to its stream's earliest event, after a change made outside the
    /// stream's own events (at build, by a retry).
    pub(in crate::sim) fn stream_changed(&mut self, wl: u32) {
        let s = &mut self.streams[wl as usize];
        let head = s.head();
        if s.scheduled == head {
            return;
        }
        if s.scheduled != NO_EVENT {
            self.queue.clear_source(s.source);
        }
        if head != NO_EVENT {
            self.queue
                .set_source(s.source, Instant((head >> 64) as u64), head as u64);
        }
        s.scheduled = head;
    }

    /// Runs the event of `wl`'s stream that its source stood for, then, while its next event
    /// would be the next the queue gives (and nothing is parked), that one too, as the run
    /// loop would run it; then sets the source to the next.
    // Not inlined into the run loop: the arrival and TIME-WAIT paths inline here instead.
    #[inline(never)]
    pub(in crate::sim) fn stream(&mut self, wl: u32) {
        let w = wl as usize;
        loop {
            let s = &self.streams[w];
            if s.fin < s.arrival {
                self.exchange_fin(w);
            } else {
                self.arrival(wl);
            }
            let head = self.streams[w].head();
            let at = Instant((head >> 64) as u64);
            let next = self.chain
                && head < self.queue.peek_packed()
                && at < self.end
                && self.parked.is_empty();
            // Only checking mode finds violations.
            if !next || (self.check && !self.audited()) {
                let s = &mut self.streams[w];
                s.scheduled = head;
                if head != NO_EVENT {
                    self.queue.set_source(s.source, at, head as u64);
                }
                return;
            }
            self.begin_event(at);
        }
    }

    /// An open-loop arrival of `wl`: the next one drawn, this one's connection started.
    #[inline(always)]
    pub(in crate::sim) fn arrival(&mut self, wl: u32) {
        if self.bulk
            && self.parked.is_empty()
            && let Some((host, pool)) = self.open_loop_pools[wl as usize]
            && self.hosts[host as usize].pools[pool as usize].free == 0
        {
            self.arrivals_in_bulk(wl);
            return;
        }
        let w = &self.workloads[wl as usize];
        let next = match self.runners[wl as usize].stopped {
            false => self.runners[wl as usize].next_arrival(w),
            true => None,
        };
        let next = next.map_or(NO_EVENT, |t| packed(t.0, self.queue.next_key(Class::App)));
        self.streams[wl as usize].arrival = next;
        self.start_open(wl, 0);
    }
}
