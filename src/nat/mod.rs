//! A Linux NAT on the path: connection tracking and masquerade, as a Kubernetes node or a
//! Docker host applies them to its pods' or containers' connections (notes/nat-reference.md).
//!
//! The NAT is a middlebox ([`crate::sim::path::Middlebox`]) on the path of every connection
//! from a host behind it to a host outside. A SYN with no entry creates one
//! (`init_conntrack`), chooses the flow's NAT address and port (`select.rs`,
//! `get_unique_tuple`) and is forwarded with its source rewritten; the server sees the
//! NAT's tuple. Every later segment moves the entry's TCP state (`conntrack.rs`,
//! `tcp_conntracks`) and refreshes its timeout; the entry and its port are released when
//! the timeout passes. The SYN is dropped, and the client's kernel retransmits it until
//! `tcp_syn_retries` runs out (ETIMEDOUT), when:
//!
//! - no port is free toward the destination: the last probed port's insert fails at
//!   confirmation (`__nf_conntrack_confirm`, counters `insert_failed` and `drop`);
//! - two SYNs are handled at once on two CPUs and choose the same port (both keep the same
//!   client port, or both start the search at the pre-5.0 rover, or at the same random
//!   offset): the second insert fails (`insert_failed`, `drop`);
//! - the table holds `nf_conntrack_max` entries and `early_drop` finds none to drop in the
//!   buckets it scans (`__nf_conntrack_alloc`, counter `drop`).
//!
//! A segment of a flow the table no longer holds (its timeout set shorter than the
//! connection's quiet time) is counted as `invalid` and passes unchanged: the model does not
//! break the connection as the kernel's mid-stream pickup (`nf_conntrack_tcp_loose`) would.

pub mod blocks;
pub mod cloud;
pub mod conntrack;
mod knobs;
pub mod select;
pub mod whole;

pub use knobs::{KnobError, NAT_FLAGS, NAT_KNOBS, NAT_PROFILES, NatConfig};

use crate::report::NatInfo;
use crate::scenario::NatSpec;
use crate::sim::path::{Dir, Middlebox, Pass, Segment, Wire};
use crate::time::{Duration, Instant};
use blocks::{Blocks, Pick};
use conntrack::{CtState, Table};
use select::{Found, Search};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// `NF_CT_EVICTION_RANGE`: buckets `early_drop` scans from the new tuple's.
const EVICTION_RANGE: u32 = 8;

/// The kernel's counters, as `conntrack -S` prints them, and the model's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// `insert_failed`: a new flow's tuple was taken at confirmation.
    pub insert_failed: u64,
    /// `drop`: the table was full and nothing could be dropped.
    pub drop: u64,
    /// `early_drop`: entries dropped to make room.
    pub early_drop: u64,
    /// Closing entries evicted by a new flow's port search (`nf_nat_used_tuple_harder`).
    pub evicted: u64,
    /// Entries in TIME_WAIT or CLOSE replaced by a SYN on the same tuple (reopened).
    pub reopened: u64,
    /// Segments of flows the table no longer held.
    pub invalid: u64,
    /// Flows a cloud gateway's idle timeout ended before they closed.
    pub idle_timeouts: u64,
}

impl Counters {
    /// By name, in a fixed order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("insert_failed", self.insert_failed),
            ("drop", self.drop),
            ("early_drop", self.early_drop),
            ("evicted", self.evicted),
            ("reopened", self.reopened),
            ("invalid", self.invalid),
        ]
    }
}

/// A NAT's state for one bin of the report.
#[derive(Clone, Debug, Default)]
pub struct NatGauges {
    pub ports_in_use: u64,
    pub entries: u64,
    pub by_state: [u64; CtState::ALL.len()],
}

impl NatGauges {
    /// Entries by state name, the states some entry is in.
    pub fn states(&self) -> BTreeMap<&'static str, u64> {
        CtState::ALL
            .iter()
            .zip(self.by_state)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (s.name(), n))
            .collect()
    }
}

/// A Linux NAT: its rule, its conntrack table and its counters.
pub struct Nat {
    name: String,
    /// Its profile's name and the hosts behind it, by name, for the report.
    profile: String,
    behind: Vec<String>,
    cfg: NatConfig,
    table: Table,
    search: Search,
    /// A cloud gateway's port allocation.
    blocks: Option<Blocks>,
    /// The last flow created and when, which a SYN handled at once on another CPU cannot
    /// see yet.
    last_new: Option<(u32, Instant)>,
    pub counters: Counters,
    /// Dropped SYNs by reason.
    pub drops: BTreeMap<&'static str, u64>,
    pub entries_peak: u64,
    pub ports_peak: u64,
    /// A cloud gateway's whole exchanges, by schedule (`whole.rs`).
    whole: Vec<whole::Schedule>,
}

impl Nat {
    /// The NAT of `spec`, the hosts behind it named `behind` with the addresses `vm_ips`
    /// (a cloud gateway's VMs, in order), its random stream from `seed`.
    pub fn new(spec: &NatSpec, behind: Vec<String>, vm_ips: &[Vec<u32>], seed: u64) -> Nat {
        let rng = crate::rng::stream(seed, &format!("nat:{}", spec.name));
        let blocks = spec.config.cloud.as_ref().map(|c| {
            let rng = crate::rng::stream(seed, &format!("nat-ports:{}", spec.name));
            Blocks::new(c, &spec.config.rule.ips, vm_ips, rng)
        });
        let mut table = Table::default();
        if blocks.is_some() {
            // nf_nat_bysource serves the Linux NAT's search only.
            table.skip(conntrack::Unread {
                sources: true,
                replies: false,
            });
        }
        Nat {
            blocks,
            name: spec.name.clone(),
            profile: spec.profile_name.clone(),
            behind,
            cfg: spec.config.clone(),
            table,
            search: Search::new(rng),
            last_new: None,
            counters: Counters::default(),
            drops: BTreeMap::new(),
            entries_peak: 0,
            ports_peak: 0,
            whole: Vec::new(),
        }
    }

    /// A cloud gateway's timeouts per state; `None` for the Linux NAT.
    pub fn cloud_timeouts(&self) -> Option<&[Duration; CtState::ALL.len()]> {
        self.cfg.cloud.as_ref().map(|_| &self.cfg.timeouts)
    }

    /// Registers whole exchanges crossing at the offsets of `s` (a cloud gateway's, before
    /// any flow, every flow across it then a whole exchange); the index to give
    /// [`Nat::whole_syn`], shared with an equal one registered before.
    pub fn schedule(&mut self, s: whole::Schedule) -> u32 {
        debug_assert!(
            self.blocks.is_some(),
            "whole exchanges cross cloud gateways only"
        );
        // Every flow across the gateway is a whole exchange: no segment comes back.
        self.table.skip(conntrack::Unread {
            sources: true,
            replies: true,
        });
        let i = match self.whole.iter().position(|w| w.starts == s.starts) {
            Some(i) => i,
            None => {
                self.whole.push(s);
                self.whole.len() - 1
            }
        };
        i as u32
    }

    /// Every segment crosses the gateway again (stepping, set before the run): its whole
    /// exchanges' schedules dropped, reply tuples indexed.
    pub fn step_every_segment(&mut self) {
        self.whole.clear();
        self.table.skip(conntrack::Unread {
            sources: self.blocks.is_some(),
            replies: false,
        });
    }

    /// The SYN of a whole exchange on schedule `schedule` crosses at `now` with original
    /// tuple `orig`, as [`Middlebox::segment`] would take it (a closed flow on the tuple
    /// reopened, the provider's pick), its entry inserted as its last ACK will leave it
    /// ([`conntrack::Table::insert_closed`]). False when the gateway would drop it, or find
    /// a live flow on the tuple: the exchange is not what its schedule says.
    pub fn whole_syn(&mut self, now: Instant, orig: &crate::host::Tuple, schedule: u32) -> bool {
        self.advance(now);
        let mut held = false;
        if let Some(slot) = self.table.find_orig(orig) {
            // A whole exchange's entry is TIME_WAIT from its SYN: a SYN on its tuple before
            // its last ACK has crossed (at `expires` less TIME_WAIT's timeout) is not one
            // stepping would see reach a closed flow.
            let e = self.table.get(slot);
            let last_ack = e
                .expires
                .0
                .saturating_sub(self.timeout(CtState::TimeWait).0);
            if !e.reopens() || last_ack > now.0 {
                return false;
            }
            // As `segment` does: the held tuple stays held, the new flow maps anew.
            self.table.detach(slot);
            held = true;
        }
        let reply = match self.map_cloud(orig) {
            Ok(reply) => reply,
            Err(reason) => {
                self.drop_syn(reason);
                return false;
            }
        };
        let s = &mut self.whole[schedule as usize];
        s.created(now);
        let expires = now + s.to_time_wait() + self.timeout(CtState::TimeWait);
        self.table.insert_closed(now, *orig, reply, expires);
        self.counters.reopened += u64::from(held);
        self.note_peaks();
        true
    }

    /// Its entry in the report: limits, peaks, drops, counters, knobs, and what follows from
    /// UNVERIFIED parameters.
    pub fn report(&self) -> NatInfo {
        let cfg = &self.cfg;
        let mut assumptions = Vec::new();
        if self.drops.contains_key("concurrent insert") {
            assumptions.push(format!(
                "SYNs lost to concurrent inserts follow from race_window = {} (UNVERIFIED)",
                cfg.race_window
            ));
        }
        if let Some(c) = &cfg.cloud {
            assumptions.extend(cloud::unverified(c).into_iter().map(String::from));
        }
        if self.counters.early_drop > 0 || self.drops.contains_key("table full") {
            assumptions.push(
                "early_drop's victims follow from a uniform hash over nf_conntrack_buckets".into(),
            );
        }
        // A shared pool (AWS, Azure NAT Gateway) gives no VM ports of its own.
        let per_vm = self.blocks.as_ref().filter(|b| b.per_vm());
        NatInfo {
            name: self.name.clone(),
            profile: self.profile.clone(),
            ips: cfg
                .rule
                .ips
                .iter()
                .map(|&a| Ipv4Addr::from(a).to_string())
                .collect(),
            behind: self.behind.clone(),
            ports: cfg.ports_per_address(),
            allocated_peak: self.ports_peak,
            entries_peak: self.entries_peak,
            drops: self.drops.clone(),
            counters: self.named_counters().into_iter().collect(),
            ports_per_vm: per_vm.map(|b| b.ports_per_vm),
            ports_per_vm_peak: per_vm.map(|b| b.ports_per_vm_peak),
            vms_without_ports: per_vm.map(|b| b.vms_without_ports),
            knobs: cfg.knobs().into_iter().collect(),
            assumptions,
        }
    }

    /// The counters as the report names them: a cloud gateway's in its provider's words.
    fn named_counters(&self) -> Vec<(&'static str, u64)> {
        match &self.cfg.cloud {
            None => self.counters.named().to_vec(),
            Some(c) => vec![
                (c.provider.idle_timeouts(), self.counters.idle_timeouts),
                ("new flows on a held tuple", self.counters.reopened),
                ("invalid", self.counters.invalid),
            ],
        }
    }

    /// Removes every entry expired by `now`: a cloud gateway releases their mappings and
    /// counts those its idle timeout ended before they closed.
    fn advance(&mut self, now: Instant) {
        let Some(blocks) = &mut self.blocks else {
            self.table.advance(now, |_| {});
            return;
        };
        let idle = &mut self.counters.idle_timeouts;
        self.table.advance(now, |e| {
            blocks.released(e);
            // Open flows only: an unanswered SYN's entry is not a connection gone idle.
            *idle += u64::from((CtState::Established..CtState::TimeWait).contains(&e.state));
        });
    }

    /// Its state at `now`, every entry expired by then gone.
    pub fn gauges(&mut self, now: Instant) -> NatGauges {
        self.advance(now);
        let mut by_state = *self.table.by_state();
        for s in &mut self.whole {
            s.count_at(now, &mut by_state);
        }
        NatGauges {
            ports_in_use: self.table.ports_held() as u64,
            entries: self.table.len() as u64,
            by_state,
        }
    }

    fn timeout(&self, s: CtState) -> Duration {
        self.cfg.timeouts[s as usize]
    }

    /// The new entry's reply tuple clashes at confirmation: `insert_failed` and `drop`
    /// both count it (measured, notes/nat-reference.md §4).
    fn insert_failed(&mut self, reason: &'static str) -> Pass {
        self.counters.insert_failed += 1;
        self.counters.drop += 1;
        self.drop_syn(reason)
    }

    fn drop_syn(&mut self, reason: &'static str) -> Pass {
        *self.drops.entry(reason).or_insert(0) += 1;
        Pass::Drop
    }

    /// A SYN with no entry at a cloud gateway: the provider's allocation, the entry.
    fn new_cloud_flow(&mut self, now: Instant, w: &mut Wire) -> Pass {
        let reply = match self.map_cloud(&w.tuple) {
            Ok(reply) => reply,
            Err(reason) => return self.drop_syn(reason),
        };
        let timeout = self.timeout(CtState::SynSent);
        self.table.insert(now, w.tuple, reply, w.seq_end, timeout);
        self.note_peaks();
        w.tuple = reply;
        Pass::Forward
    }

    /// A cloud gateway's mapping for a new flow of original tuple `orig` (its reply tuple),
    /// or the provider's name for the drop.
    fn map_cloud(&mut self, orig: &crate::host::Tuple) -> Result<crate::host::Tuple, &'static str> {
        let Some(blocks) = &mut self.blocks else {
            unreachable!("a cloud gateway has blocks");
        };
        let (ip, port) = match blocks.pick(&self.table, orig) {
            Pick::Port(ip, port) => (ip, port),
            Pick::Drop(reason) => return Err(reason),
        };
        let reply = crate::host::Tuple {
            local_ip: ip,
            local_port: port,
            ..*orig
        };
        blocks.created(orig, &reply);
        Ok(reply)
    }

    fn note_peaks(&mut self) {
        self.entries_peak = self.entries_peak.max(self.table.len() as u64);
        self.ports_peak = self.ports_peak.max(self.table.ports_held() as u64);
    }

    /// A SYN with no entry: room in the table, a NAT tuple, the entry.
    fn new_flow(&mut self, now: Instant, w: &mut Wire) -> Pass {
        if self.blocks.is_some() {
            return self.new_cloud_flow(now, w);
        }
        if self.table.len() as u64 >= self.cfg.max && !self.early_drop() {
            self.counters.drop += 1;
            return self.drop_syn("table full");
        }
        let hidden = self.last_new.and_then(|(slot, at)| {
            let overlaps = now.0.saturating_sub(at.0) < self.cfg.race_window.0;
            let other_cpu = overlaps && self.search.chance(self.cfg.cpus - 1, self.cfg.cpus);
            (other_cpu && self.table.get(slot).created == at).then_some(slot)
        });
        let found =
            self.search
                .choose(&self.cfg.rule, &mut self.table, hidden, &w.tuple, w.seq_end);
        self.counters.evicted += self.search.evicted;
        let reply = match found {
            Found::Taken(_) => return self.insert_failed("no free port"),
            Found::Free(r) if hidden.is_some_and(|h| self.table.get(h).reply == r) => {
                return self.insert_failed("concurrent insert");
            }
            Found::Free(r) => r,
        };
        let timeout = self.timeout(CtState::SynSent);
        let slot = self.table.insert(now, w.tuple, reply, w.seq_end, timeout);
        self.last_new = Some((slot, now));
        self.note_peaks();
        w.tuple = reply;
        Pass::Forward
    }

    /// `early_drop` (`nf_conntrack_core.c`): scan up to [`EVICTION_RANGE`] buckets from the
    /// new tuple's and delete every entry that is not assured in the first bucket holding
    /// one (`early_drop_list`). The gc worker's later drop of assured closing entries
    /// (`gc_worker_can_early_drop`, asynchronous) is not modelled. The kernel's hash is keyed at boot; a bucket holds
    /// each entry's two tuples with probability 1/buckets each, so its entries are drawn
    /// at random, Poisson(2 × entries / buckets) of them.
    fn early_drop(&mut self) -> bool {
        let mean = 2.0 * self.table.len() as f64 / self.cfg.buckets as f64;
        for _ in 0..EVICTION_RANGE {
            let mut victims = Vec::new();
            for _ in 0..self.poisson(mean) {
                let Some(s) = self.table.random_live(|n| self.search.below(n)) else {
                    break;
                };
                let e = self.table.get(s);
                if !e.assured && !victims.contains(&s) {
                    victims.push(s);
                }
            }
            if !victims.is_empty() {
                self.counters.early_drop += victims.len() as u64;
                for s in victims {
                    self.table.remove(s);
                }
                return true;
            }
        }
        false
    }

    fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.search.unit();
            if p <= limit || k >= 64 {
                return k;
            }
            k += 1;
        }
    }

    /// A segment of a flow the table holds as `slot`: its state moved and its timeout
    /// refreshed.
    fn known(&mut self, slot: u32, now: Instant, w: &mut Wire) {
        let timeouts = self.cfg.timeouts;
        self.table
            .refresh(slot, now, w.seg, w.dir, w.fin, |s| timeouts[s as usize]);
        let e = *self.table.get(slot);
        match w.dir {
            Dir::Up => {
                if w.seg != Segment::Syn {
                    self.table.set_td_end(slot, w.seq_end);
                }
                w.tuple = e.reply;
            }
            Dir::Down => w.tuple = e.orig,
        }
    }
}

impl Middlebox for Nat {
    fn name(&self) -> &str {
        &self.name
    }

    fn segment(&mut self, now: Instant, w: &mut Wire) -> Pass {
        self.advance(now);
        let found = match w.dir {
            Dir::Up => self.table.find_orig(&w.tuple),
            Dir::Down => self.table.find_reply(&w.tuple),
        };
        match found {
            // nf_conntrack_tcp_packet: a SYN on a closed flow's tuple kills the old entry
            // and is looked up again (a new flow).
            // A cloud gateway holds a closed flow's NAT tuple for its whole hold ("a
            // five-tuple cannot be reused within the TCP TIME_WAIT timeout", Cloud NAT
            // troubleshooting; Azure's port reuse timers): the new flow gets its own mapping.
            Some(slot) if w.seg == Segment::Syn && self.table.get(slot).reopens() => {
                if self.blocks.is_none() {
                    self.table.remove(slot);
                    self.counters.reopened += 1;
                    return self.new_flow(now, w);
                }
                self.table.detach(slot);
                let pass = self.new_flow(now, w);
                self.counters.reopened += u64::from(pass == Pass::Forward);
                pass
            }
            Some(slot) => {
                self.known(slot, now, w);
                Pass::Forward
            }
            None if w.seg == Segment::Syn && w.dir == Dir::Up => self.new_flow(now, w),
            None => {
                self.counters.invalid += 1;
                Pass::Forward
            }
        }
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let mut out: Vec<_> = self
            .counters
            .named()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        out.extend(
            self.drops
                .iter()
                .map(|(k, v)| (format!("dropped: {k}"), *v)),
        );
        out
    }

    fn nat(&mut self) -> Option<&mut Nat> {
        Some(self)
    }
}
