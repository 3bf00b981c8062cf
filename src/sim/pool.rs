//! A client library's connection pool on the wire ([`crate::client::pool::Pool`]).
//!
//! A pool workload's arrivals (or closed-loop requesters) are requests. A request takes an
//! idle connection to its destination (most recent first, as Go `queueForIdleConn` and
//! urllib3's `LifoQueue` do) and sends on it, or opens a connection, which carries it from
//! its handshake's ACK as any connection does (`lifecycle.rs`); above `max_conns_per_host`
//! it waits, first come first served. After the response (notes/client-libraries.md §1
//! `tryPutIdleConn`):
//!
//! | the pool finds | the connection | TIME-WAIT |
//! |---|---|---|
//! | keep-alive off | closed by the workload's `closer` | that side's |
//! | older than its lifetime | closed by the client | client |
//! | a request waiting for this destination | handed to it | — |
//! | `max_idle_per_host` idle already | closed by the client (`errTooManyIdleHost`) | client |
//! | room | idle; above `max_idle` in all, the oldest idle one closed (`idleLRU`) | client |
//!
//! An idle connection is closed by the client at its idle timeout or its lifetime, whichever
//! comes first, and by the server at the server's keep-alive timeout (its FIN alone, server
//! TIME-WAIT); the server also closes after `keepalive_requests` (its FIN with the response).
//!
//! A pool with `min_idle` (HikariCP, notes §4) opens its own connections: its adder, one
//! thread (`addConnectionExecutor`), runs queued tasks one at a time, each opening one
//! connection if the pool still needs it (`shouldCreateAnotherConnection`: fewer than the
//! maximum, and a request waiting or fewer than `min_idle` idle). Tasks are queued to fill
//! the pool (`fillPool`: min(max − total, min_idle − idle) − queued) at the start, after
//! every close and at each run of the pool's housekeeper (its `sweep`, HikariCP every 30 s,
//! where its idle timeout acts too), and one for a request that finds no idle connection
//! (`addBagItem`). Such a
//! connection, opened with no request, is ready for the pool when the server has the ACK of
//! its handshake (the driver's own handshake, the database's greeting and authentication,
//! is not modelled: its round trips are UNVERIFIED); it then goes to a waiting request or
//! idle. A connect() that fails at once is tried again by the next task, queued 250 ms later
//! (HikariCP's first `sleepBackoff`; its growth by 1.5 is not modelled).
//!
//! Simplifications: a request never crosses a server's FIN. The server's idle timer lapses
//! if the client has taken the connection (its request in flight), and the client stops
//! using a connection the moment the server closes it, not when its FIN arrives.
//!
//! Order: at one instant, a returned connection goes idle (or to a waiter) before any
//! requester's next request, which is queued as an application event; idle lists and the
//! global LRU are keyed by the order connections went idle. O(log n) per event.

use super::Simulation;
use super::path::{Dir, Segment};
use super::run::Event;
use crate::client::pool::{Pool, Reuse};
use crate::engine::Class;
use crate::host::NONE;
use crate::report::PoolCounts;
use crate::rng::stream;
use crate::scenario::Scenario;
use crate::time::Instant;
use crate::workload::Closer;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// Where a pooled connection is, as its pool sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum State {
    /// Dialing or carrying a request.
    #[default]
    Busy,
    Idle,
    /// Closed by either side: the pool no longer counts it.
    Closing,
}

/// A pooled connection's pool state, by connection id.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PoolConn {
    state: State,
    dest: u32,
    /// Requests the server has answered on it; a timer armed at one count lapses at another.
    served: u32,
    idle_key: u64,
    expires: Option<Instant>,
    /// Opened by the pool's adder, not yet ready.
    filling: bool,
}

/// A request waiting for a connection to its destination.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    slot: u32,
    retry: u32,
    since: Instant,
    source: usize,
}

#[derive(Default)]
struct Dest {
    /// Idle connections by the order they went idle.
    idle: BTreeMap<u64, u32>,
    /// Connections dialing, busy or idle.
    open: u32,
    waiting: VecDeque<Waiter>,
    /// Adder tasks queued (a `min_idle` pool).
    queued: u32,
    /// The adder is opening a connection.
    adding: bool,
}

/// Why the client closed a pooled connection.
#[derive(Clone, Copy, Debug)]
enum Reason {
    IdleFull,
    IdleTimeout,
    Lifetime,
    NoKeepAlive,
}

/// One workload's pool.
pub(super) struct ClientPool {
    cfg: Pool,
    dests: Vec<Dest>,
    /// Every idle connection, oldest first (Go `idleLRU`).
    lru: BTreeMap<u64, u32>,
    next_key: u64,
    jitter: ChaCha8Rng,
    /// A `PoolFill` retry is queued: a failed connect() of the adder queues one, not one per
    /// failure, so a pool that cannot connect holds one pending event however many requests
    /// wait.
    retry_armed: bool,
    pub(super) counts: PoolCounts,
}

/// The pools of all workloads, and the pool state of every pooled connection.
#[derive(Default)]
pub(super) struct ClientPools {
    pools: Vec<Option<ClientPool>>,
    conns: Vec<PoolConn>,
}

impl ClientPools {
    /// Each workload's pool, with its own lifetime-jitter stream.
    pub(super) fn new(sc: &Scenario) -> ClientPools {
        let pools = sc
            .workloads
            .iter()
            .map(|w| {
                w.pool.map(|cfg| ClientPool {
                    cfg,
                    dests: (0..w.destinations.len()).map(|_| Dest::default()).collect(),
                    lru: BTreeMap::new(),
                    next_key: 0,
                    jitter: stream(sc.seed, &format!("workload:{}:pool", w.name)),
                    retry_armed: false,
                    counts: PoolCounts::default(),
                })
            })
            .collect();
        ClientPools {
            pools,
            conns: Vec::new(),
        }
    }

    /// Workload `wl`'s pool counts, if it has a pool.
    pub(super) fn counts(&self, wl: usize) -> Option<PoolCounts> {
        self.pools[wl].as_ref().map(|p| p.counts)
    }

    fn pool(&mut self, wl: u32) -> &mut ClientPool {
        self.pools[wl as usize]
            .as_mut()
            .expect("a pool workload's pool")
    }

    /// Pooled `conn`, if it has stayed idle since it went idle after `epoch` requests (a
    /// timer armed then still applies).
    fn idle_since(&self, conn: u32, epoch: u32) -> Option<PoolConn> {
        let pc = self.conns[conn as usize];
        (pc.state == State::Idle && pc.served == epoch).then_some(pc)
    }

    fn conn(&mut self, conn: u32) -> &mut PoolConn {
        let i = conn as usize;
        if i >= self.conns.len() {
            self.conns.resize(i + 1, PoolConn::default());
        }
        &mut self.conns[i]
    }

    /// Takes an idle connection to destination `di` of `wl`'s pool.
    fn take_idle(&mut self, wl: u32, di: usize) -> Option<u32> {
        let p = self.pools[wl as usize].as_mut()?;
        let d = &mut p.dests[di];
        let (key, conn) = match p.cfg.reuse {
            Reuse::Lifo => d.idle.pop_last()?,
            Reuse::Fifo => d.idle.pop_first()?,
        };
        p.lru.remove(&key);
        self.conns[conn as usize].state = State::Busy;
        Some(conn)
    }

    /// Takes idle `conn` out of its lists.
    fn unidle(&mut self, wl: u32, conn: u32) {
        let pc = self.conns[conn as usize];
        let p = self.pool(wl);
        p.dests[pc.dest as usize].idle.remove(&pc.idle_key);
        p.lru.remove(&pc.idle_key);
    }
}

impl Simulation {
    /// A request of pool workload `wl` (closed-loop `slot`, or NONE for an arrival; `retry`
    /// its retry number): an idle connection, a wait, or a new connection.
    // Off the path of workloads without a pool.
    #[cold]
    pub(super) fn pool_request(&mut self, wl: u32, slot: u32, retry: u32) {
        let w = &self.workloads[wl as usize];
        let r = &mut self.runners[wl as usize];
        if r.take(w, self.now, retry > 0, slot == NONE).is_none() {
            return;
        }
        let (si, di) = super::fast::exchange::pick(w, r, &mut self.picks[wl as usize]);
        if let Some(conn) = self.client_pools.take_idle(wl, di) {
            self.pool_send(conn, slot, self.now);
            return;
        }
        let p = self.client_pools.pool(wl);
        let d = &mut p.dests[di];
        if p.cfg.min_idle.is_some() {
            // `ConcurrentBag.borrow`: wait, and `addBagItem(waiting)` queues a task when
            // `waiting - queued >= 0`.
            p.counts.waited += 1;
            d.waiting.push_back(Waiter {
                slot,
                retry,
                since: self.now,
                source: si,
            });
            if d.waiting.len() as u64 >= u64::from(d.queued) {
                d.queued += 1;
            }
            return self.pool_add(wl, di);
        }
        if p.cfg.max_conns_per_host.is_some_and(|cap| d.open >= cap) {
            p.counts.waited += 1;
            d.waiting.push_back(Waiter {
                slot,
                retry,
                since: self.now,
                source: si,
            });
            return;
        }
        self.pool_dial(wl, (slot, retry), self.now, (si, di));
    }

    /// Sends the request of `slot`, issued at `since`, on connection `conn`: it reaches the
    /// server one way later ([`Simulation::serve`]).
    fn pool_send(&mut self, conn: u32, slot: u32, since: Instant) {
        let c = &mut self.conns[conn as usize];
        (c.slot, c.retry, c.req_start, c.requests_left) = (slot, 0, since, 1);
        let at = self.now + c.up;
        self.serve(conn, at);
    }

    /// Opens a connection to destination `di` from source `si` for a request issued at
    /// `since`.
    fn pool_dial(
        &mut self,
        wl: u32,
        (slot, retry): (u32, u32),
        since: Instant,
        (si, di): (usize, usize),
    ) {
        self.pool_open(wl, (slot, retry), since, (si, di), 1);
    }

    /// [`Self::pool_dial`] carrying `requests` (0: the pool's adder opens it); false if
    /// connect() failed at once.
    fn pool_open(
        &mut self,
        wl: u32,
        (slot, retry): (u32, u32),
        since: Instant,
        (si, di): (usize, usize),
        requests: u32,
    ) -> bool {
        self.client_pools.pool(wl).dests[di].open += 1;
        let (out, _, conn) = self.dial(wl, (slot, retry), since, requests, (si, di));
        let p = self.client_pools.pool(wl);
        if out.is_some() {
            p.dests[di].open -= 1;
            return false;
        }
        p.counts.opened += 1;
        let expires = p
            .cfg
            .max_lifetime
            .map(|m| self.now + p.cfg.lifetime_jitter.lifetime(m, &mut p.jitter));
        *self.client_pools.conn(conn) = PoolConn {
            state: State::Busy,
            dest: di as u32,
            served: 0,
            idle_key: 0,
            expires,
            filling: requests == 0,
        };
        true
    }

    /// The adder runs its next queued task, if it is free: a connection opened if the pool
    /// still needs one (HikariCP `PoolEntryCreator.shouldCreateAnotherConnection`).
    fn pool_add(&mut self, wl: u32, di: usize) {
        loop {
            let p = self.client_pools.pool(wl);
            let (min, max) = (
                p.cfg.min_idle.unwrap_or(0),
                p.cfg.max_conns_per_host.unwrap_or(u32::MAX),
            );
            let d = &mut p.dests[di];
            if d.adding || d.queued == 0 {
                return;
            }
            d.queued -= 1;
            if d.open < max && (!d.waiting.is_empty() || (d.idle.len() as u64) < u64::from(min)) {
                d.adding = true;
                if !self.pool_open(wl, (NONE, 0), self.now, (0, di), 0) {
                    let p = self.client_pools.pool(wl);
                    p.dests[di].adding = false;
                    if !std::mem::replace(&mut p.retry_armed, true) {
                        let at = self.now + crate::time::Duration::from_millis(250);
                        self.queue.push(at, Class::App, Event::PoolFill { wl });
                    }
                }
                return;
            }
        }
    }

    /// HikariCP `fillPool` for destination `di`: tasks for min(max − total, min_idle − idle)
    /// − queued connections (total: the connections the pool holds, not the one the adder
    /// is opening).
    fn pool_fill(&mut self, wl: u32, di: usize) {
        let p = self.client_pools.pool(wl);
        let Some(min) = p.cfg.min_idle else {
            return;
        };
        let max = i64::from(p.cfg.max_conns_per_host.unwrap_or(u32::MAX));
        let d = &mut p.dests[di];
        let total = i64::from(d.open) - i64::from(d.adding);
        let n = (max - total).min(i64::from(min) - d.idle.len() as i64) - i64::from(d.queued);
        if n > 0 {
            d.queued += n as u32;
        }
        self.pool_add(wl, di);
    }

    /// The pool of `wl` fills every destination (at the start, after a connect() of its
    /// adder failed at once, and at each run of its `housekeeper`, which queues the next).
    // Off the path of workloads without a pool.
    #[cold]
    pub(super) fn pool_fill_all(&mut self, wl: u32, housekeeper: bool) {
        if !housekeeper {
            self.client_pools.pool(wl).retry_armed = false;
        }
        for di in 0..self.client_pools.pool(wl).dests.len() {
            self.pool_fill(wl, di);
        }
        if let (true, Some(s)) = (housekeeper, self.client_pools.pool(wl).cfg.sweep) {
            let ev = Event::PoolHousekeeper { wl };
            self.queue.push(self.now + s.every, Class::App, ev);
        }
    }

    /// A connection the adder opened is ready (the server has its handshake's ACK): to a
    /// waiting request or idle; the adder takes its next task.
    // Off the path of workloads without a pool.
    #[cold]
    pub(super) fn pool_ready(&mut self, conn: u32) {
        let wl = self.conns[conn as usize].wl;
        let pc = &mut self.client_pools.conns[conn as usize];
        pc.filling = false;
        let di = pc.dest as usize;
        self.client_pools.pool(wl).dests[di].adding = false;
        self.pool_return(conn);
        self.pool_add(wl, di);
    }

    /// The server answers a request on pooled `conn`, sending at `sent`: whether it closes
    /// after this response (keep-alive off with `closer = "server"`, or its
    /// `keepalive_requests` reached); else its keep-alive timer armed.
    // Off the path of workloads without a pool.
    #[cold]
    pub(super) fn pool_served(&mut self, conn: u32, sent: Instant) -> bool {
        let c = self.conns[conn as usize];
        let closer = self.workloads[c.wl as usize].closer;
        let pc = self.client_pools.conn(conn);
        pc.served += 1;
        let served = pc.served;
        let cfg = self.client_pools.pool(c.wl).cfg;
        let closes = (!cfg.keep_alive && closer == Closer::Server)
            || cfg.server.requests.is_some_and(|n| served >= n);
        if closes {
            self.conns[conn as usize].closer = Closer::Server;
        } else if let (true, Some(t)) = (cfg.keep_alive, cfg.server.timeout) {
            let ev = Event::ServerIdle {
                conn,
                generation: c.generation,
                epoch: served,
            };
            self.queue.push(sent + t, Class::App, ev);
        }
        closes
    }

    /// The response on pooled `conn` reached the client: the connection closes (the server's
    /// FIN came with it) or goes back to the pool, and a closed-loop requester issues its
    /// next request.
    // Off the path of workloads without a pool.
    #[cold]
    pub(super) fn pool_response(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        self.client_pools.pool(c.wl).counts.requests += 1;
        if c.closer == Closer::Server {
            self.client_pools.conn(conn).state = State::Closing;
            self.client_pools.pool(c.wl).counts.closed_by_server += 1;
            if !self.workloads[c.wl as usize].linger_zero {
                self.client_closes_on_fin(conn);
            }
            self.pool_gone(c.wl, conn);
        } else {
            self.pool_return(conn);
        }
        if c.slot != NONE {
            let ev = Event::Start {
                wl: c.wl,
                slot: c.slot,
                retry: 0,
            };
            self.queue.push(self.now, Class::App, ev);
        }
    }

    /// Pooled `conn` is back from a request: to a waiter, idle, or closed.
    fn pool_return(&mut self, conn: u32) {
        let wl = self.conns[conn as usize].wl;
        let pc = self.client_pools.conns[conn as usize];
        let now = self.now;
        let p = self.client_pools.pool(wl);
        if !p.cfg.keep_alive {
            // The client closes (with `closer = "server"` the server's FIN came with the
            // response: `pool_response`).
            return self.pool_close(conn, Reason::NoKeepAlive);
        }
        if pc.expires.is_some_and(|e| e <= now) {
            return self.pool_close(conn, Reason::Lifetime);
        }
        let d = &mut p.dests[pc.dest as usize];
        if let Some(w) = d.waiting.pop_front() {
            return self.pool_send(conn, w.slot, w.since);
        }
        if d.idle.len() >= p.cfg.max_idle_per_host as usize {
            return self.pool_close(conn, Reason::IdleFull);
        }
        let key = p.next_key;
        p.next_key += 1;
        d.idle.insert(key, conn);
        p.lru.insert(key, conn);
        let sweep = p.cfg.sweep;
        let tick = |t: Instant, swept: bool| match sweep {
            Some(s) if swept => Instant(s.next(t.0)),
            _ => t,
        };
        let idle_due = p.cfg.idle_timeout.map(|t| tick(now + t, true));
        let life_due = pc
            .expires
            .map(|e| tick(e, sweep.is_some_and(|s| s.lifetime)));
        let due = match (idle_due, life_due) {
            (Some(i), Some(l)) => Some(i.min(l)),
            (i, l) => i.or(l),
        };
        let oldest = p
            .cfg
            .max_idle
            .filter(|&m| p.lru.len() > m as usize)
            .and_then(|_| p.lru.first_key_value().map(|(_, &c)| c));
        let pcm = &mut self.client_pools.conns[conn as usize];
        (pcm.state, pcm.idle_key) = (State::Idle, key);
        if let Some(due) = due {
            let ev = Event::PoolTimer {
                conn,
                generation: self.conns[conn as usize].generation,
                epoch: pc.served,
            };
            self.queue.push(due, Class::App, ev);
        }
        if let Some(old) = oldest {
            self.client_pools.unidle(wl, old);
            self.pool_close(old, Reason::IdleFull);
        }
    }

    /// The client closes pooled `conn` for `why`: its FIN (or RST under SO_LINGER 0), and a
    /// waiting request may dial.
    fn pool_close(&mut self, conn: u32, why: Reason) {
        let wl = self.conns[conn as usize].wl;
        self.client_pools.conns[conn as usize].state = State::Closing;
        let n = &mut self.client_pools.pool(wl).counts;
        match why {
            Reason::IdleFull => n.closed_idle_full += 1,
            Reason::IdleTimeout => n.closed_idle_timeout += 1,
            Reason::Lifetime => n.closed_lifetime += 1,
            Reason::NoKeepAlive => n.closed_no_keep_alive += 1,
        }
        self.conns[conn as usize].closer = Closer::Client;
        self.client_fin(conn);
        self.pool_gone(wl, conn);
    }

    /// Pooled `conn` no longer counts towards its destination's connections: the first
    /// request waiting for one dials.
    fn pool_gone(&mut self, wl: u32, conn: u32) {
        let pc = self.client_pools.conns[conn as usize];
        let di = pc.dest as usize;
        let p = self.client_pools.pool(wl);
        let d = &mut p.dests[di];
        d.open -= 1;
        if p.cfg.min_idle.is_some() {
            // HikariCP `closeConnection` → `fillPool`.
            d.adding &= !pc.filling;
            return self.pool_fill(wl, di);
        }
        // The longest waiting request dials in its place; if connect() fails at once, the
        // next one tries (none is left waiting with no connection in flight to wake it).
        while let Some(w) = self.client_pools.pool(wl).dests[di].waiting.pop_front() {
            if self.pool_open(wl, (w.slot, w.retry), w.since, (w.source, di), 1) {
                break;
            }
        }
    }

    /// Pooled `conn`'s connect failed (its retry is the workload's `on_error`).
    pub(super) fn pool_dial_failed(&mut self, conn: u32) {
        let wl = self.conns[conn as usize].wl;
        self.client_pools.conns[conn as usize].state = State::Closing;
        self.pool_gone(wl, conn);
    }

    /// The client's idle timer or lifetime of pooled `conn`, armed when it went idle after
    /// `epoch` requests: it closes the connection if still idle since.
    pub(super) fn pool_timer(&mut self, conn: u32, epoch: u32) {
        let Some(pc) = self.client_pools.idle_since(conn, epoch) else {
            return;
        };
        let wl = self.conns[conn as usize].wl;
        let why = if pc.expires.is_some_and(|e| e <= self.now) {
            Reason::Lifetime
        } else {
            Reason::IdleTimeout
        };
        let p = self.client_pools.pool(wl);
        if let (Reason::IdleTimeout, Some(min)) = (why, p.cfg.min_idle)
            && p.dests[pc.dest as usize].idle.len() as u64 <= u64::from(min)
        {
            // HikariCP's housekeeper closes idle connections only down to minimumIdle; this
            // one stays, and is looked at again at its next run (or its lifetime).
            if let Some(s) = p.cfg.sweep {
                let next = Instant(s.next(self.now.0 + 1));
                let at = pc.expires.map_or(next, |e| e.min(next));
                let ev = Event::PoolTimer {
                    conn,
                    generation: self.conns[conn as usize].generation,
                    epoch,
                };
                self.queue.push(at, Class::App, ev);
            }
            return;
        }
        self.client_pools.unidle(wl, conn);
        self.pool_close(conn, why);
    }

    /// The server's keep-alive timer of `conn`, armed at its response to request `epoch`:
    /// if the connection is still idle, the server closes it (its FIN alone; the client's
    /// application closes on it at once: server TIME-WAIT).
    pub(super) fn server_idle(&mut self, conn: u32, epoch: u32) {
        if self.client_pools.idle_since(conn, epoch).is_none() {
            return;
        }
        let wl = self.conns[conn as usize].wl;
        self.client_pools.unidle(wl, conn);
        self.client_pools.conns[conn as usize].state = State::Closing;
        self.client_pools.pool(wl).counts.closed_by_server += 1;
        self.conns[conn as usize].closer = Closer::Server;
        self.server_close(conn);
        if !self.workloads[wl as usize].linger_zero {
            self.transmit(conn, self.now, Dir::Down, Segment::Fin);
        }
        self.pool_gone(wl, conn);
    }
}
