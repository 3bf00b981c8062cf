//! `[[nat]]` tables: a NAT between the hosts `behind` it and every other host, with its
//! profile, the addresses it translates to and `[nat.knobs]` (the kernel's names;
//! [`crate::nat::NatConfig::set_knob`]).

use super::hosts::Hosts;
use super::raw::RawNat;
use super::value::{Ctx, ip, list};
use super::{NatSpec, ScenarioError};
use crate::nat::{NAT_PROFILES, NatConfig};

/// Every `[[nat]]`, in file order; a host is behind one NAT at most.
pub(super) fn nats(
    ctx: &Ctx,
    raw: &[RawNat],
    hosts: &Hosts,
) -> Result<Vec<NatSpec>, ScenarioError> {
    let mut out: Vec<NatSpec> = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        let spec = nat(ctx, i, n, hosts, &out)?;
        out.push(spec);
    }
    Ok(out)
}

fn nat(
    ctx: &Ctx,
    i: usize,
    n: &RawNat,
    hosts: &Hosts,
    before: &[NatSpec],
) -> Result<NatSpec, ScenarioError> {
    let name = n.name.get_ref().clone();
    let taken = before.iter().any(|x| x.name == name)
        || hosts
            .specs
            .iter()
            .any(|h| h.name == name || h.fleet.as_ref().is_some_and(|f| f.fleet == name));
    if name.is_empty() || taken {
        return Err(ctx.err(
            n.name.span(),
            format!("nat[{i}].name"),
            format!(
                "{name:?}: NAT names must be non-empty and unlike every other NAT's and host's"
            ),
        ));
    }
    let profile_name = n
        .profile
        .as_ref()
        .map_or("linux-masquerade".into(), |p| p.get_ref().clone());
    let cloud = crate::nat::cloud::Cloud::named(&profile_name).is_some();
    let ips = addresses(ctx, i, n, hosts, before, !cloud)?;
    let mut config = NatConfig::named(&profile_name, ips.clone()).ok_or_else(|| {
        let span = n.profile.as_ref().map_or(n.name.span(), |p| p.span());
        let names: Vec<&str> = NAT_PROFILES.iter().map(|p| p.0).collect();
        ctx.err(
            span,
            format!("nat[{i}].profile"),
            format!(
                "{profile_name:?}: unknown NAT profile; available: {}",
                list(&names)
            ),
        )
    })?;
    for (k, v) in &n.knobs {
        config.set_knob(k.get_ref(), v.get_ref()).map_err(|e| {
            ctx.err(
                v.span(),
                format!("nat[{i}].knobs.\"{}\"", k.get_ref()),
                format!("{}: {e}", v.get_ref()),
            )
        })?;
    }
    let behind = behind(ctx, i, n, hosts, before)?;
    if let Some(c) = &config.cloud {
        let vms = behind.len();
        cloud_fits(ctx, i, n, c, ips.len(), vms)?;
    }
    Ok(NatSpec {
        name,
        profile_name,
        ips,
        behind,
        config,
    })
}

/// A cloud gateway's settings together ([`crate::nat::cloud::Cloud::validate`]), and Azure's
/// default allocation, which has no row above 1,000 VMs.
fn cloud_fits(
    ctx: &Ctx,
    i: usize,
    n: &RawNat,
    c: &crate::nat::cloud::Cloud,
    addresses: usize,
    vms: usize,
) -> Result<(), ScenarioError> {
    use crate::nat::cloud::{Allocation, Provider, azure_ports_for_pool};
    let span = n.profile.as_ref().map_or(n.name.span(), |p| p.span());
    c.validate(addresses)
        .map_err(|e| ctx.err(span.clone(), format!("nat[{i}].knobs"), e.to_string()))?;
    if let (Provider::AzureLb, Allocation::PerVm { ports }) = (c.provider, c.allocation)
        && ports > 0
        && vms as u64 > addresses as u64 * u64::from(c.ports_per_address / ports)
    {
        // outbound-rules.md: an allocation the frontends cannot hold is rejected.
        return Err(ctx.err(
            span,
            format!("nat[{i}].knobs.\"allocated_outbound_ports\""),
            format!(
                "{vms} VMs × {ports} ports do not fit {addresses} frontend address(es) of \
                 64,000 ports ({} blocks of {ports} each): Azure rejects the rule; add frontend \
                 addresses or lower the ports",
                c.ports_per_address / ports
            ),
        ));
    }
    let by_pool = c.provider == Provider::AzureLb && c.allocation == Allocation::PerVm { ports: 0 };
    if by_pool && azure_ports_for_pool(vms).is_none() {
        return Err(ctx.err(
            n.behind.span(),
            format!("nat[{i}].behind"),
            format!(
                "{vms} VMs behind azure-lb-outbound: the default allocation covers 1 to 1,000; \
                 set allocated_outbound_ports"
            ),
        ));
    }
    Ok(())
}

/// `ips`: consecutive addresses (the kernel's SNAT range is min–max), owned by no host and
/// no other NAT.
fn addresses(
    ctx: &Ctx,
    i: usize,
    n: &RawNat,
    hosts: &Hosts,
    before: &[NatSpec],
    consecutive: bool,
) -> Result<Vec<u32>, ScenarioError> {
    let key = format!("nat[{i}].ips");
    if n.ips.get_ref().is_empty() {
        return Err(ctx.err(
            n.ips.span(),
            key,
            "a NAT needs at least one IPv4 address to translate to",
        ));
    }
    let mut ips: Vec<u32> = Vec::new();
    for v in n.ips.get_ref() {
        let a = ip(ctx, v, &key)?;
        let owner = hosts
            .owner_of_ip
            .get(&a)
            .map(|&h| format!("host {:?}", hosts.specs[h].name));
        let owner = owner.or_else(|| {
            before
                .iter()
                .find(|x| x.ips.contains(&a))
                .map(|x| format!("NAT {:?}", x.name))
        });
        if let Some(o) = owner {
            return Err(ctx.err(
                v.span(),
                key,
                format!("{} already belongs to {o}", v.get_ref()),
            ));
        }
        if crate::host::is_loopback(a) || a == 0 {
            return Err(ctx.err(
                v.span(),
                key,
                format!("{}: a NAT translates to a routable address", v.get_ref()),
            ));
        }
        if ips.contains(&a) {
            return Err(ctx.err(v.span(), key, format!("{} is listed twice", v.get_ref())));
        }
        if consecutive
            && let Some(&last) = ips.last()
            && a != last.wrapping_add(1)
        {
            return Err(ctx.err(
                v.span(),
                key,
                format!(
                    "{}: list consecutive addresses in ascending order; the kernel's SNAT takes a \
                     range from the first to the last",
                    v.get_ref()
                ),
            ));
        }
        ips.push(a);
    }
    Ok(ips)
}

/// `behind`: host names (a fleet's, every instance of it), each behind no other NAT.
fn behind(
    ctx: &Ctx,
    i: usize,
    n: &RawNat,
    hosts: &Hosts,
    before: &[NatSpec],
) -> Result<Vec<usize>, ScenarioError> {
    let key = format!("nat[{i}].behind");
    if n.behind.get_ref().is_empty() {
        return Err(ctx.err(
            n.behind.span(),
            key,
            "list the hosts whose connections the NAT translates",
        ));
    }
    let mut out = Vec::new();
    for v in n.behind.get_ref() {
        // A fleet's name stands for every instance of it.
        let named = match hosts.fleet(v.get_ref()) {
            Some(instances) => instances,
            None => match hosts.specs.iter().position(|h| &h.name == v.get_ref()) {
                Some(h) => h..h + 1,
                None => {
                    let hint = crate::profile::nearest(v.get_ref(), hosts.client_names())
                        .map_or(String::new(), |n| format!("; did you mean {n:?}?"));
                    return Err(ctx.err(
                        v.span(),
                        key,
                        format!("{:?}: no such host{hint}", v.get_ref()),
                    ));
                }
            },
        };
        for h in named {
            if out.contains(&h) {
                let m = format!("{:?} is listed twice", hosts.specs[h].name);
                return Err(ctx.err(v.span(), key, m));
            }
            if let Some(other) = before.iter().find(|x| x.behind.contains(&h)) {
                return Err(ctx.err(
                    v.span(),
                    key,
                    format!(
                        "{:?} is behind NAT {:?} already; a host is behind one NAT",
                        hosts.specs[h].name, other.name
                    ),
                ));
            }
            out.push(h);
        }
    }
    if out.len() == hosts.specs.len() {
        return Err(ctx.err(
            n.behind.span(),
            key,
            "every host is behind this NAT: nothing would cross it; leave the servers out",
        ));
    }
    Ok(out)
}
