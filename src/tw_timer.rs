//! When a TIME-WAIT's timer really fires. The kernel keeps it on a coarse clock, so a
//! TIME-WAIT lasts a little longer (the timer wheel) or shorter (the death row) than
//! TIME_WAIT, and TIME-WAITs entered close together end at the same tick.
//!
//! - Linux 4.8+ (commit 500462a9de65, "timers: Switch to a non-cascading wheel"): one timer
//!   per TIME-WAIT, `mod_timer(&tw->tw_timer, jiffies + TCP_TIMEWAIT_LEN)`
//!   (`__inet_twsk_schedule`, net/ipv4/inet_timewait_sock.c). kernel/time/timer.c
//!   `calc_wheel_index` puts a timer `delta` jiffies out on the level whose range holds it
//!   (`LVL_START(n)` = 63 << 3(n − 1) jiffies), and `calc_index` rounds its expiry up to
//!   the next multiple of that level's granularity (`LVL_GRAN(n)` = 8ⁿ jiffies), strictly
//!   after it: "the timer wheel has to guarantee that a timer does not fire early". 60 s at
//!   HZ = 250 is 15,000 jiffies, level 3, granularity 512 jiffies = 2.048 s: a TIME-WAIT
//!   lasts (60, 62.048] s.
//! - Linux before 4.1 (until commit 789f558cfb36, "tcp/dccp: get rid of central timewait
//!   timer"): the death row. `inet_twsk_schedule` puts a TIME-WAIT of `timeo` in slot
//!   `twdr->slot + min(⌈timeo / period⌉, 7)` of 8; `inet_twdr_hangman` runs every period =
//!   TCP_TIMEWAIT_LEN / 8 = 7.5 s and kills slot `twdr->slot`, then advances it: a 60 s
//!   TIME-WAIT lasts (52.5, 60] s. The hangman's phase is the run's start (the kernel's is
//!   set by the TIME-WAIT that entered an empty row: not modelled). A `timeo` under
//!   `INET_TWDR_RECYCLE_SLOTS` (32) calendar ticks (`tcp_tw_recycle`'s 3.5 × RTO) goes on
//!   the recycle calendar instead, `(⌈timeo / tick⌉) × tick` out, counted from its entry
//!   (exact for a TIME-WAIT entering an empty calendar; the calendar's own phase is not
//!   modelled).
//! - FreeBSD 13: `tcp_tw_2msl_scan` runs from `tcp_slowtimo` every 500 ms and closes the
//!   TIME-WAITs past their 2 × MSL: a TIME-WAIT lasts [60, 60.5) s (notes/bsd-releases.md).
//!
//! A host's jiffies run from its uptime ([`crate::host::Host`] draws it from the seed):
//! `jiffies_64` starts at `INITIAL_JIFFIES` = (u32)(−300 × HZ) at boot
//! (include/linux/jiffies.h), so the phase of a run against the wheel's slots is the seed's.

use crate::profile::TwTimer;
use crate::time::{Duration, Instant};

/// kernel/time/timer.c: `LVL_CLK_SHIFT`, each level 8 times coarser than the one below.
const LVL_CLK_SHIFT: u32 = 3;
/// kernel/time/timer.c: `LVL_BITS`, 64 buckets per level.
const LVL_SIZE: u64 = 64;
/// The death row's slots (`INET_TWDR_TWKILL_SLOTS`), each TCP_TIMEWAIT_LEN / 8 long.
const TWKILL_SLOTS: u64 = 8;
/// include/net/tcp.h: `TCP_TIMEWAIT_LEN`, which sets the hangman's period whatever a
/// TIME-WAIT's own length.
const TCP_TIMEWAIT_LEN: Duration = Duration::from_secs(60);
/// The recycle calendar's slots (`INET_TWDR_RECYCLE_SLOTS`, 1 << 5).
const RECYCLE_SLOTS: u64 = 32;
const NS_PER_S: u128 = 1_000_000_000;

/// One host's TIME-WAIT clock, for TIME-WAITs of one length.
#[derive(Clone, Copy, Debug)]
pub struct TwClock {
    timer: TwTimer,
    /// The TIME-WAIT length.
    len: Duration,
    /// Nanoseconds from the host's boot to the scenario's start.
    uptime_ns: u64,
    /// The jiffy in nanoseconds, where HZ divides a second (100, 250, 1000): the fast path.
    tick_ns: Option<u64>,
    /// `len` in jiffies.
    delta: u64,
    /// The wheel: log2 of the granularity of `len`'s level, in jiffies.
    shift: u32,
    /// The death row: the hangman's period, in jiffies; its first firing; the firings after
    /// the next one that end a TIME-WAIT of `len`; or the recycle calendar's tick, in
    /// jiffies, when `len` is short enough for the calendar.
    period: u64,
    start: u64,
    kill_after: u64,
    calendar_tick: Option<u64>,
}

impl TwClock {
    pub fn new(timer: TwTimer, uptime_ns: u64, len: Duration) -> TwClock {
        let hz = match timer {
            TwTimer::Wheel { hz } | TwTimer::DeathRow { hz } => hz,
            TwTimer::Exact | TwTimer::Scan { .. } => 1000,
        };
        let tick_ns = (1_000_000_000 % u64::from(hz) == 0).then(|| 1_000_000_000 / u64::from(hz));
        let delta = to_jiffies(len, hz);
        let mut clock = TwClock {
            timer,
            len,
            uptime_ns,
            tick_ns,
            delta,
            shift: LVL_CLK_SHIFT * level(delta, hz),
            period: to_jiffies(TCP_TIMEWAIT_LEN, hz) / TWKILL_SLOTS,
            start: 0,
            kill_after: 0,
            calendar_tick: None,
        };
        clock.kill_after = delta.div_ceil(clock.period).min(TWKILL_SLOTS - 1);
        let tick = 1 << recycle_tick(hz);
        clock.calendar_tick = (delta.div_ceil(tick) < RECYCLE_SLOTS).then_some(tick);
        clock.start = clock.jiffies(Instant(0), hz);
        clock
    }

    /// Whether the timer fires at entry + TIME_WAIT exactly.
    pub fn is_exact(&self) -> bool {
        self.timer == TwTimer::Exact
    }

    /// When a TIME-WAIT timer armed at `at` fires.
    #[inline]
    pub fn expiry(&self, at: Instant) -> Instant {
        match self.timer {
            TwTimer::Exact => at + self.len,
            TwTimer::Wheel { hz } => {
                let j = self.jiffies(at, hz) + self.delta;
                self.time_of(((j >> self.shift) + 1) << self.shift, hz)
            }
            TwTimer::DeathRow { hz } => {
                let now = self.jiffies(at, hz);
                if let Some(tick) = self.calendar_tick {
                    return self.time_of(now + self.delta.div_ceil(tick) * tick, hz);
                }
                // The hangman's firings fall on the jiffies of the run's first one plus
                // multiples of the period; slot `twdr->slot + k` dies k firings after the next.
                let (start, period) = (self.start, self.period);
                let next = start + ((now - start) / period + 1) * period;
                self.time_of(next + self.kill_after * period, hz)
            }
            TwTimer::Scan { period_ms } => {
                let period = u64::from(period_ms) * 1_000_000;
                let since_boot = (self.uptime_ns + (at + self.len).0).div_ceil(period) * period;
                Instant(since_boot - self.uptime_ns)
            }
        }
    }

    /// How much later than TIME_WAIT a TIME-WAIT may end (the wheel, the scan), or how much
    /// earlier (the death row): the clock's granularity at its length.
    pub fn granularity(&self) -> Duration {
        match self.timer {
            TwTimer::Exact => Duration::ZERO,
            TwTimer::Wheel { hz } => jiffies_ns(1 << self.shift, hz),
            TwTimer::DeathRow { hz } => jiffies_ns(self.calendar_tick.unwrap_or(self.period), hz),
            TwTimer::Scan { period_ms } => Duration::from_millis(u64::from(period_ms)),
        }
    }

    /// A lower bound of how long a TIME-WAIT lasts: TIME_WAIT, or on the death row the
    /// firings after the next one (52.5 s for 60 s).
    pub fn min_lifetime(&self) -> Duration {
        match self.timer {
            TwTimer::DeathRow { hz } if self.calendar_tick.is_none() => {
                jiffies_ns(self.kill_after * self.period, hz).min(self.len)
            }
            _ => self.len,
        }
    }

    /// `jiffies_64` at `at`.
    #[inline]
    fn jiffies(&self, at: Instant, hz: u16) -> u64 {
        let since_boot = self.uptime_ns + at.0;
        let ticks = match self.tick_ns {
            Some(tick) => since_boot / tick,
            None => (u128::from(since_boot) * u128::from(hz) / NS_PER_S) as u64,
        };
        initial_jiffies(hz) + ticks
    }

    /// The first instant at which `jiffies_64` reads `j`.
    #[inline]
    fn time_of(&self, j: u64, hz: u16) -> Instant {
        let ticks = j - initial_jiffies(hz);
        let ns = match self.tick_ns {
            Some(tick) => ticks * tick,
            None => (u128::from(ticks) * NS_PER_S).div_ceil(u128::from(hz)) as u64,
        };
        Instant(ns.saturating_sub(self.uptime_ns))
    }
}

/// include/linux/jiffies.h: `INITIAL_JIFFIES` ((unsigned long)(unsigned int)(−300 × HZ)).
fn initial_jiffies(hz: u16) -> u64 {
    u64::from(0u32.wrapping_sub(300 * u32::from(hz)))
}

/// `len` in jiffies, rounded up (`msecs_to_jiffies`; TCP_TIMEWAIT_LEN is 60 × HZ exactly).
fn to_jiffies(len: Duration, hz: u16) -> u64 {
    (u128::from(len.0) * u128::from(hz)).div_ceil(NS_PER_S) as u64
}

fn jiffies_ns(j: u64, hz: u16) -> Duration {
    Duration((u128::from(j) * NS_PER_S / u128::from(hz)) as u64)
}

/// include/net/inet_timewait_sock.h (3.10) `INET_TWDR_RECYCLE_TICK`: log2 of the calendar's
/// tick in jiffies, chosen so that its 32 slots span about 4 s: `k + 2 − 5` for the
/// smallest `HZ ≤ 2^k` (k from 5 to 12).
fn recycle_tick(hz: u16) -> u32 {
    let k = u32::from(hz).next_power_of_two().trailing_zeros().max(5);
    k + 2 - 5
}

/// `calc_wheel_index`: the level of a timer `delta` jiffies out, the last whose
/// `LVL_START` it reaches; `LVL_DEPTH` is 9 above HZ = 100, else 8.
fn level(delta: u64, hz: u16) -> u32 {
    let depth = if hz > 100 { 9 } else { 8 };
    // LVL_START(n) = 63 << 3(n − 1) ≤ delta.
    let mut n = 0;
    while n + 1 < depth && delta >= (LVL_SIZE - 1) << (LVL_CLK_SHIFT * n) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn lifetimes(timer: TwTimer) -> (Duration, Duration) {
        let clock = TwClock::new(timer, 123_456_789_012, MIN);
        let (mut lo, mut hi) = (Duration(u64::MAX), Duration::ZERO);
        // Entries 1.3 ms apart over 20 s: every phase against the slots.
        for k in 0..15_000u64 {
            let at = Instant(1_000_000_000 + k * 1_300_017);
            let lived = clock.expiry(at) - at;
            lo = lo.min(lived);
            hi = hi.max(lived);
        }
        (lo, hi)
    }

    #[test]
    fn a_linux_time_wait_outlives_sixty_seconds_by_at_most_one_wheel_granule() {
        // HZ, then the level-3 or level-4 granularity of 60 × HZ jiffies.
        for (hz, gran) in [
            (100, Duration::from_millis(5_120)),
            (250, Duration::from_millis(2_048)),
            (300, Duration(1_706_666_666)),
            (1000, Duration::from_millis(4_096)),
        ] {
            let clock = TwClock::new(TwTimer::Wheel { hz }, 0, MIN);
            assert_eq!(clock.granularity(), gran, "HZ={hz}");
            let (lo, hi) = lifetimes(TwTimer::Wheel { hz });
            assert!(lo > MIN, "HZ={hz}: {lo:?}");
            assert!(hi <= MIN + gran && hi + Duration::from_millis(10) > MIN + gran);
        }
    }

    #[test]
    fn time_waits_entered_in_one_slot_end_at_the_same_tick() {
        let clock = TwClock::new(TwTimer::Wheel { hz: 250 }, 0, MIN);
        let ends: Vec<Instant> = (0..2_048u64)
            .map(|ms| clock.expiry(Instant(ms * 1_000_000)))
            .collect();
        let mut distinct = ends.clone();
        distinct.dedup();
        // 2.048 s of entries span one or two slots.
        assert!((1..=2).contains(&distinct.len()), "{distinct:?}");
        assert!(ends.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn the_death_row_ends_a_time_wait_between_seven_and_eight_periods() {
        let (lo, hi) = lifetimes(TwTimer::DeathRow { hz: 1000 });
        let min = TwClock::new(TwTimer::DeathRow { hz: 1000 }, 0, MIN).min_lifetime();
        assert_eq!(min, Duration::from_millis(52_500));
        assert!(lo > min && lo < Duration::from_millis(52_510));
        assert!(hi <= MIN && hi > Duration::from_millis(59_990));
    }

    #[test]
    fn the_death_row_keeps_its_period_for_other_lengths_and_a_calendar_for_recycle() {
        // 30 s: slot ⌈30 / 7.5⌉ = 4 ahead, so (30, 37.5] s; the period stays 7.5 s.
        let clock = TwClock::new(TwTimer::DeathRow { hz: 1000 }, 0, Duration::from_secs(30));
        assert_eq!(clock.granularity(), Duration::from_millis(7_500));
        for ms in [1u64, 2_500, 7_499] {
            let at = Instant(ms * 1_000_000);
            let lived = clock.expiry(at) - at;
            assert!(lived > Duration::from_secs(30) && lived <= Duration::from_millis(37_500));
        }
        // tcp_tw_recycle's 0.7 s at HZ=1000: ticks of 2^7 jiffies, ⌈700 / 128⌉ = 6 of them.
        let recycle = TwClock::new(
            TwTimer::DeathRow { hz: 1000 },
            0,
            Duration::from_millis(700),
        );
        let at = Instant(3_000_000);
        assert_eq!(recycle.expiry(at) - at, Duration::from_millis(768));
        assert_eq!(
            [recycle_tick(100), recycle_tick(250), recycle_tick(1000)],
            [4, 5, 7]
        );
    }

    #[test]
    fn a_freebsd_13_scan_ends_a_time_wait_within_half_a_second_after_sixty() {
        let (lo, hi) = lifetimes(TwTimer::Scan { period_ms: 500 });
        assert!(lo >= MIN && lo < MIN + Duration::from_millis(2));
        assert!(hi < MIN + Duration::from_millis(500) && hi > MIN + Duration::from_millis(498));
    }

    #[test]
    fn expiry_never_decreases_with_entry() {
        for timer in [
            TwTimer::Wheel { hz: 300 },
            TwTimer::DeathRow { hz: 250 },
            TwTimer::Scan { period_ms: 500 },
        ] {
            let clock = TwClock::new(timer, 987_654_321, MIN);
            let mut last = Instant(0);
            for k in 0..50_000u64 {
                let e = clock.expiry(Instant(k * 777_777));
                assert!(e >= last);
                last = e;
            }
        }
    }
}
