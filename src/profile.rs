//! Kernel profiles as data: defaults, and overrides by the kernel's own knob names.
//!
//! A [`Profile`] is one value describing how a host's TCP stack hands out ports and ends
//! connections. The engine never asks which kernel it runs: every difference between Linux,
//! FreeBSD, macOS and Windows is a field here (a port-selection algorithm, the scope of the
//! uniqueness check, the TIME-WAIT length and SYN rule, the ISN generator, the SYN
//! retransmission schedule, the error names).
//!
//! A scenario names a profile (`profile = "macos"`) and overrides it with the kernel's own
//! knob names under `[host.knobs]` (`"net.inet.tcp.msl" = 1000`), and with model parameters
//! that no knob exposes under `[host.model]` (`port_selection = "rfc6056-alg2"`). Each field
//! cites the section of `shared/reference/stack-semantics.md` it comes from; items the
//! reference marks UNVERIFIED are model parameters whose docs give the default and the
//! alternative. `portsim profile show NAME` prints all of it as a block to paste.

pub mod bsd_releases;
pub mod cost;
pub mod linux_versions;

pub use cost::ConnectCost;

use crate::time::Duration;
use std::fmt;
use std::fmt::Write as _;

/// Whose knob names a profile answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Linux,
    FreeBsd,
    MacOs,
    Windows,
}

/// How `connect()` on an unbound socket picks its first candidate and the next ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Linux ≥ 5.12 `__inet_hash_connect`: RFC 6056 Algorithm 4 with a 65,536-entry
    /// perturbation table, 10 s reseed and even-then-odd passes (§1.2).
    Linux,
    /// Linux 4.6–5.11: the same loop with one global `hint` and no time seed: RFC 6056
    /// Algorithm 3 (§1.2 "History", §5.1 Alg 3).
    LinuxPre512,
    /// Linux before 4.2 (3.10 `__inet_hash_connect`): every port in turn from
    /// `low + (1 + hint + port_offset) % n`, no parity, `hint += i` (RFC 6056 Algorithm 3).
    LinuxPre42,
    /// BSD `in_pcb_lport_dest` / XNU `in_pcbbind`: a host-wide cursor, pre-incremented before
    /// each candidate; with `random_start` it is first moved to `first + rand % (last − first)`
    /// at every call, so the first candidate lies in [first+1, last] (§3.1, §3.3).
    BsdCursor { random_start: bool },
    /// RFC 6056 §3.3.1–3.3.5, Algorithms 1–5, as in NetBSD `portalgo.c` (§5.1).
    Rfc6056(u8),
}

impl Selection {
    pub const NAMES: &'static str = "\"linux\", \"linux-pre-5.12\", \"linux-pre-4.2\", \"bsd-sequential\", \
        \"bsd-random-start\", \"rfc6056-alg1\" … \"rfc6056-alg5\"";

    pub fn name(self) -> &'static str {
        match self {
            Selection::Linux => "linux",
            Selection::LinuxPre512 => "linux-pre-5.12",
            Selection::LinuxPre42 => "linux-pre-4.2",
            Selection::BsdCursor {
                random_start: false,
            } => "bsd-sequential",
            Selection::BsdCursor { random_start: true } => "bsd-random-start",
            Selection::Rfc6056(1) => "rfc6056-alg1",
            Selection::Rfc6056(2) => "rfc6056-alg2",
            Selection::Rfc6056(3) => "rfc6056-alg3",
            Selection::Rfc6056(4) => "rfc6056-alg4",
            Selection::Rfc6056(_) => "rfc6056-alg5",
        }
    }

    pub fn parse(s: &str) -> Option<Selection> {
        Some(match s {
            "linux" => Selection::Linux,
            "linux-pre-5.12" => Selection::LinuxPre512,
            "linux-pre-4.2" => Selection::LinuxPre42,
            "bsd-sequential" => Selection::BsdCursor {
                random_start: false,
            },
            "bsd-random-start" => Selection::BsdCursor { random_start: true },
            "rfc6056-alg1" => Selection::Rfc6056(1),
            "rfc6056-alg2" => Selection::Rfc6056(2),
            "rfc6056-alg3" => Selection::Rfc6056(3),
            "rfc6056-alg4" => Selection::Rfc6056(4),
            "rfc6056-alg5" => Selection::Rfc6056(5),
            _ => return None,
        })
    }
}

/// How Linux `bind(addr, 0)` searches (`inet_csk_get_port`, `inet_csk_find_open_port`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindSearch {
    /// 4.11+: odd ports first, with SO_REUSEADDR the lower half of the range first
    /// (`attempt_half`); a port any socket on the address holds is skipped; EADDRINUSE when
    /// none is left, unless `ip_autobind_reuse` (§1.5, §1.6).
    Strict,
    /// 4.6–4.10 (ea8add2b1903 until b9470c27607b): the same scan, but when a parity pass finds
    /// no free port and SO_REUSEADDR is set, the port of that pass whose bucket allows sharing
    /// (`tb->fastreuse > 0`, not listening) with the fewest owners is taken, shared.
    SmallestShared,
    /// Before 4.6 (3.10 `inet_csk_get_port`): every port in turn from a random one, no parity
    /// or halves; after a full scan, the shareable port with the fewest owners.
    Sequential,
}

/// When `tcp_tw_reuse` lets connect() take over a TIME-WAIT four-tuple (`tcp_twsk_unique`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReuseClock {
    /// 6.14+ (ca6a6f93867a): `tcp_clock_ms() > tw_entry_stamp + tcp_tw_reuse_delay`.
    Millis,
    /// Before 6.14: whole seconds since the last timestamp received (`ts_recent_stamp`, set
    /// by the peer's FIN that began the TIME-WAIT): reusable once `seconds(now) −
    /// seconds(stamp) > more_than`. 4.19–6.13 (`time_after32(ktime_get_seconds(), stamp)`,
    /// cca9bab1b72c): 0, a delay in (0, 1] s. Before 4.19 (`get_seconds() − stamp > 1`): 1,
    /// a delay in (1, 2] s.
    Seconds { more_than: u8 },
}

/// Which sockets make a candidate port unsuitable for `connect()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The four-tuple must be unused: a port is shared across destinations (Linux §1.3,
    /// FreeBSD §3.1, Windows 10+ with SO_REUSE_UNICASTPORT §4).
    FourTuple,
    /// Any socket on the local port blocks it, whatever its addresses or state: one
    /// connection per port host-wide (XNU `in_pcblookup_local` with `wild = 1`, §3.3).
    HostWide,
}

/// What the passive side's TIME-WAIT checks before accepting a SYN for its four-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwAccept {
    /// Linux `tcp_timewait_state_process`: not PAWS-rejected, and the sequence number or the
    /// timestamp is newer (§2.4).
    SeqOrTimestamp,
    /// BSD: `SEQ_GT(seq, rcv_nxt + window)`. FreeBSD `tcp_twcheck`: window 0, no PAWS
    /// (§3.2). XNU `tcp_input`: the SYN must lie beyond the receive window, and PAWS runs
    /// first: a SYN whose TSval is older than `ts_recent` is dropped silently (§3.4;
    /// notes/xnu-research.md §2).
    Seq { window: u32, paws: bool },
}

/// What a TIME-WAIT does with a SYN it does not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwReject {
    /// Answers with an ACK; the client's SYN-SENT replies RST (Linux §2.4, XNU §3.4).
    Ack,
    /// Drops it silently; the client retransmits on its timer (FreeBSD §3.2).
    Drop,
}

/// How the SYN retransmission interval grows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// Interval after the k-th transmission: `rto << k` (Linux `inet_csk_rto_backoff`).
    Doubling,
    /// Interval after the k-th transmission: `rto * table[k]` (BSD/XNU `tcp_syn_backoff`).
    Table(Vec<u32>),
}

/// BSD and XNU `tcp_syn_backoff[TCP_MAXRXTSHIFT + 1]`.
pub const BSD_SYN_BACKOFF: [u32; 13] = [1, 1, 1, 1, 1, 2, 4, 8, 16, 32, 64, 64, 64];

/// How a host picks the initial sequence number of an active open. SYN acceptance by a
/// TIME-WAIT compares it with the old incarnation's `rcv_nxt` (§2.4, §3.2, §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isn {
    /// Keyed hash of the four-tuple plus a clock of `per_sec` ticks per second, plus a global
    /// offset that grows by `step + rand(0..=jitter)` per ISN. Linux `secure_tcp_seq`:
    /// 15,625,000/s (ns >> 6), no step. FreeBSD `tcp_new_isn`: 1,048,576/s
    /// (`ISN_BYTES_PER_SECOND`), step 4096, jitter 4095. RFC 6528: 250,000/s (4 µs).
    Clock {
        per_sec: u64,
        step: u32,
        jitter: u32,
    },
    /// Uniformly random per connection. XNU up to the macOS 14 era: `tcp_new_isn` re-reads a
    /// fresh random secret on every call (its `isn_secret` and `isn_last_reseed` are locals),
    /// so the hash term makes the ISN uniform (notes/xnu-research.md §1).
    Random,
}

/// What a host adds to its millisecond clock in the TSval it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsOffset {
    /// No offset (Linux `tcp_timestamps = 2`; FreeBSD).
    None,
    /// A keyed hash of (saddr, daddr): Linux `secure_tcp_ts_off` with `tcp_timestamps = 1`.
    PerHostPair,
    /// A keyed hash of the four-tuple: XNU from the macOS 15 era (`t_ts_offset = md5[1]`).
    PerTuple,
    /// Random per connection: XNU up to the macOS 14 era (`tcp_newtcpcb`), so PAWS on the
    /// server's TIME-WAIT rejects about half of the SYNs that reuse its tuple.
    PerConnection,
}

impl Isn {
    pub const NAMES: &'static str = "\"linux\" (hash + 64 ns clock), \"freebsd\" (hash + 1 MiB/s \
        + 4096..8191 per ISN), \"rfc6528\" (hash + 4 µs clock), \"xnu-clock\" (hash + 128 ns clock), \"random\"";

    pub fn name(self) -> &'static str {
        match self {
            Isn::Random => "random",
            Isn::Clock { step: 0, .. } if self == Isn::LINUX => "linux",
            Isn::Clock { .. } if self == Isn::FREEBSD => "freebsd",
            Isn::Clock { .. } if self == Isn::XNU_CLOCK => "xnu-clock",
            Isn::Clock { .. } => "rfc6528",
        }
    }
    pub const LINUX: Isn = Isn::Clock {
        per_sec: 15_625_000,
        step: 0,
        jitter: 0,
    };
    pub const FREEBSD: Isn = Isn::Clock {
        per_sec: 1_048_576,
        step: 4096,
        jitter: 4095,
    };
    pub const RFC6528: Isn = Isn::Clock {
        per_sec: 250_000,
        step: 0,
        jitter: 0,
    };
    /// XNU from the macOS 15 era: MD5 of the tuple + `uptime_ns >> 7`.
    pub const XNU_CLOCK: Isn = Isn::Clock {
        per_sec: 7_812_500,
        step: 0,
        jitter: 0,
    };
    fn parse(s: &str) -> Option<Isn> {
        Some(match s {
            "linux" => Isn::LINUX,
            "freebsd" => Isn::FREEBSD,
            "rfc6528" => Isn::RFC6528,
            "xnu-clock" => Isn::XNU_CLOCK,
            "random" => Isn::Random,
            _ => return None,
        })
    }
}

/// Error kinds a connect attempt can end with; each profile names and numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Errno {
    /// bind(0) found no port, an explicit bind conflicts, or a bound port's four-tuple is
    /// taken on BSD (§1.4, §2.6, §3.3).
    AddrInUse,
    /// connect() found no port (§1.4, §3.1, §3.3).
    AddrNotAvail,
    /// SYN retransmissions exhausted.
    TimedOut,
}

impl Errno {
    pub const ALL: [Errno; 3] = [Errno::AddrInUse, Errno::AddrNotAvail, Errno::TimedOut];
    /// The kind's Linux name, used as a column name in CSV output.
    pub fn kind(self) -> &'static str {
        ["EADDRINUSE", "EADDRNOTAVAIL", "ETIMEDOUT"][self as usize]
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// `CONFIG_HZ` of the `linux` profile: this machine's 6.18 kernel, where 10 TIME-WAITs of a
/// burst ended at one tick 60.3–61.8 s after their close (issue 26).
pub const DEFAULT_HZ: u16 = 250;

/// How a kernel keeps the TIME-WAIT timer, and so how long a TIME-WAIT really lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwTimer {
    /// The timer fires at entry + TIME_WAIT.
    Exact,
    /// Linux 4.8+: one timer per TIME-WAIT on the non-cascading timer wheel
    /// (`kernel/time/timer.c`), `CONFIG_HZ` = `hz`.
    Wheel { hz: u16 },
    /// Linux before 4.1: the TIME-WAIT death row (`net/ipv4/inet_timewait_sock.c`,
    /// `inet_twsk_schedule`), `CONFIG_HZ` = `hz`.
    DeathRow { hz: u16 },
    /// A periodic scan ends every TIME-WAIT past its length: FreeBSD 13 `tcp_tw_2msl_scan`
    /// from `tcp_slowtimo` every `period_ms` (500).
    Scan { period_ms: u16 },
}

/// One host's TCP port behaviour.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub kernel: Kernel,
    /// Ephemeral range, inclusive. Linux `net.ipv4.ip_local_port_range` 32768–60999 (§1.1);
    /// FreeBSD `net.inet.ip.portrange.first/last` 10000–65535 (§3.1); macOS 49152–65535
    /// (§3.3); Windows `netsh int ipv4 set dynamicport tcp start=49152 num=16384` (§4).
    pub port_range: (u16, u16),
    /// Linux `net.ipv4.ip_local_reserved_ports`: skipped by connect() and bind(0) (§1.3).
    pub reserved_ports: Vec<(u16, u16)>,
    /// Linux `net.ipv4.ip_unprivileged_port_start`: the range may not start below it (§1.1).
    pub unprivileged_port_start: u16,
    /// The connect() port-selection algorithm (§1.2, §3.1, §3.3, §5.1).
    pub selection: Selection,
    /// Which sockets block a candidate port (§1.3, §3.1, §3.3, §4).
    pub scope: Scope,
    /// Ports a `connect()` never takes besides busy four-tuples: Linux skips ports of
    /// bind()-created buckets (§1.3 step 2); FreeBSD skips ports with a listener or a
    /// bound, unconnected socket (`INPLOOKUP_WILDCARD`, §3.1).
    pub skip: Skip,
    /// How long the active closer stays in TIME-WAIT: Linux `TCP_TIMEWAIT_LEN` 60 s (§2.1),
    /// FreeBSD 2 × `net.inet.tcp.msl` = 60 s (§3.2), XNU 2 × 15 s (§3.4), Windows
    /// `TcpTimedWaitDelay` 120 s (§4, UNVERIFIED: 240 s per another MS page).
    pub time_wait: Duration,
    /// Whether an active close toward a local address enters TIME-WAIT. FreeBSD
    /// `net.inet.tcp.nolocaltimewait` = 1 closes at once (§3.2).
    pub local_time_wait: bool,
    /// Linux `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 loopback only (default) (§2.3). Other
    /// kernels have no such rule: 0.
    pub tw_reuse: u8,
    /// Linux `net.ipv4.tcp_tw_reuse_delay` in ms, default 1000 (§2.3); 6.14+ only.
    pub tw_reuse_delay_ms: u32,
    /// The clock `tcp_tw_reuse` is measured with: ms since entry (6.14+), whole seconds before.
    pub tw_reuse_clock: ReuseClock,
    /// Linux `net.ipv4.tcp_tw_recycle` (before 4.12, default 0): TIME-WAIT lasts 3.5 × RTO
    /// ([`linux_versions::TW_RECYCLE_LEN`]). Its other half, dropping a SYN whose timestamp is
    /// older than the one remembered for its peer (`tcp_peer_is_proven`), is not modelled.
    pub tw_recycle: bool,
    /// Timestamps: Linux `net.ipv4.tcp_timestamps` 0 off, 1 on with per-pair offset (default),
    /// 2 on without (§2.3). BSD/XNU `net.inet.tcp.rfc1323` = 1 is modelled as 2.
    pub timestamps: u8,
    /// The TSval offset (§2.3; notes/xnu-research.md §3).
    pub ts_offset: TsOffset,
    /// Linux `net.ipv4.tcp_max_tw_buckets` (§2.2); unbounded elsewhere.
    pub max_tw_buckets: u32,
    /// When a TIME-WAIT accepts a SYN for its four-tuple (§2.4, §3.2, §3.4).
    pub tw_accept: TwAccept,
    /// What it does with a SYN it refuses (§2.4, §3.2, §3.4).
    pub tw_reject: TwReject,
    /// Whether an RST kills a TIME-WAIT: Linux with `tcp_rfc1337` = 0 (§2.4); BSD and XNU
    /// ignore it (§3.2, §3.4, RFC 1337).
    pub tw_rst_kills: bool,
    /// Linux `net.ipv4.tcp_invalid_ratelimit` in ms (4.0+, default HZ / 2 = 500 ms): a
    /// TIME-WAIT answers the SYNs it refuses with at most one ACK per interval
    /// (`tcp_timewait_check_oow_rate_limit` → `__tcp_oow_rate_limited`, net/ipv4/tcp_input.c);
    /// 0: every one (other kernels, Linux before 4.0).
    pub invalid_ratelimit_ms: u32,
    /// The initial sequence number of an active open.
    pub isn: Isn,
    /// Initial SYN retransmission timeout: Linux `TCP_TIMEOUT_INIT` 1 s (§2.4); BSD/XNU
    /// `TCPTV_RTOBASE` 1 s; Windows 3 s (UNVERIFIED).
    pub syn_rto: Duration,
    /// The initial SYN timeout toward a local address, when it differs. XNU (macOS 14 era)
    /// `tcp_getrt_rtt`: once the loopback route caches an RTT (after any loopback connection
    /// with 16 RTT samples closes), `t_rttmin` = `net.inet.tcp.rtt_min` = 100 ms for
    /// `TF_LOCAL` connections, so SYNs go out at 0, 0.1, 0.2 … 6.7 s (notes/xnu-research.md
    /// §5). Without a cached RTT it is `syn_rto`; which one held on a given Mac is UNVERIFIED.
    pub syn_rto_local: Option<Duration>,
    pub syn_backoff: Backoff,
    /// SYN retransmissions before ETIMEDOUT: Linux `net.ipv4.tcp_syn_retries` 6; BSD/XNU
    /// `TCP_MAXRXTSHIFT` 12; Windows `TcpMaxConnectRetransmissions` 2 (UNVERIFIED).
    pub syn_retries: u8,
    /// Linux `net.ipv4.tcp_syn_linear_timeouts` (6.5+, ccce324dabfe, default 4; 0 before):
    /// the first `syn_linear + 1` waits stay at the initial RTO before doubling, and the
    /// connect gives up at the first timer at or past the doubling schedule's budget,
    /// `syn_rto` × (2^(syn_retries+1) − 1) (`tcp_retransmit_timer`, `retransmits_timed_out`;
    /// measured on 6.18 with `tcp_syn_retries` = 2: SYNs at 0, 1, 2, 3, 4, 5 s, ETIMEDOUT at
    /// 7.1 s, notes/nat-reference.md). 0 on other kernels.
    pub syn_linear: u8,
    /// Give-up time since the first SYN, if the kernel has one: BSD/XNU
    /// `net.inet.tcp.keepinit` 75 s.
    pub connect_timeout: Option<Duration>,
    /// Linux only: when an ACK that does not acknowledge the SYN arrives (a TIME-WAIT
    /// rejecting it, §2.4), `tcp_rcv_synsent_state_process` re-arms the SYN timer to
    /// `TCP_TIMEOUT_MIN` if nothing was retransmitted yet. Measured 8.4–11.8 ms on a HZ=250
    /// kernel (notes/linux-observations, experiment I), so 10 ms.
    pub syn_rearm: Option<Duration>,
    /// SYN retransmissions after which the SYN no longer carries timestamps (and so escapes
    /// PAWS): XNU `net.inet.tcp.broken_peer_syn_rexmit_thres` = 10 (notes/xnu-research.md §4).
    pub syn_drop_ts_after: Option<u8>,
    /// Linux `net.ipv4.ip_autobind_reuse`, default 0 (§1.6).
    pub autobind_reuse: bool,
    /// How `bind(addr, 0)` searches (Linux by release; the others use [`BindSearch::Strict`]).
    pub bind_search: BindSearch,
    /// The Linux release the profile stands for: which sysctls and socket options exist.
    pub linux_version: Option<linux_versions::Version>,
    /// Names and numbers of [`Errno`] kinds, in `Errno::ALL` order (§7 item 7).
    pub errors: [(&'static str, u16); 3],
    /// How the TIME-WAIT timer is kept: on the kernel's timer wheel, whose granularity at
    /// 60 s depends on `CONFIG_HZ`, or exact.
    pub tw_timer: TwTimer,
    /// What a port search costs the calling thread ([`ConnectCost`]).
    pub connect_cost: ConnectCost,
}

/// Ports `connect()` skips besides busy four-tuples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Linux: ports whose bind bucket a `bind()` created or touched (§1.3 step 2).
    BindCreated,
    /// FreeBSD: ports with a listener or bound, unconnected socket (§3.1).
    Listeners,
}

/// Names of the profiles portsim ships.
pub const PROFILES: &[(&str, &str)] = &[
    (
        "linux",
        "Linux 6.18, the newest release (§1, §2); older: linux@VERSION",
    ),
    ("freebsd", "FreeBSD 14/15 (§3.1, §3.2)"),
    (
        "macos",
        "macOS 14: XNU of the macOS 14 era, random ISN per connection (§3.3, §3.4)",
    ),
    (
        "windows",
        "Windows 10+ / Server 2016+ (§4; several defaults UNVERIFIED)",
    ),
];

const LINUX_ERRORS: [(&str, u16); 3] = [
    ("EADDRINUSE", 98),
    ("EADDRNOTAVAIL", 99),
    ("ETIMEDOUT", 110),
];
const BSD_ERRORS: [(&str, u16); 3] = [("EADDRINUSE", 48), ("EADDRNOTAVAIL", 49), ("ETIMEDOUT", 60)];
const WSAENOBUFS: (&str, u16) = ("WSAENOBUFS", 10055);
const WSAEADDRINUSE: (&str, u16) = ("WSAEADDRINUSE", 10048);
const WINDOWS_ERRORS: [(&str, u16); 3] = [WSAEADDRINUSE, WSAENOBUFS, ("WSAETIMEDOUT", 10060)];

/// Every profile a scenario may name: the four kernels, Linux by release, macOS and FreeBSD
/// by release ([`bsd_releases::RELEASES`]).
pub fn all_profiles() -> Vec<(&'static str, &'static str)> {
    let linux = linux_versions::RELEASES.iter().map(|r| (r.name, r.title));
    PROFILES
        .iter()
        .copied()
        .chain(linux)
        .chain(bsd_releases::RELEASES.iter().copied())
        .collect()
}

/// Why `name` names no profile: the nearest shipped one (for `linux@X.Y`, the newest
/// release at or below it) and every name a scenario may give.
pub fn unknown_profile(name: &str) -> String {
    let all = all_profiles();
    let names: Vec<&str> = all.iter().map(|p| p.0).collect();
    let hint = linux_versions::nearest(name)
        .or_else(|| nearest(name, names.iter().copied()))
        .map_or(String::new(), |n| format!(" (nearest: \"{n}\")"));
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "{name:?}: unknown profile{hint}; available: {}",
        quoted.join(", ")
    )
}

impl Profile {
    /// The profile called `name`, with its kernel's defaults.
    pub fn named(name: &str) -> Option<Profile> {
        match name {
            "linux" => Some(Profile::linux()),
            "freebsd" => Some(Profile::freebsd()),
            "macos" => Some(Profile::macos()),
            "windows" => Some(Profile::windows()),
            _ if name.starts_with("linux@") => linux_versions::named(name),
            _ => bsd_releases::named(name),
        }
    }

    /// Linux 6.18 defaults, the newest release ([`linux_versions::NEWEST`]; the reference
    /// reads 6.8–6.14 sources; live checks ran on 6.18.44). Older releases:
    /// [`linux_versions::profile`].
    pub fn linux() -> Profile {
        Profile {
            kernel: Kernel::Linux,
            port_range: (32768, 60999),
            reserved_ports: Vec::new(),
            unprivileged_port_start: 1024,
            selection: Selection::Linux,
            scope: Scope::FourTuple,
            skip: Skip::BindCreated,
            time_wait: Duration::from_secs(60),
            local_time_wait: true,
            tw_reuse: 2,
            tw_reuse_delay_ms: 1000,
            tw_reuse_clock: ReuseClock::Millis,
            tw_recycle: false,
            timestamps: 1,
            ts_offset: linux_versions::ts_offset(linux_versions::NEWEST),
            max_tw_buckets: 131_072,
            tw_accept: TwAccept::SeqOrTimestamp,
            tw_reject: TwReject::Ack,
            tw_rst_kills: true,
            invalid_ratelimit_ms: 500,
            isn: Isn::LINUX,
            syn_rto: Duration::from_secs(1),
            syn_rto_local: None,
            syn_backoff: Backoff::Doubling,
            syn_retries: 6,
            syn_linear: 4,
            connect_timeout: None,
            syn_rearm: Some(Duration::from_millis(10)),
            syn_drop_ts_after: None,
            autobind_reuse: false,
            bind_search: BindSearch::Strict,
            linux_version: Some(linux_versions::NEWEST),
            errors: LINUX_ERRORS,
            tw_timer: TwTimer::Wheel { hz: DEFAULT_HZ },
            connect_cost: ConnectCost::default(),
        }
    }

    /// FreeBSD 14/15 defaults (§3.1, §3.2).
    pub fn freebsd() -> Profile {
        Profile {
            kernel: Kernel::FreeBsd,
            port_range: (10000, 65535),
            selection: Selection::BsdCursor { random_start: true },
            skip: Skip::Listeners,
            local_time_wait: false,
            tw_accept: TwAccept::Seq {
                window: 0,
                paws: false,
            },
            tw_reject: TwReject::Drop,
            isn: Isn::FREEBSD,
            ..Profile::bsd_common()
        }
    }

    /// macOS / XNU defaults (§3.3, §3.4), with the SYN-path behaviour of the macOS 14-era
    /// code the seed ran on: random ISNs and timestamp offsets, a 100 ms SYN timeout on
    /// loopback, timestamps dropped from the 10th retransmitted SYN (notes/xnu-research.md).
    /// macOS 15+ code: `isn = "xnu-clock"`, `timestamp_offset = "per-tuple"`.
    pub fn macos() -> Profile {
        Profile {
            kernel: Kernel::MacOs,
            port_range: (49152, 65535),
            selection: Selection::BsdCursor {
                random_start: false,
            },
            scope: Scope::HostWide,
            time_wait: Duration::from_secs(30),
            tw_accept: TwAccept::Seq {
                window: XNU_TW_WINDOW,
                paws: true,
            },
            tw_reject: TwReject::Ack,
            isn: Isn::Random,
            ts_offset: TsOffset::PerConnection,
            syn_rto_local: Some(Duration::from_millis(100)),
            syn_drop_ts_after: Some(10),
            ..Profile::bsd_common()
        }
    }

    /// Windows 10+ defaults (§4). The reference could not verify the TIME-WAIT SYN and RST
    /// rules, the ISN, the allocation order or the exhaustion error: each is a model
    /// parameter whose default is documented in `portsim profile show windows`.
    pub fn windows() -> Profile {
        Profile {
            kernel: Kernel::Windows,
            port_range: (49152, 65535),
            selection: Selection::BsdCursor {
                random_start: false,
            },
            time_wait: Duration::from_secs(120),
            tw_accept: TwAccept::Seq {
                window: 0,
                paws: false,
            },
            tw_reject: TwReject::Ack,
            isn: Isn::RFC6528,
            syn_rto: Duration::from_secs(3),
            syn_backoff: Backoff::Doubling,
            syn_retries: 2,
            syn_linear: 0,
            connect_timeout: None,
            errors: WINDOWS_ERRORS,
            ..Profile::bsd_common()
        }
    }

    fn bsd_common() -> Profile {
        Profile {
            kernel: Kernel::FreeBsd,
            port_range: (10000, 65535),
            reserved_ports: Vec::new(),
            unprivileged_port_start: 1024,
            selection: Selection::BsdCursor { random_start: true },
            scope: Scope::FourTuple,
            skip: Skip::Listeners,
            time_wait: Duration::from_secs(60),
            local_time_wait: true,
            tw_reuse: 0,
            tw_reuse_delay_ms: 1000,
            tw_reuse_clock: ReuseClock::Millis,
            tw_recycle: false,
            timestamps: 2,
            ts_offset: TsOffset::None,
            max_tw_buckets: u32::MAX,
            tw_accept: TwAccept::Seq {
                window: 0,
                paws: false,
            },
            tw_reject: TwReject::Drop,
            tw_rst_kills: false,
            invalid_ratelimit_ms: 0,
            isn: Isn::FREEBSD,
            syn_rto: Duration::from_secs(1),
            syn_rto_local: None,
            syn_backoff: Backoff::Table(BSD_SYN_BACKOFF.to_vec()),
            syn_retries: 12,
            syn_linear: 0,
            connect_timeout: Some(Duration::from_secs(75)),
            syn_rearm: None,
            syn_drop_ts_after: None,
            autobind_reuse: false,
            bind_search: BindSearch::Strict,
            linux_version: None,
            errors: BSD_ERRORS,
            tw_timer: TwTimer::Exact,
            connect_cost: ConnectCost::default(),
        }
    }

    /// Ports in the ephemeral range.
    pub fn range_len(&self) -> u32 {
        u32::from(self.port_range.1) - u32::from(self.port_range.0) + 1
    }

    pub fn is_reserved(&self, port: u16) -> bool {
        self.reserved_ports
            .iter()
            .any(|&(a, b)| (a..=b).contains(&port))
    }

    /// Ports of the range a connect() may use: the range minus reserved ports.
    pub fn usable_ports(&self) -> u32 {
        let (lo, hi) = (u32::from(self.port_range.0), u32::from(self.port_range.1));
        let mut reserved: Vec<(u32, u32)> = self
            .reserved_ports
            .iter()
            .map(|&(a, b)| (u32::from(a).max(lo), u32::from(b).min(hi)))
            .filter(|(a, b)| a <= b)
            .collect();
        reserved.sort_unstable();
        // The union of the (possibly overlapping) reserved ranges inside the range.
        let (mut taken, mut next) = (0, lo);
        for (a, b) in reserved {
            let a = a.max(next);
            if a <= b {
                taken += b - a + 1;
                next = b + 1;
            }
        }
        (hi + 1).saturating_sub(lo) - taken
    }

    /// The name and number this kernel gives an error kind.
    pub fn errno(&self, e: Errno) -> (&'static str, u16) {
        self.errors[e.index()]
    }

    /// Wait after the `k`-th SYN transmission (0 = the first SYN) before the next one, or
    /// before giving up when `k == syn_retries`.
    /// `local` selects `syn_rto_local` when the profile has one.
    pub fn syn_interval(&self, k: u8, local: bool) -> Duration {
        let mult = match &self.syn_backoff {
            Backoff::Doubling if k <= self.syn_linear => 1,
            Backoff::Doubling => 1u64 << (k - self.syn_linear).min(30),
            Backoff::Table(t) => u64::from(*t.get(usize::from(k)).or(t.last()).unwrap_or(&1)),
        };
        let rto = match self.syn_rto_local {
            Some(r) if local => r,
            _ => self.syn_rto,
        };
        Duration(rto.0.saturating_mul(mult))
    }

    /// With linear SYN timeouts, the time after the first SYN at or past which the connect
    /// gives up: the doubling schedule's total, `syn_rto` × (2^(syn_retries+1) − 1).
    pub fn syn_budget(&self) -> Option<Duration> {
        (self.syn_linear > 0).then(|| {
            let mult = (1u64 << (u32::from(self.syn_retries) + 1).min(40)) - 1;
            Duration(self.syn_rto.0.saturating_mul(mult))
        })
    }

    /// Whether the profile's Linux release has sysctl `key` (every other knob table is
    /// release-free); `Err` says when it arrived or went.
    pub fn release_has(&self, key: &str) -> Result<(), String> {
        match self.linux_version {
            Some(v) if self.kernel == Kernel::Linux => linux_versions::has_knob(v, key),
            _ => Ok(()),
        }
    }

    /// The least age a TIME-WAIT has when `tcp_tw_reuse` lets connect() take it over: the
    /// delay (6.14+), or `more_than` whole seconds (the rule needs the seconds clock to pass
    /// the stamp's second by more than that, §2.3).
    pub fn tw_reuse_min_age(&self) -> Duration {
        match self.tw_reuse_clock {
            ReuseClock::Millis => Duration::from_millis(u64::from(self.tw_reuse_delay_ms)),
            ReuseClock::Seconds { more_than } => Duration::from_secs(u64::from(more_than)),
        }
    }

    /// When a TIME-WAIT entered at `entry` becomes reusable by `tcp_tw_reuse`, on a host
    /// whose clock reads `entry + offset_ns` then (`tcp_twsk_unique`, §2.3): the first
    /// instant whose `tcp_clock_ms()` exceeds entry + delay (6.14+), or whose whole seconds
    /// exceed the entry's second by more than `more_than` (the clock is [`Self::tw_reuse_realtime`]).
    pub fn tw_reusable_at(
        &self,
        entry: crate::time::Instant,
        offset_ns: u64,
    ) -> crate::time::Instant {
        let (unit, ticks): (u64, u64) = match self.tw_reuse_clock {
            ReuseClock::Millis => (1_000_000, u64::from(self.tw_reuse_delay_ms)),
            ReuseClock::Seconds { more_than } => (1_000_000_000, u64::from(more_than)),
        };
        let at = ((entry.0 + offset_ns) / unit + ticks + 1) * unit;
        crate::time::Instant(at.saturating_sub(offset_ns))
    }

    /// Whether `tcp_tw_reuse`'s clock is the wall clock: `get_seconds()` before 4.19
    /// (cca9bab1b72c made it `ktime_get_seconds()`, monotonic; 6.14's is `tcp_clock_ms()`).
    pub fn tw_reuse_realtime(&self) -> bool {
        self.tw_reuse_clock == (ReuseClock::Seconds { more_than: 1 })
    }

    /// The knobs this profile's kernel answers to.
    pub fn knobs(&self) -> &'static [KnobSpec] {
        match self.kernel {
            Kernel::Linux => LINUX_KNOBS,
            Kernel::FreeBsd => FREEBSD_KNOBS,
            Kernel::MacOs => MACOS_KNOBS,
            Kernel::Windows => WINDOWS_KNOBS,
        }
    }

    /// Applies `key = value` from `[host.knobs]`.
    pub fn set_knob(&mut self, key: &str, value: &toml::Value) -> Result<(), KnobError> {
        let knobs = self.knobs();
        let spec = knobs
            .iter()
            .find(|k| k.name == key)
            .ok_or_else(|| KnobError::Unknown {
                suggestion: nearest(key, knobs.iter().map(|k| k.name)),
                elsewhere: other_kernel(key),
            })?;
        if let Err(why) = self.release_has(key) {
            return Err(KnobError::NotInRelease { why });
        }
        let bad = || KnobError::BadValue {
            allowed: spec.allowed,
        };
        let int = |lo: i64, hi: i64| -> Result<i64, KnobError> {
            let v = match value {
                toml::Value::Integer(i) => *i,
                toml::Value::String(s) => s.trim().parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        match key {
            "net.ipv4.ip_local_port_range" => {
                let text = value.as_str().ok_or_else(bad)?;
                let nums: Vec<u16> = text
                    .split_whitespace()
                    .map(|t| t.parse::<u16>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad())?;
                let [lo, hi] = nums[..] else {
                    return Err(bad());
                };
                if lo == 0 || lo > hi {
                    return Err(bad());
                }
                self.port_range = (lo, hi);
            }
            "net.ipv4.ip_local_reserved_ports" => {
                let text = match value {
                    toml::Value::Integer(i) => i.to_string(),
                    v => v.as_str().ok_or_else(bad)?.to_string(),
                };
                self.reserved_ports = parse_port_list(&text).ok_or_else(bad)?;
            }
            "net.ipv4.ip_unprivileged_port_start" => {
                self.unprivileged_port_start = int(0, 65535)? as u16
            }
            "net.ipv4.tcp_tw_reuse" => {
                // Before 4.19 there is no loopback-only value: any non-zero enables reuse.
                let v = int(0, 2)? as u8;
                let loopback = self
                    .linux_version
                    .is_none_or(linux_versions::has_loopback_reuse);
                self.tw_reuse = if loopback { v } else { v.min(1) };
            }
            "net.ipv4.tcp_tw_recycle" => {
                self.tw_recycle = int(0, 1)? == 1;
                self.time_wait = if self.tw_recycle {
                    linux_versions::TW_RECYCLE_LEN
                } else {
                    Duration::from_secs(60)
                };
            }
            "net.ipv4.tcp_tw_reuse_delay" => self.tw_reuse_delay_ms = int(1, 60_000)? as u32,
            "net.ipv4.tcp_invalid_ratelimit" => self.invalid_ratelimit_ms = int(0, 60_000)? as u32,
            "net.ipv4.tcp_timestamps" => {
                self.timestamps = int(0, 2)? as u8;
                self.ts_offset = match (self.timestamps, self.linux_version) {
                    (1, Some(v)) => linux_versions::ts_offset(v),
                    (1, None) => TsOffset::PerHostPair,
                    _ => TsOffset::None,
                };
            }
            "net.ipv4.tcp_max_tw_buckets" => {
                self.max_tw_buckets = int(0, i64::from(i32::MAX))? as u32
            }
            "net.ipv4.tcp_rfc1337" => self.tw_rst_kills = int(0, 1)? == 0,
            "net.ipv4.tcp_syn_retries" => self.syn_retries = int(1, 127)? as u8,
            "net.ipv4.tcp_syn_linear_timeouts" => self.syn_linear = int(0, 127)? as u8,
            "net.ipv4.ip_autobind_reuse" => self.autobind_reuse = int(0, 1)? == 1,
            "net.inet.ip.portrange.first" => self.port_range.0 = int(1, 65535)? as u16,
            "net.inet.ip.portrange.last" => self.port_range.1 = int(1, 65535)? as u16,
            "net.inet.ip.portrange.randomized" | "net.inet.tcp.randomize_ports" => {
                self.selection = Selection::BsdCursor {
                    random_start: int(0, 1)? == 1,
                }
            }
            "net.inet.tcp.msl" => {
                self.time_wait = Duration::from_millis(2 * int(1, 600_000)? as u64)
            }
            "net.inet.tcp.nolocaltimewait" => self.local_time_wait = int(0, 1)? == 0,
            "net.inet.tcp.rfc1323" => self.timestamps = if int(0, 1)? == 1 { 2 } else { 0 },
            "net.inet.tcp.keepinit" => {
                self.connect_timeout = Some(Duration::from_millis(int(1, 3_600_000)? as u64))
            }
            "TcpTimedWaitDelay" => self.time_wait = Duration::from_secs(int(30, 300)? as u64),
            "TcpMaxConnectRetransmissions" => self.syn_retries = int(0, 255)? as u8,
            "dynamicport.tcp.start" => {
                let num = u32::from(self.port_range.1) - u32::from(self.port_range.0) + 1;
                let start = int(1025, 65535)? as u32;
                self.port_range = (start as u16, (start + num - 1).min(65535) as u16);
            }
            "dynamicport.tcp.num" => {
                let num = int(255, 64511)? as u32;
                let end = u32::from(self.port_range.0) + num - 1;
                if end > 65535 {
                    return Err(bad());
                }
                self.port_range.1 = end as u16;
            }
            _ => unreachable!("every knob table entry is handled"),
        }
        Ok(())
    }

    /// Applies `key = value` from `[host.model]`.
    pub fn set_model(&mut self, key: &str, value: &toml::Value) -> Result<(), KnobError> {
        let spec =
            MODEL_PARAMS
                .iter()
                .find(|k| k.name == key)
                .ok_or_else(|| KnobError::Unknown {
                    suggestion: nearest(key, MODEL_PARAMS.iter().map(|k| k.name)),
                    elsewhere: None,
                })?;
        let bad = || KnobError::BadValue {
            allowed: spec.allowed,
        };
        let text = || value.as_str().ok_or_else(bad);
        let duration = || {
            value
                .as_str()
                .and_then(|s| Duration::parse(s).ok())
                .filter(|d| d.0 > 0)
                .ok_or_else(bad)
        };
        match key {
            "time_wait" => self.time_wait = duration()?,
            "syn_rto" => self.syn_rto = duration()?,
            "syn_rearm" => {
                self.syn_rearm = match text()? {
                    "none" => None,
                    _ => Some(duration()?),
                }
            }
            "syn_backoff" => {
                self.syn_backoff = match text()? {
                    "doubling" => Backoff::Doubling,
                    "bsd" => Backoff::Table(BSD_SYN_BACKOFF.to_vec()),
                    _ => return Err(bad()),
                }
            }
            "syn_retries" => {
                self.syn_retries = value
                    .as_integer()
                    .filter(|v| (0..=255).contains(v))
                    .ok_or_else(bad)? as u8
            }
            "connect_timeout" => {
                self.connect_timeout = match text()? {
                    "none" => None,
                    _ => Some(duration()?),
                }
            }
            "port_selection" => self.selection = Selection::parse(text()?).ok_or_else(bad)?,
            "port_scope" => {
                self.scope = match text()? {
                    "four-tuple" => Scope::FourTuple,
                    "host-wide" => Scope::HostWide,
                    _ => return Err(bad()),
                }
            }
            "isn" => self.isn = Isn::parse(text()?).ok_or_else(bad)?,
            "time_wait_timer" => {
                let hz = match self.tw_timer {
                    TwTimer::Wheel { hz } | TwTimer::DeathRow { hz } => hz,
                    TwTimer::Exact | TwTimer::Scan { .. } => DEFAULT_HZ,
                };
                self.tw_timer = match text()? {
                    "wheel" => TwTimer::Wheel { hz },
                    "death-row" => TwTimer::DeathRow { hz },
                    "exact" => TwTimer::Exact,
                    "scan" => TwTimer::Scan { period_ms: 500 },
                    _ => return Err(bad()),
                }
            }
            "hz" if value.as_str() == Some("none") => self.tw_timer = TwTimer::Exact,
            "hz" => {
                let hz = value
                    .as_integer()
                    .filter(|v| [100, 250, 300, 1000].contains(v))
                    .ok_or_else(bad)? as u16;
                self.tw_timer = match self.tw_timer {
                    TwTimer::DeathRow { .. } => TwTimer::DeathRow { hz },
                    TwTimer::Wheel { .. } | TwTimer::Exact | TwTimer::Scan { .. } => {
                        TwTimer::Wheel { hz }
                    }
                }
            }
            "time_wait_syn" => {
                self.tw_accept = match text()? {
                    "seq-or-timestamp" => TwAccept::SeqOrTimestamp,
                    "seq" => TwAccept::Seq {
                        window: 0,
                        paws: false,
                    },
                    "paws-seq-beyond-window" => TwAccept::Seq {
                        window: XNU_TW_WINDOW,
                        paws: true,
                    },
                    _ => return Err(bad()),
                }
            }
            "timestamp_offset" => {
                self.ts_offset = match text()? {
                    "none" => TsOffset::None,
                    "per-host-pair" => TsOffset::PerHostPair,
                    "per-tuple" => TsOffset::PerTuple,
                    "per-connection" => TsOffset::PerConnection,
                    _ => return Err(bad()),
                }
            }
            "syn_rto_local" => {
                self.syn_rto_local = match text()? {
                    "none" => None,
                    _ => Some(duration()?),
                }
            }
            "syn_timestamps_until" => {
                self.syn_drop_ts_after = match value {
                    toml::Value::String(s) if s == "always" => None,
                    toml::Value::Integer(v) if (0..=255).contains(v) => Some(*v as u8),
                    _ => return Err(bad()),
                }
            }
            "time_wait_syn_reject" => {
                self.tw_reject = match text()? {
                    "ack" => TwReject::Ack,
                    "drop" => TwReject::Drop,
                    _ => return Err(bad()),
                }
            }
            "time_wait_rst" => {
                self.tw_rst_kills = match text()? {
                    "kill" => true,
                    "ignore" => false,
                    _ => return Err(bad()),
                }
            }
            "exhaustion_error" => {
                self.errors[Errno::AddrNotAvail.index()] = match text()? {
                    "WSAENOBUFS" => WSAENOBUFS,
                    "WSAEADDRINUSE" => WSAEADDRINUSE,
                    "WSAEADDRNOTAVAIL" => ("WSAEADDRNOTAVAIL", 10049),
                    "EADDRNOTAVAIL" => match self.kernel {
                        Kernel::Linux => LINUX_ERRORS[1],
                        _ => BSD_ERRORS[1],
                    },
                    _ => return Err(bad()),
                }
            }
            "connect_cost_fixed" | "connect_cost_per_probe" => {
                self.connect_cost.set(key, value).ok_or_else(bad)?
            }
            _ => unreachable!("every MODEL_PARAMS entry is handled"),
        }
        Ok(())
    }

    /// Checks the profile as the kernel's own handlers would.
    pub fn validate(&self) -> Result<(), String> {
        let (lo, hi) = self.port_range;
        match self.kernel {
            Kernel::Linux if lo < self.unprivileged_port_start => Err(format!(
                "net.ipv4.ip_local_port_range starts at {lo} below \
                 net.ipv4.ip_unprivileged_port_start = {}; the kernel refuses this with EINVAL",
                self.unprivileged_port_start
            )),
            Kernel::FreeBsd | Kernel::MacOs if lo > hi => Err(format!(
                "net.inet.ip.portrange.first = {lo} is above last = {hi}; portsim needs \
                 first ≤ last (the kernel swaps them, §3.1)"
            )),
            _ => Ok(()),
        }
    }

    /// Legal but surprising settings, as the kernel would warn.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let (lo, hi) = self.port_range;
        // 07f4c90062f8 (4.2) added the parity scan and this warning; 3.10 scans every port.
        if self.kernel == Kernel::Linux
            && self.selection != Selection::LinuxPre42
            && lo % 2 == hi % 2
            && lo != hi
        {
            w.push(format!(
                "net.ipv4.ip_local_port_range {lo} {hi}: both ends have the same parity; Linux warns \
                 \"prefer different parity for start/end values\" and connect() never uses one port"
            ));
        }
        w
    }

    /// The effective value of every knob and model parameter, in table order, as TOML values;
    /// a sysctl the profile's release lacks shows the behaviour it has (`tcp_syn_linear_timeouts
    /// = 0` before 6.5).
    pub fn knob_values(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = self
            .knobs()
            .iter()
            .map(|k| (k.name, self.knob_value(k.name)))
            .collect();
        out.extend(
            MODEL_PARAMS
                .iter()
                .map(|k| (k.name, self.model_value(k.name))),
        );
        out
    }

    /// A knob's value as the kernel prints it (`/proc/sys` text, no TOML quotes).
    pub fn sysctl_text(&self, key: &str) -> String {
        self.knob_value(key).trim_matches('"').to_string()
    }

    fn knob_value(&self, key: &str) -> String {
        let (lo, hi) = self.port_range;
        let q = |s: String| format!("\"{s}\"");
        let b = |x: bool| u8::from(x).to_string();
        let random_start = matches!(self.selection, Selection::BsdCursor { random_start: true });
        match key {
            "net.ipv4.ip_local_port_range" => q(format!("{lo} {hi}")),
            "net.ipv4.ip_local_reserved_ports" => q(self
                .reserved_ports
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")),
            "net.ipv4.ip_unprivileged_port_start" => self.unprivileged_port_start.to_string(),
            "net.ipv4.tcp_tw_reuse" => self.tw_reuse.to_string(),
            "net.ipv4.tcp_tw_reuse_delay" => self.tw_reuse_delay_ms.to_string(),
            "net.ipv4.tcp_invalid_ratelimit" => self.invalid_ratelimit_ms.to_string(),
            "net.ipv4.tcp_tw_recycle" => b(self.tw_recycle),
            "net.ipv4.tcp_timestamps" => self.timestamps.to_string(),
            "net.ipv4.tcp_max_tw_buckets" => self.max_tw_buckets.to_string(),
            "net.ipv4.tcp_rfc1337" => b(!self.tw_rst_kills),
            "net.ipv4.tcp_syn_retries" | "TcpMaxConnectRetransmissions" => {
                self.syn_retries.to_string()
            }
            "net.ipv4.tcp_syn_linear_timeouts" => self.syn_linear.to_string(),
            "net.ipv4.ip_autobind_reuse" => b(self.autobind_reuse),
            "net.inet.ip.portrange.first" => lo.to_string(),
            "net.inet.ip.portrange.last" => hi.to_string(),
            "net.inet.ip.portrange.randomized" | "net.inet.tcp.randomize_ports" => b(random_start),
            "net.inet.tcp.msl" => (self.time_wait.0 / 2_000_000).to_string(),
            "net.inet.tcp.nolocaltimewait" => b(!self.local_time_wait),
            "net.inet.tcp.rfc1323" => b(self.timestamps != 0),
            "net.inet.tcp.keepinit" => self
                .connect_timeout
                .map_or("0".into(), |d| (d.0 / 1_000_000).to_string()),
            "TcpTimedWaitDelay" => (self.time_wait.0 / 1_000_000_000).to_string(),
            "dynamicport.tcp.start" => lo.to_string(),
            "dynamicport.tcp.num" => self.range_len().to_string(),
            _ => String::new(),
        }
    }

    fn model_value(&self, key: &str) -> String {
        let q = |s: &str| format!("\"{s}\"");
        match key {
            "time_wait" => q(&self.time_wait.to_string()),
            "syn_rto" => q(&self.syn_rto.to_string()),
            "syn_rearm" => q(&self.syn_rearm.map_or("none".into(), |d| d.to_string())),
            "syn_backoff" => q(match self.syn_backoff {
                Backoff::Doubling => "doubling",
                Backoff::Table(_) => "bsd",
            }),
            "syn_retries" => self.syn_retries.to_string(),
            "connect_timeout" => q(&self
                .connect_timeout
                .map_or("none".into(), |d| d.to_string())),
            "port_selection" => q(self.selection.name()),
            "port_scope" => q(match self.scope {
                Scope::FourTuple => "four-tuple",
                Scope::HostWide => "host-wide",
            }),
            "isn" => q(self.isn.name()),
            "time_wait_timer" => q(match self.tw_timer {
                TwTimer::Exact => "exact",
                TwTimer::Wheel { .. } => "wheel",
                TwTimer::DeathRow { .. } => "death-row",
                TwTimer::Scan { .. } => "scan",
            }),
            "hz" => match self.tw_timer {
                TwTimer::Wheel { hz } | TwTimer::DeathRow { hz } => hz.to_string(),
                TwTimer::Exact | TwTimer::Scan { .. } => "\"none\"".into(),
            },
            "time_wait_syn" => q(match self.tw_accept {
                TwAccept::SeqOrTimestamp => "seq-or-timestamp",
                TwAccept::Seq { paws: false, .. } => "seq",
                TwAccept::Seq { paws: true, .. } => "paws-seq-beyond-window",
            }),
            "timestamp_offset" => q(match self.ts_offset {
                TsOffset::None => "none",
                TsOffset::PerHostPair => "per-host-pair",
                TsOffset::PerTuple => "per-tuple",
                TsOffset::PerConnection => "per-connection",
            }),
            "syn_rto_local" => q(&self.syn_rto_local.map_or("none".into(), |d| d.to_string())),
            "syn_timestamps_until" => self
                .syn_drop_ts_after
                .map_or("\"always\"".into(), |n| n.to_string()),
            "connect_cost_fixed" | "connect_cost_per_probe" => self.connect_cost.value(key),
            "time_wait_syn_reject" => q(match self.tw_reject {
                TwReject::Ack => "ack",
                TwReject::Drop => "drop",
            }),
            "time_wait_rst" => q(if self.tw_rst_kills { "kill" } else { "ignore" }),
            "exhaustion_error" => q(self.errno(Errno::AddrNotAvail).0),
            _ => String::new(),
        }
    }

    /// The profile as a `[[host]]` block a user can paste into a scenario: every knob and
    /// model parameter with its current value, what it means and where it comes from.
    pub fn to_toml_block(&self, name: &str) -> String {
        let mut s = String::new();
        let all = all_profiles();
        let title = all
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(name, |(_, t)| t);
        let _ = writeln!(s, "# portsim profile \"{name}\": {title}.");
        let _ = writeln!(
            s,
            "# Sections (§) refer to shared/reference/stack-semantics.md. Delete the lines you keep at\n\
             # their defaults; [host.knobs] takes the kernel's own names, [host.model] the rest.\n"
        );
        if let Some(v) = self.linux_version.filter(|_| self.kernel == Kernel::Linux) {
            let _ = writeln!(
                s,
                "# Linux {}.{}: rules of later releases rolled back:",
                v.0, v.1
            );
            for r in linux_versions::RULES.iter().filter(|r| r.since > v) {
                let _ = writeln!(
                    s,
                    "#   {}.{} {} \"{}\": {}",
                    r.since.0, r.since.1, r.commit, r.title, r.what
                );
            }
            let _ = writeln!(s);
        }
        if let Some(r) = linux_versions::release(name) {
            let _ = writeln!(s, "# CONFIG_HZ {}: {}\n", r.hz, r.hz_source);
        }
        let _ = writeln!(s, "[[host]]\nname = \"client\"\nprofile = \"{name}\"");
        let _ = writeln!(s, "ips = [\"10.0.0.1\"]\n\n[host.knobs]");
        for k in self.knobs() {
            if self.release_has(k.name).is_ok() {
                write_param(&mut s, k, &self.knob_value(k.name), true);
            }
        }
        let _ = writeln!(s, "\n[host.model]");
        for k in MODEL_PARAMS {
            let value = self.model_value(k.name);
            match self
                .knobs()
                .iter()
                .filter(|kn| self.release_has(kn.name).is_ok())
                .find(|kn| SETS.contains(&(kn.name, k.name)))
            {
                // Model parameters apply after knobs: left active, this line would silently
                // undo an edit of the knob above.
                Some(kn) => {
                    let _ = writeln!(s, "# {} = {value}   (set through \"{}\")", k.name, kn.name);
                }
                None => write_param(&mut s, k, &value, false),
            }
        }
        s
    }
}

fn write_param(s: &mut String, k: &KnobSpec, value: &str, quote_key: bool) {
    let _ = writeln!(s, "# {} ({}). Allowed: {}.", k.doc, k.section, k.allowed);
    if quote_key {
        let _ = writeln!(s, "\"{}\" = {value}", k.name);
    } else {
        let _ = writeln!(s, "{} = {value}", k.name);
    }
}

/// (knob, model parameter) pairs where the knob sets the parameter.
const SETS: &[(&str, &str)] = &[
    ("net.ipv4.tcp_rfc1337", "time_wait_rst"),
    ("net.ipv4.tcp_timestamps", "timestamp_offset"),
    ("net.ipv4.tcp_syn_retries", "syn_retries"),
    ("net.inet.ip.portrange.randomized", "port_selection"),
    ("net.inet.tcp.randomize_ports", "port_selection"),
    ("net.inet.tcp.msl", "time_wait"),
    ("net.inet.tcp.keepinit", "connect_timeout"),
    ("TcpTimedWaitDelay", "time_wait"),
    ("TcpMaxConnectRetransmissions", "syn_retries"),
];

/// XNU's TIME-WAIT accepts a SYN only beyond its receive window (§3.4). The window a closed
/// socket advertises is its receive buffer; 131,072 bytes (`net.inet.tcp.recvspace` on
/// current macOS) is assumed (UNVERIFIED). With a random ISN it changes acceptance by
/// window / 2^32 ≈ 0.003 %.
pub const XNU_TW_WINDOW: u32 = 131_072;

/// A settable parameter: its name, what values it takes, what it does and where from.
pub struct KnobSpec {
    pub name: &'static str,
    pub allowed: &'static str,
    pub section: &'static str,
    pub doc: &'static str,
}

const fn knob(
    name: &'static str,
    allowed: &'static str,
    section: &'static str,
    doc: &'static str,
) -> KnobSpec {
    KnobSpec {
        name,
        allowed,
        section,
        doc,
    }
}

/// Linux sysctls portsim models.
pub const LINUX_KNOBS: &[KnobSpec] = &[
    knob(
        "net.ipv4.ip_local_port_range",
        "\"LOW HIGH\", 1 ≤ LOW ≤ HIGH ≤ 65535, e.g. \"32768 60999\"",
        "§1.1",
        "ephemeral range, inclusive",
    ),
    knob(
        "net.ipv4.ip_local_reserved_ports",
        "a comma-separated list of ports and ranges, e.g. \"40000,40010-40020\"",
        "§1.3",
        "ports connect() and bind(0) skip",
    ),
    knob(
        "net.ipv4.ip_unprivileged_port_start",
        "an integer 0–65535",
        "§1.1",
        "the range may not start below it",
    ),
    knob(
        "net.ipv4.tcp_tw_reuse",
        "0, 1 or 2",
        "§2.3",
        "connect() may take over a TIME-WAIT four-tuple after the delay: 1 always, 2 loopback only",
    ),
    knob(
        "net.ipv4.tcp_tw_reuse_delay",
        "milliseconds, 1–60000",
        "§2.3",
        "age a TIME-WAIT needs before tcp_tw_reuse applies",
    ),
    knob(
        "net.ipv4.tcp_invalid_ratelimit",
        "milliseconds, 0–60000 (0: no limit)",
        "§2.4",
        "a TIME-WAIT answers the SYNs it refuses with at most one ACK per interval (tcp_oow_rate_limited; 4.0+)",
    ),
    knob(
        "net.ipv4.tcp_tw_recycle",
        "0 or 1",
        "§2.3",
        "before 4.12 only: TIME-WAIT lasts 3.5 × RTO (0.7 s at the 200 ms RTO floor); the SYN drop per peer timestamp is not modelled",
    ),
    knob(
        "net.ipv4.tcp_timestamps",
        "0, 1 or 2",
        "§2.3",
        "timestamps: 1 with a per-pair offset, 2 without",
    ),
    knob(
        "net.ipv4.tcp_max_tw_buckets",
        "an integer ≥ 0",
        "§2.2",
        "TIME-WAIT sockets beyond this close at once (ehash/2; 131072 on the 24 GiB dev machine)",
    ),
    knob(
        "net.ipv4.tcp_rfc1337",
        "0 or 1",
        "§2.4, §5.2",
        "1: an RST does not kill a TIME-WAIT",
    ),
    knob(
        "net.ipv4.tcp_syn_retries",
        "an integer 1–127",
        "§2.4",
        "SYN retransmissions before ETIMEDOUT (intervals double from 1 s)",
    ),
    knob(
        "net.ipv4.tcp_syn_linear_timeouts",
        "an integer 0–127 (0 in this profile, as before 6.5; 6.5+ default 4)",
        "§2.4",
        "SYN waits kept at 1 s before doubling; the give-up time stays the doubling total",
    ),
    knob(
        "net.ipv4.ip_autobind_reuse",
        "0 or 1",
        "§1.6",
        "bind(0) may share a port in a relaxed second round",
    ),
];

/// FreeBSD sysctls portsim models.
pub const FREEBSD_KNOBS: &[KnobSpec] = &[
    knob(
        "net.inet.ip.portrange.first",
        "a port 1–65535",
        "§3.1",
        "first ephemeral port (IPPORT_EPHEMERALFIRST)",
    ),
    knob(
        "net.inet.ip.portrange.last",
        "a port 1–65535",
        "§3.1",
        "last ephemeral port (IPPORT_EPHEMERALLAST)",
    ),
    knob(
        "net.inet.ip.portrange.randomized",
        "0 or 1",
        "§3.1",
        "1: each connect() starts at a random port, then goes sequentially (RFC 6056 Alg 1); 0: one sequential cursor",
    ),
    knob(
        "net.inet.tcp.msl",
        "milliseconds, 1–600000",
        "§3.2",
        "TIME-WAIT lasts 2 × msl (TCPTV_MSL = 30 s; the ms unit is UNVERIFIED from the man page)",
    ),
    knob(
        "net.inet.tcp.nolocaltimewait",
        "0 or 1",
        "§3.2",
        "1: an active close toward a local address skips TIME-WAIT (default 1 in current source; release UNVERIFIED)",
    ),
    knob(
        "net.inet.tcp.rfc1323",
        "0 or 1",
        "§3.2",
        "timestamps (PAWS is not applied to SYNs in TIME-WAIT)",
    ),
    knob(
        "net.inet.tcp.keepinit",
        "milliseconds, 1–3600000",
        "§3.2",
        "connect() gives up this long after the first SYN (TCPTV_KEEP_INIT 75 s)",
    ),
];

/// macOS sysctls portsim models.
pub const MACOS_KNOBS: &[KnobSpec] = &[
    knob(
        "net.inet.ip.portrange.first",
        "a port 1–65535",
        "§3.3",
        "first ephemeral port (IPPORT_HIFIRSTAUTO)",
    ),
    knob(
        "net.inet.ip.portrange.last",
        "a port 1–65535",
        "§3.3",
        "last ephemeral port (IPPORT_HILASTAUTO)",
    ),
    knob(
        "net.inet.tcp.randomize_ports",
        "0 or 1",
        "§3.3",
        "0: one sequential cursor for the whole host; 1: random start per connect(), then sequential",
    ),
    knob(
        "net.inet.tcp.msl",
        "milliseconds, 1–600000",
        "§3.4",
        "TIME-WAIT lasts 2 × msl (TCPTV_MSL = 15000 ms)",
    ),
    knob(
        "net.inet.tcp.rfc1323",
        "0 or 1",
        "§3.4",
        "timestamps (the TIME-WAIT SYN test is sequence-only)",
    ),
    knob(
        "net.inet.tcp.keepinit",
        "milliseconds, 1–3600000",
        "§3.4",
        "connect() gives up this long after the first SYN (TCPTV_KEEP_INIT 75 s)",
    ),
];

/// Windows settings portsim models: `netsh int ipv4 set dynamicport tcp start=… num=…` and
/// the registry values under HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters.
pub const WINDOWS_KNOBS: &[KnobSpec] = &[
    knob(
        "dynamicport.tcp.start",
        "1025–65535, with start + num − 1 ≤ 65535",
        "§4",
        "netsh int ipv4 set dynamicport tcp start=",
    ),
    knob(
        "dynamicport.tcp.num",
        "255–64511, with start + num − 1 ≤ 65535",
        "§4",
        "netsh int ipv4 set dynamicport tcp num=",
    ),
    knob(
        "TcpTimedWaitDelay",
        "seconds, 30–300",
        "§4",
        "TIME-WAIT length; 120 s per the BizTalk guide, \"4 minutes\" (240) per the port-exhaustion page: UNVERIFIED",
    ),
    knob(
        "TcpMaxConnectRetransmissions",
        "an integer 0–255",
        "§4",
        "SYN retransmissions before WSAETIMEDOUT; default 2 with a 3 s initial RTO, the classic 21 s connect timeout (UNVERIFIED)",
    ),
];

/// Model parameters, valid on every profile: behaviour no knob exposes, and every item the
/// reference marks UNVERIFIED.
pub const MODEL_PARAMS: &[KnobSpec] = &[
    knob(
        "port_selection",
        Selection::NAMES,
        "§1.2, §3.1, §3.3, §5.1",
        "connect() port-selection algorithm. Windows: bsd-sequential assumed, UNVERIFIED (SO_RANDOMIZE_PORT would be bsd-random-start)",
    ),
    knob(
        "port_scope",
        "\"four-tuple\" or \"host-wide\"",
        "§1.3, §3.1, §3.3, §4",
        "what blocks a candidate: a busy four-tuple, or any socket on the port (XNU; Windows without SO_REUSE_UNICASTPORT)",
    ),
    knob(
        "time_wait",
        "a positive duration, e.g. \"60s\"",
        "§2.1, §3.2, §3.4, §4",
        "TIME-WAIT length (Linux: TCP_TIMEWAIT_LEN, fixed at build time)",
    ),
    knob(
        "time_wait_timer",
        "\"wheel\" (Linux 4.8+), \"death-row\" (Linux before 4.1), \"scan\" (FreeBSD 13, every 500 ms) or \"exact\"",
        "kernel/time/timer.c calc_wheel_index; net/ipv4/inet_timewait_sock.c",
        "how the TIME-WAIT timer is kept: on the timer wheel a 60 s TIME-WAIT lasts (60, 60 + granularity] s (2.048 s at HZ=250); on the death row (52.5, 60] s; exact: 60 s (src/tw_timer.rs)",
    ),
    knob(
        "hz",
        "100, 250, 300, 1000, or \"none\" (exact timers)",
        "CONFIG_HZ",
        "the kernel's tick rate, which sets the timer wheel's granularity (linux: 250, measured on 6.18; RHEL and Fedora build 1000). Set on a profile with exact timers, it turns the wheel on",
    ),
    knob(
        "isn",
        Isn::NAMES,
        "§2.4, §3.2, §3.4",
        "initial sequence numbers, which decide whether a TIME-WAIT accepts a new SYN. Windows: rfc6528 assumed, UNVERIFIED",
    ),
    knob(
        "time_wait_syn",
        "\"seq-or-timestamp\", \"seq\" or \"paws-seq-beyond-window\"",
        "§2.4, §3.2, §3.4",
        "when a TIME-WAIT accepts a SYN for its tuple (XNU: PAWS first, and a PAWS failure is dropped silently). Windows: seq assumed (RFC 1122), UNVERIFIED",
    ),
    knob(
        "timestamp_offset",
        "\"none\", \"per-host-pair\", \"per-tuple\" or \"per-connection\"",
        "§2.3; notes/xnu-research.md §3",
        "what is added to the ms clock in TSval (Linux: the tcp_timestamps knob). macOS ≤ 14: random per connection; macOS 15+: per tuple",
    ),
    knob(
        "time_wait_syn_reject",
        "\"ack\" or \"drop\"",
        "§2.4, §3.2, §3.4",
        "what a TIME-WAIT does with a SYN it refuses. Windows: ack assumed, UNVERIFIED (RFC 6191 says drop)",
    ),
    knob(
        "time_wait_rst",
        "\"kill\" or \"ignore\"",
        "§2.4, §3.2, §3.4, §5.2",
        "an RST reaching a TIME-WAIT (Linux: the tcp_rfc1337 knob). Windows: ignore assumed (RFC 1337), UNVERIFIED",
    ),
    knob(
        "syn_rto",
        "a positive duration, e.g. \"1s\"",
        "§2.4",
        "initial SYN retransmission timeout",
    ),
    knob(
        "syn_rto_local",
        "a positive duration or \"none\"",
        "notes/xnu-research.md §5",
        "initial SYN timeout toward a local address. macOS: 100 ms once the loopback route caches an RTT (typical on a used machine; UNVERIFIED for any given Mac); \"none\" = syn_rto",
    ),
    knob(
        "syn_timestamps_until",
        "a retransmission count 0–255 or \"always\"",
        "notes/xnu-research.md §4",
        "from this SYN retransmission on, SYNs carry no timestamps (XNU broken_peer_syn_rexmit_thres = 10)",
    ),
    knob(
        "syn_backoff",
        "\"doubling\" or \"bsd\"",
        "§2.4, §3.4",
        "interval growth: rto × 2^k, or rto × tcp_syn_backoff[k] = 1,1,1,1,1,2,4,8,16,32,64,64,64",
    ),
    knob(
        "syn_retries",
        "an integer 0–255",
        "§2.4",
        "SYN retransmissions before the connect fails (Linux: the tcp_syn_retries knob)",
    ),
    knob(
        "connect_timeout",
        "a positive duration or \"none\"",
        "§3.2",
        "give up this long after the first SYN (BSD keepinit)",
    ),
    knob(
        "syn_rearm",
        "a positive duration or \"none\"",
        "§2.4; notes/linux-observations I",
        "Linux re-arms the SYN timer to TCP_TIMEOUT_MIN on the first ACK that does not acknowledge the SYN",
    ),
    knob(
        "exhaustion_error",
        "\"WSAENOBUFS\", \"WSAEADDRINUSE\", \"WSAEADDRNOTAVAIL\" or \"EADDRNOTAVAIL\"",
        "§4, §7",
        "the error connect() returns when no port is left. Windows: WSAENOBUFS 10055 assumed, UNVERIFIED (sometimes reported as 10048)",
    ),
    knob(
        cost::PARAMS[0],
        cost::ALLOWED,
        "net/ipv4/inet_hashtables.c __inet_hash_connect; portsim live --calibrate",
        "CPU time a connect() or bind() port search holds its thread, once per call. Every profile: 0 (not charged); the reference machine (Linux 6.18) measured 5577ns (src/profile/cost.rs); measure yours with `portsim live --calibrate`",
    ),
    knob(
        cost::PARAMS[1],
        cost::ALLOWED,
        "net/ipv4/inet_hashtables.c __inet_hash_connect; portsim live --calibrate",
        "CPU time per candidate port the search examines (`probes`). Every profile: 0 (not charged); the reference machine (Linux 6.18) measured 38ns",
    ),
];

/// Why a knob or model parameter was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KnobError {
    Unknown {
        suggestion: Option<&'static str>,
        /// The profile whose kernel has this knob, when another one does.
        elsewhere: Option<&'static str>,
    },
    BadValue {
        allowed: &'static str,
    },
    /// The profile's Linux release lacks the sysctl: why ("arrived in Linux 6.14").
    NotInRelease {
        why: String,
    },
}

impl fmt::Display for KnobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnobError::Unknown {
                elsewhere: Some(p), ..
            } => write!(
                f,
                "not a knob of this profile; it belongs to the \"{p}\" profile"
            ),
            KnobError::Unknown {
                suggestion: Some(s),
                ..
            } => write!(f, "not a knob of this profile; did you mean \"{s}\"?"),
            KnobError::Unknown { .. } => write!(
                f,
                "not a knob of this profile (`portsim profile show NAME` lists them)"
            ),
            KnobError::BadValue { allowed } => write!(f, "bad value; allowed: {allowed}"),
            KnobError::NotInRelease { why } => write!(
                f,
                "this kernel release has no such sysctl: it {why} (pick a newer profile, \
                 `portsim profiles` lists them)"
            ),
        }
    }
}

fn other_kernel(key: &str) -> Option<&'static str> {
    [
        ("linux", LINUX_KNOBS),
        ("freebsd", FREEBSD_KNOBS),
        ("macos", MACOS_KNOBS),
        ("windows", WINDOWS_KNOBS),
    ]
    .into_iter()
    .find(|(_, t)| t.iter().any(|k| k.name == key))
    .map(|(p, _)| p)
}

fn parse_port_list(text: &str) -> Option<Vec<(u16, u16)>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if a == 0 || a > b {
            return None;
        }
        out.push((a, b));
    }
    Some(out)
}

/// The candidate closest to `word` by edit distance, if any is reasonably close.
pub fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> toml::Value {
        toml::Value::String(v.into())
    }

    #[test]
    fn usable_ports_are_the_range_minus_the_union_of_reserved_ranges() {
        let mut x = 7u64;
        for _ in 0..500 {
            let mut p = Profile::linux();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lo = 1024 + (x % 2000) as u16;
            p.port_range = (lo, lo + (x >> 12) as u16 % 3000);
            p.reserved_ports = (0..(x >> 30) % 5)
                .map(|i| {
                    let a = 900 + ((x >> (8 * i)) % 5000) as u16;
                    (a, a + ((x >> (3 * i)) % 700) as u16)
                })
                .collect();
            let (lo, hi) = p.port_range;
            let slow = (lo..=hi).filter(|&q| !p.is_reserved(q)).count() as u32;
            assert_eq!(
                p.usable_ports(),
                slow,
                "{:?} {:?}",
                p.port_range,
                p.reserved_ports
            );
        }
    }

    #[test]
    fn knobs_override_linux_defaults_by_sysctl_name() {
        let mut p = Profile::linux();
        assert_eq!(p.range_len(), 28232);
        p.set_knob("net.ipv4.ip_local_port_range", &s("49152 65535"))
            .unwrap();
        assert_eq!(p.range_len(), 16384);
        p.set_knob("net.ipv4.tcp_tw_reuse", &toml::Value::Integer(0))
            .unwrap();
        assert_eq!(p.tw_reuse, 0);
        p.set_knob("net.ipv4.ip_local_reserved_ports", &s("50000,50010-50012"))
            .unwrap();
        assert!(p.is_reserved(50011) && !p.is_reserved(50013));
    }

    #[test]
    fn bad_knobs_name_what_is_allowed() {
        let mut p = Profile::linux();
        let e = p
            .set_knob("net.ipv4.tcp_tw_reuse", &toml::Value::Integer(3))
            .unwrap_err();
        assert!(e.to_string().contains("0, 1 or 2"));
        let e = p
            .set_knob("net.ipv4.tcp_tw_resue", &toml::Value::Integer(1))
            .unwrap_err();
        assert_eq!(
            e,
            KnobError::Unknown {
                suggestion: Some("net.ipv4.tcp_tw_reuse"),
                elsewhere: None,
            }
        );
        let e = p
            .set_knob("net.ipv4.ip_local_port_range", &s("60999 32768"))
            .unwrap_err();
        assert!(matches!(e, KnobError::BadValue { .. }));
        let e = p
            .set_knob("net.inet.tcp.msl", &toml::Value::Integer(1000))
            .unwrap_err();
        assert!(e.to_string().contains("\"freebsd\" profile"), "{e}");
    }

    #[test]
    fn a_range_below_the_unprivileged_start_is_refused_like_the_kernel() {
        let mut p = Profile::linux();
        p.set_knob("net.ipv4.ip_local_port_range", &s("1000 60999"))
            .unwrap();
        assert!(p.validate().is_err());
    }

    #[test]
    fn bsd_msl_is_in_milliseconds_and_time_wait_is_twice_it() {
        let mut p = Profile::macos();
        assert_eq!(p.time_wait, Duration::from_secs(30));
        p.set_knob("net.inet.tcp.msl", &toml::Value::Integer(1000))
            .unwrap();
        assert_eq!(p.time_wait, Duration::from_secs(2));
        assert_eq!(Profile::freebsd().time_wait, Duration::from_secs(60));
    }

    #[test]
    fn windows_dynamicport_follows_netsh_limits() {
        let mut p = Profile::windows();
        assert_eq!(p.port_range, (49152, 65535));
        p.set_knob("dynamicport.tcp.start", &toml::Value::Integer(10000))
            .unwrap();
        assert_eq!(p.port_range, (10000, 26383));
        p.set_knob("dynamicport.tcp.num", &toml::Value::Integer(55536))
            .unwrap();
        assert_eq!(p.port_range, (10000, 65535));
        assert!(
            p.set_knob("dynamicport.tcp.num", &toml::Value::Integer(254))
                .is_err()
        );
        assert!(
            p.set_knob("dynamicport.tcp.start", &toml::Value::Integer(1024))
                .is_err()
        );
        p.set_knob("TcpTimedWaitDelay", &toml::Value::Integer(240))
            .unwrap();
        assert_eq!(p.time_wait, Duration::from_secs(240));
        assert!(
            p.set_knob("TcpTimedWaitDelay", &toml::Value::Integer(29))
                .is_err()
        );
    }

    #[test]
    fn syn_schedules_follow_each_kernel() {
        // Linux before 6.5: 1, 2, 4 … s after each transmission; 6.5+ with
        // tcp_syn_linear_timeouts = 4: five 1 s waits, then doubling (the 0, 1, 2, 3, 4, 5 s
        // SYNs measured on 6.18); BSD: tcp_syn_backoff × 1 s.
        let l = Profile::named("linux@6.1").unwrap();
        let sends: Vec<u64> = (0..4)
            .map(|k| l.syn_interval(k, false).0 / 1_000_000_000)
            .collect();
        assert_eq!(sends, [1, 2, 4, 8]);
        let l = Profile::linux();
        let sends: Vec<u64> = (0..7)
            .map(|k| l.syn_interval(k, false).0 / 1_000_000_000)
            .collect();
        assert_eq!(sends, [1, 1, 1, 1, 1, 2, 4]);
        let m = Profile::macos();
        let sends: Vec<u64> = (0..8)
            .map(|k| m.syn_interval(k, false).0 / 1_000_000_000)
            .collect();
        assert_eq!(sends, [1, 1, 1, 1, 1, 2, 4, 8]);
        let w = Profile::windows();
        let sends: Vec<u64> = (0..3)
            .map(|k| w.syn_interval(k, false).0 / 1_000_000_000)
            .collect();
        assert_eq!(
            sends,
            [3, 6, 12],
            "3 + 6 + 12 = the 21 s Windows connect timeout"
        );
        // XNU on loopback with a cached route RTT: the 10th retransmission leaves at 67 × 100 ms.
        let at = (0..10).map(|k| m.syn_interval(k, true).0).sum::<u64>();
        assert_eq!(at, 6_700_000_000);
    }

    #[test]
    fn every_profile_round_trips_through_its_own_toml_block() {
        for (name, _) in all_profiles() {
            let p = Profile::named(name).unwrap();
            let block = p.to_toml_block(name);
            let doc: toml::Table = block.parse().expect("valid TOML");
            let host = &doc["host"].as_array().unwrap()[0];
            let mut q = Profile::named(name).unwrap();
            // Start from a different profile's values where possible to prove the block sets them.
            for (k, v) in host["knobs"].as_table().unwrap() {
                q.set_knob(k, v)
                    .unwrap_or_else(|e| panic!("{name} {k}: {e}"));
            }
            for (k, v) in host["model"].as_table().unwrap() {
                q.set_model(k, v)
                    .unwrap_or_else(|e| panic!("{name} {k}: {e}"));
            }
            assert_eq!(p, q, "{name}");
        }
    }
}
