//! The NAT address and port of a new flow, as `net/netfilter/nf_nat_core.c` chooses them
//! for a masquerade or SNAT rule (notes/nat-reference.md §4):
//!
//! 1. `get_unique_tuple`: unless a random flag is set, keep the mapping this source
//!    (address, port) already has (`find_appropriate_src`, the newest entry in range) if it
//!    is unused toward this destination;
//! 2. `find_best_ips_proto`: the NAT address by `jhash2` of the source address, seeded with
//!    the destination address (0 with `persistent`), scaled into the range;
//! 3. unless a random flag is set, keep the client's port if it is in the range and unused;
//! 4. `nf_nat_l4proto_unique_tuple`: probe ports from a start offset, at most 128 a round,
//!    halving the window each round from a new random start; the last
//!    `NF_NAT_HARDER_THRESH` (32) probes of a round may evict a colliding entry in
//!    TIME_WAIT or CLOSE whose sequence the new SYN has passed (`nf_nat_used_tuple_harder`,
//!    kernels since [`EVICTS_SINCE`]). Kernels before 5.0 (`nf_nat_proto_common.c`) probe the
//!    whole range from a start shared by all flows, the `rover`, unless `random`
//!    (a keyed hash of the destination) or `fully-random` (random) is set.
//!
//! When no port is free the last probed one is used anyway and the flow's insert into
//! the table fails at confirmation (`__nf_conntrack_confirm`): `insert_failed`, the SYN
//! is dropped.

use super::conntrack::{CtState, Table};
use crate::host::Tuple;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// `NF_NAT_MAX_ATTEMPTS`.
const MAX_ATTEMPTS: u32 = 128;
/// `NF_NAT_HARDER_THRESH`: probes left at or below which a closing entry may be evicted.
const HARDER_THRESH: u32 = MAX_ATTEMPTS / 4;
/// The first kernel with `nf_nat_used_tuple_harder`: the patch went to net-next in June 2023,
/// the 6.5 merge window (notes/nat-reference.md §4.7; the release is not verified).
pub const EVICTS_SINCE: (u32, u32) = (6, 5);
/// The first kernel whose SNAT port search starts at random, not at the shared rover (upstream
/// 6ed5943f8735; 5.0 per shared/reference/nat-and-clients.md, the release is not verified).
pub const RANDOM_START_SINCE: (u32, u32) = (5, 0);

/// How the NAT chooses ports.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Its addresses, consecutive (an SNAT range is min–max).
    pub ips: Vec<u32>,
    /// `to :lo-hi`; `None` leaves the kernel's default classes (1–511, 600–1023,
    /// 1024–65535 by the client's port).
    pub ports: Option<(u16, u16)>,
    /// `random` (`NF_NAT_RANGE_PROTO_RANDOM`).
    pub random: bool,
    /// `fully-random` (`NF_NAT_RANGE_PROTO_RANDOM_FULLY`).
    pub fully_random: bool,
    /// `persistent` (`NF_NAT_RANGE_PERSISTENT`): the address ignores the destination.
    pub persistent: bool,
    /// Kernel version, (major, minor).
    pub kernel: (u32, u32),
}

impl Rule {
    /// The flags set, by nftables' names.
    pub fn flag_names(&self) -> Vec<&'static str> {
        [
            (self.random, "random"),
            (self.fully_random, "fully-random"),
            (self.persistent, "persistent"),
        ]
        .into_iter()
        .filter_map(|(on, f)| on.then_some(f))
        .collect()
    }

    /// The rule as an nftables statement: `masquerade [to :LO-HI]` for one address,
    /// `snat ip to A-B[:LO-HI]` for a range, then the flags, comma-separated (the syntax
    /// `portsim live` runs, notes/nat-lab).
    pub fn nft_statement(&self) -> String {
        let ports = self
            .ports
            .map_or(String::new(), |(lo, hi)| format!(":{lo}-{hi}"));
        let target = match self.ips.as_slice() {
            [first, .., last] => format!(
                "snat ip to {}-{}{ports}",
                std::net::Ipv4Addr::from(*first),
                std::net::Ipv4Addr::from(*last)
            ),
            _ if ports.is_empty() => "masquerade".to_string(),
            _ => format!("masquerade to {ports}"),
        };
        let flags = self.flag_names();
        if flags.is_empty() {
            target
        } else {
            format!("{target} {}", flags.join(","))
        }
    }

    fn random_all(&self) -> bool {
        self.random || self.fully_random
    }

    /// The port range a client port `p` maps into: (lowest, size).
    pub fn range_for(&self, p: u16) -> (u16, u32) {
        match self.ports {
            Some((lo, hi)) => (lo, u32::from(hi - lo) + 1),
            None if p < 512 => (1, 511),
            None if p < 1024 => (600, 424),
            None => (1024, 64512),
        }
    }

    fn in_range(&self, p: u16) -> bool {
        self.ports.is_none_or(|(lo, hi)| (lo..=hi).contains(&p))
    }
}

/// What the search found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// A unique reply tuple.
    Free(Tuple),
    /// No free tuple: the last probed, whose insert will fail.
    Taken(Tuple),
}

/// The state the search keeps between flows.
pub struct Search {
    rng: ChaCha8Rng,
    /// The shared rover of kernels before 5.0.
    rover: u32,
    /// The boot-time secret `random` hashes the destination with.
    secret: u32,
    /// Entries evicted by the last search (`nf_nat_used_tuple_harder`).
    pub evicted: u64,
}

/// Whether the reply tuple `t` is in use, for a new flow whose client sequence ends at
/// `td_end`, with `hidden` an entry the search cannot see (not yet confirmed); evicts a
/// closing entry when `harder` allows it.
struct Probe<'a> {
    table: &'a mut Table,
    hidden: Option<u32>,
    td_end: u32,
    evicts: bool,
    evicted: u64,
}

impl Probe<'_> {
    fn used(&mut self, t: &Tuple, left: u32) -> bool {
        if !self.table.reply_held(t) {
            return false;
        }
        if self.hidden.is_none() && (!self.evicts || left > HARDER_THRESH) {
            return true;
        }
        let Some(slot) = self.table.find_reply(t) else {
            return false;
        };
        if Some(slot) == self.hidden {
            return false;
        }
        if !self.evicts || left > HARDER_THRESH {
            return true;
        }
        let e = self.table.get(slot);
        // nf_nat_may_kill: TIME_WAIT or CLOSE; nf_seq_has_advanced: the new flow's
        // sequence is after the old one's.
        let advanced = (self.td_end.wrapping_sub(e.td_end) as i32) > 0;
        if e.state >= CtState::TimeWait && advanced {
            self.table.remove(slot);
            self.evicted += 1;
            return false;
        }
        true
    }
}

impl Search {
    pub fn new(mut rng: ChaCha8Rng) -> Search {
        let secret = rng.random();
        Search {
            rng,
            rover: 0,
            secret,
            evicted: 0,
        }
    }

    /// The reply tuple (client orientation: `local` is the NAT's) for a new flow with
    /// original tuple `orig`.
    pub fn choose(
        &mut self,
        rule: &Rule,
        table: &mut Table,
        hidden: Option<u32>,
        orig: &Tuple,
        td_end: u32,
    ) -> Found {
        let mut probe = Probe {
            table,
            hidden,
            td_end,
            evicts: rule.kernel >= EVICTS_SINCE,
            evicted: 0,
        };
        let found = self.search(rule, &mut probe, orig);
        self.evicted = probe.evicted;
        found
    }

    fn search(&mut self, rule: &Rule, probe: &mut Probe, orig: &Tuple) -> Found {
        if !rule.random_all()
            && let Some(t) = appropriate_src(rule, probe.table, orig)
            && !probe.used(&t, u32::MAX)
        {
            return Found::Free(t);
        }
        let mut t = *orig;
        t.local_ip = address(rule, orig);
        if !rule.random_all() {
            let single = rule.ports.is_some_and(|(lo, hi)| lo == hi);
            if rule.in_range(orig.local_port) && (single || !probe.used(&t, u32::MAX)) {
                return Found::Free(t);
            }
        }
        if rule.kernel < RANDOM_START_SINCE {
            return self.rover_search(rule, probe, t);
        }
        let (min, size) = rule.range_for(orig.local_port);
        // `off` is a u16 in the kernel: it wraps at 65,536.
        let mut off: u16 = self.rng.random();
        let mut attempts = size.min(MAX_ATTEMPTS);
        loop {
            for i in 0..attempts {
                t.local_port = min + ((u32::from(off) % size) as u16);
                if !probe.used(&t, attempts - i) {
                    return Found::Free(t);
                }
                off = off.wrapping_add(1);
            }
            if attempts >= size || attempts < 16 {
                return Found::Taken(t);
            }
            attempts /= 2;
            off = self.rng.random();
        }
    }

    /// `nf_nat_l4proto_unique_tuple` before 5.0: the whole range from the rover, a keyed
    /// hash of the destination (`random`) or a random number (`fully-random`); the rover
    /// keeps the port found.
    fn rover_search(&mut self, rule: &Rule, probe: &mut Probe, mut t: Tuple) -> Found {
        let (min, size) = rule.range_for(t.local_port);
        let mut off = if rule.random {
            crate::rng::jhash_words(&[t.remote_ip, u32::from(t.remote_port)], self.secret)
        } else if rule.fully_random {
            self.rng.random()
        } else {
            self.rover
        };
        let mut i = 0;
        loop {
            t.local_port = min + ((off % size) as u16);
            i += 1;
            if i != size && probe.used(&t, u32::MAX) {
                off = off.wrapping_add(1);
                continue;
            }
            if !rule.random_all() {
                self.rover = off;
            }
            return if i == size && probe.used(&t, u32::MAX) {
                Found::Taken(t)
            } else {
                Found::Free(t)
            };
        }
    }

    /// A draw below `n`, from the NAT's stream.
    pub fn below(&mut self, n: u32) -> u32 {
        self.rng.random_range(0..n.max(1))
    }

    /// A draw of probability `num/den`.
    pub fn chance(&mut self, num: u32, den: u32) -> bool {
        den > 0 && self.rng.random_ratio(num.min(den), den)
    }

    /// A uniform draw in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.rng.random()
    }
}

/// `find_appropriate_src`: the mapping of the newest entry from the same client address
/// and port whose NAT address and port are in the rule's range, toward `orig`'s
/// destination. Only for an original tuple outside the range: a masquerade's always is.
fn appropriate_src(rule: &Rule, table: &Table, orig: &Tuple) -> Option<Tuple> {
    if rule.ips.contains(&orig.local_ip) && rule.in_range(orig.local_port) {
        return None;
    }
    table
        .from_source(orig.local_ip, orig.local_port)
        .map(|slot| table.get(slot).reply)
        .find(|r| rule.ips.contains(&r.local_ip) && rule.in_range(r.local_port))
        .map(|r| Tuple {
            local_ip: r.local_ip,
            local_port: r.local_port,
            ..*orig
        })
}

/// `find_best_ips_proto`: `jhash2` of the source address words, seeded with the
/// destination address (0 with `persistent`), scaled into the range.
fn address(rule: &Rule, orig: &Tuple) -> u32 {
    let min = rule.ips[0];
    let dist = rule.ips.len() as u32;
    if dist == 1 {
        return min;
    }
    // The kernel hashes the addresses as stored: network order in memory.
    let src = u32::from_ne_bytes(orig.local_ip.to_be_bytes());
    let dst = u32::from_ne_bytes(orig.remote_ip.to_be_bytes());
    let seed = if rule.persistent { 0 } else { dst };
    let j = crate::rng::jhash_words(&[src, 0, 0, 0], seed);
    min + ((u64::from(j) * u64::from(dist)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Duration, Instant};

    fn rule(kernel: (u32, u32)) -> Rule {
        Rule {
            ips: vec![0xcb00_710a],
            ports: Some((40000, 40009)),
            random: false,
            fully_random: false,
            persistent: false,
            kernel,
        }
    }

    fn tuple(port: u16) -> Tuple {
        Tuple {
            local_ip: 0xc000_0202,
            local_port: port,
            remote_ip: 0xcb00_7102,
            remote_port: 80,
        }
    }

    /// Ten ports, ten flows: each gets its own port; the eleventh finds none.
    #[test]
    fn a_ten_port_range_gives_ten_distinct_ports_then_none() {
        for kernel in [(4, 19), (6, 1)] {
            let mut table = Table::default();
            let mut s = Search::new(crate::rng::stream(1, "t"));
            let r = rule(kernel);
            let mut ports = Vec::new();
            for i in 0..10 {
                let orig = tuple(50000 + i);
                let Found::Free(reply) = s.choose(&r, &mut table, None, &orig, 0) else {
                    panic!("no port for flow {i} on {kernel:?}");
                };
                ports.push(reply.local_port);
                table.insert(Instant(0), orig, reply, 0, Duration::from_secs(120));
            }
            ports.sort();
            assert_eq!(ports, (40000..40010).collect::<Vec<_>>(), "{kernel:?}");
            let found = s.choose(&r, &mut table, None, &tuple(50010), 0);
            assert!(matches!(found, Found::Taken(_)), "{kernel:?}: {found:?}");
        }
    }

    /// `find_appropriate_src`: the same client address and port toward a second destination
    /// gets the NAT port its first flow has, unless a random flag is set.
    #[test]
    fn a_source_keeps_its_mapping_toward_another_destination() {
        let mut table = Table::default();
        let mut s = Search::new(crate::rng::stream(3, "t"));
        let r = rule((6, 18));
        let first = tuple(50000);
        let Found::Free(reply) = s.choose(&r, &mut table, None, &first, 0) else {
            panic!("no port");
        };
        table.insert(Instant(0), first, reply, 0, Duration::from_secs(120));
        let second = Tuple {
            remote_ip: 0xcb00_7103,
            ..first
        };
        let Found::Free(again) = s.choose(&r, &mut table, None, &second, 0) else {
            panic!("no port");
        };
        assert_eq!(again.local_port, reply.local_port);
        assert_eq!(again.remote_ip, 0xcb00_7103);
    }

    /// A client port inside the range is kept when no flow holds it.
    #[test]
    fn a_client_port_in_the_range_is_kept_unless_random() {
        let mut table = Table::default();
        let mut s = Search::new(crate::rng::stream(1, "t"));
        let mut r = rule((6, 18));
        let found = s.choose(&r, &mut table, None, &tuple(40003), 0);
        assert_eq!(
            found,
            Found::Free(Tuple {
                local_ip: 0xcb00_710a,
                ..tuple(40003)
            })
        );
        r.fully_random = true;
        let ports: Vec<_> = (0..40)
            .map(|_| match s.choose(&r, &mut table, None, &tuple(40003), 0) {
                Found::Free(t) => t.local_port,
                Found::Taken(_) => unreachable!(),
            })
            .collect();
        assert!(ports.iter().any(|&p| p != 40003), "{ports:?}");
    }
}
