//! The router namespace's conntrack table and counters, read through ctnetlink
//! (`NETLINK_NETFILTER`, subsystem `NFNL_SUBSYS_CTNETLINK`) as `conntrack -L` and
//! `conntrack -S` read them. The messages are netlink-packet-netfilter's; the socket is
//! netlink-sys's, and like every netlink socket it belongs to the namespace of the thread
//! that opened it (open it inside the router's, [`super::topology::within`]).

use netlink_packet_core::{
    DefaultNla, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol,
    Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// `IPCTNL_MSG_CT_GET_STATS_CPU` (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const IPCTNL_MSG_CT_GET_STATS_CPU: u8 = 4;
/// `enum ctattr_stats_cpu`: the counters `conntrack -S` prints under these names.
const CTA_STATS: &[(u16, &str)] = &[
    (4, "invalid"),
    (9, "insert_failed"),
    (10, "drop"),
    (11, "early_drop"),
    (12, "error"),
    (14, "clash_resolve"),
];

/// Why reading conntrack failed.
#[derive(Debug)]
pub enum CtError {
    /// The netlink socket could not be opened or used.
    Socket(std::io::Error),
    /// The kernel answered with an error (errno).
    Kernel(i32),
    /// A message did not parse.
    Decode(String),
}

impl fmt::Display for CtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtError::Socket(e) => write!(f, "ctnetlink socket: {e}"),
            CtError::Kernel(code) => write!(f, "ctnetlink: the kernel answered errno {code}"),
            CtError::Decode(m) => write!(f, "ctnetlink: {m}"),
        }
    }
}

impl std::error::Error for CtError {}

/// One TCP entry: its state (`enum tcp_conntrack`) and the reply tuple's destination, which
/// is the NAT address and port the flow was given (the original source when untranslated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: u8,
    pub nat: (u32, u16),
}

/// `enum tcp_conntrack` (include/uapi/linux/netfilter/nf_conntrack_tcp.h), as `conntrack -L`
/// prints each state.
pub fn state_name(state: u8) -> &'static str {
    match state {
        0 => "NONE",
        1 => "SYN_SENT",
        2 => "SYN_RECV",
        3 => "ESTABLISHED",
        4 => "FIN_WAIT",
        5 => "CLOSE_WAIT",
        6 => "LAST_ACK",
        7 => "TIME_WAIT",
        8 => "CLOSE",
        9 => "SYN_SENT2",
        _ => "UNKNOWN",
    }
}

/// The table at one instant, as the report's per-bin NAT gauges count it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// TCP entries.
    pub entries: u64,
    /// Distinct (address, port) pairs among the entries' NAT tuples on the NAT's addresses.
    pub ports_in_use: u64,
    /// Entries by state name, the states some entry is in.
    pub states: BTreeMap<&'static str, u64>,
}

impl Snapshot {
    /// Counts `entries`; a NAT tuple counts as a port in use when its address is one of
    /// `nat_ips`.
    pub fn of(entries: &[Entry], nat_ips: &[u32]) -> Snapshot {
        let mut states = BTreeMap::new();
        for e in entries {
            *states.entry(state_name(e.state)).or_insert(0) += 1;
        }
        let ports: BTreeSet<(u32, u16)> = entries
            .iter()
            .filter(|e| nat_ips.contains(&e.nat.0))
            .map(|e| e.nat)
            .collect();
        Snapshot {
            entries: entries.len() as u64,
            ports_in_use: ports.len() as u64,
            states,
        }
    }
}

/// A ctnetlink socket in the namespace that opened it.
pub struct Conntrack {
    sock: Socket,
    buf: Vec<u8>,
}

impl Conntrack {
    pub fn open() -> Result<Conntrack, CtError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(CtError::Socket)?;
        sock.bind_auto().map_err(CtError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(CtError::Socket)?;
        Ok(Conntrack {
            sock,
            buf: vec![0; 1 << 16],
        })
    }

    /// Every IPv4 TCP entry (`conntrack -L -p tcp`).
    pub fn entries(&mut self) -> Result<Vec<Entry>, CtError> {
        let mut out = Vec::new();
        self.dump(ConntrackMessage::Get(vec![]), |m| {
            if let ConntrackMessage::New(attrs) = m
                && let Some(e) = entry(attrs)
            {
                out.push(e);
            }
        })?;
        Ok(out)
    }

    /// The namespace's counters summed over CPUs (`conntrack -S`): `insert_failed`,
    /// `drop`, `early_drop`, `invalid`, `error`, `clash_resolve`.
    pub fn counters(&mut self) -> Result<BTreeMap<&'static str, u64>, CtError> {
        let mut sums: BTreeMap<&'static str, u64> = CTA_STATS.iter().map(|s| (s.1, 0)).collect();
        let request = ConntrackMessage::Other {
            message_type: IPCTNL_MSG_CT_GET_STATS_CPU,
            attributes: vec![],
        };
        self.dump(request, |m| {
            if let ConntrackMessage::Other { attributes, .. } = m {
                for a in attributes {
                    if let Some(&(_, name)) = CTA_STATS.iter().find(|s| s.0 == a.kind()) {
                        *sums.entry(name).or_insert(0) += u64::from(be_u32(a));
                    }
                }
            }
        })?;
        Ok(sums)
    }

    /// Sends a dump request and hands every conntrack message of the answer to `each`.
    fn dump(
        &mut self,
        request: ConntrackMessage,
        mut each: impl FnMut(&ConntrackMessage),
    ) -> Result<(), CtError> {
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let body = NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            request,
        );
        let mut packet = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(body));
        packet.finalize();
        let mut req = vec![0; packet.buffer_len()];
        packet.serialize(&mut req[..]);
        self.sock.send(&req, 0).map_err(CtError::Socket)?;
        loop {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CtError::Socket(e)),
            };
            let mut off = 0;
            while off < n {
                let msg = <NetlinkMessage<NetfilterMessage>>::deserialize(&self.buf[off..n])
                    .map_err(|e| CtError::Decode(e.to_string()))?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::Conntrack(m),
                        ..
                    }) => each(&m),
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return Err(CtError::Kernel(e.code.map_or(0, |c| c.get())));
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

fn be_u32(a: &DefaultNla) -> u32 {
    let mut v = vec![0; a.value_len()];
    a.emit_value(&mut v);
    v.get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A TCP entry's state and NAT tuple; `None` for other protocols.
fn entry(attrs: &[ConntrackAttribute]) -> Option<Entry> {
    let mut state = None;
    let mut nat = None;
    let mut tcp = false;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleReply(t) => {
                let (ip, port, proto_tcp) = tuple_dst(t)?;
                tcp = proto_tcp;
                nat = Some((ip, port));
            }
            ConntrackAttribute::CtaProtoInfo(infos) => {
                state = infos.iter().find_map(|i| match i {
                    ProtoInfo::TCP(tcp) => tcp.iter().find_map(|x| match x {
                        ProtoInfoTCP::State(s) => Some(*s),
                        _ => None,
                    }),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    (tcp).then_some(Entry {
        state: state?,
        nat: nat?,
    })
}

/// The destination address and port of a tuple, and whether it is TCP.
fn tuple_dst(t: &[Tuple]) -> Option<(u32, u16, bool)> {
    let mut ip = None;
    let mut port = None;
    let mut tcp = false;
    for part in t {
        match part {
            Tuple::Ip(ips) => {
                ip = ips.iter().find_map(|x| match x {
                    IPTuple::DestinationAddress(IpAddr::V4(a)) => Some(u32::from(*a)),
                    _ => None,
                });
            }
            Tuple::Proto(p) => {
                for x in p {
                    match x {
                        ProtoTuple::DestinationPort(d) => port = Some(*d),
                        ProtoTuple::Protocol(Protocol::Tcp) => tcp = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((ip?, port?, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_counts_states_and_distinct_nat_ports_on_the_nat_addresses() {
        let nat = 0xCB00_710A; // 203.0.113.10
        let e = |state, ip, port| Entry {
            state,
            nat: (ip, port),
        };
        let s = Snapshot::of(
            &[
                e(7, nat, 40000),
                e(7, nat, 40001),
                e(3, nat, 40001),
                e(3, 0xC000_0202, 51000),
            ],
            &[nat],
        );
        assert_eq!(s.entries, 4);
        assert_eq!(s.ports_in_use, 2);
        assert_eq!(s.states.get("TIME_WAIT"), Some(&2));
        assert_eq!(s.states.get("ESTABLISHED"), Some(&2));
    }
}
