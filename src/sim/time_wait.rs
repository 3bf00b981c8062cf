use super::*;

/// What closes actively: a socket, or the connection of a tuple whose port a pool holds and
/// whose socket is made only at its TIME-WAIT entry ([`Exchange::lazy`]).
#[derive(Clone, Copy, Debug)]
pub(in crate::sim) enum Closing {
    /// A socket, and the address of its peer.
    Socket(SockId, u32),
    /// The connection from `ip`:`port` toward the destination of `pool`.
    Port { pool: u32, ip: u32, port: u16 },
}

impl Simulation {
    /// A connection of host `h` closes actively: TIME-WAIT `tw`, or closed at once
    /// (`nolocaltimewait`, `tcp_max_tw_buckets`) with its four-tuple watched for reuse.
    #[inline(always)]
    pub(in crate::sim) fn active_close(
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
    pub(in crate::sim) fn time_wait_entered(&mut self, h: u16, sock: SockId) {
        let host = &self.hosts[h as usize];
        let pool = host.sock(sock).pool;
        let generation = host.sock(sock).generation;
        let expire = self.now + host.profile.time_wait;
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
            let at = host.ms_deadline(self.now, host.profile.tw_reuse_delay_ms);
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

    /// A four-tuple closed with no TIME-WAIT, watched for `len`.
    #[inline(always)]
    pub(in crate::sim) fn watch_closed(&mut self, watched: Watched, len: Duration) {
        self.watch
            .closed_without_tw(&mut self.hosts, watched, self.now, len);
    }
}
