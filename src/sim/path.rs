//! The path a segment takes between a connection's two hosts: a list of hops.
//!
//! A segment sent at `t` reaches the other end at `t` plus the connection's one-way delay in
//! its direction (half the RTT drawn for the connection from the workload's `rtt`, the
//! other half the other way). A *direct* path is one link: the segment is one event, at the
//! receiver. A *middlebox* on the path (a router, [`Router`]) is a hop between two links:
//! the segment is an event at the middlebox first, which sees it, then an event at the
//! receiver. The links share the one-way delay in the
//! proportions of their weights, the last taking what rounding leaves, so the segment
//! reaches the receiver at the instant a direct path gives, with the same packet key
//! ([`crate::engine::packet_key`]) and so the same place in the same-instant order.
//!
//! Paths are set per (client host, server host) before the run ([`Simulation::with_paths`]);
//! a pair with no path set is direct. The fast paths that skip segments a middlebox would
//! see accept direct paths only (`src/sim/fast/`).
//!
//! A middlebox sees the segments the model carries as events ([`Segment`]). Three are
//! folded into others and cross no hop: a request after the first (its time is in the
//! response's), the ACK with which a TIME-WAIT or a live socket answers a SYN (its effect is
//! the client's re-armed timer), and the client's RST to that ACK where the server ignores
//! RSTs in TIME-WAIT (§3.4). A middlebox may rewrite the tuple a segment carries (a NAT:
//! the server then sees the rewritten tuple) and may drop a SYN, which the client's kernel
//! retransmits on its timer as for any lost SYN; the model carries no loss of other
//! segments, so a middlebox passes them. Segments of a connection already over still reach
//! it, as on a wire.

use super::Simulation;
use super::lifecycle::Conn;
use super::run::Event;
use crate::host::{NONE, Tuple};
use crate::time::{Duration, Instant};
use crate::workload::Closer;

/// One hop of a path, in the client → server direction.
pub enum Hop {
    /// A link carrying `weight` parts of the one-way delay.
    Link { weight: u32 },
    /// A middlebox: sees the segments that cross it, in both directions.
    Middlebox(Box<dyn Middlebox>),
    /// The middlebox [`Paths::add`] returned this index for: one box on several paths (a
    /// NAT shared by every host behind it).
    Shared(usize),
}

/// A segment as it crosses a hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Syn,
    SynAck,
    /// The handshake's ACK, carrying the first request.
    Ack,
    /// A response (with the server's FIN after the last, when the server closes).
    Response,
    /// The active closer's FIN.
    Fin,
    /// The passive closer's ACK and FIN.
    FinAck,
    /// The active closer's last ACK.
    LastAck,
    /// An SO_LINGER {on, 0} close's RST (§2.5).
    Rst,
    /// The client's RST answering a TIME-WAIT's ACK (§2.4).
    RstToTimeWait,
}

impl Segment {
    pub const ALL: [Segment; 9] = [
        Segment::Syn,
        Segment::SynAck,
        Segment::Ack,
        Segment::Response,
        Segment::Fin,
        Segment::FinAck,
        Segment::LastAck,
        Segment::Rst,
        Segment::RstToTimeWait,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Segment::Syn => "SYN",
            Segment::SynAck => "SYN-ACK",
            Segment::Ack => "ACK",
            Segment::Response => "response",
            Segment::Fin => "FIN",
            Segment::FinAck => "FIN-ACK",
            Segment::LastAck => "last ACK",
            Segment::Rst => "RST",
            Segment::RstToTimeWait => "RST to TIME-WAIT",
        }
    }

    /// The event of this segment of `conn` reaching its receiver.
    fn event(self, conn: u32, generation: u32) -> Event {
        match self {
            Segment::Syn => Event::Syn { conn, generation },
            Segment::SynAck => Event::SynAck { conn, generation },
            Segment::Ack => Event::Ack { conn, generation },
            Segment::Response => Event::Response { conn, generation },
            Segment::Fin => Event::FinAtPassive { conn, generation },
            Segment::FinAck => Event::FinAtActive { conn, generation },
            Segment::LastAck => Event::LastAck { conn, generation },
            Segment::Rst => Event::Rst { conn, generation },
            Segment::RstToTimeWait => unreachable!("an RST to a TIME-WAIT names its socket"),
        }
    }
}

/// Which way a segment travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

/// A segment as a middlebox sees it.
#[derive(Clone, Copy, Debug)]
pub struct Wire {
    /// The four-tuple it carries, in the client's orientation (`local` is the client side as
    /// this hop sees it); a middlebox may rewrite it.
    pub tuple: Tuple,
    pub seg: Segment,
    pub dir: Dir,
    /// A response carrying the server's FIN (its last, when the server closes).
    pub fin: bool,
    /// Toward the server: the end of the client's sequence space after this segment (ISN + 1
    /// + the bytes and FIN sent).
    pub seq_end: u32,
}

/// What a middlebox does with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Forward,
    /// Dropped: only a SYN may be (see the module doc); another segment passes.
    Drop,
}

/// A box on the path that sees each segment crossing it, in both directions.
pub trait Middlebox {
    /// Its name in the report.
    fn name(&self) -> &str;
    /// Segment `w` crosses the box at `now`: forwarded, its tuple maybe rewritten, or
    /// dropped.
    fn segment(&mut self, now: Instant, w: &mut Wire) -> Pass;
    /// Its counters, in a fixed order.
    fn counters(&self) -> Vec<(String, u64)>;
    /// The NAT it is, if it is one: its gauges are in the report.
    fn nat(&mut self) -> Option<&mut crate::nat::Nat> {
        None
    }
}

/// A router: forwards every segment unchanged and counts them by kind and direction.
#[derive(Clone, Debug)]
pub struct Router {
    name: String,
    seen: [[u64; Segment::ALL.len()]; 2],
}

impl Router {
    pub fn new(name: &str) -> Router {
        Router {
            name: name.to_string(),
            seen: [[0; Segment::ALL.len()]; 2],
        }
    }
}

impl Middlebox for Router {
    fn name(&self) -> &str {
        &self.name
    }

    fn segment(&mut self, _: Instant, w: &mut Wire) -> Pass {
        self.seen[w.dir as usize][w.seg as usize] += 1;
        Pass::Forward
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (dir, arrow) in [(Dir::Up, "→"), (Dir::Down, "←")] {
            for seg in Segment::ALL {
                let n = self.seen[dir as usize][seg as usize];
                out.push((format!("{arrow} {}", seg.name()), n));
            }
        }
        out
    }
}

/// Why a path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A host index beyond the scenario's hosts.
    NoSuchHost(u16),
    /// The pair's path was set already.
    AlreadySet { client: u16, server: u16 },
    /// Paths for a different number of hosts than the scenario has.
    WrongHosts { paths: usize, scenario: usize },
    /// The hops must be links and middleboxes in turn, a link at each end.
    NotAlternating,
    /// Every link must carry some of the delay.
    ZeroWeight,
    /// A shared middlebox index [`Paths::add`] did not return.
    NoSuchMiddlebox(usize),
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::NoSuchHost(h) => write!(f, "no host {h} in the scenario"),
            PathError::AlreadySet { client, server } => {
                write!(
                    f,
                    "the path from host {client} to host {server} is set already"
                )
            }
            PathError::WrongHosts { paths, scenario } => {
                write!(f, "paths for {paths} hosts, the scenario has {scenario}")
            }
            PathError::NotAlternating => write!(
                f,
                "a path is links and middleboxes in turn, starting and ending with a link"
            ),
            PathError::ZeroWeight => write!(f, "a link's weight must be at least 1"),
            PathError::NoSuchMiddlebox(m) => write!(f, "no shared middlebox {m}"),
        }
    }
}

/// A path with a middlebox: per middlebox in client → server order, the link weight before
/// it (cumulative), and the total weight.
struct Routed {
    boxes: Vec<(u64, usize)>,
    total: u64,
}

/// The paths between every pair of hosts, their middleboxes and the segments crossing them.
pub struct Paths {
    hosts: usize,
    /// Per (client, server), the index in `routed` of its path, or NONE for direct.
    pair: Vec<u32>,
    routed: Vec<Routed>,
    middleboxes: Vec<Box<dyn Middlebox>>,
    transits: Vec<Transit>,
    free: Vec<u32>,
    /// Per connection on a path with a middlebox, the tuple its SYN reached the server
    /// with (a NAT rewrites it).
    server_tuples: Vec<Tuple>,
}

/// A segment between hops.
#[derive(Clone, Copy)]
struct Transit {
    ev: Event,
    key: u64,
    depart: Instant,
    delay: u64,
    wire: Wire,
    conn: u32,
    generation: u32,
    path: u32,
    /// The next middlebox, counted in the direction of travel, and its index.
    next: u32,
    middlebox: usize,
}

impl Paths {
    /// Every pair of `hosts` hosts direct.
    pub fn direct(hosts: usize) -> Paths {
        Paths {
            hosts,
            pair: vec![NONE; hosts * hosts],
            routed: Vec::new(),
            middleboxes: Vec::new(),
            transits: Vec::new(),
            free: Vec::new(),
            server_tuples: Vec::new(),
        }
    }

    /// Sets the path from host `client` to host `server` (indices in the scenario's order),
    /// once per pair; nothing changes when it is refused.
    pub fn set(&mut self, client: u16, server: u16, hops: Vec<Hop>) -> Result<(), PathError> {
        for h in [client, server] {
            if usize::from(h) >= self.hosts {
                return Err(PathError::NoSuchHost(h));
            }
        }
        let i = usize::from(client) * self.hosts + usize::from(server);
        if self.pair[i] != NONE {
            return Err(PathError::AlreadySet { client, server });
        }
        let (mut total, mut boxes, mut link_next) = (0u64, Vec::new(), true);
        for hop in hops {
            match (hop, link_next) {
                (Hop::Link { weight: 0 }, true) => return Err(PathError::ZeroWeight),
                (Hop::Link { weight }, true) => total += u64::from(weight),
                (Hop::Middlebox(m), false) => boxes.push((total, Err(m))),
                (Hop::Shared(k), false) if k < self.middleboxes.len() => boxes.push((total, Ok(k))),
                (Hop::Shared(k), false) => return Err(PathError::NoSuchMiddlebox(k)),
                _ => return Err(PathError::NotAlternating),
            }
            link_next = !link_next;
        }
        if link_next || total == 0 {
            return Err(PathError::NotAlternating);
        }
        if boxes.is_empty() {
            return Ok(());
        }
        let mut at = Vec::new();
        for (before, m) in boxes {
            let k = m.unwrap_or_else(|m| self.add(m));
            at.push((before, k));
        }
        self.routed.push(Routed { boxes: at, total });
        self.pair[i] = (self.routed.len() - 1) as u32;
        Ok(())
    }

    /// Adds middlebox `m` for paths to name with [`Hop::Shared`]; its index.
    pub fn add(&mut self, m: Box<dyn Middlebox>) -> usize {
        self.middleboxes.push(m);
        self.middleboxes.len() - 1
    }

    /// The number of hosts the paths join.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// Whether every pair is direct: no middlebox anywhere.
    pub fn all_direct(&self) -> bool {
        debug_assert_eq!(self.routed.is_empty(), self.pair.iter().all(|&p| p == NONE));
        self.routed.is_empty()
    }

    /// Middlebox `k`.
    pub(super) fn middlebox(&mut self, k: usize) -> &mut dyn Middlebox {
        self.middleboxes[k].as_mut()
    }

    /// Takes the middleboxes out, in the order they were set.
    pub(super) fn take_middleboxes(&mut self) -> Vec<Box<dyn Middlebox>> {
        std::mem::take(&mut self.middleboxes)
    }

    /// Per routed path (the index [`Self::routed`] gives), its middleboxes in client →
    /// server order, each with the link weight before it, and the total weight.
    pub(super) fn routes(&self) -> Vec<(Vec<(u64, usize)>, u64)> {
        self.routed
            .iter()
            .map(|r| (r.boxes.clone(), r.total))
            .collect()
    }

    /// The routed path from `client` to `server`, or NONE.
    #[inline]
    pub(super) fn routed(&self, client: u16, server: u16) -> u32 {
        if self.routed.is_empty() {
            return NONE;
        }
        self.pair[usize::from(client) * self.hosts + usize::from(server)]
    }

    /// Middlebox `k`, counted in the direction of travel, of path `p`: its index and when a
    /// segment that departed at `depart` with one-way delay `delay` reaches it.
    fn hop(&self, p: u32, k: u32, dir: Dir, depart: Instant, delay: u64) -> (usize, Instant) {
        let r = &self.routed[p as usize];
        let n = r.boxes.len();
        let (before, mb) = match dir {
            Dir::Up => r.boxes[k as usize],
            Dir::Down => {
                let (w, mb) = r.boxes[n - 1 - k as usize];
                (r.total - w, mb)
            }
        };
        // Rounded down: the last link takes the remainder.
        let part = (u128::from(delay) * u128::from(before) / u128::from(r.total)) as u64;
        (mb, depart + Duration(part))
    }
}

impl Simulation {
    /// Sends segment `seg` of `conn` at `depart`, toward the server (`Dir::Up`) or the
    /// client: it arrives the connection's one-way delay later, through the middleboxes of
    /// its path. Not for an RST to a TIME-WAIT, whose event names its socket ([`Self::route`]).
    pub(super) fn transmit(&mut self, conn: u32, depart: Instant, dir: Dir, seg: Segment) {
        let c = &self.conns[conn as usize];
        let delay = match dir {
            Dir::Up => c.up,
            Dir::Down => c.down,
        };
        let ev = seg.event(conn, c.generation);
        self.route(conn, depart, delay, dir, seg, ev);
    }

    /// Sends `ev`, the arrival of segment `seg` of `conn` after `delay` from `depart`, along
    /// the connection's path.
    pub(super) fn route(
        &mut self,
        conn: u32,
        depart: Instant,
        delay: Duration,
        dir: Dir,
        seg: Segment,
        ev: Event,
    ) {
        let key = self.next_packet_key(conn);
        let c = &self.conns[conn as usize];
        let path = self.paths.routed(c.client, c.server);
        if path == NONE {
            self.push_packet(depart + delay, key, ev);
            return;
        }
        let wire = Wire {
            tuple: match dir {
                Dir::Up => c.tuple,
                Dir::Down => self.server_tuple(conn, c).mirror(),
            },
            seg,
            dir,
            fin: seg == Segment::Response && c.requests_left == 1 && c.closer == Closer::Server,
            seq_end: c.seq_end(seg),
        };
        let t = Transit {
            ev,
            key,
            depart,
            delay: delay.0,
            wire,
            conn,
            generation: c.generation,
            path,
            next: 0,
            middlebox: 0,
        };
        self.forward(t);
    }

    /// The server's view of `conn`'s four-tuple: the client's mirrored, or as the middleboxes
    /// on its path left its SYN.
    #[inline]
    pub(super) fn server_tuple(&self, conn: u32, c: &Conn) -> Tuple {
        if self.paths.routed(c.client, c.server) == NONE {
            return c.tuple.mirror();
        }
        self.paths.server_tuples[conn as usize]
    }

    /// Queues transit `t` at its next middlebox, or at the receiver past the last.
    fn forward(&mut self, mut t: Transit) {
        let n = self.paths.routed[t.path as usize].boxes.len() as u32;
        if t.next == n {
            self.queue
                .push_keyed(t.depart + Duration(t.delay), t.key, t.ev);
            return;
        }
        let at;
        (t.middlebox, at) = self
            .paths
            .hop(t.path, t.next, t.wire.dir, t.depart, t.delay);
        let id = match self.paths.free.pop() {
            Some(id) => {
                self.paths.transits[id as usize] = t;
                id
            }
            None => {
                self.paths.transits.push(t);
                (self.paths.transits.len() - 1) as u32
            }
        };
        self.queue
            .push_keyed(at, t.key, Event::AtHop { transit: id });
    }

    /// A segment reaches a middlebox: seen there, then on to the next hop, its tuple as the
    /// box left it; a SYN the box drops is retransmitted on the client's timer.
    pub(super) fn at_hop(&mut self, id: u32) {
        let mut t = self.paths.transits[id as usize];
        self.paths.free.push(id);
        let mb = &mut self.paths.middleboxes[t.middlebox];
        let pass = mb.segment(self.now, &mut t.wire);
        let current = self.conns[t.conn as usize].generation == t.generation;
        if t.wire.seg == Segment::Syn {
            if pass == Pass::Drop {
                if current {
                    self.arm_syn_retransmit(t.conn, None);
                }
                return;
            }
            if current {
                let i = t.conn as usize;
                if self.paths.server_tuples.len() <= i {
                    self.paths.server_tuples.resize(i + 1, Tuple::default());
                }
                self.paths.server_tuples[i] = t.wire.tuple.mirror();
            }
        }
        t.next += 1;
        self.forward(t);
    }

    /// Schedules an event of `conn` at `at` keyed as its next segment: the server
    /// application's close, which sorts among the connection's packets.
    pub(super) fn schedule(&mut self, at: Instant, conn: u32, make: fn(u32, u32) -> Event) {
        let key = self.next_packet_key(conn);
        let generation = self.conns[conn as usize].generation;
        self.push_packet(at, key, make(conn, generation));
    }

    /// Queues `ev` at `at` with packet key `key`.
    #[inline]
    fn push_packet(&mut self, at: Instant, key: u64, ev: Event) {
        debug_assert!(at >= self.now, "a packet sent into the past");
        // A fixed one-way latency recurs: the queue gives it a FIFO lane.
        let delay = at.0.saturating_sub(self.now.0);
        self.queue.push_after_keyed(self.now, delay, key, ev);
    }

    /// The key of the next segment `conn` sends.
    fn next_packet_key(&mut self, conn: u32) -> u64 {
        let c = &mut self.conns[conn as usize];
        c.stage = c.stage.saturating_add(1);
        crate::engine::packet_key(c.origin, c.stage)
    }
}
