//! `[[host]]` tables: a unique name, a kernel profile with the file's `[host.knobs]` (the
//! kernel's own names) and `[host.model]` overrides, the host's addresses and its listeners.
//! A host with `count = N` (N > 1) is a fleet: N identical client hosts `NAME[1]` …
//! `NAME[N]`, instance `k`'s addresses each of `ips` plus `k − 1`.

use super::raw::RawHost;
use super::value::{Ctx, endpoint, ip};
use super::{HostSpec, Instance, ScenarioError};
use crate::profile::Profile;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::ops::Range;

/// Most instances of one fleet.
pub const MAX_COUNT: i64 = 10_000;

/// Most hosts of a scenario, fleets expanded: a host is numbered by a `u16`.
const MAX_HOSTS: usize = u16::MAX as usize;

/// The hosts of a scenario, in file order, each fleet expanded in place.
pub(super) struct Hosts {
    pub(super) specs: Vec<HostSpec>,
    /// The host (index into `specs`) each non-loopback address belongs to.
    pub(super) owner_of_ip: BTreeMap<u32, usize>,
    /// Each fleet (`count` > 1): its name and its instances' indices into `specs`.
    pub(super) fleets: Vec<(String, Range<usize>)>,
    /// Every host's name, fleet instances included.
    names: BTreeSet<String>,
}

impl Hosts {
    /// The fleet named `name`: its instances' indices into `specs`.
    pub(super) fn fleet(&self, name: &str) -> Option<Range<usize>> {
        self.fleets
            .iter()
            .find(|f| f.0 == name)
            .map(|f| f.1.clone())
    }

    /// The names a client may give: single hosts' and fleets', for a "did you mean" hint.
    pub(super) fn client_names(&self) -> impl Iterator<Item = &str> {
        let singles = self.specs.iter().filter(|h| h.fleet.is_none());
        singles
            .map(|h| h.name.as_str())
            .chain(self.fleets.iter().map(|f| f.0.as_str()))
    }
}

/// Every `[[host]]`; a scenario needs at least one.
pub(super) fn hosts(ctx: &Ctx, raw: &[RawHost]) -> Result<Hosts, ScenarioError> {
    if raw.is_empty() {
        return Err(ctx.err(
            0..0,
            "host",
            "no [[host]]: a scenario needs at least one host",
        ));
    }
    let mut hosts = Hosts {
        specs: Vec::new(),
        owner_of_ip: BTreeMap::new(),
        fleets: Vec::new(),
        names: BTreeSet::new(),
    };
    for (i, h) in raw.iter().enumerate() {
        host(ctx, i, h, &mut hosts)?;
    }
    Ok(hosts)
}

/// Host `i` (every instance of it, for a fleet), checked against the hosts before it; claims
/// its addresses in `hosts`.
fn host(ctx: &Ctx, i: usize, h: &RawHost, hosts: &mut Hosts) -> Result<(), ScenarioError> {
    let name = h.name.get_ref().clone();
    let count = count(ctx, i, h, hosts)?;
    let names: Vec<String> = if count == 1 {
        vec![name.clone()]
    } else {
        (1..=count).map(|k| format!("{name}[{k}]")).collect()
    };
    let taken = |n: &String| hosts.names.contains(n) || hosts.fleet(n).is_some();
    if name.is_empty() || taken(&name) || names.iter().any(taken) {
        return Err(ctx.err(
            h.name.span(),
            format!("host[{i}].name"),
            format!("{name:?}: host names must be unique and non-empty"),
        ));
    }
    let profile_name = h
        .profile
        .as_ref()
        .map_or("linux".to_string(), |p| p.get_ref().clone());
    let mut profile = named_profile(ctx, i, h, &profile_name)?;
    set_knobs(ctx, i, h, &mut profile)?;
    set_model(ctx, i, h, &mut profile)?;
    validate(ctx, i, h, &profile)?;
    let base = base_ips(ctx, i, h)?;
    if count > 1
        && let Some(l) = h.listen.first()
    {
        return Err(ctx.err(
            l.span(),
            format!("host[{i}].listen"),
            format!(
                "a fleet (count = {count}) is clients only and may not listen; declare a server \
                 as a host of its own (count = 1)"
            ),
        ));
    }
    let first = hosts.specs.len();
    for (k, name) in (1..=count).zip(names) {
        let ips = claim(ctx, i, h, &base, (k, count), hosts)?;
        let listen = listen(ctx, i, h, &ips)?;
        hosts.names.insert(name.clone());
        hosts.specs.push(HostSpec {
            name,
            profile_name: profile_name.clone(),
            profile: profile.clone(),
            ips,
            listen,
            fleet: (count > 1).then(|| Instance {
                fleet: h.name.get_ref().clone(),
                k,
                count,
            }),
        });
    }
    if count > 1 {
        hosts
            .fleets
            .push((h.name.get_ref().clone(), first..hosts.specs.len()));
    }
    Ok(())
}

/// `count`: 1 unless set; at most [`MAX_COUNT`], and the scenario's hosts, fleets expanded,
/// at most 65,535.
fn count(ctx: &Ctx, i: usize, h: &RawHost, hosts: &Hosts) -> Result<u32, ScenarioError> {
    let Some(c) = &h.count else {
        return Ok(1);
    };
    let key = format!("host[{i}].count");
    let n = *c.get_ref();
    if !(1..=MAX_COUNT).contains(&n) {
        return Err(ctx.err(
            c.span(),
            key,
            format!("{n}: expected an integer 1–{MAX_COUNT} (identical hosts; 1 is one host)"),
        ));
    }
    if hosts.specs.len() + n as usize > MAX_HOSTS {
        return Err(ctx.err(
            c.span(),
            key,
            format!(
                "{n}: the scenario would have {} hosts; at most {MAX_HOSTS} in all",
                hosts.specs.len() + n as usize
            ),
        ));
    }
    Ok(n as u32)
}

/// `profile = "…"`, Linux when absent.
fn named_profile(
    ctx: &Ctx,
    i: usize,
    h: &RawHost,
    profile_name: &str,
) -> Result<Profile, ScenarioError> {
    Profile::named(profile_name).ok_or_else(|| {
        let span = h.profile.as_ref().map_or(h.name.span(), |p| p.span());
        ctx.err(
            span,
            format!("host[{i}].profile"),
            crate::profile::unknown_profile(profile_name),
        )
    })
}

/// IP_LOCAL_PORT_RANGE exists on every client's kernel: Linux 6.3+ (91d0b78c5177).
pub(super) fn local_port_range_exists(
    ctx: &Ctx,
    span: Range<usize>,
    specs: &[HostSpec],
    clients: &[u16],
    key: String,
) -> Result<(), ScenarioError> {
    for &c in clients {
        let h = &specs[c as usize];
        if let Some(v) = h.profile.linux_version
            && !crate::profile::linux_versions::has_local_port_range(v)
        {
            return Err(ctx.err(
                span,
                key,
                format!(
                    "host {:?} runs profile {:?} (Linux {}.{}), which has no IP_LOCAL_PORT_RANGE \
                     socket option: it arrived in Linux 6.3 (and 6.1.32); use linux@6.1 or newer, \
                     or narrow the host's net.ipv4.ip_local_port_range instead",
                    h.name, h.profile_name, v.0, v.1
                ),
            ));
        }
    }
    Ok(())
}

/// `[host.knobs]`, applied in the kernel's table order, so that a knob read relative to
/// another (Windows `num` after `start`) sees it set, whatever the file's key order.
fn set_knobs(ctx: &Ctx, i: usize, h: &RawHost, profile: &mut Profile) -> Result<(), ScenarioError> {
    let table = profile.knobs();
    let rank = |k: &str| table.iter().position(|s| s.name == k).unwrap_or(usize::MAX);
    let mut knobs: Vec<_> = h.knobs.iter().collect();
    knobs.sort_by_key(|(k, _)| rank(k.get_ref()));
    for (k, v) in knobs {
        profile.set_knob(k.get_ref(), v.get_ref()).map_err(|e| {
            ctx.err(
                v.span(),
                format!("host[{i}].knobs.\"{}\"", k.get_ref()),
                format!("{}: {e}", v.get_ref()),
            )
        })?;
    }
    Ok(())
}

/// `[host.model]`: behaviour no knob exposes, in the file's key order.
fn set_model(ctx: &Ctx, i: usize, h: &RawHost, profile: &mut Profile) -> Result<(), ScenarioError> {
    for (k, v) in &h.model {
        profile.set_model(k.get_ref(), v.get_ref()).map_err(|e| {
            ctx.err(
                v.span(),
                format!("host[{i}].model.{}", k.get_ref()),
                format!("{}: {e}", v.get_ref()),
            )
        })?;
    }
    Ok(())
}

/// The profile as the kernel's handlers would check it, refused at the range knob the
/// message names if the file sets one, else at the host's name.
fn validate(ctx: &Ctx, i: usize, h: &RawHost, profile: &Profile) -> Result<(), ScenarioError> {
    profile.validate().map_err(|m| {
        let at = h.knobs.iter().find(|(k, _)| {
            let k = k.get_ref();
            k.contains("port_range") || k.contains("portrange") || k.starts_with("dynamicport")
        });
        match at {
            Some((k, v)) => ctx.err(v.span(), format!("host[{i}].knobs.\"{}\"", k.get_ref()), m),
            None => ctx.err(h.name.span(), format!("host[{i}].knobs"), m),
        }
    })
}

/// `ips` as written: at least one, each once.
fn base_ips(ctx: &Ctx, i: usize, h: &RawHost) -> Result<Vec<u32>, ScenarioError> {
    let key = format!("host[{i}].ips");
    if h.ips.get_ref().is_empty() {
        return Err(ctx.err(h.ips.span(), key, "a host needs at least one IPv4 address"));
    }
    let mut ips = Vec::new();
    for v in h.ips.get_ref() {
        let a = ip(ctx, v, &key)?;
        if ips.contains(&a) {
            let m = format!("{} is listed twice; list each address once", v.get_ref());
            return Err(ctx.err(v.span(), key, m));
        }
        ips.push(a);
    }
    Ok(ips)
}

/// Instance `k` of `count`'s addresses (`base` plus `k − 1`; `base` itself for a single
/// host), claimed for the host about to be pushed: a non-loopback address belongs to one
/// host only; a fleet's addresses are neither loopback (every host's) nor past
/// 255.255.255.255.
fn claim(
    ctx: &Ctx,
    i: usize,
    h: &RawHost,
    base: &[u32],
    (k, count): (u32, u32),
    hosts: &mut Hosts,
) -> Result<Vec<u32>, ScenarioError> {
    let key = format!("host[{i}].ips");
    let me = hosts.specs.len();
    let mut ips = Vec::with_capacity(base.len());
    for (v, &b) in h.ips.get_ref().iter().zip(base) {
        let Some(a) = b.checked_add(k - 1) else {
            return Err(ctx.err(
                v.span(),
                key,
                format!(
                    "{} + {} (instance {k} of count = {count}) passes 255.255.255.255; \
                     instance k takes each address plus k − 1: start lower or lower count",
                    v.get_ref(),
                    k - 1
                ),
            ));
        };
        let loopback = crate::host::is_loopback(a);
        if count > 1 && loopback {
            return Err(ctx.err(
                v.span(),
                key,
                format!(
                    "{} (instance {k}'s address): a fleet's addresses must be its own, and a \
                     loopback address is every host's; use addresses outside 127.0.0.0/8",
                    Ipv4Addr::from(a)
                ),
            ));
        }
        if !loopback {
            if let Some(&other) = hosts.owner_of_ip.get(&a) {
                let whose = if count > 1 {
                    format!("{} (instance {k}'s address)", Ipv4Addr::from(a))
                } else {
                    v.get_ref().clone()
                };
                return Err(ctx.err(
                    v.span(),
                    key,
                    format!(
                        "{whose} already belongs to host {:?}",
                        hosts.specs[other].name
                    ),
                ));
            }
            hosts.owner_of_ip.insert(a, me);
        }
        ips.push(a);
    }
    Ok(ips)
}

/// `listen`: "IP:PORT" on one of the host's addresses, a loopback one, or 0.0.0.0.
fn listen(ctx: &Ctx, i: usize, h: &RawHost, ips: &[u32]) -> Result<Vec<(u32, u16)>, ScenarioError> {
    let key = format!("host[{i}].listen");
    let mut listen = Vec::new();
    for v in &h.listen {
        let (a, port) = endpoint(ctx, v, &key)?;
        if a != 0 && !ips.contains(&a) && !crate::host::is_loopback(a) {
            return Err(ctx.err(
                v.span(),
                key,
                format!("{}: the address is not one of this host's ips", v.get_ref()),
            ));
        }
        listen.push((a, port));
    }
    Ok(listen)
}
