//! An active close and the TIME-WAIT it leaves (§2): entered for the profile's TIME_WAIT,
//! or skipped (`nolocaltimewait`, §3.2) or overflowed (`tcp_max_tw_buckets`, §2.2) with
//! the tuple watched for reuse; its timers: expiry (§2.1), reusability by `tcp_tw_reuse`
//! (§2.3), and the client's RST that ends it early (§2.4).

use super::Simulation;
use super::reuse_watch::Watched;
use super::run::Event;
use crate::engine::Class;
use crate::host::{Host, NONE, SockId, State, TimeWait};
use crate::report::Counter;
use crate::time::Duration;

/// How far ahead in a TIME-WAIT lane the socket, then its table slot, is prefetched.
const PREFETCH_SOCKET: usize = 16;

const PREFETCH_SLOT: usize = 8;

/// What closes actively: a socket, or the connection of a tuple whose port a pool holds and
/// whose socket is made only at its TIME-WAIT entry ([`super::fast::exchange::Exchange::lazy`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum Closing {
    /// A socket, and the address of its peer.
    Socket(SockId, u32),
    /// The connection from `ip`:`port` toward the destination of `pool`.
    Port { pool: u32, ip: u32, port: u16 },
}

impl Simulation {
    /// A connection of host `h` closes actively: TIME-WAIT `tw`, or closed at once
    /// (`nolocaltimewait`, `tcp_max_tw_buckets`) with its four-tuple watched for reuse.
    #[inline(always)]
    pub(super) fn active_close(
        &mut self,
        h: u16,
        closing: Closing,
        tw: TimeWait,
        watched: Watched,
    ) {
        let host = &mut self.hosts[h as usize];
        let len = host.profile.time_wait;
        let peer = |host: &Host| match closing {
            Closing::Socket(_, peer) => peer,
            Closing::Port { pool, .. } => host.pools[pool as usize].daddr,
        };
        if !host.profile.local_time_wait && host.has_ip(peer(host)) {
            // FreeBSD nolocaltimewait: the connection is closed at once (§3.2).
            match closing {
                Closing::Socket(sock, _) => host.destroy(sock),
                Closing::Port { pool, port, .. } => host.release_pool_port(pool, port),
            }
            self.rec.count(Counter::TwSkippedLocal);
            self.watch_closed(watched, len);
            return;
        }
        let entered = match closing {
            Closing::Socket(sock, _) => host.enter_time_wait(sock, tw).then_some(sock),
            Closing::Port { pool, ip, port } => host.time_wait_port(pool, ip, port, tw),
        };
        match entered {
            Some(sock) => self.time_wait_entered(h, sock),
            None => {
                self.rec.count(Counter::TwOverflow);
                self.watch_closed(watched, len);
            }
        }
    }

    /// Socket `sock` of host `h` has entered TIME-WAIT: its expiry queued, and the moment
    /// `tcp_tw_reuse` may take its tuple over.
    #[inline(never)]
    fn time_wait_entered(&mut self, h: u16, sock: SockId) {
        let host = &self.hosts[h as usize];
        let pool = host.sock(sock).pool;
        let generation = host.sock(sock).generation;
        let expire = host.tw_expiry(self.now);
        let lanes = &self.lanes[h as usize];
        self.queue.push_lane(
            lanes.tw_expire,
            expire,
            Class::Timer,
            Event::TwExpire {
                host: h,
                sock,
                generation,
            },
        );
        if pool != NONE && host.pools[pool as usize].tw_reuse {
            let at = host.tw_reusable_at(self.now);
            self.queue.push_lane(
                lanes.tw_reusable,
                at,
                Class::Timer,
                Event::TwReusable {
                    host: h,
                    sock,
                    generation,
                },
            );
        }
        self.note_time_wait();
    }

    /// A refused SYN restarted the timer of TIME-WAIT `sock` of host `h`
    /// (`inet_twsk_reschedule(tw, TCP_TIMEWAIT_LEN)`): it now fires a TIME_WAIT from now, on
    /// the host's clock; the event already queued finds it not yet due.
    pub(super) fn time_wait_rearmed(&mut self, h: u16, sock: SockId) {
        let host = &self.hosts[h as usize];
        let ev = Event::TwExpire {
            host: h,
            sock,
            generation: host.sock(sock).generation,
        };
        let lane = self.lanes[h as usize].tw_expire;
        let at = host.tw_expiry(self.now);
        self.queue.push_lane_ordered(lane, at, Class::Timer, ev);
        self.rec.count(Counter::TwRearmed);
    }

    /// A four-tuple closed with no TIME-WAIT, watched for `len`.
    #[inline(always)]
    pub(super) fn watch_closed(&mut self, watched: Watched, len: Duration) {
        self.watch
            .closed_without_tw(&mut self.hosts, watched, self.now, len);
    }

    /// The client's RST reaches a TIME-WAIT that answered its SYN with an ACK: the
    /// TIME-WAIT ends (§2.4), where the kernel does not ignore RSTs there (§3.4; the RST is
    /// only sent then).
    pub(super) fn rst_at_time_wait(&mut self, host: u16, sock: SockId, generation: u32) {
        if self.time_wait_alive(host, sock, generation) {
            self.hosts[host as usize].destroy(sock);
            self.rec.count(Counter::TwKilledByRst);
        }
    }

    /// A TIME-WAIT's timer fires, the profile's TIME_WAIT after its entry (§2.1): the socket
    /// is destroyed and its port free.
    #[inline(always)]
    pub(super) fn time_wait_expires(&mut self, host: u16, sock: SockId, generation: u32) {
        if self.bulk_time_wait {
            self.enter_time_wait_in_bulk(self.now);
        }
        // The lane is in expiry order: bring the next ones' sockets and table slots into
        // cache.
        let lane = self.lanes[host as usize].tw_expire;
        for (k, slot) in [(PREFETCH_SOCKET, false), (PREFETCH_SLOT, true)] {
            if let Some(&Event::TwExpire { host, sock, .. }) = self.queue.lane_peek(lane, k) {
                let h = &self.hosts[host as usize];
                if slot {
                    h.prefetch_slot(sock);
                } else {
                    h.prefetch_socket(sock);
                }
            }
        }
        if self.time_wait_alive(host, sock, generation) {
            let h = &self.hosts[host as usize];
            let entry = h.sock(sock).tw.entry;
            if h.tw_rearmed(sock)
                .is_some_and(|r| self.now < h.tw_expiry(r))
            {
                // Re-armed: the event of the re-arm is queued.
                return;
            }
            let due = h.tw_due(sock, entry);
            if self.check && self.now != due {
                let msg = format!(
                    "host {}: TIME-WAIT of {} entered at {:.9} s expired at {:.9} s, not at its \
                     timer's {:.9} s",
                    h.name,
                    h.sock(sock).tuple,
                    entry.as_secs_f64(),
                    self.now.as_secs_f64(),
                    due.as_secs_f64()
                );
                self.violate(msg);
            }
            self.rec.time_wait_ended(self.now - entry);
            self.hosts[host as usize].destroy(sock);
            self.rec.count(Counter::TwExpired);
            self.rec.first_tw_expiry.get_or_insert(self.now);
        }
    }

    /// `tcp_tw_reuse_delay` after its entry, a TIME-WAIT of a pool with `tcp_tw_reuse` on
    /// may be taken over by connect() (§2.3).
    pub(super) fn time_wait_reusable(&mut self, host: u16, sock: SockId, generation: u32) {
        if self.time_wait_alive(host, sock, generation) {
            let h = &self.hosts[host as usize];
            let age = self.now - h.sock(sock).tw.entry;
            if self.check && age < h.tw_reuse_delay() {
                let msg = format!(
                    "host {}: TIME-WAIT of {} reusable after {:.9} s, before tcp_tw_reuse_delay {:.9} s",
                    h.name,
                    h.sock(sock).tuple,
                    age.as_secs_f64(),
                    h.tw_reuse_delay().as_secs_f64()
                );
                self.violate(msg);
            }
            self.hosts[host as usize].mark_reusable(sock);
        }
    }

    fn time_wait_alive(&self, host: u16, sock: SockId, generation: u32) -> bool {
        let s = self.hosts[host as usize].sock(sock);
        s.generation == generation && s.state == State::TimeWait
    }
}
