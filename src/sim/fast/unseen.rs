use crate::sim::*;

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
