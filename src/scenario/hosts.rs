//! `[[host]]` tables: a unique name, a kernel profile with the file's `[host.knobs]` (the
//! kernel's own names) and `[host.model]` overrides, the host's addresses and its listeners.

use super::HostSpec;
use super::ScenarioError;
use super::raw::RawHost;
use super::value::{Ctx, endpoint, ip, list};
use crate::profile::{PROFILES, Profile};
use std::collections::BTreeMap;

/// The hosts of a scenario, in file order.
pub(super) struct Hosts {
    pub(super) specs: Vec<HostSpec>,
    /// The host (index into `specs`) each non-loopback address belongs to.
    pub(super) owner_of_ip: BTreeMap<u32, usize>,
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
    };
    for (i, h) in raw.iter().enumerate() {
        let spec = host(ctx, i, h, &mut hosts)?;
        hosts.specs.push(spec);
    }
    Ok(hosts)
}

/// Host `i`, checked against the hosts before it; claims its addresses in `hosts`.
fn host(ctx: &Ctx, i: usize, h: &RawHost, hosts: &mut Hosts) -> Result<HostSpec, ScenarioError> {
    let name = h.name.get_ref().clone();
    if name.is_empty() || hosts.specs.iter().any(|x| x.name == name) {
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
    let ips = ips(ctx, i, h, hosts)?;
    let listen = listen(ctx, i, h, &ips)?;
    Ok(HostSpec {
        name,
        profile_name,
        profile,
        ips,
        listen,
    })
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
            format!(
                "{profile_name:?}: unknown profile; available: {}",
                list(&PROFILES.iter().map(|p| p.0).collect::<Vec<_>>())
            ),
        )
    })
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

/// `ips`: at least one, each once; a non-loopback address belongs to one host only.
fn ips(ctx: &Ctx, i: usize, h: &RawHost, hosts: &mut Hosts) -> Result<Vec<u32>, ScenarioError> {
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
        if !crate::host::is_loopback(a) {
            if let Some(&other) = hosts.owner_of_ip.get(&a) {
                return Err(ctx.err(
                    v.span(),
                    key,
                    format!(
                        "{} already belongs to host {:?}",
                        v.get_ref(),
                        hosts.specs[other].name
                    ),
                ));
            }
            hosts.owner_of_ip.insert(a, i);
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
