//! Sockets nobody sees: a whole exchange's client socket made at its TIME-WAIT entry, or
//! never.
//!
//! **Equals stepping when** [`applies`]: on a client host with no four-tuple table and no
//! bind buckets, drawing ports per destination ([`Host::sockets_unseen`]), a socket between
//! connect() and its TIME-WAIT could only be seen through its pool's port set, so connect()
//! takes the port alone ([`Host::connect_port`]) and the socket is made at the entry
//! ([`Host::time_wait_port`]); where entries are applied in bulk, only counted
//! ([`Host::time_wait_unseen`]), its expiry freeing the port. **Proved by** the tests of
//! whole exchanges ([`super::exchange`]). **Paths:** as whole exchanges (direct,
//! or across a cloud gateway, `gateway.rs`): client-side only.

use crate::host::Host;
use crate::report::Counter;
use crate::sim::Simulation;
use crate::sim::fast::exchange::Exchange;
use crate::workload::Workload;

/// Whether exchange `x` of `w` makes each client socket at its TIME-WAIT entry, not at
/// connect(): its ports come from connect() pools on hosts that cannot see the sockets
/// before ([`Host::sockets_unseen`]). Where entries are applied in bulk the socket is never
/// made: nothing can see or end a TIME-WAIT early there (the host is not reached by SYNs and
/// reuses none).
pub(in crate::sim) fn applies(x: &Exchange, w: &Workload, hosts: &[Host]) -> bool {
    x.pooled
        && w.sources
            .iter()
            .all(|s| hosts[s.host as usize].sockets_unseen())
}

impl Simulation {
    /// A TIME-WAIT entered without a socket ([`Host::time_wait_unseen`]) ends: its port is
    /// free. Entries before it are applied first, as stepping would have made them.
    #[inline(always)]
    pub(in crate::sim) fn unseen_expires(&mut self, host: u16, pool: u32, port: u16) {
        self.enter_time_wait_in_bulk(self.now);
        self.hosts[host as usize].expire_unseen(pool, port);
        self.rec.count(Counter::TwExpired);
        self.rec.first_tw_expiry.get_or_insert(self.now);
    }
}
