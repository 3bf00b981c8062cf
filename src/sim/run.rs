//! The run loop and the order of events.
//!
//! Events run in time order; at one instant, by the engine's rule ([`crate::engine`]):
//! kernel timers first (TIME-WAIT expiry, reusability, SYN retransmission), then packets
//! (by connection in the order connections were opened, then by segment), then the
//! applications (connect(), retries) in the order they were scheduled. A timer due at `t`
//! has fired when anything else at `t` reads the tables, and a port whose TIME-WAIT ends at
//! `t` is free for a connect() at `t`, as in the kernel, whose softirq processes timers and
//! segments before the application runs.
//!
//! Some events that are not segments are keyed as packets of their connection, so that they
//! sort among its segments as they would in the kernel: the server application's close
//! after its last response ([`Simulation::schedule`]), a whole exchange's TIME-WAIT entry
//! (keyed as its FIN-ACK), and a segment reaching a middlebox ([`Event::AtHop`]).
//!
//! The fast paths keep this order without queueing every event: a packet's key is its
//! connection's number and segment number ([`crate::engine::packet_key`]), so a segment can
//! be queued when its time is known; a stream's next event runs at once only if it sorts
//! before everything queued ([`Simulation::stream`]); a parked retry keeps the place its
//! event would have had ([`super::fast::parked`]). Bins close before the first event at or
//! after their end, with the gauges as they stand then.

use super::check::Violation;
use super::{Simulation, path};
use crate::engine::{Class, Queue};
use crate::host::{NONE, SockId};
use crate::report::Report;
use crate::time::Instant;

/// What happens; the segments are in `lifecycle.rs`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Event {
    /// The next event of open-loop workload `wl`'s [`super::fast::stream::Stream`]: an arrival, or the TIME-WAIT
    /// entry of its next whole exchange.
    Stream {
        wl: u32,
    },
    /// A closed-loop slot (or a retry) starts a connection.
    Start {
        wl: u32,
        slot: u32,
        retry: u32,
    },
    Syn {
        conn: u32,
        generation: u32,
    },
    SynAck {
        conn: u32,
        generation: u32,
    },
    /// The handshake's ACK, carrying the first request, reaches the server.
    Ack {
        conn: u32,
        generation: u32,
    },
    /// A response reaches the client (with the server's FIN after the last, if it closes).
    Response {
        conn: u32,
        generation: u32,
    },
    /// The server application closes after sending its last response.
    ServerClose {
        conn: u32,
        generation: u32,
    },
    /// The client's FIN reaches the server (client closes first).
    FinAtPassive {
        conn: u32,
        generation: u32,
    },
    /// The passive side's ACK and FIN reach the active closer: TIME-WAIT.
    FinAtActive {
        conn: u32,
        generation: u32,
    },
    /// The last ACK reaches the passive side: CLOSED.
    LastAck {
        conn: u32,
        generation: u32,
    },
    /// The RST of an SO_LINGER {on, 0} close reaches the peer.
    Rst {
        conn: u32,
        generation: u32,
    },
    SynRetransmit {
        conn: u32,
        generation: u32,
        tries: u8,
    },
    /// The client's RST, answering a TIME-WAIT's ACK, reaches that TIME-WAIT.
    TwRst {
        host: u16,
        sock: SockId,
        generation: u32,
    },
    TwExpire {
        host: u16,
        sock: SockId,
        generation: u32,
    },
    /// A TIME-WAIT entered without a socket ([`crate::host::Host::time_wait_unseen`]) ends: `port` of
    /// `pool` on `host` is free.
    UnseenExpire {
        host: u16,
        pool: u32,
        port: u16,
    },
    TwReusable {
        host: u16,
        sock: SockId,
        generation: u32,
    },
    /// A segment reaches a middlebox on its path ([`super::path`]).
    AtHop {
        transit: u32,
    },
    /// A client pool's idle timer or lifetime of an idle connection ([`super::pool`]),
    /// armed after `epoch` requests.
    PoolTimer {
        conn: u32,
        generation: u32,
        epoch: u32,
    },
    /// A pool that opens its own connections fills itself ([`super::pool`]): at the start,
    /// and after its adder's connect() failed at once.
    PoolFill {
        wl: u32,
    },
    /// A run of the housekeeper of such a pool: it fills the pool and queues its next run.
    PoolHousekeeper {
        wl: u32,
    },
    /// A server's keep-alive timer of a pooled connection, armed at its response to
    /// request `epoch`.
    ServerIdle {
        conn: u32,
        generation: u32,
        epoch: u32,
    },
}

impl Simulation {
    /// Runs to the end, or to the first broken invariant in checking mode.
    pub fn run_checked(mut self) -> Result<(Report, u64), Violation> {
        self.run_to_end()?;
        let events = self.events;
        Ok((self.report(), events))
    }

    /// Runs to the end, and the report with the middleboxes of the paths as they ended
    /// ([`path::Middlebox::counters`]).
    pub fn run_with_middleboxes(mut self) -> (Report, Vec<Box<dyn path::Middlebox>>) {
        if let Err(v) = self.run_to_end() {
            panic!("{v}");
        }
        let boxes = self.paths.take_middleboxes();
        (self.report(), boxes)
    }

    /// Runs every event to the end and closes the last bins; the first broken invariant in
    /// checking mode. A run given up after a cloud gateway dropped a whole exchange's SYN
    /// starts again, stepped across the gateways ([`super::fast::gateway`]).
    fn run_to_end(&mut self) -> Result<(), Violation> {
        loop {
            let run = self.run_once();
            if !self.gateways.restart {
                return run;
            }
            self.restart_stepping();
        }
    }

    /// [`Self::run_to_end`] once; given up when a gateway asks for a restart.
    fn run_once(&mut self) -> Result<(), Violation> {
        loop {
            let next = self.queue.pop_keyed(self.end);
            if !self.parked.is_empty() {
                let until = next.as_ref().map_or((self.end, Class::Timer, (0, 0)), |e| {
                    let (class, place) = Queue::<Event>::place(e.1);
                    (e.0, class, place)
                });
                self.run_parked(until);
            }
            let Some((at, _, ev)) = next else {
                break;
            };
            self.begin_event(at);
            self.dispatch(ev);
            if self.gateways.restart {
                return Ok(());
            }
            if !self.parked.is_empty() {
                self.release_parked();
            }
            if self.check {
                self.audit_event();
                if let Some(v) = self.violation.take() {
                    return Err(v);
                }
            }
        }
        while self.rec.bin_end <= self.end {
            let end = self.rec.bin_end;
            self.close_bin(end);
        }
        if self.rec.bin_end.0 - self.rec.bin.0 < self.end.0 {
            self.close_bin(self.end);
        }
        self.now = self.end;
        if self.check {
            self.audit_tables();
        }
        match self.violation.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// The run reaches the next event, due at `at`: the bins before it close.
    #[inline(always)]
    pub(super) fn begin_event(&mut self, at: Instant) {
        self.close_bins_to(at);
        if self.check && at < self.now {
            self.violate(format!(
                "time went backwards from {:.9} s to {:.9} s",
                self.now.as_secs_f64(),
                at.as_secs_f64()
            ));
        }
        self.now = at;
        self.events += 1;
    }

    /// Closes every bin that ends at or before `at`.
    #[inline(always)]
    pub(super) fn close_bins_to(&mut self, at: Instant) {
        while at >= self.rec.bin_end {
            let end = self.rec.bin_end;
            self.close_bin(end);
            if self.check {
                self.audit_tables();
            }
        }
    }

    #[inline(always)]
    fn dispatch(&mut self, ev: Event) {
        match ev {
            Event::Stream { wl } => self.stream(wl),
            Event::Start { wl, slot, retry } if slot == NONE => {
                self.start_open(wl, retry);
                self.stream_changed(wl);
            }
            Event::Start { wl, slot, retry } => {
                self.start(wl, slot, retry);
            }
            Event::Syn { conn, generation } => self.on_live(conn, generation, Self::syn),
            Event::SynAck { conn, generation } => self.on_live(conn, generation, Self::syn_ack),
            Event::Ack { conn, generation } => self.on_live(conn, generation, Self::ack),
            Event::Response { conn, generation } => self.on_live(conn, generation, Self::response),
            Event::ServerClose { conn, generation } => {
                self.on_live(conn, generation, Self::server_close)
            }
            Event::FinAtPassive { conn, generation } => {
                self.on_live(conn, generation, Self::fin_at_passive)
            }
            Event::FinAtActive { conn, generation } => {
                self.on_live(conn, generation, Self::fin_at_active)
            }
            Event::LastAck { conn, generation } => self.on_live(conn, generation, Self::last_ack),
            Event::Rst { conn, generation } => self.on_live(conn, generation, Self::rst),
            Event::SynRetransmit {
                conn,
                generation,
                tries,
            } => {
                if self.conns[conn as usize].generation == generation {
                    self.syn_retransmit(conn, tries);
                }
            }
            Event::TwRst {
                host,
                sock,
                generation,
            } => self.rst_at_time_wait(host, sock, generation),
            Event::TwExpire {
                host,
                sock,
                generation,
            } => self.time_wait_expires(host, sock, generation),
            Event::AtHop { transit } => self.at_hop(transit),
            Event::PoolTimer {
                conn,
                generation,
                epoch,
            } => {
                if self.conns[conn as usize].generation == generation {
                    self.pool_timer(conn, epoch);
                }
            }
            Event::ServerIdle {
                conn,
                generation,
                epoch,
            } => {
                if self.conns[conn as usize].generation == generation {
                    self.server_idle(conn, epoch);
                }
            }
            Event::PoolFill { wl } => self.pool_fill_all(wl, false),
            Event::PoolHousekeeper { wl } => self.pool_fill_all(wl, true),
            Event::UnseenExpire { host, pool, port } => self.unseen_expires(host, pool, port),
            Event::TwReusable {
                host,
                sock,
                generation,
            } => self.time_wait_reusable(host, sock, generation),
        }
    }

    fn on_live(&mut self, conn: u32, generation: u32, f: fn(&mut Self, u32)) {
        if self.conns[conn as usize].generation == generation {
            f(self, conn);
        }
    }

    /// Runs to the end and returns the report with the number of events processed.
    pub fn run_counted(self) -> (Report, u64) {
        match self.run_checked() {
            Ok(r) => r,
            Err(v) => panic!("{v}"),
        }
    }

    /// Runs to the end of the scenario and returns the report.
    pub fn run(self) -> Report {
        self.run_counted().0
    }
}
