//! Where a workload connects from and to, and how: its client hosts, the connection mode
//! (plain connect(), bind(), IP_BIND_ADDRESS_NO_PORT, explicit ports, IP_LOCAL_PORT_RANGE),
//! its source addresses, its destinations (each a listener of some host) and how it spreads
//! over them.

use super::hosts::Hosts;
use super::raw::RawWorkload;
use super::value::{Ctx, endpoint, ip, one_of, port_pair};
use super::workloads::Key;
use super::{HostSpec, ScenarioError};
use crate::profile::{Kernel, nearest};
use crate::workload::{Destination, Mode, Source, Spread};
use toml::Spanned;

/// `client = "host"` or `clients = ["host", …]`, as host indices: a fleet's name stands for
/// every instance of it, in order. A workload naming a fleet runs on each instance
/// ([`crate::workload::PerInstance`]), so it names fleets only: a single host beside them
/// would be given the fleet's per-instance rate, or not, by a rule nobody would guess.
pub(super) fn client_hosts(
    ctx: &Ctx,
    w: &RawWorkload,
    hosts: &Hosts,
    key: Key,
) -> Result<Vec<u16>, ScenarioError> {
    let named: Vec<(&Spanned<String>, String)> = match (&w.client, &w.clients) {
        (Some(c), None) => vec![(c, key.of("client"))],
        (None, Some(cs)) if !cs.get_ref().is_empty() => cs
            .get_ref()
            .iter()
            .map(|c| (c, key.of("clients")))
            .collect(),
        _ => {
            return Err(ctx.err(
                w.name.span(),
                key.of("client"),
                "set exactly one of `client = \"host\"` or `clients = [\"host\", …]`",
            ));
        }
    };
    let fleet = named
        .iter()
        .find(|(c, _)| hosts.fleet(c.get_ref()).is_some());
    let mut out = Vec::new();
    for (c, k) in &named {
        match hosts.fleet(c.get_ref()) {
            Some(instances) => {
                if out.contains(&(instances.start as u16)) {
                    return Err(ctx.err(c.span(), k, format!("{:?} is listed twice", c.get_ref())));
                }
                out.extend(instances.map(|h| h as u16));
            }
            None => {
                let h = find_host(ctx, hosts, c, k)?;
                if let Some((f, _)) = fleet {
                    return Err(ctx.err(
                        c.span(),
                        k,
                        format!(
                            "{:?} is a single host beside fleet {:?}: a workload on a fleet runs \
                             on each instance at its own rate, so it names fleets only; give {:?} \
                             a workload of its own",
                            c.get_ref(),
                            f.get_ref(),
                            c.get_ref()
                        ),
                    ));
                }
                out.push(h);
            }
        }
    }
    Ok(out)
}

fn find_host(
    ctx: &Ctx,
    hosts: &Hosts,
    v: &Spanned<String>,
    key: &str,
) -> Result<u16, ScenarioError> {
    hosts
        .specs
        .iter()
        .position(|h| &h.name == v.get_ref())
        .map(|p| p as u16)
        .ok_or_else(|| {
            let hint = nearest(v.get_ref(), hosts.client_names())
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            ctx.err(
                v.span(),
                key,
                format!("{:?}: no host has this name{hint}", v.get_ref()),
            )
        })
}

/// `connection` (with `explicit_ports` for "explicit"): anything but plain connect() is
/// modelled with Linux's bind-bucket rules only, so every client host must run Linux.
pub(super) fn mode(
    ctx: &Ctx,
    w: &RawWorkload,
    hosts: &[HostSpec],
    clients: &[u16],
    key: Key,
) -> Result<Mode, ScenarioError> {
    let mode = connection(ctx, w, key)?;
    if mode != Mode::Connect
        && let Some(&h) = clients
            .iter()
            .find(|&&h| hosts[h as usize].profile.kernel != Kernel::Linux)
        && let Some(c) = &w.connection
    {
        return Err(ctx.err(
            c.span(),
            key.of("connection"),
            format!(
                "host {:?} runs the {:?} profile: portsim models bind(), IP_BIND_ADDRESS_NO_PORT \
                 and explicit ports with Linux's bind-bucket rules only; use connection = \"connect\"",
                hosts[h as usize].name, hosts[h as usize].profile_name
            ),
        ));
    }
    if let (Some(p), false) = (&w.explicit_ports, matches!(mode, Mode::Explicit { .. })) {
        return Err(ctx.err(
            p.span(),
            key.of("explicit_ports"),
            "only used with connection = \"explicit\"",
        ));
    }
    Ok(mode)
}

fn connection(ctx: &Ctx, w: &RawWorkload, key: Key) -> Result<Mode, ScenarioError> {
    let Some(c) = &w.connection else {
        return Ok(Mode::Connect);
    };
    let allowed = ["connect", "bind", "bind_no_port", "explicit"];
    Ok(match one_of(ctx, c, &key.of("connection"), &allowed)? {
        "connect" => Mode::Connect,
        "bind" => Mode::Bind,
        "bind_no_port" => Mode::BindNoPort,
        _ => {
            let p = w.explicit_ports.as_ref().ok_or_else(|| {
                ctx.err(
                    c.span(),
                    key.of("explicit_ports"),
                    "connection = \"explicit\" needs explicit_ports = \"LOW HIGH\"",
                )
            })?;
            let (low, high) = port_pair(ctx, p, &key.of("explicit_ports"))?;
            Mode::Explicit { low, high }
        }
    })
}

/// `local_port_range` (IP_LOCAL_PORT_RANGE): only where connect() autoselects the port.
pub(super) fn local_port_range(
    ctx: &Ctx,
    w: &RawWorkload,
    mode: Mode,
    key: Key,
) -> Result<Option<(u16, u16)>, ScenarioError> {
    let Some(r) = &w.local_port_range else {
        return Ok(None);
    };
    if !matches!(mode, Mode::Connect | Mode::BindNoPort) {
        return Err(ctx.err(r.span(), key.of("local_port_range"), "IP_LOCAL_PORT_RANGE is modelled for connect() autoselection: use it with connection = \"connect\" or \"bind_no_port\""));
    }
    Ok(Some(port_pair(ctx, r, &key.of("local_port_range"))?))
}

/// `source_ips`, or each client host's first address. With several client hosts an address
/// is taken by the host that has it; with one, an address it lacks is refused.
pub(super) fn sources(
    ctx: &Ctx,
    w: &RawWorkload,
    hosts: &[HostSpec],
    clients: &[u16],
    mode: Mode,
    key: Key,
) -> Result<Vec<Source>, ScenarioError> {
    let Some(list) = &w.source_ips else {
        return Ok(clients
            .iter()
            .map(|&ch| Source {
                host: ch,
                ip: hosts[ch as usize].ips[0],
            })
            .collect());
    };
    if hosts[clients[0] as usize].fleet.is_some() {
        return fleet_sources(ctx, list, hosts, clients, mode, key);
    }
    let mut sources = Vec::new();
    for &ch in clients {
        let host = &hosts[ch as usize];
        for v in list.get_ref() {
            let a = ip(ctx, v, &key.of("source_ips"))?;
            if !host.ips.contains(&a) {
                if clients.len() == 1 {
                    return Err(ctx.err(
                        v.span(),
                        key.of("source_ips"),
                        format!("{}: not an address of host {:?}", v.get_ref(), host.name),
                    ));
                }
                continue;
            }
            sources.push(Source { host: ch, ip: a });
        }
    }
    if sources.is_empty() {
        return Err(ctx.err(
            list.span(),
            key.of("source_ips"),
            "none of these addresses belongs to a client host",
        ));
    }
    if mode == Mode::Connect && sources.len() > clients.len() {
        return Err(ctx.err(list.span(), key.of("source_ips"), "connect() without bind() cannot choose among several source IPs (the route picks one); use connection = \"bind_no_port\" (IP_BIND_ADDRESS_NO_PORT), \"bind\" or \"explicit\""));
    }
    Ok(sources)
}

/// `source_ips` of a workload on fleets: the addresses as the fleet's `ips` writes them
/// (instance 1's), each instance using its own at the same places; each fleet named needs one.
fn fleet_sources(
    ctx: &Ctx,
    list: &Spanned<Vec<Spanned<String>>>,
    hosts: &[HostSpec],
    clients: &[u16],
    mode: Mode,
    key: Key,
) -> Result<Vec<Source>, ScenarioError> {
    let firsts: Vec<u16> = clients
        .iter()
        .copied()
        .filter(|&c| hosts[c as usize].fleet.as_ref().is_some_and(|f| f.k == 1))
        .collect();
    // Per fleet (by its first instance), the places in its `ips` of the addresses given.
    let mut places: Vec<Vec<usize>> = vec![Vec::new(); firsts.len()];
    for v in list.get_ref() {
        let a = ip(ctx, v, &key.of("source_ips"))?;
        let at = firsts.iter().enumerate().find_map(|(f, &c)| {
            let j = hosts[c as usize].ips.iter().position(|&x| x == a)?;
            Some((f, j))
        });
        let Some((f, j)) = at else {
            let names: Vec<String> = firsts
                .iter()
                .filter_map(|&c| hosts[c as usize].fleet.as_ref())
                .map(|f| format!("{:?}", f.fleet))
                .collect();
            return Err(ctx.err(
                v.span(),
                key.of("source_ips"),
                format!(
                    "{}: not one of the `ips` of fleet {}; on a fleet, source_ips names the \
                     addresses as its `ips` writes them (instance 1's) and each instance uses \
                     its own",
                    v.get_ref(),
                    names.join(", ")
                ),
            ));
        };
        if !places[f].contains(&j) {
            places[f].push(j);
        }
    }
    if let Some(f) = places.iter().position(Vec::is_empty) {
        let name = &hosts[firsts[f] as usize]
            .fleet
            .as_ref()
            .map(|x| x.fleet.clone());
        return Err(ctx.err(
            list.span(),
            key.of("source_ips"),
            format!(
                "none of these addresses is one of fleet {:?}'s `ips`",
                name.as_deref().unwrap_or_default()
            ),
        ));
    }
    if mode == Mode::Connect && places.iter().any(|p| p.len() > 1) {
        return Err(ctx.err(list.span(), key.of("source_ips"), "connect() without bind() cannot choose among several source IPs (the route picks one); use connection = \"bind_no_port\" (IP_BIND_ADDRESS_NO_PORT), \"bind\" or \"explicit\""));
    }
    let mut sources = Vec::new();
    let mut f = 0;
    for &c in clients {
        let host = &hosts[c as usize];
        if c != clients[0] && host.fleet.as_ref().is_some_and(|x| x.k == 1) {
            f += 1;
        }
        sources.extend(places[f].iter().map(|&j| Source {
            host: c,
            ip: host.ips[j],
        }));
    }
    Ok(sources)
}

/// `destinations`: at least one "IP:PORT", each a listener of the host that has the address
/// (the client itself for a loopback address).
pub(super) fn destinations(
    ctx: &Ctx,
    w: &RawWorkload,
    hosts: &Hosts,
    clients: &[u16],
    key: Key,
) -> Result<Vec<Destination>, ScenarioError> {
    if w.destinations.get_ref().is_empty() {
        return Err(ctx.err(
            w.destinations.span(),
            key.of("destinations"),
            "at least one \"IP:PORT\" is needed",
        ));
    }
    w.destinations
        .get_ref()
        .iter()
        .map(|v| destination(ctx, v, hosts, clients, key))
        .collect()
}

fn destination(
    ctx: &Ctx,
    v: &Spanned<String>,
    hosts: &Hosts,
    clients: &[u16],
    key: Key,
) -> Result<Destination, ScenarioError> {
    let (a, port) = endpoint(ctx, v, &key.of("destinations"))?;
    let server = if crate::host::is_loopback(a) {
        if clients.len() > 1 {
            return Err(ctx.err(v.span(), key.of("destinations"), "a loopback destination with several client hosts is ambiguous: each host reaches only itself"));
        }
        clients[0] as usize
    } else {
        *hosts.owner_of_ip.get(&a).ok_or_else(|| {
            ctx.err(
                v.span(),
                key.of("destinations"),
                format!("{}: no host has this address", v.get_ref()),
            )
        })?
    };
    let h = &hosts.specs[server];
    if !h
        .listen
        .iter()
        .any(|&(la, lp)| lp == port && (la == 0 || la == a))
    {
        return Err(ctx.err(
            v.span(),
            key.of("destinations"),
            format!(
                "{}: host {:?} has no listener there (add it to the host's `listen`)",
                v.get_ref(),
                h.name
            ),
        ));
    }
    Ok(Destination {
        host: server as u16,
        ip: a,
        port,
    })
}

/// `spread`: round robin over the destinations unless "random".
pub(super) fn spread(ctx: &Ctx, w: &RawWorkload, key: Key) -> Result<Spread, ScenarioError> {
    let Some(s) = &w.spread else {
        return Ok(Spread::RoundRobin);
    };
    Ok(
        match one_of(ctx, s, &key.of("spread"), &["round_robin", "random"])? {
            "random" => Spread::Random,
            _ => Spread::RoundRobin,
        },
    )
}
