//! Linux by release: `linux@3.10` … `linux@6.18` (`linux` is the newest, 6.18).
//!
//! A release profile is the newest profile with every rule that changed since rolled back.
//! Each rule below names the upstream commit that changed it and the first release that
//! carried it; [`RULES`] is that table as data, printed by `portsim profile show` and written
//! out in notes/linux-versions.md. Profiles model the upstream release, with the fixes its
//! long-term stable branch backported where a distribution kernel of that release carries
//! them (noted per rule); a distribution's own backports (RHEL's especially) are not
//! modelled.

use super::{BindSearch, Profile, ReuseClock, Selection, TsOffset, TwTimer};
use crate::time::Duration;

/// A Linux release: `(major, minor)`.
pub type Version = (u16, u16);

/// One shipped release profile.
pub struct Release {
    pub name: &'static str,
    pub version: Version,
    pub title: &'static str,
    /// `CONFIG_HZ` of the distribution kernel the release stands for, and where it is from.
    pub hz: u16,
    pub hz_source: &'static str,
}

/// The releases portsim ships, oldest first. `linux` is the last one.
pub const RELEASES: &[Release] = &[
    Release {
        name: "linux@3.10",
        version: (3, 10),
        title: "Linux 3.10 (RHEL/CentOS 7 base; RHEL backports not modelled)",
        hz: 1000,
        hz_source: "RHEL 7 kernel config CONFIG_HZ_1000=y (UNVERIFIED: not found with the search tools)",
    },
    Release {
        name: "linux@4.9",
        version: (4, 9),
        title: "Linux 4.9 (Debian 9)",
        hz: 250,
        hz_source: "Debian kernel config CONFIG_HZ_250=y (UNVERIFIED: not found with the search tools)",
    },
    Release {
        name: "linux@4.15",
        version: (4, 15),
        title: "Linux 4.15 (Ubuntu 18.04)",
        hz: 250,
        hz_source: "Ubuntu generic kernels HZ=250 until 24.04 (discourse.ubuntu.com/t/42255: \"HZ=250 (the Ubuntu generic kernel, as it is right now)\")",
    },
    Release {
        name: "linux@5.4",
        version: (5, 4),
        title: "Linux 5.4 (Ubuntu 20.04)",
        hz: 250,
        hz_source: "Ubuntu generic HZ=250 (discourse.ubuntu.com/t/42255)",
    },
    Release {
        name: "linux@5.15",
        version: (5, 15),
        title: "Linux 5.15 (Ubuntu 22.04)",
        hz: 250,
        hz_source: "Ubuntu generic HZ=250 (discourse.ubuntu.com/t/42255)",
    },
    Release {
        name: "linux@6.1",
        version: (6, 1),
        title: "Linux 6.1 (Debian 12, Amazon Linux 2023)",
        hz: 250,
        hz_source: "Debian CONFIG_HZ_250=y (UNVERIFIED); Amazon Linux 2023's HZ UNVERIFIED",
    },
    Release {
        name: "linux@6.6",
        version: (6, 6),
        title: "Linux 6.6 (LTS)",
        hz: 250,
        hz_source: "the x86 defconfig-style distribution default 250 (UNVERIFIED)",
    },
    Release {
        name: "linux@6.12",
        version: (6, 12),
        title: "Linux 6.12 (Debian 13, LTS)",
        hz: 250,
        hz_source: "Debian CONFIG_HZ_250=y (UNVERIFIED)",
    },
    Release {
        name: "linux@6.18",
        version: (6, 18),
        title: "Linux 6.18 (LTS; measured on this project's 6.18.44 machine, HZ=250)",
        hz: 250,
        hz_source: "measured on the 6.18.44 machine (HZ=250)",
    },
];

/// The release `linux` names.
pub const NEWEST: Version = (6, 18);

/// A rule that changed in a release.
pub struct Rule {
    /// First release with the new behaviour.
    pub since: Version,
    pub commit: &'static str,
    pub title: &'static str,
    pub what: &'static str,
}

/// Every version-dependent rule portsim models, by the release that changed it.
pub const RULES: &[Rule] = &[
    Rule {
        since: (4, 0),
        commit: "4fb17a609167",
        title: "tcp: mitigate ACK loops for connections as tcp_timewait_sock",
        what: "a TIME-WAIT's ACKs to refused segments are rate-limited to one per net.ipv4.tcp_invalid_ratelimit (500 ms; the sysctl came in the same series, 032ee4236954); before, every refused SYN got its ACK (hashes from memory: UNVERIFIED)",
    },
    Rule {
        since: (4, 1),
        commit: "789f558cfb36",
        title: "tcp/dccp: get rid of central timewait timer",
        what: "each TIME-WAIT has its own timer (TCP_TIMEWAIT_LEN, to the jiffy on the cascading wheel); before: the death row, whose hangman kills one of 8 slots every 7.5 s, so a TIME-WAIT lasts (52.5, 60] s",
    },
    Rule {
        since: (4, 2),
        commit: "07f4c90062f8",
        title: "tcp/dccp: try to not exhaust ip_local_port_range in connect()",
        what: "ip_local_port_range default 32768–61000 → 32768–60999; connect() starts at an even offset (3.10: every port in turn from `low + (1 + hint + port_offset) % n`, `hint += i`)",
    },
    Rule {
        since: (4, 6),
        commit: "1580ab63fc9a",
        title: "tcp/dccp: better use of ephemeral ports in connect()",
        what: "connect() scans even ports, then odd (step 2), hint += i + 2",
    },
    Rule {
        since: (4, 6),
        commit: "ea8add2b1903",
        title: "tcp/dccp: better use of ephemeral ports in bind()",
        what: "bind(0) scans odd ports first, and with SO_REUSEADDR the lower half of the range, then the upper (attempt_half); before: every port in turn from a random one",
    },
    Rule {
        since: (4, 8),
        commit: "500462a9de65",
        title: "timers: Switch to a non-cascading wheel",
        what: "a timer 60 s out sits on a coarse wheel level and fires at the next slot after its expiry: a TIME-WAIT lasts (60, 60 + granularity] s (2.048 s at HZ=250)",
    },
    Rule {
        since: (4, 10),
        commit: "95a22caee396",
        title: "tcp: randomize tcp timestamp offsets for each connection",
        what: "TSval offset from a hash of the four-tuple (before: none)",
    },
    Rule {
        since: (4, 11),
        commit: "b9470c27607b",
        title: "inet: kill smallest_size and smallest_port",
        what: "bind(0) no longer falls back to sharing an SO_REUSEADDR port (the one with the fewest owners) when a scan finds no free port: it fails with EADDRINUSE",
    },
    Rule {
        since: (4, 11),
        commit: "4548b683b781",
        title: "Introduce a sysctl that modifies the value of PROT_SOCK",
        what: "net.ipv4.ip_unprivileged_port_start exists",
    },
    Rule {
        since: (4, 11),
        commit: "28ee1b746f49",
        title: "secure_seq: downgrade to per-host timestamp offsets",
        what: "TSval offset from a hash of (saddr, daddr) only",
    },
    Rule {
        since: (4, 12),
        commit: "4396e46187ca",
        title: "tcp: remove tcp_tw_recycle",
        what: "net.ipv4.tcp_tw_recycle is gone (it cut TIME-WAIT to 3.5 × RTO and dropped SYNs whose timestamp went backwards per peer)",
    },
    Rule {
        since: (4, 19),
        commit: "79e9fed46038",
        title: "net-tcp: extend tcp_tw_reuse sysctl to enable loopback only optimization",
        what: "tcp_tw_reuse = 2 (loopback only) and the default 0 → 2 (first release by the June 2018 net-next merge: UNVERIFIED by tag)",
    },
    Rule {
        since: (4, 19),
        commit: "cca9bab1b72c",
        title: "tcp: use monotonic timestamps for PAWS",
        what: "tcp_tw_reuse applies once ktime_get_seconds() > ts_recent_stamp (delay in (0, 1] s); before: get_seconds() − ts_recent_stamp > 1 (delay in (1, 2] s)",
    },
    Rule {
        since: (5, 7),
        commit: "4b01a9674231",
        title: "net: Add net.ipv4.ip_autobind_reuse option.",
        what: "net.ipv4.ip_autobind_reuse exists (bind(0) relaxed second round)",
    },
    Rule {
        since: (5, 12),
        commit: "190cc82489f4",
        title: "tcp: change source port randomizarion at connect() time",
        what: "connect() uses a perturbation table indexed by the hash (RFC 6056 Algorithm 4) instead of one global hint; its 2^16-entry size (4c2c8f03a5ab), random 0–7 step advance and 10 s reseed (4dfa9b438ee3) came in 5.19 and were backported to the 5.15 stable branch (CVE-2022-1012)",
    },
    Rule {
        since: (6, 3),
        commit: "91d0b78c5177",
        title: "inet: Add IP_LOCAL_PORT_RANGE socket option",
        what: "the per-socket range exists (also in 6.1.y from 6.1.32, d74e137b6661; its step-1 scan is 207184853dbd, 6.8; portsim scans step 1 wherever the option exists)",
    },
    Rule {
        since: (6, 5),
        commit: "ccce324dabfe",
        title: "tcp: make the first N SYN RTO backoffs linear",
        what: "net.ipv4.tcp_syn_linear_timeouts, default 4: SYNs at 0, 1, 2, 3, 4, 5 s before doubling",
    },
    Rule {
        since: (6, 14),
        commit: "ca6a6f93867a",
        title: "tcp: Add sysctl to configure TIME-WAIT reuse delay",
        what: "net.ipv4.tcp_tw_reuse_delay (ms, default 1000), measured from the TIME-WAIT's entry with tcp_clock_ms()",
    },
    Rule {
        since: (6, 18),
        commit: "165573e41f2f",
        title: "tcp: secure_seq: add back ports to TS offset",
        what: "TSval offset from the four-tuple hash again (upstream March 2026; in the 6.12.y and 6.18.y stable branches, and measured per four-tuple on 6.18.44; portsim gives it to linux@6.18 only)",
    },
];

/// Sysctls portsim models that a release lacks: (knob, first release with it) or
/// (knob, first release without it) for removed ones.
const ADDED: &[(&str, Version)] = &[
    ("net.ipv4.tcp_invalid_ratelimit", (4, 0)),
    ("net.ipv4.ip_unprivileged_port_start", (4, 11)),
    ("net.ipv4.ip_autobind_reuse", (5, 7)),
    ("net.ipv4.tcp_syn_linear_timeouts", (6, 5)),
    ("net.ipv4.tcp_tw_reuse_delay", (6, 14)),
];
const REMOVED: &[(&str, Version)] = &[("net.ipv4.tcp_tw_recycle", (4, 12))];

/// Whether release `v` has sysctl `knob`; `Err` names the release that added or removed it.
pub fn has_knob(v: Version, knob: &str) -> Result<(), String> {
    if let Some((_, since)) = ADDED.iter().find(|(k, _)| *k == knob)
        && v < *since
    {
        return Err(format!("arrived in Linux {}.{}", since.0, since.1));
    }
    if let Some((_, gone)) = REMOVED.iter().find(|(k, _)| *k == knob)
        && v >= *gone
    {
        return Err(format!("was removed in Linux {}.{}", gone.0, gone.1));
    }
    Ok(())
}

/// Whether release `v` has the IP_LOCAL_PORT_RANGE socket option: 6.3 (91d0b78c5177), and
/// the 6.1 stable branch from 6.1.32 (d74e137b6661), which Debian 12 and Amazon Linux 2023
/// carry.
pub fn has_local_port_range(v: Version) -> bool {
    v >= (6, 1)
}

/// The shipped release named `name` (`linux@5.4`).
pub fn release(name: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.name == name)
}

/// The profile of the shipped release `name`.
pub fn named(name: &str) -> Option<Profile> {
    release(name).map(|r| profile(r.version, r.hz))
}

/// The newest shipped release at or below `v`; `None` below the oldest.
pub fn at_or_below(v: Version) -> Option<&'static Release> {
    RELEASES.iter().rev().find(|r| r.version <= v)
}

/// The shipped release nearest `name` (`linux@5.5` → `linux@5.4`), for a suggestion.
pub fn nearest(name: &str) -> Option<&'static str> {
    let v = parse_version(name.strip_prefix("linux@")?)?;
    at_or_below(v).or(RELEASES.first()).map(|r| r.name)
}

/// `major.minor` from a release string: `uname -r` or `kernel.osrelease`
/// ("3.10.0-1160.el7.x86_64", "5.15.0-91-generic", "6.1.0-18-amd64").
pub fn parse_version(s: &str) -> Option<Version> {
    let mut parts = s.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The newest Linux profile with every rule newer than `v` rolled back, and `CONFIG_HZ` = `hz`.
pub fn profile(v: Version, hz: u16) -> Profile {
    let mut p = Profile::linux();
    p.linux_version = Some(v);
    // 07f4c90062f8 (4.2): the range's ends got different parities.
    if v < (4, 2) {
        p.port_range = (32768, 61000);
    }
    p.selection = match v {
        _ if v < (4, 2) => Selection::LinuxPre42,
        _ if v < (5, 12) => Selection::LinuxPre512,
        _ => Selection::Linux,
    };
    p.bind_search = match v {
        _ if v < (4, 6) => BindSearch::Sequential,
        _ if v < (4, 11) => BindSearch::SmallestShared,
        _ => BindSearch::Strict,
    };
    p.ts_offset = ts_offset(v);
    if v < (4, 19) {
        p.tw_reuse = 0;
    }
    p.tw_reuse_clock = match v {
        _ if v < (4, 19) => ReuseClock::Seconds { more_than: 1 },
        _ if v < (6, 14) => ReuseClock::Seconds { more_than: 0 },
        _ => ReuseClock::Millis,
    };
    if v < (6, 5) {
        p.syn_linear = 0;
    }
    if v < (4, 0) {
        p.invalid_ratelimit_ms = 0;
    }
    // 789f558cfb36 (4.1) gave each TIME-WAIT its own timer in place of the death row;
    // 500462a9de65 (4.8) moved timers to the non-cascading wheel, whose far slots are coarse.
    // 4.1–4.7's cascading wheel fires a timer at its jiffy: exact to 1/HZ.
    p.tw_timer = match v {
        _ if v < (4, 1) => TwTimer::DeathRow { hz },
        _ if v < (4, 8) => TwTimer::Exact,
        _ => TwTimer::Wheel { hz },
    };
    p
}

/// The TSval offset `tcp_timestamps = 1` gives on release `v`: none before 4.10 (TSval is
/// the jiffies clock), a four-tuple hash in 4.10 (95a22caee396), a (saddr, daddr) hash from
/// 4.11 (28ee1b746f49), a four-tuple hash again in 6.18.y (165573e41f2f, measured on 6.18.44).
pub fn ts_offset(v: Version) -> TsOffset {
    match v {
        _ if v < (4, 10) => TsOffset::None,
        _ if ((4, 11)..(6, 18)).contains(&v) => TsOffset::PerHostPair,
        _ => TsOffset::PerTuple,
    }
}

/// Whether release `v` knows `tcp_tw_reuse = 2` (79e9fed46038, 4.19); before, any non-zero
/// value enables reuse for every destination.
pub fn has_loopback_reuse(v: Version) -> bool {
    v >= (4, 19)
}

/// TIME-WAIT under `tcp_tw_recycle = 1` with timestamps: 3.5 × RTO (`tcp_time_wait`:
/// `rto = (icsk_rto << 2) - (icsk_rto >> 1)`), the RTO taken at its floor `TCP_RTO_MIN` =
/// 200 ms, which holds for a connection whose smoothed RTT is well under it (LAN, loopback).
pub const TW_RECYCLE_LEN: Duration = Duration(700_000_000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_strings_pick_the_nearest_release_at_or_below() {
        let pick = |s: &str| at_or_below(parse_version(s).unwrap()).map(|r| r.name);
        assert_eq!(pick("3.10.0-1160.el7.x86_64"), Some("linux@3.10"));
        assert_eq!(pick("5.15.0-91-generic"), Some("linux@5.15"));
        assert_eq!(pick("6.1.0-18-amd64"), Some("linux@6.1"));
        assert_eq!(pick("4.14.336-253.554.amzn2.x86_64"), Some("linux@4.9"));
        assert_eq!(pick("4.18.0-513.el8.x86_64"), Some("linux@4.15"));
        assert_eq!(pick("2.6.32-754.el6.x86_64"), None);
        assert_eq!(nearest("linux@5.5"), Some("linux@5.4"));
    }

    #[test]
    fn knobs_exist_from_their_release() {
        assert!(has_knob((6, 12), "net.ipv4.tcp_tw_reuse_delay").is_err());
        assert!(has_knob((6, 14), "net.ipv4.tcp_tw_reuse_delay").is_ok());
        assert!(has_knob((4, 9), "net.ipv4.tcp_tw_recycle").is_ok());
        assert!(has_knob((4, 12), "net.ipv4.tcp_tw_recycle").is_err());
    }
}
