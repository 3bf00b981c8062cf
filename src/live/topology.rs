//! The namespaces of a live run through a NAT: the hosts behind it in an inside namespace,
//! a router namespace holding the NAT's addresses and its nftables rule, and the other
//! hosts (the servers) in the namespace the process made at its start ([`super::netns`]).
//!
//! ```text
//!  inside              router                                  outside (the process's)
//!  clients on gw  ──veth──  lan | wan (NAT addresses)  ──veth──  nat0, servers on lo
//!  default via NAT        ip_forward = 1, conntrack sysctls     route to the NAT /32s
//!                         postrouting: masquerade / snat
//! ```
//!
//! A namespace is made by a thread that calls `unshare(CLONE_NEWNET)`, opens
//! `/proc/thread-self/ns/net` and exits: the open file keeps the namespace alive and is the
//! only handle to it (no name is mounted under /run/netns as `ip netns add` would, so
//! nothing outlives the process, Ctrl-C included). Work inside one runs on a thread that
//! `setns()`es into it ([`within`]); the tools it starts inherit that namespace. A veth end
//! moves with `ip link ... netns /proc/PID/fd/N`, N the open file.

use super::LiveError;
use super::netns;
use crate::nat::NatConfig;
use crate::nat::conntrack::CtState;
use crate::scenario::{NatSpec, Scenario};
use nix::sched::{CloneFlags, setns, unshare};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// A network namespace this run made; it lives while a clone of this handle does.
#[derive(Clone)]
pub struct Netns(Arc<File>);

impl Netns {
    /// A new, empty network namespace with `lo` up.
    pub fn new() -> Result<Netns, LiveError> {
        let made = std::thread::spawn(|| -> Result<File, String> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
            File::open("/proc/thread-self/ns/net").map_err(|e| format!("open: {e}"))
        })
        .join()
        .map_err(|_| LiveError::Namespace("the thread making a namespace panicked".into()))?
        .map_err(|e| LiveError::Namespace(format!("cannot make a network namespace: {e}")))?;
        let ns = Netns(Arc::new(made));
        within(&ns, || netns::ip(&["link", "set", "lo", "up"]))??;
        Ok(ns)
    }

    /// A path naming the namespace to another process (`ip link set ... netns PATH`).
    fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.0.as_raw_fd())
    }

    /// Moves the calling thread into the namespace, for good.
    pub fn enter(&self) -> std::io::Result<()> {
        setns(&*self.0, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
    }
}

/// Runs `f` on a thread inside `ns` and returns what it returned.
pub fn within<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> Result<T, LiveError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter()
                .map_err(|e| LiveError::Namespace(format!("setns: {e}")))?;
            Ok(f())
        })
        .join()
        .map_err(|_| LiveError::Namespace("a thread inside a namespace panicked".into()))?
    })
}

/// A NAT made real: its two namespaces, its rule, and the settings its kernel runs with.
pub struct NatNet {
    pub name: String,
    pub router: Netns,
    pub inside: Netns,
    pub ips: Vec<u32>,
    /// The router's ruleset as `nft list ruleset` prints it.
    pub ruleset: String,
    /// The NAT's settings as the router's kernel read them back: the prediction uses these.
    pub effective: NatConfig,
}

/// Interface names: `nat0` in the outside namespace, `wan` and `lan` in the router's, `gw`
/// inside.
const OUTSIDE_DEV: &str = "nat0";
const WAN: &str = "wan";
const LAN: &str = "lan";
const GW: &str = "gw";

/// The nftables script for `spec`: `masquerade` for one address, `snat ip to A-B` for a
/// range, the port range after a colon, then the flags (nftables' names).
pub fn nft_script(cfg: &NatConfig) -> String {
    let statement = cfg.rule.nft_statement();
    format!(
        "table ip portsim {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{WAN}\" meta l4proto tcp {statement}\n  }}\n}}\n"
    )
}

/// Builds `spec`'s namespaces, links, routes, rule and sysctls around the calling thread's
/// namespace (the outside one, holding the servers' addresses).
pub fn build(sc: &Scenario, spec: &NatSpec) -> Result<NatNet, LiveError> {
    let router = Netns::new()?;
    let inside = Netns::new()?;
    let clients: Vec<u32> = spec
        .behind
        .iter()
        .flat_map(|&h| sc.hosts[h].ips.clone())
        .collect();
    let servers: Vec<u32> = (0..sc.hosts.len())
        .filter(|h| !spec.behind.contains(h))
        .flat_map(|h| sc.hosts[h].ips.clone())
        .collect();
    let gateway = cidr(spec.ips[0]);
    // Outside: the veth to the router, and the way back to the NAT's addresses.
    let router_path = router.path();
    netns::ip(&[
        "link",
        "add",
        OUTSIDE_DEV,
        "type",
        "veth",
        "peer",
        "name",
        WAN,
        "netns",
        &router_path,
    ])?;
    netns::ip(&["link", "set", OUTSIDE_DEV, "up"])?;
    for &a in &spec.ips {
        netns::ip(&["route", "add", &cidr(a), "dev", OUTSIDE_DEV])?;
    }
    let inside_path = inside.path();
    let (ruleset, effective) = within(&router, || {
        router_side(spec, &clients, &servers, &inside_path)
    })??;
    within(&inside, || -> Result<(), LiveError> {
        for &a in &clients {
            netns::ip(&["addr", "add", &cidr(a), "dev", GW])?;
        }
        netns::ip(&["link", "set", GW, "up"])?;
        netns::ip(&["route", "add", &gateway, "dev", GW])?;
        let via = Ipv4Addr::from(spec.ips[0]).to_string();
        netns::ip(&["route", "add", "default", "via", &via, "dev", GW])
    })??;
    Ok(NatNet {
        name: spec.name.clone(),
        router,
        inside,
        ips: spec.ips.clone(),
        ruleset,
        effective,
    })
}

fn cidr(a: u32) -> String {
    format!("{}/32", Ipv4Addr::from(a))
}

/// Inside the router: the veth to the clients, addresses, routes, forwarding, the rule, and
/// the conntrack timeouts. Returns the ruleset and the settings read back.
fn router_side(
    spec: &NatSpec,
    clients: &[u32],
    servers: &[u32],
    inside: &str,
) -> Result<(String, NatConfig), LiveError> {
    netns::ip(&[
        "link", "add", LAN, "type", "veth", "peer", "name", GW, "netns", inside,
    ])?;
    for &a in &spec.ips {
        netns::ip(&["addr", "add", &cidr(a), "dev", WAN])?;
    }
    netns::ip(&["link", "set", WAN, "up"])?;
    netns::ip(&["link", "set", LAN, "up"])?;
    for &a in servers {
        netns::ip(&["route", "add", &cidr(a), "dev", WAN])?;
    }
    for &a in clients {
        netns::ip(&["route", "add", &cidr(a), "dev", LAN])?;
    }
    netns::write("net.ipv4.ip_forward", "1")?;
    // The rule loads nf_conntrack and nf_nat, whose sysctls appear with them.
    let ruleset = netns::nft(&nft_script(&spec.config))?;
    let effective = conntrack_sysctls(&spec.config)?;
    Ok((ruleset, effective))
}

/// `net.netfilter.nf_conntrack_max` and `_buckets` are read-only (0444) in a network
/// namespace other than the first (nf_conntrack_standalone.c, `nf_conntrack_standalone_init_sysctl`:
/// "Don't allow non-init_net ns to alter global sysctls"); the timeouts are the
/// namespace's own (`nf_tcp_pernet`). Writes the timeouts, reads every value back.
fn conntrack_sysctls(cfg: &NatConfig) -> Result<NatConfig, LiveError> {
    let mut effective = cfg.clone();
    for s in CtState::ALL {
        let name = format!(
            "net.netfilter.nf_conntrack_tcp_timeout_{}",
            s.sysctl_suffix()
        );
        let want = (cfg.timeouts[s as usize].0 / 1_000_000_000).to_string();
        let got = netns::write(&name, &want)?;
        if got != want {
            return Err(LiveError::Refused(format!(
                "{name} = {want} reads back as {got:?}"
            )));
        }
    }
    let default = NatConfig::named("linux-masquerade", cfg.rule.ips.clone())
        .expect("the default NAT profile exists");
    for (name, set, default, field) in [
        ("net.netfilter.nf_conntrack_max", cfg.max, default.max, 0),
        (
            "net.netfilter.nf_conntrack_buckets",
            cfg.buckets,
            default.buckets,
            1,
        ),
    ] {
        let here: u64 = netns::read(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| LiveError::Namespace(format!("cannot read {name}")))?;
        if set != default && set != here {
            return Err(LiveError::Refused(format!(
                "{name} = {set}: a network namespace other than the host's cannot change it \
                 (read-only there, nf_conntrack_standalone.c), and this run may not write the \
                 host's; here it is {here}"
            )));
        }
        if field == 0 {
            effective.max = here;
        } else {
            effective.buckets = here;
        }
    }
    Ok(effective)
}
