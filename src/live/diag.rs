//! Socket counts read from the kernel with netlink sock_diag, as `ss` does: one dump with a
//! kernel-side state filter (shared/reference/crates.md: 30k TIME-WAIT sockets in about 12 ms).
//! The netlink socket belongs to the namespace of the thread that opens it; a run through a
//! NAT counts in two, the clients' and the servers' ([`Diag::join`]).

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};
use std::collections::BTreeSet;
use std::io;
use std::time::{Duration, Instant};

/// TCP sockets by side and state at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub time_wait_client: u32,
    pub time_wait_server: u32,
    pub established_client: u32,
    pub established_server: u32,
    /// Sockets on their way into or out of a connection: SYN-SENT, SYN-RECV, FIN-WAIT-1,
    /// FIN-WAIT-2 (an orphan's too: sock_diag reports a timewait minisock by its substate),
    /// CLOSE-WAIT, LAST-ACK, CLOSING. Counted by [`Diag::settle`] only.
    pub transitional: u32,
}

impl Counts {
    pub fn time_wait(&self) -> u32 {
        self.time_wait_client + self.time_wait_server
    }

    fn add(&mut self, o: Counts) {
        self.time_wait_client += o.time_wait_client;
        self.time_wait_server += o.time_wait_server;
        self.established_client += o.established_client;
        self.established_server += o.established_server;
        self.transitional += o.transitional;
    }
}

/// The socket table once a run has gone quiet ([`Diag::settle`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub counts: Counts,
    /// How long it took to go quiet, or the bound when it did not.
    pub waited: Duration,
    /// Whether no socket was still connecting, connected or closing.
    pub quiet: bool,
}

pub struct Diag {
    /// One socket per namespace counted, the first the opener's.
    socks: Vec<Socket>,
    buf: Vec<u8>,
}

const TCP_ESTABLISHED: u8 = 1;
const TCP_TIME_WAIT: u8 = 6;
const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

/// How often [`Diag::settle`] looks.
const SETTLE_POLL: Duration = Duration::from_millis(10);
/// Counts unchanged this long are taken as settled, even with sockets still closing (an
/// orphaned FIN-WAIT-2 waits up to `tcp_fin_timeout`, 60 s, §2.1).
const SETTLE_STEADY: Duration = Duration::from_millis(200);

impl Diag {
    pub fn open() -> io::Result<Diag> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Diag {
            socks: vec![sock],
            buf: vec![0; 1 << 16],
        })
    }

    /// Counts `other`'s namespace too, from now on.
    pub fn join(&mut self, other: Diag) {
        self.socks.extend(other.socks);
    }

    /// Counts ESTABLISHED and TIME-WAIT IPv4 sockets; a socket whose local port is one of
    /// `server_ports` is the server's side.
    pub fn counts(&mut self, server_ports: &BTreeSet<u16>) -> io::Result<Counts> {
        self.dump(
            StateFlags::ESTABLISHED | StateFlags::TIME_WAIT,
            server_ports,
        )
    }

    /// Waits, at most `bound`, until no socket of the namespace is connecting, connected or
    /// closing (none ESTABLISHED and none [`Counts::transitional`]), or until the counts have
    /// not changed for 200 ms; then returns the table. None of the run's TIME-WAITs has
    /// expired by then (60 s, §2.1). `give_up` ends the wait early.
    pub fn settle(
        &mut self,
        server_ports: &BTreeSet<u16>,
        bound: Duration,
        give_up: &dyn Fn() -> bool,
    ) -> io::Result<Settled> {
        let from = Instant::now();
        let mut last = self.dump(StateFlags::all(), server_ports)?;
        let mut steady_since = from;
        loop {
            let busy = last.transitional + last.established_client + last.established_server;
            let waited = from.elapsed();
            if busy == 0 || waited >= bound || steady_since.elapsed() >= SETTLE_STEADY || give_up()
            {
                return Ok(Settled {
                    counts: last,
                    waited,
                    quiet: busy == 0,
                });
            }
            std::thread::sleep(SETTLE_POLL);
            let now = self.dump(StateFlags::all(), server_ports)?;
            if now != last {
                steady_since = Instant::now();
                last = now;
            }
        }
    }

    /// The counts of every namespace, added up.
    fn dump(&mut self, states: StateFlags, server_ports: &BTreeSet<u16>) -> io::Result<Counts> {
        let mut all = Counts::default();
        for i in 0..self.socks.len() {
            all.add(self.dump_one(i, states.clone(), server_ports)?);
        }
        Ok(all)
    }

    fn dump_one(
        &mut self,
        i: usize,
        states: StateFlags,
        server_ports: &BTreeSet<u16>,
    ) -> io::Result<Counts> {
        let sock = &self.socks[i];
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut packet = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetRequest(InetRequest {
                family: AF_INET,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states,
                socket_id: SocketId::new_v4(),
            })
            .into(),
        );
        packet.finalize();
        let mut req = vec![0; packet.buffer_len()];
        packet.serialize(&mut req[..]);
        sock.send(&req, 0)?;
        let mut c = Counts::default();
        loop {
            let n = match sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut off = 0;
            while off < n {
                let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&self.buf[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                        let server = server_ports.contains(&r.header.socket_id.source_port);
                        match (r.header.state, server) {
                            (TCP_TIME_WAIT, false) => c.time_wait_client += 1,
                            (TCP_TIME_WAIT, true) => c.time_wait_server += 1,
                            (TCP_ESTABLISHED, false) => c.established_client += 1,
                            (TCP_ESTABLISHED, true) => c.established_server += 1,
                            (TCP_LISTEN | TCP_CLOSE, _) => {}
                            _ => c.transitional += 1,
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(c),
                    NetlinkPayload::Error(e) => {
                        return Err(io::Error::other(format!("sock_diag: {e:?}")));
                    }
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                off += len.next_multiple_of(4); // NLMSG_ALIGN
            }
        }
    }
}
