//! Whole exchanges through a cloud gateway (`src/sim/fast/gateway.rs`): entries inserted at
//! their SYN in the state their last ACK leaves them, and their states before that counted
//! from a schedule when the gauges are read.
//!
//! Every flow of one schedule crosses the gateway at the same offsets from its SYN (fixed
//! delays, the same requests), so at time `t` a flow whose SYN crossed at `c` is in the
//! state whose window holds `t - c`. Flows are created in time order: each window's flows
//! are a contiguous run of the creation times, found by binary search.

use super::conntrack::CtState;
use crate::time::{Duration, Instant};
use std::collections::VecDeque;

/// The states a client-closed exchange moves its entry through before TIME_WAIT, in order.
pub const BEFORE_TIME_WAIT: [CtState; 5] = [
    CtState::SynSent,
    CtState::SynRecv,
    CtState::Established,
    CtState::FinWait,
    CtState::LastAck,
];

/// One schedule of whole exchanges at a gateway and the flows on it still before TIME_WAIT.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// From the SYN at the gateway, when each state of [`BEFORE_TIME_WAIT`] after the first
    /// begins, then TIME_WAIT: the SYN-ACK, the ACK, the client's FIN, the FIN-ACK and the
    /// last ACK crossing it.
    pub starts: [Duration; 5],
    /// When each flow's SYN crossed, oldest first; a flow leaves once in TIME_WAIT.
    created: VecDeque<Instant>,
}

impl Schedule {
    pub fn new(starts: [Duration; 5]) -> Schedule {
        debug_assert!(starts.is_sorted());
        Schedule {
            starts,
            created: VecDeque::new(),
        }
    }

    /// From the SYN to the last ACK at the gateway.
    pub fn to_time_wait(&self) -> Duration {
        self.starts[4]
    }

    /// A flow's SYN crossed at `at` (no earlier than the last one's).
    pub fn created(&mut self, at: Instant) {
        debug_assert!(self.created.back().is_none_or(|&b| b <= at));
        self.created.push_back(at);
    }

    /// Moves, in `by_state` (where these flows count as TIME_WAIT from their SYN), the flows
    /// still before TIME_WAIT at `now` to their states. Reads at `now` no earlier than the
    /// last read and after every SYN crossing by `now` was created.
    pub fn count_at(&mut self, now: Instant, by_state: &mut [u64; CtState::ALL.len()]) {
        let tw = self.to_time_wait().0;
        while let Some(&c) = self.created.front()
            && c.0 + tw <= now.0
        {
            self.created.pop_front();
        }
        debug_assert!(self.created.back().is_none_or(|&b| b <= now));
        // Flows created at or before `x` (none when `x` is before 0).
        let upto = |x: Option<u64>| x.map_or(0, |x| self.created.partition_point(|c| c.0 <= x));
        let mut bounds = [0u64; 6];
        bounds[1..].copy_from_slice(&self.starts.map(|d| d.0));
        // Window `i`: now - bounds[i + 1] < c <= now - bounds[i].
        for (i, s) in BEFORE_TIME_WAIT.iter().enumerate() {
            let hi = upto(now.0.checked_sub(bounds[i]));
            let lo = upto(now.0.checked_sub(bounds[i + 1]));
            let n = (hi - lo) as u64;
            by_state[*s as usize] += n;
            by_state[CtState::TimeWait as usize] -= n;
        }
    }
}
