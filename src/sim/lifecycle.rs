//! A connection stepped segment by segment: the reference semantics every fast path must
//! reproduce ([`super::fast`]).
//!
//! Each segment is an event at its receiver ([`Event`]), sent through the connection's path
//! ([`Simulation::transmit`]) the connection's one-way delay after it left:
//!
//! | segment | at | what the kernel does there |
//! |---|---|---|
//! | SYN | server | a TIME-WAIT on the tuple accepts it (ISN or timestamp above its record), answers with an ACK the client resets (§2.4), or drops it silently (FreeBSD, §3.2); a live socket answers with an ACK; else SYN-RECEIVED ([`Simulation::syn`]) |
//! | RST to a TIME-WAIT | server | the client's answer to that ACK ends the TIME-WAIT (§2.4) unless the kernel ignores RSTs there (§3.4) ([`Simulation::rst_at_time_wait`]) |
//! | (no SYN-ACK) | client | the SYN is sent again after the profile's backed-off interval, until `tcp_syn_retries` or the connect timeout: ETIMEDOUT ([`Simulation::syn_retransmit`]) |
//! | SYN-ACK | client | ESTABLISHED: the connect latency; the ACK carries the first request |
//! | ACK | server | ESTABLISHED; the request is served after the service time |
//! | response | client | the next request (not a segment of its own: it reaches the server `up` later, folded into the next response's time), or the close; with the server's FIN after the last when the server closes |
//! | FIN | passive closer | CLOSE-WAIT; the application closes at once: LAST-ACK, its ACK and FIN sent |
//! | FIN-ACK | active closer | TIME-WAIT for the profile's TIME_WAIT (§2.1), or none (`nolocaltimewait` §3.2, `tcp_max_tw_buckets` §2.2) ([`Simulation::active_close`]) |
//! | last ACK | passive closer | CLOSED: the connection is over |
//! | RST | peer | SO_LINGER {on, 0}: closed at once, no TIME-WAIT anywhere (§2.5) |
//!
//! Ports are chosen at connect() by the host's allocator (§1.2, §3.1, §3.3, §4;
//! [`crate::host`]), in `connect.rs`.

use super::Simulation;
use super::path::{Dir, Segment};
use super::record::count_in_pool;
use super::reuse_watch::watched;
use super::run::Event;
use super::time_wait::Closing;
use crate::engine::Class;
use crate::host::{Errno, NONE, SockId, State, SynOnTuple, TimeWait, Tuple};
use crate::profile::TwReject;
use crate::report::Counter;
use crate::time::{Duration, Instant};
use crate::workload::Closer;

/// A connection in progress.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Conn {
    pub(super) generation: u32,
    /// The connection's number, in the order connections were opened, and the segments it
    /// has sent: its packets' keys ([`crate::engine::packet_key`]).
    pub(super) origin: u64,
    pub(super) stage: u32,
    pub(super) wl: u32,
    pub(super) slot: u32,
    pub(super) retry: u32,
    pub(super) client: u16,
    pub(super) server: u16,
    pub(super) csock: SockId,
    pub(super) ssock: SockId,
    /// The client's view of the four-tuple (the server's is [`Simulation::server_tuple`]).
    pub(super) tuple: Tuple,
    pub(super) started: Instant,
    /// When the request now in flight was issued (connect() for the first).
    pub(super) req_start: Instant,
    pub(super) syn_sent: Instant,
    pub(super) syn_tries: u8,
    /// One-way delays client → server and server → client.
    pub(super) up: Duration,
    pub(super) down: Duration,
    pub(super) requests_left: u32,
    pub(super) isn: u32,
    /// The client's TSval offset for this connection.
    pub(super) ts_off: u32,
    pub(super) bytes: u32,
    pub(super) client_fin_at: Instant,
    /// The per-destination pool of the client socket (its `pool`), or NONE.
    pub(super) pool: u32,
    /// Who sends the first FIN: the workload's `closer`, or, on a client pool's connection
    /// (`pooled`), the side the pool or the server's keep-alive decides (`pool.rs`).
    pub(super) closer: Closer,
    pub(super) pooled: bool,
}

impl Conn {
    /// What connect() decided: the client socket, its tuple and pool, the ISN and TSval
    /// offset.
    #[inline]
    pub(super) fn attach(&mut self, sock: SockId, t: Tuple, isn: u32, ts_off: u32, pool: u32) {
        (self.csock, self.tuple, self.isn, self.ts_off, self.pool) = (sock, t, isn, ts_off, pool);
    }

    /// The end of the client's sequence space once it has sent `seg`: ISN + 1 for the SYN,
    /// then its requests' bytes, then 1 for its FIN.
    pub(super) fn seq_end(&self, seg: Segment) -> u32 {
        let sent = match seg {
            Segment::Syn => 1,
            Segment::Ack | Segment::SynAck | Segment::Response => 1 + self.bytes,
            _ => 2 + self.bytes,
        };
        self.isn.wrapping_add(sent)
    }
}

impl Simulation {
    fn timestamps_on(&self, c: &Conn) -> bool {
        self.timestamps_between(c.client, c.server)
    }

    /// Whether both hosts use TCP timestamps, so a TIME-WAIT between them has seen one.
    #[inline]
    pub(super) fn timestamps_between(&self, client: u16, server: u16) -> bool {
        self.hosts[client as usize].profile.timestamps != 0
            && self.hosts[server as usize].profile.timestamps != 0
    }

    pub(super) fn syn(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let client = &self.hosts[c.client as usize];
        let ts = (self.timestamps_on(&c)
            && client
                .profile
                .syn_drop_ts_after
                .is_none_or(|n| c.syn_tries < n))
        .then(|| client.ts_clock(c.syn_sent).wrapping_add(c.ts_off));
        let t = self.server_tuple(conn, &c);
        let server = &mut self.hosts[c.server as usize];
        match server.syn_on_tuple(&t, c.isn, ts, self.now) {
            SynOnTuple::Free => {}
            SynOnTuple::TimeWaitAccepted => self.rec.count(Counter::TwSynAccepted),
            SynOnTuple::TimeWaitRejected {
                sock: tw,
                ack,
                rearm,
            } => {
                self.rec.count(Counter::TwSynRejected);
                if rearm {
                    self.time_wait_rearmed(c.server, tw);
                }
                let server = &self.hosts[c.server as usize];
                if !ack && server.profile.tw_reject == TwReject::Ack {
                    self.rec.count(Counter::TwAckRateLimited);
                }
                if ack {
                    {
                        // The client answers the ACK with RST, which kills the TIME-WAIT
                        // unless the kernel ignores RSTs there (§2.4, §3.4).
                        let ack_at_client = self.now + c.down;
                        if server.profile.tw_rst_kills {
                            let generation = server.sock(tw).generation;
                            let ev = Event::TwRst {
                                host: c.server,
                                sock: tw,
                                generation,
                            };
                            let rst = Segment::RstToTimeWait;
                            self.route(conn, ack_at_client, c.up, Dir::Up, rst, ev);
                        }
                        self.arm_syn_retransmit(conn, Some(ack_at_client));
                    }
                } else {
                    self.arm_syn_retransmit(conn, None);
                }
                return;
            }
            SynOnTuple::Live(_) => {
                self.rec.count(Counter::SynOnLiveSocket);
                let ack_at_client = self.now + c.down;
                self.arm_syn_retransmit(conn, Some(ack_at_client));
                return;
            }
        }
        let ssock = self.hosts[c.server as usize].accept_syn(t, conn);
        self.conns[conn as usize].ssock = ssock;
        self.transmit(conn, self.now, Dir::Down, Segment::SynAck);
    }

    /// The SYN got no SYN-ACK: it was dropped, or answered by an ACK that does not
    /// acknowledge it (`bad_ack_at`, when the client answered that with RST). The next SYN
    /// leaves after the profile's backed-off interval, capped by its connect timeout. On the
    /// first bad ACK Linux re-arms the timer to `TCP_TIMEOUT_MIN` (measured 8–12 ms at
    /// HZ=250, notes/linux-observations I).
    pub(super) fn arm_syn_retransmit(&mut self, conn: u32, bad_ack_at: Option<Instant>) {
        let c = self.conns[conn as usize];
        let p = &self.hosts[c.client as usize].profile;
        let mut at = match (bad_ack_at, p.syn_rearm) {
            (Some(t), Some(rearm)) if c.syn_tries == 0 => t + rearm,
            _ => {
                let local = self.hosts[c.client as usize].has_ip(c.tuple.remote_ip);
                c.syn_sent + p.syn_interval(c.syn_tries, local)
            }
        };
        if let Some(limit) = p.connect_timeout {
            at = at.min(c.started + limit);
        }
        let ev = Event::SynRetransmit {
            conn,
            generation: c.generation,
            tries: c.syn_tries,
        };
        self.queue.push(at, Class::Timer, ev);
    }

    pub(super) fn syn_retransmit(&mut self, conn: u32, tries: u8) {
        let c = self.conns[conn as usize];
        if c.syn_tries != tries
            || self.hosts[c.client as usize].sock(c.csock).state != State::SynSent
        {
            return;
        }
        let p = &self.hosts[c.client as usize].profile;
        let timed_out = p
            .connect_timeout
            .is_some_and(|limit| self.now >= c.started + limit);
        let spent = match p.syn_budget() {
            Some(budget) => self.now >= c.started + budget,
            None => tries >= p.syn_retries,
        };
        if spent || timed_out {
            self.hosts[c.client as usize].destroy(c.csock);
            if c.pooled {
                self.pool_dial_failed(conn);
                if c.requests_left == 0 {
                    // The pool's own connect: counted, retried by the pool, no request.
                    self.free_conn(conn);
                    self.rec.failed(self.now, c.wl as usize, Errno::TimedOut);
                    return;
                }
                self.pool_request_lost(c.wl, c.slot, c.retry);
            }
            self.free_conn(conn);
            self.fail(c.wl, c.slot, c.retry, Errno::TimedOut);
            return;
        }
        self.rec.count(Counter::SynRetransmits);
        let cm = &mut self.conns[conn as usize];
        cm.syn_tries += 1;
        cm.syn_sent = self.now;
        self.transmit(conn, self.now, Dir::Up, Segment::Syn);
    }

    pub(super) fn syn_ack(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let client = &mut self.hosts[c.client as usize];
        client.set_state(c.csock, State::Established);
        self.count_established(c.client, c.csock, self.now);
        self.rec.established(c.wl as usize, self.now - c.started);
        if c.syn_tries > 0 {
            self.rec.stalled(self.now - c.started);
        }
        self.transmit(conn, self.now, Dir::Up, Segment::Ack);
        if c.requests_left == 0 && c.closer == Closer::Client && !c.pooled {
            self.client_close(conn);
        }
    }

    /// A client socket established at `at`, counted for its pool.
    fn count_established(&mut self, host: u16, sock: SockId, at: Instant) {
        let late = u64::from(at >= self.late_from);
        let client = &mut self.hosts[host as usize];
        let pool = client.pool_of_socket(sock);
        let ip = client.sock(sock).tuple.local_ip;
        count_in_pool(client, &mut self.bind_pools, host, pool, ip, late);
    }

    /// Schedules the response to a request that reaches the server at `at_server`.
    pub(super) fn serve(&mut self, conn: u32, at_server: Instant) {
        let c = &self.conns[conn as usize];
        let (wl, pooled) = (c.wl as usize, c.pooled);
        let last = c.requests_left == 1 && c.closer == Closer::Server;
        let service = self.workloads[wl]
            .service_time
            .sample(&mut self.runners[wl].latency);
        let sent = at_server + service;
        let closes = if pooled {
            self.pool_served(conn, sent)
        } else {
            last
        };
        if closes {
            self.schedule(sent, conn, |conn, generation| Event::ServerClose {
                conn,
                generation,
            });
        }
        self.transmit(conn, sent, Dir::Down, Segment::Response);
    }

    pub(super) fn ack(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let server = &mut self.hosts[c.server as usize];
        if server.sock(c.ssock).state == State::SynReceived {
            server.set_state(c.ssock, State::Established);
        }
        if c.requests_left > 0 {
            self.serve(conn, self.now);
        } else if c.pooled {
            // Opened by a pool on its own (HikariCP), not for a request.
            self.pool_ready(conn);
        } else if c.closer == Closer::Server {
            self.server_close(conn);
        }
    }

    pub(super) fn response(&mut self, conn: u32) {
        let wl = self.conns[conn as usize].wl;
        let latency = self.now - self.conns[conn as usize].req_start;
        self.rec.request_done(wl as usize, latency);
        let c = &mut self.conns[conn as usize];
        c.req_start = self.now;
        c.requests_left -= 1;
        c.bytes = c
            .bytes
            .wrapping_add(self.workloads[wl as usize].request_bytes);
        let c = *c;
        if c.requests_left > 0 {
            self.serve(conn, self.now + c.up);
            return;
        }
        if c.pooled {
            self.pool_response(conn);
            return;
        }
        match c.closer {
            Closer::Client => self.client_close(conn),
            Closer::Server => {
                if !self.workloads[wl as usize].linger_zero {
                    self.client_closes_on_fin(conn);
                }
                self.app_done(conn);
            }
        }
    }

    /// The server's FIN reached the client: CLOSE-WAIT, the application reads EOF and
    /// closes at once: LAST-ACK, FIN to the server.
    pub(super) fn client_closes_on_fin(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        self.hosts[c.client as usize].set_state(c.csock, State::LastAck);
        self.conns[conn as usize].client_fin_at = self.now;
        self.transmit(conn, self.now, Dir::Up, Segment::FinAck);
    }

    fn client_close(&mut self, conn: u32) {
        self.client_fin(conn);
        self.app_done(conn);
    }

    /// The client application closes: its FIN, or its RST under SO_LINGER {on, 0}.
    pub(super) fn client_fin(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        if self.workloads[c.wl as usize].linger_zero {
            self.linger_reset(conn, Dir::Up);
        } else {
            self.hosts[c.client as usize].set_state(c.csock, State::FinWait1);
            self.conns[conn as usize].client_fin_at = self.now;
            self.transmit(conn, self.now, Dir::Up, Segment::Fin);
        }
    }

    pub(super) fn server_close(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        if self.workloads[c.wl as usize].linger_zero {
            self.linger_reset(conn, Dir::Down);
        } else {
            self.hosts[c.server as usize].set_state(c.ssock, State::FinWait1);
        }
    }

    /// SO_LINGER {on, 0}: the closing end (the client when its RST goes `Up`) destroys its
    /// socket at once, with no TIME-WAIT, and its four-tuple is watched for reuse (§2.5).
    fn linger_reset(&mut self, conn: u32, rst: Dir) {
        let c = self.conns[conn as usize];
        let h = match rst {
            Dir::Up => {
                self.hosts[c.client as usize].destroy(c.csock);
                self.conns[conn as usize].csock = NONE;
                c.client
            }
            Dir::Down => {
                self.hosts[c.server as usize].destroy(c.ssock);
                self.conns[conn as usize].ssock = NONE;
                c.server
            }
        };
        self.rec.count(Counter::LingerResets);
        let len = self.hosts[h as usize].profile.time_wait;
        self.watch_closed(watched(&self.hosts, c.client, c.pool, c.tuple), len);
        self.transmit(conn, self.now, rst, Segment::Rst);
    }

    /// The client's FIN at the server: CLOSE-WAIT, the server closes at once: LAST-ACK. (A
    /// server's FIN alone, a pool's server keep-alive, reaches the client: the same there.)
    pub(super) fn fin_at_passive(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        if c.closer == Closer::Server {
            self.client_closes_on_fin(conn);
            return;
        }
        self.hosts[c.server as usize].set_state(c.ssock, State::LastAck);
        self.transmit(conn, self.now, Dir::Down, Segment::FinAck);
    }

    /// The active closer receives the peer's FIN (and the ACK of its own): TIME-WAIT.
    pub(super) fn fin_at_active(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let ts_seen = self.timestamps_on(&c);
        let client_closes = c.closer == Closer::Client;
        let (h, sock, back, peer) = if client_closes {
            (c.client, c.csock, Dir::Up, c.tuple.remote_ip)
        } else {
            (c.server, c.ssock, Dir::Down, c.tuple.local_ip)
        };
        let tw = if client_closes {
            TimeWait {
                entry: self.now,
                rcv_nxt: 0,
                ts_recent: 0,
                ts_seen,
            }
        } else {
            // The server's record of the client's sequence space and last timestamp (§2.4).
            let client = &self.hosts[c.client as usize];
            TimeWait {
                entry: self.now,
                rcv_nxt: c.isn.wrapping_add(1).wrapping_add(c.bytes).wrapping_add(1),
                ts_recent: client.ts_clock(c.client_fin_at).wrapping_add(c.ts_off),
                ts_seen,
            }
        };
        let watched = watched(&self.hosts, c.client, c.pool, c.tuple);
        self.active_close(h, Closing::Socket(sock, peer), tw, watched);
        if client_closes {
            self.conns[conn as usize].csock = NONE;
        } else {
            self.conns[conn as usize].ssock = NONE;
        }
        self.transmit(conn, self.now, back, Segment::LastAck);
    }

    /// The passive closer gets the last ACK: CLOSED, the connection is over.
    pub(super) fn last_ack(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let client_closes = c.closer == Closer::Client;
        let (h, sock) = if client_closes {
            (c.server, c.ssock)
        } else {
            (c.client, c.csock)
        };
        self.hosts[h as usize].destroy(sock);
        self.free_conn(conn);
    }

    /// An SO_LINGER {on, 0} RST reaches the peer, which closes at once.
    pub(super) fn rst(&mut self, conn: u32) {
        let c = self.conns[conn as usize];
        let client_closes = c.closer == Closer::Client;
        let (h, sock) = if client_closes {
            (c.server, c.ssock)
        } else {
            (c.client, c.csock)
        };
        if sock != NONE {
            self.hosts[h as usize].destroy(sock);
        }
        self.free_conn(conn);
    }
}
