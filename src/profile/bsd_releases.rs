//! macOS and FreeBSD by release (issue 26).
//!
//! Each release is its kernel's profile ([`Profile::macos`], [`Profile::freebsd`]) with the
//! fields that release's source sets differently. notes/bsd-releases.md has the table of
//! releases × rules with the file, function and commit each value was read from.
//!
//! XNU commits are dated by `config/MasterVersion` (the Darwin version) where the index
//! stores it: e6231be0 is Darwin 21.1.0 (macOS 12.0, xnu-8019.41.5), a325d9c4 21.3.0,
//! 5c2921b0 22.1.0 (macOS 13.0, xnu-8792.41.9), 1b191cb5 22.6.0 (macOS 13.5). For the
//! macOS 14 and 15 commits it is not stored: 94d3b452 / 1031c584 have the `*_private.h`
//! headers of xnu-10002+ and no RACK; 8d741a5d has RACK, the `vresearch1` and Tightbeam
//! configs of xnu-11215+. Their exact tags are UNVERIFIED.

use super::{Isn, Profile, TsOffset, TwTimer};

/// Releases this module answers to: (name, title).
pub const RELEASES: &[(&str, &str)] = &[
    (
        "macos@12",
        "macOS 12 (xnu-8019/8020): random ISN and timestamp offset per connection; the 16k cap",
    ),
    (
        "macos@13",
        "macOS 13 (xnu-8792/8796): random ISN and timestamp offset per connection; the 16k cap",
    ),
    (
        "macos@14",
        "macOS 14 (xnu-10002/10063): random ISN and timestamp offset per connection; the 16k cap (= \"macos\")",
    ),
    (
        "macos@15",
        "macOS 15 (xnu-11215+): ISN = hash + 128 ns clock, per-tuple timestamp offset; no 16k cap",
    ),
    (
        "freebsd@13",
        "FreeBSD 13: compressed TIME-WAIT (tcptw) capped at half the port range; TIME-WAIT toward local addresses",
    ),
    (
        "freebsd@14",
        "FreeBSD 14: TIME-WAIT as a full tcpcb, uncapped; none toward local addresses (= \"freebsd\")",
    ),
];

/// The release profile called `name`.
pub fn named(name: &str) -> Option<Profile> {
    Some(match name {
        "macos@12" | "macos@13" | "macos@14" => xnu_random_isn(),
        "macos@15" => xnu_clock_isn(),
        "freebsd@13" => freebsd_13(),
        "freebsd@14" => Profile::freebsd(),
        _ => return None,
    })
}

/// macOS 12, 13 and 14: every field [`Profile::macos`] models reads the same in their XNU.
/// - ISN: `tcp_new_isn` (bsd/netinet/tcp_subr.c) keeps `isn_secret` and `isn_last_reseed`
///   on the stack, so each call re-reads `read_frandom` and the ISN is uniform (e6231be0,
///   5c2921b0, 94d3b452; 1031c584 per notes/xnu-research.md §1).
/// - TSval offset: `tcp_newtcpcb` sets `t_ts_offset = random_32` when
///   `tcp_randomize_timestamps` (default 1) is on (same commits).
/// - Local SYN timeout: `tcp_getrt_rtt` sets `t_rttmin = tcp_TCPTV_MIN` (`rtt_min`, 100 ms)
///   for `TF_LOCAL` once the route caches an RTT (same commits).
/// - `broken_peer_syn_rexmit_thres` 10, `msl` 15 000 ms, `keepinit` 75 000 ms,
///   `randomize_ports` 0: `SKMEM_SYSCTL_TCP_LIST` in bsd/skywalk/os_sysctls_private.h
///   (a325d9c4, 5c2921b0, 94d3b452).
fn xnu_random_isn() -> Profile {
    Profile::macos()
}

/// macOS 15 (8d741a5d): `tcp_new_isn` hashes the tuple with a boot-time `isn_secret` and adds
/// `nanouptime >> 7`, and sets `t_ts_offset` from the same hash (notes/xnu-research.md §1, §3);
/// `tcp_newtcpcb` no longer draws a random offset. So a reused tuple's SYN lies beyond the
/// old receive window once window / 7.8125 M/s have passed (71 ms for the 1448 × 384
/// `recvspace` of these releases), and PAWS passes. `tcp_getrt_rtt`
/// still sets 100 ms for `TF_LOCAL` at 8d741a5d; a later snapshot (e3723e1f) uses
/// `TCPTV_REXMTMIN` (30 ms) for every route (notes/xnu-research.md §5), from a release
/// UNVERIFIED.
fn xnu_clock_isn() -> Profile {
    Profile {
        isn: Isn::XNU_CLOCK,
        ts_offset: TsOffset::PerTuple,
        ..Profile::macos()
    }
}

/// FreeBSD 13: TIME-WAIT is the compressed `tcptw` (sys/netinet/tcp_timewait.c before
/// 0d7445193abc "tcp: remove tcptw", which is in 14 only).
/// - `nolocaltimewait` is 0 in every tcptw-era `tcp_timewait.c`; the post-tcptw file
///   defines it `true`.
/// - `tcp_twstart` takes a `tcptw` from a zone capped at `tcptw_auto_size()` =
///   min(max((last − first) / 2, 32), maxsockets / 5); when the zone is full,
///   `tcp_tw_2msl_scan(1)` closes the oldest TIME-WAIT to make room. The cap is
///   [`tcptw_cap`]; maxsockets / 5 is assumed larger (UNVERIFIED: it depends on RAM).
///   `max_tw_buckets` caps the count with Linux's rule instead (the closing socket gets
///   none): the count, and so port exhaustion, is FreeBSD 13's, but the TIME-WAITs kept are
///   the oldest, not the newest. Where a TIME-WAIT's age decides SYN acceptance (a server
///   closing first at tens of thousands of connections per second) that differs from the
///   kernel (notes/bsd-releases.md, "What portsim cannot express yet").
/// - Expiry runs in `tcp_slowtimo` every 500 ms (`pfslowtimo`, hz / 2), so a TIME-WAIT
///   lasts 60 to 60.5 s (`TwTimer::Scan`).
fn freebsd_13() -> Profile {
    let p = Profile::freebsd();
    Profile {
        local_time_wait: true,
        max_tw_buckets: tcptw_cap(p.port_range),
        tw_timer: TwTimer::Scan { period_ms: 500 },
        ..p
    }
}

/// FreeBSD 13 `tcptw_auto_size()` without its maxsockets / 5 bound: half the ephemeral
/// range, at least 32.
pub fn tcptw_cap((first, last): (u16, u16)) -> u32 {
    (u32::from(first.abs_diff(last)) / 2).max(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_resolves_and_no_other_name_does() {
        for (name, _) in RELEASES {
            assert!(named(name).is_some(), "{name}");
            assert!(Profile::named(name).is_some(), "{name}");
        }
        for bad in [
            "macos@11",
            "macos@16",
            "freebsd@12",
            "freebsd@15",
            "macos@",
            "@14",
        ] {
            assert!(named(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_unversioned_profiles_are_macos_14_and_freebsd_14() {
        assert_eq!(named("macos@14"), Some(Profile::macos()));
        assert_eq!(named("freebsd@14"), Some(Profile::freebsd()));
    }

    #[test]
    fn tcptw_cap_is_half_the_range_as_freebsd_13_computes_it() {
        // tcptw_auto_size: (65535 − 10000) / 2 = 27767; (65535 − 49152) / 2 = 8191.
        assert_eq!(tcptw_cap((10000, 65535)), 27_767);
        assert_eq!(tcptw_cap((49152, 65535)), 8_191);
        assert_eq!(tcptw_cap((65535, 10000)), 27_767);
        assert_eq!(tcptw_cap((40000, 40010)), 32);
    }
}
