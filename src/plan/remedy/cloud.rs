//! Remedies for a cloud NAT gateway that runs short of ports, each the provider's setting
//! as its CLI and Terraform take it (`/work/cloud-facts.md`: G3, G4, G8, G19 for GCP; A2,
//! A10, A11 for AWS; L5, L9, L10 for Azure's load balancer; N1, N2, N8, N9 for Azure NAT
//! Gateway; S5 for App Service). Values are computed from the load; the names of the
//! provider's resources are placeholders: `NAT`, `ROUTER`, `REGION` (GCP), `NAT_GATEWAY_ID`,
//! `EIPALLOC_k` (AWS), `RG`, `LB`, `RULE`, `FRONTEND_k`, `PUBLIC_IP_k`, `APP`, `VNET`,
//! `SUBNET` (Azure). Reusing connections is the workloads' remedy ([`super::keep_alive`]).

use super::nat::{crossed, knob, nat_mut};
use super::{FreshIps, Variant, strings};
use crate::nat::cloud::{Allocation, Cloud, Provider};
use crate::nat::conntrack::CtState;
use crate::plan::TARGET_USE;
use crate::plan::nat::{capacity, floor_pow2, per_vm_need, vms};
use crate::scenario::{NatSpec, Scenario};
use toml::{Table, Value};

/// GCP's shortest `tcp_time_wait_timeout_sec` this remedy sets: the default of new gateways
/// from September 30, 2026 (G12), and Google's advice for many connections to one
/// destination (G8).
const GCP_TIME_WAIT_S: u64 = 30;

/// The cloud gateways of `provider` the target workloads cross, each with its settings.
fn gateways<'a>(
    sc: &'a Scenario,
    targets: &[usize],
    provider: Provider,
) -> Vec<(&'a NatSpec, &'a Cloud)> {
    crossed(sc, targets)
        .into_iter()
        .filter_map(|i| {
            let n = &sc.nats[i];
            let c = n.config.cloud.as_ref()?;
            (c.provider == provider).then_some((n, c))
        })
        .collect()
}

/// Pairs that hold `mean` flows (open or held after their close) with 20 % headroom and
/// at least five standard deviations of a Poisson count above the mean: across hundreds
/// of VMs and destinations, 20 % alone leaves some VM short now and then.
fn with_margin(mean: f64) -> u64 {
    let need = (mean / TARGET_USE).max(mean + 5.0 * mean.sqrt()).ceil();
    (need.min(1e9) as u64).max(1)
}

/// Pairs each VM needs toward its busiest destination: the offered rate per VM there ×
/// (connection time + hold), with [`with_margin`].
fn ports_needed(sc: &Scenario, n: &NatSpec) -> Option<u64> {
    let (rate, life) = per_vm_need(sc, n)?;
    Some(with_margin(rate * life))
}

/// Pairs a shared pool needs toward the busiest destination, with [`with_margin`].
fn pool_needed(sc: &Scenario, n: &NatSpec) -> Option<u64> {
    let (rate, life) = per_vm_need(sc, n)?;
    Some(with_margin(rate * life * f64::from(vms(sc, n).max(1))))
}

/// The power of two GCP would allocate for `ports` (G3), 65,536 at most.
fn gcp_pow2(ports: u64) -> u32 {
    ports.clamp(1, 65_536).next_power_of_two() as u32
}

fn gcloud(flags: &str) -> String {
    format!("gcloud compute routers nats update NAT --router=ROUTER --region=REGION {flags}")
}

/// GCP static allocation: `min_ports_per_vm` up to the smallest power of two that carries
/// the load with 20 % headroom, and no more than every VM's share of the addresses.
pub(super) fn gcp_min_ports(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for (n, c) in gateways(sc, targets, Provider::Gcp) {
        let Allocation::PerVm { ports } = c.allocation else {
            continue;
        };
        let have = ports.next_power_of_two();
        let want = gcp_pow2(ports_needed(sc, n)?);
        let share = floor_pow2(
            (n.ips.len() as u64 * u64::from(c.ports_per_address)) / u64::from(vms(sc, n).max(1)),
        )
        .min(65_536) as u32;
        let to = want.min(share);
        if to <= have {
            continue;
        }
        knob(
            &mut var,
            n,
            "min_ports_per_vm",
            Value::Integer(i64::from(to)),
        );
        var.how.push(format!(
            "{}: {}",
            n.name,
            gcloud(&format!("--min-ports-per-vm={to}"))
        ));
        var.how.push(format!(
            "{}: or in Terraform (google_compute_router_nat): min_ports_per_vm = {to}",
            n.name
        ));
        if want > to {
            var.how.push(format!(
                "{}: {want} ports per VM would carry the load, but {} address(es) hold {} VMs × {to} at most: see More NAT addresses",
                n.name,
                n.ips.len(),
                vms(sc, n)
            ));
        }
    }
    var.done(
        "Cloud NAT: raise min_ports_per_vm",
        "every VM reserves its ports on a NAT address whether it uses them or not, so one address serves 64,512 / min_ports_per_vm VMs and a VM beyond that gets no NAT (nat_allocation_failed); lowering the minimum again later can break open connections",
        1,
    )
}

/// GCP dynamic allocation: the VM's ports double when it runs short, up to
/// `max_ports_per_vm`; it needs endpoint-independent mapping off (G4).
pub(super) fn gcp_dynamic(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for (n, c) in gateways(sc, targets, Provider::Gcp) {
        let Allocation::PerVm { ports } = c.allocation else {
            continue;
        };
        // Turned on, a minimum left at the static default becomes the dynamic default, 32.
        let min = if ports == 64 {
            32
        } else {
            ports.next_power_of_two().max(32)
        };
        let max = gcp_pow2(ports_needed(sc, n)?).max(2 * min).min(65_536);
        if max <= min {
            continue;
        }
        let mut flags = vec!["--enable-dynamic-port-allocation".to_string()];
        let mut tf = vec!["enable_dynamic_port_allocation = true".to_string()];
        knob(
            &mut var,
            n,
            "enable_dynamic_port_allocation",
            Value::Boolean(true),
        );
        if ports != 64 {
            knob(
                &mut var,
                n,
                "min_ports_per_vm",
                Value::Integer(i64::from(min)),
            );
            flags.push(format!("--min-ports-per-vm={min}"));
            tf.push(format!("min_ports_per_vm = {min}"));
        }
        knob(
            &mut var,
            n,
            "max_ports_per_vm",
            Value::Integer(i64::from(max)),
        );
        flags.push(format!("--max-ports-per-vm={max}"));
        tf.push(format!("max_ports_per_vm = {max}"));
        if c.eim {
            knob(
                &mut var,
                n,
                "enable_endpoint_independent_mapping",
                Value::Boolean(false),
            );
            flags.push("--no-enable-endpoint-independent-mapping".into());
            tf.push("enable_endpoint_independent_mapping = false".into());
        }
        var.how
            .push(format!("{}: {}", n.name, gcloud(&flags.join(" "))));
        var.how.push(format!(
            "{}: or in Terraform (google_compute_router_nat): {}",
            n.name,
            tf.join(", ")
        ));
    }
    var.done(
        "Cloud NAT: dynamic port allocation",
        "needs endpoint-independent mapping off; Cloud NAT drops packets while it doubles a VM's ports (ramp up slowly), a later change of the gateway can reset every VM to the minimum, and turning dynamic allocation off again closes every connection through the gateway",
        2,
    )
}

/// GCP `tcp_time_wait_timeout_sec` down to 30 s (G8, G12).
pub(super) fn gcp_time_wait(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for (n, _) in gateways(sc, targets, Provider::Gcp) {
        let tw = n.config.timeouts[CtState::TimeWait as usize];
        if tw.0 <= GCP_TIME_WAIT_S * 1_000_000_000 {
            continue;
        }
        knob(
            &mut var,
            n,
            "tcp_time_wait_timeout_sec",
            Value::Integer(GCP_TIME_WAIT_S as i64),
        );
        var.how.push(format!(
            "{}: {}",
            n.name,
            gcloud(&format!("--tcp-time-wait-timeout={GCP_TIME_WAIT_S}s"))
        ));
        var.how.push(format!(
            "{}: or in Terraform (google_compute_router_nat): tcp_time_wait_timeout_sec = {GCP_TIME_WAIT_S}",
            n.name
        ));
    }
    var.done(
        format!("Cloud NAT: TIME_WAIT down to {GCP_TIME_WAIT_S} s"),
        "Google's own advice for many connections to one destination, and the default of gateways created from September 30, 2026; shorter than the hosts' TCP TIME-WAIT (60 s on Linux), so the gateway may reuse a (NAT address, port, destination) a server still gets an old connection's late segments for",
        2,
    )
}

/// GCP: more NAT addresses, enough for every VM at the ports per VM that carries the load
/// (`min_ports_per_vm` raised with them when it must be).
pub(super) fn gcp_addresses(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    let from = sc.nats.iter().flat_map(|n| n.ips.iter().copied()).max()?;
    let mut fresh = FreshIps::new(sc, from);
    for (n, c) in gateways(sc, targets, Provider::Gcp) {
        let vms = u64::from(vms(sc, n));
        let have = capacity(c, n.ips.len() as u32, vms as u32)
            .per_vm
            .unwrap_or(0);
        let per_vm = gcp_pow2(ports_needed(sc, n)?).max(have);
        let want = (vms * u64::from(per_vm)).div_ceil(u64::from(c.ports_per_address)) as usize;
        if want <= n.ips.len() || want > c.max_addresses() {
            continue;
        }
        add_addresses(&mut var, &mut fresh, n, want);
        let names: Vec<String> = (1..=want).map(|k| format!("NAT_IP_{k}")).collect();
        let mut flags = format!("--nat-external-ip-pool={}", names.join(","));
        if matches!(c.allocation, Allocation::PerVm { .. }) && per_vm > have {
            knob(
                &mut var,
                n,
                "min_ports_per_vm",
                Value::Integer(i64::from(per_vm)),
            );
            flags.push_str(&format!(" --min-ports-per-vm={per_vm}"));
        }
        var.how.push(format!(
            "{}: gcloud compute addresses create {} --region=REGION",
            n.name,
            names[n.ips.len()..].join(" ")
        ));
        var.how.push(format!("{}: {}", n.name, gcloud(&flags)));
        let refs: Vec<String> = (1..=want)
            .map(|k| format!("google_compute_address.nat_ip_{k}.self_link"))
            .collect();
        var.how.push(format!(
            "{}: or in Terraform (google_compute_router_nat): nat_ip_allocate_option = \"MANUAL_ONLY\", nat_ips = [{}]{}",
            n.name,
            refs.join(", "),
            if per_vm > have {
                format!(", min_ports_per_vm = {per_vm}")
            } else {
                String::new()
            }
        ));
    }
    var.done(
        "Cloud NAT: more NAT addresses",
        "each address is a reserved external IP, billed while reserved; servers that allowlist clients by address must allow every one; removing an address later closes its connections at once",
        3,
    )
}

/// A shared gateway's addresses now and the count its flows toward the busiest destination
/// need (more by one at least, at most the provider's), or `None` when it has them all.
fn shared_addresses(sc: &Scenario, n: &NatSpec, c: &Cloud) -> Option<Option<(usize, usize)>> {
    let Allocation::Shared { per_destination } = c.allocation else {
        return Some(None);
    };
    let per_dest = pool_needed(sc, n)?;
    let cap = u64::from(per_destination.min(c.ports_per_address));
    let have = n.ips.len();
    let want = (per_dest.div_ceil(cap) as usize).clamp(have + 1, c.max_addresses());
    Some((want > have).then_some((have, want)))
}

/// AWS: secondary Elastic IPs on the NAT gateway, up to 8 addresses (A2, A10, A11).
pub(super) fn aws_addresses(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    let from = sc.nats.iter().flat_map(|n| n.ips.iter().copied()).max()?;
    let mut fresh = FreshIps::new(sc, from);
    for (n, c) in gateways(sc, targets, Provider::Aws) {
        let Some((have, want)) = shared_addresses(sc, n, c)? else {
            continue;
        };
        add_addresses(&mut var, &mut fresh, n, want);
        let ids: Vec<String> = (have + 1..=want).map(|k| format!("EIPALLOC_{k}")).collect();
        var.how.push(format!(
            "{}: aws ec2 associate-nat-gateway-address --nat-gateway-id NAT_GATEWAY_ID --allocation-ids {}",
            n.name,
            ids.join(" ")
        ));
        let refs: Vec<String> = (2..=want).map(|k| format!("aws_eip.nat_{k}.id")).collect();
        var.how.push(format!(
            "{}: or in Terraform (aws_nat_gateway): secondary_allocation_ids = [{}]",
            n.name,
            refs.join(", ")
        ));
        if want > 2 {
            var.how.push(format!(
                "{}: {want} addresses need the quota of Elastic IP addresses per public NAT gateway (2 by default) raised",
                n.name
            ));
        }
    }
    var.done(
        "AWS NAT Gateway: more addresses (secondary Elastic IPs)",
        "each Elastic IP is billed; servers that allowlist clients by address must allow every one; removing a secondary address later drains its connections for up to 350 s",
        3,
    )
}

/// The gateway's addresses, `want` in all: its own, then fresh ones.
fn add_addresses(var: &mut Variant, fresh: &mut FreshIps, n: &NatSpec, want: usize) {
    let mut ips: Vec<String> = n
        .ips
        .iter()
        .map(|a| std::net::Ipv4Addr::from(*a).to_string())
        .collect();
    let new: Vec<String> = (n.ips.len()..want).map(|_| fresh.take()).collect();
    ips.extend(new.iter().cloned());
    nat_mut(&mut var.doc, &n.name).insert("ips".into(), strings(ips));
    var.simulated_change
        .push(format!("nat.{}.ips += {}", n.name, new.join(", ")));
}

/// Azure Load Balancer: `allocated_outbound_ports` for the load (multiples of 8, L5), and
/// frontend IPs enough for every VM at 64,000 ports each (L2).
pub(super) fn azure_lb_ports(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    let from = sc.nats.iter().flat_map(|n| n.ips.iter().copied()).max()?;
    let mut fresh = FreshIps::new(sc, from);
    for (n, c) in gateways(sc, targets, Provider::AzureLb) {
        let vms = vms(sc, n);
        let have = capacity(c, n.ips.len() as u32, vms).per_vm.unwrap_or(0);
        let want = ports_needed(sc, n)?.next_multiple_of(8).min(64_000) as u32;
        if want <= have {
            continue;
        }
        let frontends = (u64::from(vms) * u64::from(want))
            .div_ceil(u64::from(c.ports_per_address))
            .max(n.ips.len() as u64) as usize;
        if frontends > c.max_addresses() {
            continue;
        }
        knob(
            &mut var,
            n,
            "allocated_outbound_ports",
            Value::Integer(i64::from(want)),
        );
        let mut flags = format!("--outbound-ports {want}");
        let mut tf = format!("allocated_outbound_ports = {want}");
        if frontends > n.ips.len() {
            add_addresses(&mut var, &mut fresh, n, frontends);
            let names: Vec<String> = (1..=frontends).map(|k| format!("FRONTEND_{k}")).collect();
            flags.push_str(&format!(" --frontend-ip-configs {}", names.join(" ")));
            let blocks: Vec<String> = names
                .iter()
                .map(|f| format!("frontend_ip_configuration {{ name = \"{f}\" }}"))
                .collect();
            tf.push_str(&format!(", {}", blocks.join(" ")));
        }
        var.how.push(format!(
            "{}: az network lb outbound-rule update -g RG --lb-name LB -n RULE {flags}",
            n.name
        ));
        var.how.push(format!(
            "{}: or in Terraform (azurerm_lb_outbound_rule): {tf}",
            n.name
        ));
    }
    var.done(
        "Azure Load Balancer: outbound rule with more ports per VM",
        "every VM in the backend pool reserves the ports whether it uses them or not: a frontend IP's 64,000 serve 64,000 / allocated_outbound_ports VMs, and the load balancer refuses a rule that does not fit; more frontend IPs are more public addresses to allow at the servers",
        2,
    )
}

/// Azure NAT Gateway: more public IPs, up to 16 (N1, N9).
pub(super) fn azure_nat_ips(sc: &Scenario, targets: &[usize], doc: &Table) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    let from = sc.nats.iter().flat_map(|n| n.ips.iter().copied()).max()?;
    let mut fresh = FreshIps::new(sc, from);
    for (n, c) in gateways(sc, targets, Provider::AzureNat) {
        let Some((have, want)) = shared_addresses(sc, n, c)? else {
            continue;
        };
        add_addresses(&mut var, &mut fresh, n, want);
        let names: Vec<String> = (1..=want).map(|k| format!("PUBLIC_IP_{k}")).collect();
        var.how.push(format!(
            "{}: az network nat gateway update -g RG -n NAT --public-ip-addresses {}",
            n.name,
            names.join(" ")
        ));
        var.how.push(format!(
            "{}: or in Terraform: one azurerm_nat_gateway_public_ip_association (nat_gateway_id, public_ip_address_id) per new address, {} in all",
            n.name,
            want - have
        ));
    }
    var.done(
        "Azure NAT Gateway: more public IPs",
        "each public IP is billed; servers that allowlist clients by address must allow every one",
        3,
    )
}

/// App Service: regional VNet integration with all traffic routed through a NAT gateway
/// (S5), simulated as the gateway `azure-nat-gateway` in place of App Service's SNAT.
pub(super) fn app_service_nat_gateway(
    sc: &Scenario,
    targets: &[usize],
    doc: &Table,
) -> Option<Variant> {
    let mut var = Variant::draft(doc);
    for (n, _) in gateways(sc, targets, Provider::AppService) {
        let t = nat_mut(&mut var.doc, &n.name);
        t.insert(
            "profile".into(),
            Value::String(Provider::AzureNat.profile().into()),
        );
        t.remove("knobs");
        var.simulated_change.push(format!(
            "nat.{}.profile = \"{}\"",
            n.name,
            Provider::AzureNat.profile()
        ));
        var.how.extend([
            format!(
                "{}: az webapp vnet-integration add -g RG -n APP --vnet VNET --subnet SUBNET",
                n.name
            ),
            format!(
                "{}: az network vnet subnet update -g RG --vnet-name VNET -n SUBNET --nat-gateway NAT",
                n.name
            ),
            format!(
                "{}: az webapp config set -g RG -n APP --vnet-route-all-enabled true",
                n.name
            ),
        ]);
    }
    var.done(
        "App Service: VNet integration through a NAT gateway",
        "needs a plan that supports regional VNet integration, a subnet delegated to the app and a NAT gateway with a public IP (billed hourly and per GB); the app's outbound address becomes the NAT gateway's",
        4,
    )
}
