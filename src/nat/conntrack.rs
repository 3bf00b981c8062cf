//! The connection-tracking table of a Linux NAT: one entry per flow, found by its original
//! tuple (the client's) or its reply tuple (the server's, to the NAT's address), with the
//! TCP state the segments moved it to and the timeout of that state
//! (`net/netfilter/nf_conntrack_proto_tcp.c`, notes/nat-reference.md §1–§3).
//!
//! Tuples here are in the client's orientation: `local` is the client side (the client's
//! address in the original tuple, the NAT's in the reply tuple), `remote` the server.
//! An entry lives until its timeout passes with no segment refreshing it
//! (`nf_ct_is_expired`: expired at `timeout - now <= 0`); [`Table::advance`] removes every
//! entry expired by `now`, oldest deadline first, before anything at `now` reads the table.

use crate::host::{Table as Map, Tuple};
use crate::sim::path::{Dir, Segment};
use crate::time::{Duration, Instant};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// `enum tcp_conntrack` (include/uapi/linux/netfilter/nf_conntrack_tcp.h), in its order:
/// `nf_nat_may_kill` compares with `TIME_WAIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CtState {
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
}

impl CtState {
    pub const ALL: [CtState; 8] = [
        CtState::SynSent,
        CtState::SynRecv,
        CtState::Established,
        CtState::FinWait,
        CtState::CloseWait,
        CtState::LastAck,
        CtState::TimeWait,
        CtState::Close,
    ];

    /// As `conntrack -L` prints it.
    pub fn name(self) -> &'static str {
        match self {
            CtState::SynSent => "SYN_SENT",
            CtState::SynRecv => "SYN_RECV",
            CtState::Established => "ESTABLISHED",
            CtState::FinWait => "FIN_WAIT",
            CtState::CloseWait => "CLOSE_WAIT",
            CtState::LastAck => "LAST_ACK",
            CtState::TimeWait => "TIME_WAIT",
            CtState::Close => "CLOSE",
        }
    }

    /// The sysctl `net.netfilter.nf_conntrack_tcp_timeout_<suffix>`.
    pub fn sysctl_suffix(self) -> &'static str {
        match self {
            CtState::SynSent => "syn_sent",
            CtState::SynRecv => "syn_recv",
            CtState::Established => "established",
            CtState::FinWait => "fin_wait",
            CtState::CloseWait => "close_wait",
            CtState::LastAck => "last_ack",
            CtState::TimeWait => "time_wait",
            CtState::Close => "close",
        }
    }

    /// `tcp_timeouts[]` defaults: SYN_SENT 2 min, SYN_RECV 60 s, ESTABLISHED 5 days,
    /// FIN_WAIT 2 min, CLOSE_WAIT 60 s, LAST_ACK 30 s, TIME_WAIT 2 min, CLOSE 10 s.
    pub fn default_timeout(self) -> Duration {
        Duration::from_secs(match self {
            CtState::SynSent => 120,
            CtState::SynRecv => 60,
            CtState::Established => 5 * 24 * 3600,
            CtState::FinWait => 120,
            CtState::CloseWait => 60,
            CtState::LastAck => 30,
            CtState::TimeWait => 120,
            CtState::Close => 10,
        })
    }
}

/// The flag row of `tcp_conntracks[][][]` a segment selects (`get_conntrack_index`: RST,
/// else SYN or SYN-ACK, else FIN, else ACK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flags {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
}

fn flags(seg: Segment, server_closes: bool) -> Flags {
    match seg {
        Segment::Syn => Flags::Syn,
        Segment::SynAck => Flags::SynAck,
        Segment::Ack | Segment::LastAck => Flags::Ack,
        Segment::Response if server_closes => Flags::Fin,
        Segment::Response => Flags::Ack,
        Segment::Fin | Segment::FinAck => Flags::Fin,
        Segment::Rst | Segment::RstToTimeWait => Flags::Rst,
    }
}

/// `tcp_conntracks[dir][index][state]` for the rows our segments select; `None` where the
/// table says sIV or sIG (the state does not change).
fn next_state(dir: Dir, f: Flags, s: CtState) -> Option<CtState> {
    use CtState::*;
    match (f, dir, s) {
        (Flags::Rst, _, _) => Some(Close),
        (Flags::Syn, Dir::Up, SynSent | TimeWait | Close) => Some(SynSent),
        (Flags::SynAck, Dir::Down, SynSent) => Some(SynRecv),
        (Flags::Fin, _, SynRecv | Established) => Some(FinWait),
        (Flags::Fin, _, FinWait | CloseWait | LastAck) => Some(LastAck),
        (Flags::Fin, _, TimeWait) => Some(TimeWait),
        (Flags::Ack, Dir::Up, SynRecv | Established) => Some(Established),
        (Flags::Ack, Dir::Down, SynRecv) => Some(SynRecv),
        (Flags::Ack, Dir::Down, Established) => Some(Established),
        (Flags::Ack, _, FinWait | CloseWait) => Some(CloseWait),
        (Flags::Ack, _, LastAck | TimeWait) => Some(TimeWait),
        _ => None,
    }
}

/// One tracked flow.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub orig: Tuple,
    pub reply: Tuple,
    pub state: CtState,
    /// `IPS_ASSURED`: set when the handshake's ACK moves SYN_RECV to ESTABLISHED.
    pub assured: bool,
    pub expires: Instant,
    /// `seen[IP_CT_DIR_ORIGINAL].td_end`: the end of the client's highest sequence number.
    pub td_end: u32,
    /// When it was created: the race of concurrent SYNs (`super::select`).
    pub created: Instant,
    /// `IP_CT_TCP_FLAG_CLOSE_INIT`: either side sent a FIN.
    pub close_init: bool,
    /// The last segment was an RST from the client.
    pub rst_up: bool,
    generation: u32,
    live: bool,
}

impl Entry {
    /// Whether a SYN from the client on this entry's tuple replaces it
    /// (`nf_conntrack_tcp_packet`: TIME_WAIT or CLOSE, and a FIN was seen or the last
    /// segment was an RST the same way): the entry is killed and the SYN looked up again.
    /// Otherwise the SYN passes on the old entry.
    pub fn reopens(&self) -> bool {
        self.state >= CtState::TimeWait && (self.close_init || self.rst_up)
    }

    /// Moves the entry by segment `seg` travelling `dir`; whether the state changed.
    pub fn step(&mut self, seg: Segment, dir: Dir, server_closes: bool) -> bool {
        let f = flags(seg, server_closes);
        self.close_init |= f == Flags::Fin;
        self.rst_up = f == Flags::Rst && dir == Dir::Up;
        let Some(next) = next_state(dir, f, self.state) else {
            return false;
        };
        if f == Flags::Ack
            && dir == Dir::Up
            && self.state == CtState::SynRecv
            && next == CtState::Established
        {
            self.assured = true;
        }
        let changed = next != self.state;
        self.state = next;
        changed
    }
}

/// The ports of one NAT address that entries hold toward one destination (address, port).
pub struct Held {
    bits: Box<[u64; 1024]>,
    /// How many are held.
    pub count: u32,
}

impl Held {
    #[inline]
    pub fn has(&self, port: u16) -> bool {
        self.bits[usize::from(port) / 64] & (1 << (port % 64)) != 0
    }

    /// The first port in `a .. b` no entry holds, scanning a word at a time.
    pub fn first_free(&self, a: u32, b: u32) -> Option<u32> {
        let mut p = a;
        while p < b {
            let w = (p / 64) as usize;
            let free = !self.bits[w] >> (p % 64);
            if free != 0 {
                let q = p + free.trailing_zeros();
                return (q < b).then_some(q);
            }
            p = (w as u32 + 1) * 64;
        }
        None
    }
}

/// The table: entries in a slab, the two tuple indexes, and the deadlines.
#[derive(Default)]
pub struct Table {
    slab: Vec<Entry>,
    free: Vec<u32>,
    by_orig: Map<Tuple, u32>,
    by_reply: Map<Tuple, u32>,
    /// (deadline, slot, generation): a slot's pending deadline checks. A deadline set by a
    /// segment is `now` plus its state's timeout, a constant: per state they come in time
    /// order, one FIFO lane each. A check that finds the entry refreshed since is set again
    /// in `deadlines`, a heap.
    lanes: [VecDeque<(Instant, u32, u32)>; CtState::ALL.len()],
    deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// The deadline each slot has in `deadlines` (the earliest, if several).
    armed: Vec<Instant>,
    len: usize,
    by_state: [u64; CtState::ALL.len()],
    /// Per (NAT address, port): how many entries hold it, and how many such pairs.
    holders: Map<(u32, u16), u32>,
    ports_held: usize,
    /// Per (NAT address, destination address, destination port): a bit per port some entry's
    /// reply tuple holds, so that the port search tests a bit where a lookup would cost a
    /// hash (the same answer: a reply tuple is exactly these four values).
    held_toward: Map<(u32, u32, u16), Held>,
    /// Per client (address, port), its entries, newest last (`nf_nat_bysource`).
    by_source: Map<(u32, u16), Vec<u32>>,
    /// Indexes nobody reads left empty: `by_source` (a cloud gateway's port search does
    /// not use it) and `by_reply` (no segment comes back through a gateway whose every flow
    /// is a whole exchange, `src/sim/fast/gateway.rs`).
    unread: Unread,
}

/// The indexes a table does not keep ([`Table::skip`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Unread {
    pub sources: bool,
    pub replies: bool,
}

impl Table {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Stops keeping the indexes `unread` names, on a table still empty: their readers
    /// ([`Self::from_source`], [`Self::find_reply`]) must not be called.
    pub fn skip(&mut self, unread: Unread) {
        debug_assert!(self.is_empty());
        self.unread = unread;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries per state, in [`CtState::ALL`] order.
    pub fn by_state(&self) -> &[u64; CtState::ALL.len()] {
        &self.by_state
    }

    /// Distinct (NAT address, port) pairs some entry holds.
    pub fn ports_held(&self) -> usize {
        self.ports_held
    }

    pub fn get(&self, slot: u32) -> &Entry {
        &self.slab[slot as usize]
    }

    /// The entries of client (address, port), newest first.
    pub fn from_source(&self, ip: u32, port: u16) -> impl Iterator<Item = u32> + '_ {
        debug_assert!(!self.unread.sources, "sources not indexed");
        self.by_source
            .get(&(ip, port))
            .into_iter()
            .flat_map(|v| v.iter().rev().copied())
    }

    pub fn find_orig(&self, t: &Tuple) -> Option<u32> {
        self.by_orig.get(t).copied()
    }

    /// Whether some entry's reply tuple is `t` (what [`Self::find_reply`] answers, faster).
    #[inline]
    pub fn reply_held(&self, t: &Tuple) -> bool {
        self.held_toward
            .get(&(t.local_ip, t.remote_ip, t.remote_port))
            .is_some_and(|h| h.has(t.local_port))
    }

    /// The ports NAT address `ip` holds toward `dst_ip`:`dst_port`, if any ever were.
    #[inline]
    pub fn toward(&self, ip: u32, dst_ip: u32, dst_port: u16) -> Option<&Held> {
        self.held_toward.get(&(ip, dst_ip, dst_port))
    }

    pub fn find_reply(&self, t: &Tuple) -> Option<u32> {
        debug_assert!(!self.unread.replies, "reply tuples not indexed");
        self.by_reply.get(t).copied()
    }

    /// Inserts a new flow in SYN_SENT, expiring after `timeout`.
    pub fn insert(
        &mut self,
        now: Instant,
        orig: Tuple,
        reply: Tuple,
        td_end: u32,
        timeout: Duration,
    ) -> u32 {
        let e = Entry {
            orig,
            reply,
            state: CtState::SynSent,
            assured: false,
            expires: now + timeout,
            td_end,
            created: now,
            close_init: false,
            rst_up: false,
            generation: 0,
            live: true,
        };
        self.insert_entry(e)
    }

    /// Inserts, at its SYN (`now`), a flow whose every later segment is known to come before
    /// its timeout (a whole exchange through a cloud gateway, `src/sim/fast/gateway.rs`): in
    /// the state its client's close leaves it, TIME_WAIT with a FIN seen and assured,
    /// expiring at `expires` (its last ACK plus TIME_WAIT's timeout).
    pub fn insert_closed(
        &mut self,
        now: Instant,
        orig: Tuple,
        reply: Tuple,
        expires: Instant,
    ) -> u32 {
        let e = Entry {
            orig,
            reply,
            state: CtState::TimeWait,
            assured: true,
            expires,
            td_end: 0,
            created: now,
            close_init: true,
            rst_up: false,
            generation: 0,
            live: true,
        };
        self.insert_entry(e)
    }

    fn insert_entry(&mut self, e: Entry) -> u32 {
        let (orig, reply, state, expires) = (e.orig, e.reply, e.state, e.expires);
        let slot = match self.free.pop() {
            Some(s) => {
                let generation = self.slab[s as usize].generation.wrapping_add(1);
                self.slab[s as usize] = Entry { generation, ..e };
                s
            }
            None => {
                self.slab.push(e);
                self.armed.push(Instant(u64::MAX));
                (self.slab.len() - 1) as u32
            }
        };
        self.by_orig.insert(orig, slot);
        if !self.unread.replies {
            self.by_reply.insert(reply, slot);
        }
        if !self.unread.sources {
            self.by_source
                .entry((orig.local_ip, orig.local_port))
                .or_default()
                .push(slot);
        }
        self.len += 1;
        self.by_state[state as usize] += 1;
        let held = self
            .held_toward
            .entry((reply.local_ip, reply.remote_ip, reply.remote_port))
            .or_insert_with(|| Held {
                bits: Box::new([0; 1024]),
                count: 0,
            });
        held.bits[usize::from(reply.local_port) / 64] |= 1 << (reply.local_port % 64);
        held.count += 1;
        let held = self
            .holders
            .entry((reply.local_ip, reply.local_port))
            .or_insert(0);
        *held += 1;
        if *held == 1 {
            self.ports_held += 1;
        }
        // Deadlines of one state come in time order in its lane, unless set by a whole
        // exchange's insert out of that order: those go to the heap.
        let lane = self.lanes[state as usize]
            .back()
            .is_none_or(|b| b.0 <= expires)
            .then_some(state);
        self.arm(slot, expires, lane);
        slot
    }

    /// Applies `seg` to entry `slot` and refreshes its timeout from `timeout_of` its new state.
    pub fn refresh(
        &mut self,
        slot: u32,
        now: Instant,
        seg: Segment,
        dir: Dir,
        server_closes: bool,
        timeout_of: impl Fn(CtState) -> Duration,
    ) {
        let e = &mut self.slab[slot as usize];
        let before = e.state;
        e.step(seg, dir, server_closes);
        let after = e.state;
        // A retransmitted SYN leaves SYN_SENT's timeout as it was (measured, §2).
        if seg == Segment::Syn && before == CtState::SynSent {
            return;
        }
        let expires = now + timeout_of(after);
        e.expires = expires;
        if before != after {
            self.by_state[before as usize] -= 1;
            self.by_state[after as usize] += 1;
        }
        if expires < self.armed[slot as usize] {
            self.arm(slot, expires, Some(after));
        }
    }

    /// Records the client's sequence end on entry `slot`.
    pub fn set_td_end(&mut self, slot: u32, td_end: u32) {
        self.slab[slot as usize].td_end = td_end;
    }

    /// Sets a deadline check of `slot` at `at`: in the lane of `state` when `at` is now plus
    /// that state's timeout, else in the heap.
    fn arm(&mut self, slot: u32, at: Instant, state: Option<CtState>) {
        self.armed[slot as usize] = at;
        let g = self.slab[slot as usize].generation;
        match state {
            Some(s) => {
                debug_assert!(self.lanes[s as usize].back().is_none_or(|b| b.0 <= at));
                self.lanes[s as usize].push_back((at, slot, g));
            }
            None => self.deadlines.push(Reverse((at, slot, g))),
        }
    }

    /// The earliest pending check due by `now`, taken out of its lane or the heap.
    fn next_due(&mut self, now: Instant) -> Option<(Instant, u32, u32)> {
        let mut best: Option<(Instant, usize)> = None;
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(&(at, _, _)) = lane.front()
                && at <= now
                && best.is_none_or(|(b, _)| at < b)
            {
                best = Some((at, i));
            }
        }
        let heap = self.deadlines.peek().map(|r| r.0.0).filter(|&at| at <= now);
        match (best, heap) {
            (Some((at, i)), h) if h.is_none_or(|h| at <= h) => self.lanes[i].pop_front(),
            (_, Some(_)) => self.deadlines.pop().map(|r| r.0),
            _ => None,
        }
    }

    /// Makes entry `slot` unreachable by its original tuple while it keeps its NAT port
    /// toward its destination until its timeout: a new flow on the same original tuple
    /// then gets an entry of its own.
    pub fn detach(&mut self, slot: u32) {
        let orig = self.slab[slot as usize].orig;
        if self.by_orig.get(&orig) == Some(&slot) {
            self.by_orig.remove(&orig);
        }
    }

    /// Removes entry `slot` (expired, killed or dropped).
    pub fn remove(&mut self, slot: u32) {
        let e = &mut self.slab[slot as usize];
        debug_assert!(e.live);
        e.live = false;
        let (orig, reply, state) = (e.orig, e.reply, e.state);
        if self.by_orig.get(&orig) == Some(&slot) {
            self.by_orig.remove(&orig);
        }
        if !self.unread.replies {
            self.by_reply.remove(&reply);
        }
        let source = (orig.local_ip, orig.local_port);
        if !self.unread.sources
            && let Some(v) = self.by_source.get_mut(&source)
        {
            v.retain(|&x| x != slot);
            if v.is_empty() {
                self.by_source.remove(&source);
            }
        }
        self.len -= 1;
        self.by_state[state as usize] -= 1;
        let toward = (reply.local_ip, reply.remote_ip, reply.remote_port);
        if let Some(h) = self.held_toward.get_mut(&toward) {
            h.bits[usize::from(reply.local_port) / 64] &= !(1 << (reply.local_port % 64));
            h.count -= 1;
        }
        let key = (reply.local_ip, reply.local_port);
        if let Some(held) = self.holders.get_mut(&key) {
            *held -= 1;
            if *held == 0 {
                self.holders.remove(&key);
                self.ports_held -= 1;
            }
        }
        self.armed[slot as usize] = Instant(u64::MAX);
        self.free.push(slot);
    }

    /// Removes every entry whose timeout has passed by `now`; calls `gone` with each.
    pub fn advance(&mut self, now: Instant, mut gone: impl FnMut(&Entry)) {
        while let Some((at, slot, generation)) = self.next_due(now) {
            let e = self.slab[slot as usize];
            if !e.live || e.generation != generation || self.armed[slot as usize] != at {
                continue;
            }
            if e.expires <= now {
                gone(&e);
                self.remove(slot);
            } else {
                self.arm(slot, e.expires, None);
            }
        }
    }

    /// A live entry drawn uniformly by `draw(n)` (a number below `n`), or none when empty:
    /// the entries a bucket of the kernel's hash table holds are a uniform draw.
    pub fn random_live(&self, mut draw: impl FnMut(u32) -> u32) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        loop {
            let s = draw(self.slab.len() as u32);
            if self.slab[s as usize].live {
                return Some(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(segs: &[(Segment, Dir)], server_closes: bool) -> Vec<CtState> {
        let mut e = Entry {
            orig: Tuple::default(),
            reply: Tuple::default(),
            state: CtState::SynSent,
            assured: false,
            expires: Instant(0),
            td_end: 0,
            created: Instant(0),
            close_init: false,
            rst_up: false,
            generation: 0,
            live: true,
        };
        let mut out = vec![e.state];
        for &(s, d) in segs {
            e.step(s, d, server_closes);
            out.push(e.state);
        }
        out
    }

    /// `tcp_conntracks`: a client-closed exchange ends in TIME_WAIT on the last ACK.
    #[test]
    fn a_client_close_walks_the_kernels_table() {
        use CtState::*;
        let s = walk(
            &[
                (Segment::SynAck, Dir::Down),
                (Segment::Ack, Dir::Up),
                (Segment::Response, Dir::Down),
                (Segment::Fin, Dir::Up),
                (Segment::FinAck, Dir::Down),
                (Segment::LastAck, Dir::Up),
            ],
            false,
        );
        assert_eq!(
            s,
            [
                SynSent,
                SynRecv,
                Established,
                Established,
                FinWait,
                LastAck,
                TimeWait
            ]
        );
    }

    #[test]
    fn a_server_close_and_a_reset_walk_the_kernels_table() {
        use CtState::*;
        let s = walk(
            &[
                (Segment::SynAck, Dir::Down),
                (Segment::Ack, Dir::Up),
                (Segment::Response, Dir::Down),
                (Segment::FinAck, Dir::Up),
                (Segment::LastAck, Dir::Down),
            ],
            true,
        );
        assert_eq!(
            s,
            [SynSent, SynRecv, Established, FinWait, LastAck, TimeWait]
        );
        let s = walk(
            &[
                (Segment::SynAck, Dir::Down),
                (Segment::Ack, Dir::Up),
                (Segment::Rst, Dir::Up),
            ],
            false,
        );
        assert_eq!(s, [SynSent, SynRecv, Established, Close]);
    }
}
