//! Whole exchanges through a cloud NAT gateway: the gateway takes each SYN at the instant it
//! would cross, its entry inserted as the connection's last ACK will leave it.
//!
//! **Equals stepping when** ([`plan`]) the paths were all direct before the scenario's NATs
//! were added, every path that is not direct is link, one cloud gateway (`[[nat]]` with a
//! cloud profile, not the Linux NAT, whose races, eviction and `early_drop` depend on when
//! segments cross), link; every workload with a pair of hosts across a gateway qualifies for
//! whole exchanges ([`super::exchange::Exchange::new`]); every workload and path across one
//! gateway puts its SYN there at the same offset after connect() (the same fixed RTT and
//! link weights: the SYNs cross in connect() order, as their packet keys order them at one
//! instant); and no timeout of the gateway can fire within a connection: for each state a
//! flow passes through (SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, LAST_ACK), the longest
//! gap between two of its segments at the gateway while in that state is less than that
//! state's timeout (an entry is removed when `expires <= now`, `expires` = last segment +
//! timeout), the segment times being path.rs's split of each one-way delay (the hop's
//! share rounded down). Then a flow's entry goes through the same states at the same
//! instants in every run and is removed at its last ACK plus TIME_WAIT's timeout, so the
//! gateway's SYNs are its only inputs that depend on the run: each is taken in time order
//! (queued per gateway at connect(), taken before anything reads the gateway: the next
//! connect() through it, a bin edge's gauges, which see the SYNs before the edge as
//! stepping's events before it, and the end) and its entry inserted in TIME_WAIT with its
//! final deadline ([`crate::nat::Nat::whole_syn`]); the gauges count the flows not yet in
//! TIME_WAIT from their schedule ([`crate::nat::whole::Schedule`]). A client reusing its
//! tuple finds the entry in TIME_WAIT, as in stepping: its SYN comes no earlier than the
//! previous connection's last ACK (its port is free only after its TIME-WAIT entry; at one
//! instant the older connection's segment comes first). The server sees the gateway's
//! tuple, and whole exchanges keep no server socket: nothing reads it.
//!
//! A SYN the gateway drops (no port, an endpoint-independence conflict) would be retransmitted
//! on the client's timer, which no schedule holds: the run starts again from the beginning
//! with whole exchanges off across the gateways ([`Simulation::restart_stepping`]), and its
//! report is stepping's by construction; `--stats` counts the events of both runs.
//!
//! **Proved by** tests/nat_fast.rs (every cloud profile, bins edged mid-connection, Poisson
//! arrivals, 1 to 8 requests, several seeds; a run that drops and restarts; a timeout that
//! would fire mid-connection, refused). **Paths:** direct, and link–cloud gateway–link.

use crate::host::{NONE, Tuple};
use crate::nat::conntrack::CtState;
use crate::nat::whole::Schedule;
use crate::scenario::Scenario;
use crate::sim::Simulation;
use crate::sim::fast::exchange::Exchange;
use crate::sim::path::Paths;
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// SYNs on their way to a gateway: (when they cross, original tuple, schedule), in time
/// order.
type Pending = VecDeque<(Instant, Tuple, u32)>;

/// The cloud gateways whole exchanges cross.
#[derive(Default)]
pub(in crate::sim) struct Gateways {
    /// Per gateway: its middlebox index and the SYNs on their way to it.
    list: Vec<(usize, Pending)>,
    /// Per routed path, its gateway, or NONE.
    by_path: Vec<u32>,
    /// Per workload, per gateway: (its schedule there or NONE, its SYN's offset from connect()).
    crossing: Vec<Vec<(u32, Duration)>>,
    /// The scenario, to run again with stepping after a drop.
    pub(in crate::sim) scenario: Option<Box<Scenario>>,
    /// A SYN was dropped: the run starts again ([`Simulation::restart_stepping`]).
    pub(in crate::sim) restart: bool,
}

impl Gateways {
    /// Off, before the run: every segment crosses its gateway (stepping).
    pub(in crate::sim) fn off(&mut self, paths: &mut Paths) {
        for &(k, _) in &self.list {
            if let Some(nat) = paths.middlebox(k).nat() {
                nat.step_every_segment();
            }
        }
        *self = Gateways::default();
    }

    /// Whether some whole exchange crosses a gateway.
    #[inline(always)]
    pub(in crate::sim) fn any(&self) -> bool {
        !self.list.is_empty()
    }
}

/// When a client-closed exchange's segments cross a gateway, from connect(), in the order
/// they cross: SYN, SYN-ACK, ACK, the `n` responses, FIN, FIN-ACK, last ACK; `a` and `b`
/// are the hop's shares of the up and down delays.
fn crossings(x: &Exchange, n: u32, a: u64, b: u64) -> Vec<(CtState, u64)> {
    let rtt = x.rtt.0;
    let up = rtt / 2;
    let down = rtt - up;
    let gap = x.gap.0;
    let fin = rtt + u64::from(n) * gap;
    let mut out = vec![
        (CtState::SynSent, a),
        (CtState::SynRecv, up + b),
        (CtState::Established, rtt + a),
    ];
    out.extend((1..=u64::from(n)).map(|k| (CtState::Established, rtt + k * gap - down + b)));
    out.push((CtState::FinWait, fin + a));
    out.push((CtState::LastAck, fin + up + b));
    out.push((CtState::TimeWait, fin + rtt + a));
    out
}

/// The schedule of an exchange crossing at `crossings`, if no timeout of the gateway (per
/// state, `timeouts`) can end it: each gap between two segments at the gateway is shorter
/// than the timeout of the state the first left the entry in.
fn schedule(crossings: &[(CtState, u64)], timeouts: &[Duration]) -> Option<Schedule> {
    for w in crossings.windows(2) {
        let ((state, t0), (_, t1)) = (w[0], w[1]);
        if t1 < t0 || t1 - t0 >= timeouts[state as usize].0 {
            return None;
        }
    }
    let syn = crossings[0].1;
    let start = |s: CtState| {
        let t = crossings
            .iter()
            .find(|c| c.0 == s)
            .expect("every state crossed")
            .1;
        Duration(t - syn)
    };
    Some(Schedule::new([
        start(CtState::SynRecv),
        start(CtState::Established),
        start(CtState::FinWait),
        start(CtState::LastAck),
        start(CtState::TimeWait),
    ]))
}

/// Which whole exchanges may cross which gateways (the module's condition): refuses, in
/// `exchanges`, every workload across a path or gateway that fails it. `allowed`: the paths
/// given were all direct (the gateways are the scenario's, and a restart can build them again).
pub(in crate::sim) fn plan(
    sc: &Scenario,
    paths: &mut Paths,
    exchanges: &mut [Option<Exchange>],
    allowed: bool,
) -> Gateways {
    let mut g = Gateways::default();
    if paths.all_direct() {
        return g;
    }
    let routes = paths.routes();
    let mut boxes: Vec<usize> = Vec::new();
    let mut by_path = Vec::new();
    for (hops, _) in &routes {
        let k = match hops.as_slice() {
            [(_, k)] if allowed => *k,
            _ => {
                exchanges.iter_mut().for_each(|x| *x = None);
                return g;
            }
        };
        let cloud = paths
            .middlebox(k)
            .nat()
            .is_some_and(|n| n.cloud_timeouts().is_some());
        if !cloud {
            exchanges.iter_mut().for_each(|x| *x = None);
            return g;
        }
        let i = boxes.iter().position(|&b| b == k).unwrap_or_else(|| {
            boxes.push(k);
            boxes.len() - 1
        });
        by_path.push(i as u32);
    }
    // Per workload, per gateway: the crossings of its SYN-to-last-ACK, one per path.
    let mut crossing = vec![vec![None::<Vec<(CtState, u64)>>; boxes.len()]; sc.workloads.len()];
    let mut ok = vec![true; boxes.len()];
    for (wl, w) in sc.workloads.iter().enumerate() {
        for s in &w.sources {
            for d in &w.destinations {
                let p = paths.routed(s.host, d.host);
                if p == NONE {
                    continue;
                }
                let gi = by_path[p as usize] as usize;
                let Some(x) = &exchanges[wl] else {
                    ok[gi] = false;
                    continue;
                };
                let (hops, total) = &routes[p as usize];
                let before = hops[0].0;
                let up = x.rtt.0 / 2;
                let down = x.rtt.0 - up;
                let share =
                    |d: u64, w: u64| (u128::from(d) * u128::from(w) / u128::from(*total)) as u64;
                let c = crossings(
                    x,
                    w.requests_per_connection,
                    share(up, before),
                    share(down, total - before),
                );
                match &crossing[wl][gi] {
                    Some(prev) if *prev != c => ok[gi] = false,
                    _ => crossing[wl][gi] = Some(c),
                }
            }
        }
    }
    // One SYN offset per gateway; every schedule within its timeouts.
    for (gi, &k) in boxes.iter().enumerate() {
        let timeouts = *paths
            .middlebox(k)
            .nat()
            .and_then(|n| n.cloud_timeouts())
            .expect("a cloud gateway");
        let mut syn = None;
        for c in crossing.iter().filter_map(|c| c[gi].as_ref()) {
            if syn.is_some_and(|s| s != c[0].1) || schedule(c, &timeouts).is_none() {
                ok[gi] = false;
            }
            syn = Some(c[0].1);
        }
    }
    // A workload refused at one gateway is refused at every other it crosses.
    loop {
        let mut changed = false;
        for (x, crosses) in exchanges.iter_mut().zip(&crossing) {
            let refused = crosses.iter().zip(&ok).any(|(c, ok)| c.is_some() && !ok);
            if refused {
                for (c, ok) in crosses.iter().zip(ok.iter_mut()) {
                    if c.is_some() && *ok {
                        *ok = false;
                        changed = true;
                    }
                }
                *x = None;
            }
        }
        if !changed {
            break;
        }
    }
    if !ok.iter().any(|&o| o) {
        return g;
    }
    g.crossing = vec![vec![(NONE, Duration::ZERO); boxes.len()]; sc.workloads.len()];
    for (gi, &k) in boxes.iter().enumerate() {
        let nat = paths.middlebox(k).nat().expect("a cloud gateway");
        let timeouts = *nat.cloud_timeouts().expect("a cloud gateway");
        for (mine, crosses) in g.crossing.iter_mut().zip(&crossing) {
            if let Some(c) = crosses[gi].as_ref().filter(|_| ok[gi]) {
                let s = schedule(c, &timeouts).expect("checked above");
                mine[gi] = (nat.schedule(s), Duration(c[0].1));
            }
        }
        g.list.push((k, VecDeque::new()));
    }
    g.by_path = by_path;
    g.scenario = Some(Box::new(sc.clone()));
    g
}

impl Simulation {
    /// connect() of a whole exchange of `wl` from `client` to `server` gave tuple `orig`:
    /// its SYN is queued at the gateway on its path, if any, after the SYNs that crossed
    /// before now are taken.
    #[inline(always)]
    pub(in crate::sim) fn syn_to_gateway(
        &mut self,
        wl: u32,
        client: u16,
        server: u16,
        orig: Tuple,
    ) {
        if self.gateways.any() {
            self.queue_at_gateway(wl, client, server, orig);
        }
    }

    #[inline(never)]
    fn queue_at_gateway(&mut self, wl: u32, client: u16, server: u16, orig: Tuple) {
        let p = self.paths.routed(client, server);
        if p == NONE {
            return;
        }
        let gi = self.gateways.by_path[p as usize] as usize;
        let (schedule, syn) = self.gateways.crossing[wl as usize][gi];
        debug_assert_ne!(
            schedule, NONE,
            "a whole exchange across a gateway it may not cross"
        );
        self.take_syns(gi, self.now);
        let at = self.now + syn;
        self.gateways.list[gi].1.push_back((at, orig, schedule));
    }

    /// Every gateway takes the SYNs that cross it before `before`, in time order.
    pub(in crate::sim) fn take_gateway_syns(&mut self, before: Instant) {
        for gi in 0..self.gateways.list.len() {
            self.take_syns(gi, before);
        }
    }

    fn take_syns(&mut self, gi: usize, before: Instant) {
        let (k, pending) = &mut self.gateways.list[gi];
        if self.gateways.restart || pending.front().is_none_or(|f| f.0 >= before) {
            return;
        }
        let nat = self.paths.middlebox(*k).nat().expect("a cloud gateway");
        while let Some(&(at, orig, schedule)) = pending.front()
            && at < before
        {
            pending.pop_front();
            if !nat.whole_syn(at, &orig, schedule) {
                // Dropped: the run starts again with every segment stepped.
                self.gateways.restart = true;
                for (_, p) in &mut self.gateways.list {
                    p.clear();
                }
                return;
            }
        }
    }

    /// After a SYN a gateway dropped: this run is given up and the scenario runs again from
    /// the start with whole exchanges off across the gateways, under the same options; the
    /// events of the run given up are counted.
    pub(in crate::sim) fn restart_stepping(&mut self) {
        let sc = self
            .gateways
            .scenario
            .take()
            .expect("a run that can restart keeps its scenario");
        let mut fresh = Simulation::build(&sc, Paths::direct(sc.hosts.len()), false)
            .expect("the scenario's own paths")
            .checking(self.check)
            .ports(self.port_use.is_some());
        fresh.bulk = self.bulk;
        fresh.chain = self.chain;
        fresh.events = self.events;
        *self = fresh;
    }
}
