//! The application side of a connection: socket, optional bind(), connect() (§1), and what
//! a failure does (the workload's `on_error`).

use super::Simulation;
use super::fast::exchange::Flight;
use super::lifecycle::Conn;
use super::path::{Dir, Segment};
use super::reuse_watch::{Watched, watched};
use super::run::Event;
use crate::engine::Class;
use crate::host::{Errno, Host, NONE, SockId, Tuple};
use crate::report::Counter;
use crate::time::{Duration, Instant};
use crate::workload::{Admit, AfterFailure, Mode};

/// Where a connection's socket came from: (socket, ports probed, a TIME-WAIT recycled on
/// the way), or the error and the ports probed.
type Placed = Result<(SockId, u32, bool), (Errno, u32)>;

impl Simulation {
    /// The application opens a connection of `wl` (closed-loop `slot`, or NONE for an
    /// open-loop arrival; `retry` its retry number): socket, optional bind, connect(), once
    /// the slot's thread is free ([`crate::workload::Threads`]); the thread is then busy for
    /// the port search's cost ([`crate::profile::ConnectCost`]). Returns the error and probes
    /// when connect() failed at once.
    pub(super) fn start(&mut self, wl: u32, slot: u32, retry: u32) -> Option<(Errno, u32)> {
        if self.workloads[wl as usize].pool.is_some() {
            self.pool_request(wl, slot, retry);
            return None;
        }
        let threads = &mut self.runners[wl as usize].threads;
        let since = match threads.admit(slot, retry, self.now) {
            Admit::Now { since } => since,
            Admit::Wait(at) => {
                if let Some(at) = at {
                    self.queue
                        .push(at, Class::App, Event::Start { wl, slot, retry });
                }
                return None;
            }
        };
        let (out, busy) = self.start_now(wl, slot, retry, since);
        let until = self.now + busy;
        if let Some((slot, retry)) = self.runners[wl as usize].threads.release(slot, until) {
            self.queue
                .push(until, Class::App, Event::Start { wl, slot, retry });
        }
        out
    }

    /// [`Simulation::start`] once the thread is free: the application asked at `since`.
    /// Also returns how long the port search held the thread.
    #[inline]
    fn start_now(
        &mut self,
        wl: u32,
        slot: u32,
        retry: u32,
        since: Instant,
    ) -> (Option<(Errno, u32)>, Duration) {
        let w = &self.workloads[wl as usize];
        let r = &mut self.runners[wl as usize];
        let Some(requests) = r.take(w, self.now, retry > 0, slot == NONE) else {
            return (None, Duration::ZERO);
        };
        let picked = super::fast::exchange::pick(w, r, &mut self.picks[wl as usize]);
        let (out, busy, _) = self.dial(wl, (slot, retry), since, requests, picked);
        (out, busy)
    }

    /// A connection of `wl` from source `si` to destination `di` carrying `requests`, the
    /// application having asked at `since`: connect(), then the SYN once the port search is
    /// done. Also returns how long the search held the thread, and the connection (NONE for
    /// a whole exchange or a failure).
    #[inline(always)]
    pub(super) fn dial(
        &mut self,
        wl: u32,
        (slot, retry): (u32, u32),
        since: Instant,
        requests: u32,
        (si, di): (usize, usize),
    ) -> (Option<(Errno, u32)>, Duration, u32) {
        let w = &self.workloads[wl as usize];
        let r = &mut self.runners[wl as usize];
        let (src, dst) = (w.sources[si], w.destinations[di]);
        let conn_pool = self.conn_pools[wl as usize]
            .get(di * w.sources.len() + si)
            .map(|&(_, pool)| pool);
        let rtt = w.rtt.sample(&mut r.latency);
        let up = Duration(rtt.0 / 2);
        let w_pooled = w.pool.is_some();
        // A whole exchange needs no connection record: the one event queued for it, its
        // TIME-WAIT entry or expiry, finds the connection in `flights` or names the socket.
        let origin = self.origins;
        let conn = if self.exchanges[wl as usize].is_some() {
            self.origins += 1;
            NONE
        } else {
            self.new_conn(Conn {
                wl,
                slot,
                retry,
                client: src.host,
                server: dst.host,
                csock: NONE,
                ssock: NONE,
                pool: NONE,
                started: since,
                req_start: since,
                syn_sent: self.now,
                up,
                down: Duration(rtt.0 - up.0),
                requests_left: requests,
                // A kept-alive pooled connection is closed by the pool (the client) or by
                // the server's keep-alive limits (`pool_served`), not after each response.
                closer: match w.pool {
                    Some(p) if p.keep_alive => crate::workload::Closer::Client,
                    _ => w.closer,
                },
                pooled: w.pool.is_some(),
                ..Conn::default()
            })
        };
        self.rec.attempt(wl as usize, retry > 0);
        let placed = self.place(wl, src, dst, conn_pool, conn);
        let probes = match placed {
            Ok((_, probes, _)) | Err((_, probes)) => probes,
        };
        let busy = self.search_cost(wl, src.host, probes);
        match placed {
            Err((errno, probes)) => {
                if w_pooled && requests == 0 {
                    // The pool's own connect (HikariCP's adder): no request to apply the
                    // workload's policy to; the pool retries it (`pool_add`).
                    self.rec.probes(probes);
                    if conn != NONE {
                        self.free_conn(conn);
                    }
                    self.rec.failed(self.now, wl as usize, errno);
                    return (Some((errno, probes)), busy, NONE);
                }
                if w_pooled {
                    self.pool_request_lost(wl, slot, retry);
                }
                self.refused(
                    wl,
                    (slot, retry),
                    conn,
                    (errno, probes),
                    (src.host, conn_pool, busy),
                );
                (Some((errno, probes)), busy, NONE)
            }
            Ok((sock, probes, recycled)) => {
                self.rec.probes(probes);
                if recycled {
                    self.rec.count(Counter::TwRecycled);
                }
                let depart = self.now + busy;
                self.connected(wl, conn, origin, sock, (src.host, dst.host), depart);
                (None, busy, conn)
            }
        }
    }

    /// The CPU time a port search of `wl` on `client` that examined `probes` candidates
    /// holds the thread, counted for the workload: one call, or one bind() per port tried
    /// over an explicit range. bind(ip, 0) then connect() is charged as one search
    /// (UNVERIFIED: its cost is assumed to be connect()'s; only connect() is calibrated).
    #[inline]
    fn search_cost(&mut self, wl: u32, client: u16, probes: u32) -> Duration {
        let cost = self.hosts[client as usize].profile.connect_cost;
        if cost.is_zero() {
            return Duration::ZERO;
        }
        let busy = match self.workloads[wl as usize].mode {
            Mode::Explicit { .. } => cost.of_calls(probes, probes),
            _ => cost.of(probes),
        };
        self.rec.workloads[wl as usize].port_search_cpu.0 += busy.0;
        busy
    }

    /// The socket of a connection of `wl` from `src` to `dst`, by the workload's mode:
    /// connect() from a pool (§1.2), bind(ip, 0) then connect() (§1.6), or bind() to the
    /// next port of an explicit range then connect().
    #[inline(always)]
    fn place(
        &mut self,
        wl: u32,
        src: crate::workload::Source,
        dst: crate::workload::Destination,
        conn_pool: Option<u32>,
        conn: u32,
    ) -> Placed {
        let w = &self.workloads[wl as usize];
        let (range, reuse) = (w.local_port_range, w.reuseaddr);
        let host = &mut self.hosts[src.host as usize];
        let connected = |host: &mut Host, sock: SockId, probes: u32| match host
            .connect_bound(sock, dst.ip, dst.port)
        {
            Ok(recycled) => Ok((sock, probes, recycled)),
            Err(errno) => {
                host.destroy(sock);
                Err((errno, probes))
            }
        };
        match w.mode {
            Mode::Connect | Mode::BindNoPort => host
                .connect_in(
                    conn_pool.expect("pool registered at build"),
                    self.now,
                    src.ip,
                    dst.ip,
                    dst.port,
                    range,
                    conn,
                )
                .map(|p| (p.sock, p.probes, p.recycled))
                .map_err(|e| (e.errno, e.probes)),
            Mode::Bind => match host.bind_any(src.ip, reuse, conn) {
                Err(e) => Err((e.errno, e.probes)),
                Ok(p) => connected(host, p.sock, p.probes),
            },
            Mode::Explicit { low, high } => {
                let r = &mut self.runners[wl as usize];
                let span = u32::from(high) - u32::from(low) + 1;
                let mut tries = 0;
                while tries < span {
                    let port = r.cursor;
                    r.cursor = if port >= high { low } else { port + 1 };
                    tries += 1;
                    if let Ok(sock) = host.bind_port(src.ip, port, reuse, conn) {
                        return connected(host, sock, tries);
                    }
                }
                Err((Errno::AddrInUse, tries))
            }
        }
    }

    /// A pool's request whose dial failed: it has no other connection, so unless the
    /// workload's policy retries it, it fails with its dial (counted here when the policy
    /// itself would not count it: `on_error = "count"`, or `stop`).
    #[cold]
    pub(super) fn pool_request_lost(&mut self, wl: u32, slot: u32, retry: u32) {
        let policy = self.workloads[wl as usize].on_error;
        let (next, gave_up) = policy.after_failure(retry, slot != NONE);
        let retried = matches!(next, AfterFailure::Start { retry: r, .. } if r > 0);
        if !gave_up && !retried {
            self.rec.request_failed(wl as usize);
        }
    }

    /// connect() of `wl` failed at once, after holding its thread for `busy`: counted, and
    /// the worker parked where its retries can be counted in bulk ([`super::fast::parked`]),
    /// else the workload's policy applied from the end of the search.
    fn refused(
        &mut self,
        wl: u32,
        (slot, retry): (u32, u32),
        conn: u32,
        (errno, probes): (Errno, u32),
        (client, conn_pool, busy): (u16, Option<u32>, Duration),
    ) {
        self.rec.probes(probes);
        if conn != NONE {
            self.free_conn(conn);
        }
        let mode = self.workloads[wl as usize].mode;
        if self.bulk && slot != NONE && matches!(mode, Mode::Connect | Mode::BindNoPort) {
            let host = &self.hosts[client as usize];
            let exhausted = conn_pool.filter(|p| host.pools[*p as usize].free == 0);
            if let Some(pool) = exhausted
                && self.park(wl, slot, retry, errno, probes, (client, pool, busy))
            {
                return;
            }
        }
        self.fail_after(wl, slot, retry, errno, busy);
    }

    /// connect() of `wl` gave socket `sock` on host `client`, toward host `server`: the ISN
    /// drawn, the port logged and checked against the reuse watch, and the SYN sent at
    /// `depart` (the port search done), or the connection kept as a whole exchange's flight.
    #[inline(always)]
    fn connected(
        &mut self,
        wl: u32,
        conn: u32,
        origin: u64,
        sock: SockId,
        (client, server): (u16, u16),
        depart: Instant,
    ) {
        let host = &mut self.hosts[client as usize];
        let tuple = host.sock(sock).tuple;
        let whole = self.exchanges[wl as usize].is_some();
        let (isn, ts_off) = if !whole || host.isn_draw_has_effects() {
            (host.isn(&tuple, self.now), host.ts_offset(&tuple))
        } else {
            (0, 0)
        };
        let pool = host.sock(sock).pool;
        let pool_or_wide = host.pool_of_socket(sock);
        let watched = watched(&self.hosts, client, pool, tuple);
        self.note_port(client, pool_or_wide, tuple, watched);
        if self.exchanges[wl as usize].is_none() {
            let c = &mut self.conns[conn as usize];
            c.attach(sock, tuple, isn, ts_off, pool);
            c.syn_sent = depart;
            self.transmit(conn, depart, Dir::Up, Segment::Syn);
            return;
        }
        debug_assert_eq!(depart, self.now, "whole exchanges decline a search cost");
        self.syn_to_gateway(wl, client, server, tuple);
        let flight = Flight {
            at: self.now,
            origin,
            pool: pool_or_wide.unwrap_or(NONE),
            ip: tuple.local_ip,
            client,
            server,
            sock,
            port: tuple.local_port,
            ts_seen: self.timestamps_between(client, server),
        };
        self.keep_flight(wl, flight);
    }

    /// connect() on `client` took the port of `tuple` from `pool` (None: a bind pool's): logged
    /// when ports are recorded, and an unprotected reuse counted if the tuple is `watched`.
    #[inline(always)]
    pub(super) fn note_port(
        &mut self,
        client: u16,
        pool: Option<u32>,
        tuple: Tuple,
        watched: Watched,
    ) {
        if let Some(log) = &mut self.port_use {
            let (ip, port) = (tuple.local_ip, tuple.local_port);
            log.record(&self.bind_pools, client, pool, ip, port);
        }
        if self.watch.reused(&mut self.hosts, watched, self.now) {
            self.rec.unprotected_reuse += 1;
        }
    }

    /// An open-loop arrival, or its retry number `retry`, starts a connection.
    #[inline(always)]
    pub(super) fn start_open(&mut self, wl: u32, retry: u32) {
        if self.exchanges[wl as usize]
            .as_ref()
            .is_some_and(|x| x.pooled)
        {
            self.start_whole(wl, retry);
        } else {
            self.start(wl, NONE, retry);
        }
    }

    /// A connect attempt failed with `errno`: count it and apply the workload's policy.
    pub(super) fn fail(&mut self, wl: u32, slot: u32, retry: u32, errno: Errno) {
        self.fail_after(wl, slot, retry, errno, Duration::ZERO);
    }

    /// [`Simulation::fail`] for a connect() that held its thread for `busy`: the failure
    /// counted now, its retry or next request waiting from the end of the search.
    fn fail_after(&mut self, wl: u32, slot: u32, retry: u32, errno: Errno, busy: Duration) {
        self.rec.failed(self.now, wl as usize, errno);
        let policy = self.workloads[wl as usize].on_error;
        let (next, gave_up) = policy.after_failure(retry, slot != NONE);
        if gave_up {
            self.rec.request_failed(wl as usize);
        }
        match next {
            AfterFailure::Start { wait, retry } => {
                self.queue.push(
                    self.now + busy + wait,
                    Class::App,
                    Event::Start { wl, slot, retry },
                );
            }
            AfterFailure::Idle => {}
            AfterFailure::Stop => {
                self.runners[wl as usize].stopped = true;
                self.rec.workloads[wl as usize]
                    .stopped_at
                    .get_or_insert(self.now);
            }
        }
    }

    /// The client application is done with a connection: a closed-loop slot starts the next.
    pub(super) fn app_done(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        if c.slot != NONE && !c.pooled {
            self.queue.push(
                self.now,
                Class::App,
                Event::Start {
                    wl: c.wl,
                    slot: c.slot,
                    retry: 0,
                },
            );
        }
    }

    #[inline(always)]
    fn new_conn(&mut self, c: Conn) -> u32 {
        self.live_conns += 1;
        let c = Conn {
            origin: self.origins,
            stage: 0,
            ..c
        };
        self.origins += 1;
        match self.free_conns.pop() {
            Some(id) => {
                let generation = self.conns[id as usize].generation;
                self.conns[id as usize] = Conn { generation, ..c };
                id
            }
            None => {
                self.conns.push(c);
                (self.conns.len() - 1) as u32
            }
        }
    }

    pub(super) fn free_conn(&mut self, id: u32) {
        let c = &mut self.conns[id as usize];
        c.generation = c.generation.wrapping_add(1);
        self.live_conns -= 1;
        self.free_conns.push(id);
    }

    /// `n` connects of `wl` that failed at once on an exhausted pool, as `start` and `fail`
    /// record them: counted, the round-robin position moved on, and the conn slot each took
    /// from the top of the free list given back one generation on.
    pub(super) fn count_failures(
        &mut self,
        wl: u32,
        retry: bool,
        errno: Errno,
        probes: u32,
        n: u64,
    ) {
        if n == 0 {
            return;
        }
        self.rec
            .failed_attempts(wl as usize, retry, errno, probes, n);
        let client = self.workloads[wl as usize].sources[0].host;
        let cost = self.hosts[client as usize].profile.connect_cost;
        self.rec.workloads[wl as usize].port_search_cpu.0 += cost.of(probes).0 * n;
        self.runners[wl as usize].skip(&self.workloads[wl as usize], n);
        if let Some(&id) = self.free_conns.last() {
            let c = &mut self.conns[id as usize];
            c.generation = c.generation.wrapping_add(n as u32);
        }
    }
}
