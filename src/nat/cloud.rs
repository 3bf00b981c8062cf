//! Cloud NAT gateways as their providers document them (notes/nat-reference.md §8): AWS NAT
//! Gateway, GCP Cloud NAT, Azure Load Balancer outbound SNAT, Azure NAT Gateway and Azure
//! App Service, each with its knobs under the provider's own names (its Terraform
//! arguments).
//!
//! A cloud NAT keeps a flow's mapping from its SYN, as conntrack does (`conntrack.rs`: the
//! same table, the state the segments move it to), with the provider's timeouts per state
//! and its own port allocation (`blocks.rs`):
//!
//! | state (conntrack's) | GCP | AWS | Azure LB | Azure NAT Gateway | App Service |
//! |---|---|---|---|---|---|
//! | SYN_SENT, SYN_RECV | transitory | idle (UNVERIFIED) | idle | half-open 30 s | idle |
//! | ESTABLISHED | established idle | 350 s | idle | idle | idle |
//! | FIN_WAIT … LAST_ACK | established idle (UNVERIFIED) | idle (UNVERIFIED) | idle | idle | idle |
//! | TIME_WAIT (closed by FINs) | `tcp_time_wait_timeout_sec` | hold (UNVERIFIED) | hold after FIN (UNVERIFIED) | 65 s | 240 s |
//! | CLOSE (closed by an RST) | `tcp_time_wait_timeout_sec` (UNVERIFIED) | hold (UNVERIFIED) | hold after RST (UNVERIFIED) | 16 s | 15 s |
//!
//! Until its hold ends a closed flow's NAT (address, port) stays taken toward its
//! destination; toward other destinations the same port serves other flows.

use super::KnobError;
use super::conntrack::CtState;
use crate::scenario::list;
use crate::time::Duration;

/// Which provider's gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Aws,
    Gcp,
    AzureLb,
    AzureNat,
    AppService,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Aws,
        Provider::Gcp,
        Provider::AzureLb,
        Provider::AzureNat,
        Provider::AppService,
    ];

    /// The profile name a scenario gives.
    pub fn profile(self) -> &'static str {
        match self {
            Provider::Aws => "aws-nat-gateway",
            Provider::Gcp => "gcp-cloud-nat",
            Provider::AzureLb => "azure-lb-outbound",
            Provider::AzureNat => "azure-nat-gateway",
            Provider::AppService => "azure-app-service",
        }
    }

    /// The provider's name for a SYN it could not give a port: the metric or log field
    /// that counts it.
    pub fn out_of_ports(self) -> &'static str {
        match self {
            // vpc-nat-gateway-cloudwatch.md: "ErrorPortAllocation".
            Provider::Aws => "ErrorPortAllocation",
            // Cloud NAT logs and `dropped_sent_packets_count`, reason OUT_OF_RESOURCES.
            Provider::Gcp => "OUT_OF_RESOURCES",
            // load-balancer-standard-diagnostics.md: SNAT Connection Count, state Failed.
            Provider::AzureLb | Provider::AzureNat => "SNAT Connection Count (Failed)",
            // troubleshoot-intermittent-outbound-connection-errors.md: SNAT port exhaustion.
            Provider::AppService => "SNAT Port Exhaustion",
        }
    }

    /// The provider's name for a flow its idle timeout ended.
    pub fn idle_timeouts(self) -> &'static str {
        match self {
            Provider::Aws => "IdleTimeoutCount",
            _ => "idle timeouts",
        }
    }

    fn from_profile(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.profile() == name)
    }
}

/// How a gateway hands out ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// One pool of every address's ports shared by all VMs behind, at most
    /// `per_destination` flows per address toward one destination (AWS, Azure NAT Gateway).
    Shared { per_destination: u32 },
    /// A block of `ports` per VM, fixed at start: the block's ports serve one flow each toward
    /// each destination (GCP static, Azure LB, App Service). `ports` 0 on Azure LB: from
    /// the backend pool's size.
    PerVm { ports: u32 },
    /// GCP dynamic allocation: `min` ports at start, doubled when a flow finds none free
    /// toward its destination, up to `max`.
    Dynamic { min: u32, max: u32 },
}

/// A cloud gateway's settings beyond its timeouts (which live in `NatConfig::timeouts`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cloud {
    pub provider: Provider,
    pub allocation: Allocation,
    /// GCP `enable_endpoint_independent_mapping`: a VM's (address, port) keeps one NAT
    /// (address, port) for every destination while it has a flow.
    pub eim: bool,
    /// Ports each address offers: 1024–65535 (64,512), 64,000 per Azure LB frontend.
    pub ports_per_address: u32,
    /// `max_ports_per_vm` given without dynamic allocation: refused by [`Cloud::validate`].
    pub static_max: Option<u32>,
}

/// The provider's default timeouts per conntrack state (the module's table).
fn timeouts(p: Provider) -> [Duration; CtState::ALL.len()] {
    let s = Duration::from_secs;
    let (half_open, idle, closing, fin, rst) = match p {
        // compute_router_nat: tcp_transitory_idle_timeout_sec 30, tcp_established_idle_timeout_sec
        // 1200, tcp_time_wait_timeout_sec 120.
        // Closing states on the established timer and an RST on the TIME_WAIT one
        // (UNVERIFIED: GCP defines transitory as half-open only).
        Provider::Gcp => (30, 1200, 1200, 120, 120),
        // vpc-nat-gateway.md: 350 s idle; no documented hold after a close (UNVERIFIED 0).
        Provider::Aws => (350, 350, 350, 0, 0),
        // load-balancer-outbound-connections.md: idle 4 min; hold after FIN/RST as App
        // Service documents for the same SNAT (UNVERIFIED).
        Provider::AzureLb => (240, 240, 240, 240, 15),
        // nat-gateway-resource.md: half-open 30 s, idle 4 min, 65 s after FIN, 16 s after RST.
        Provider::AzureNat => (30, 240, 240, 65, 16),
        // troubleshoot-intermittent-outbound-connection-errors.md: 240 s after FIN, 15 s
        // after RST; idle 4 min (UNVERIFIED: the load balancer's default).
        Provider::AppService => (240, 240, 240, 240, 15),
    };
    CtState::ALL.map(|st| {
        s(match st {
            CtState::SynSent | CtState::SynRecv => half_open,
            CtState::Established => idle,
            CtState::FinWait | CtState::CloseWait | CtState::LastAck => closing,
            CtState::TimeWait => fin,
            CtState::Close => rst,
        })
    })
}

/// The knobs each provider's `[nat.knobs]` accepts: its Terraform arguments, then the
/// model's UNVERIFIED parameters.
pub fn knob_names(p: Provider) -> &'static [&'static str] {
    match p {
        Provider::Gcp => &[
            "min_ports_per_vm",
            "max_ports_per_vm",
            "enable_dynamic_port_allocation",
            "enable_endpoint_independent_mapping",
            "tcp_established_idle_timeout_sec",
            "tcp_transitory_idle_timeout_sec",
            "tcp_time_wait_timeout_sec",
        ],
        Provider::Aws => &["hold_after_close_sec"],
        Provider::AzureLb => &[
            "allocated_outbound_ports",
            "idle_timeout_in_minutes",
            "hold_after_fin_sec",
            "hold_after_rst_sec",
        ],
        Provider::AzureNat => &["idle_timeout_in_minutes"],
        Provider::AppService => &[],
    }
}

/// The parameters no source documents that gateway `c` uses, with why the default was
/// chosen.
pub fn unverified(c: &Cloud) -> Vec<&'static str> {
    let dynamic = matches!(c.allocation, Allocation::Dynamic { .. });
    let all: &[&str] = match c.provider {
        Provider::Aws => &[
            "hold_after_close_sec = 0: AWS documents no hold of a port after a close",
            "the address a flow gets among several: at random (AWS documents none)",
            "the port within an address: from a random start, the next free",
            "350 s also for half-open and closing flows (only the idle timeout is documented)",
        ],
        Provider::AzureLb => &[
            "hold_after_fin_sec = 240 and hold_after_rst_sec = 15: App Service's figures for \
             the same SNAT; the load balancer's page gives none",
            "the lowest free port first (an older version of the load balancer's page)",
        ],
        Provider::Gcp => &[
            "each VM's block is consecutive ports on one address, VMs in the order listed",
            "a flow closed by an RST is held for tcp_time_wait_timeout_sec",
            "closing flows (FIN_WAIT to LAST_ACK) keep tcp_established_idle_timeout_sec",
            "a port within a VM's block is drawn from a random start",
            "dynamic allocation doubles at the first flow that finds no port free toward its \
             destination, at once, and never shrinks during the run",
        ],
        Provider::AppService => &[
            "idle timeout 4 min: the load balancer's default",
            "no ports beyond the 128 (App Service may add some; how many is not documented)",
            "each instance's 128 ports on one address, 500 instances per address (the load \
             balancer's 64,000)",
        ],
        Provider::AzureNat => &["the address a flow gets among several: at random"],
    };
    all.iter()
        .copied()
        .filter(|a| dynamic || !a.starts_with("dynamic"))
        .collect()
}

impl Cloud {
    /// The profile `name`'s defaults, or `None` for a name that is not a cloud profile.
    pub fn named(name: &str) -> Option<(Cloud, [Duration; CtState::ALL.len()])> {
        let p = Provider::from_profile(name)?;
        let allocation = match p {
            // vpc-nat-gateway.md: "up to 55,000 simultaneous connections to each unique destination".
            Provider::Aws => Allocation::Shared {
                per_destination: 55_000,
            },
            // nat-gateway-resource.md: "50,000 concurrent connections to the same destination endpoint".
            Provider::AzureNat => Allocation::Shared {
                per_destination: 50_000,
            },
            // compute_router_nat: min_ports_per_vm defaults to 64 with static allocation.
            Provider::Gcp => Allocation::PerVm { ports: 64 },
            Provider::AzureLb => Allocation::PerVm { ports: 0 },
            Provider::AppService => Allocation::PerVm { ports: 128 },
        };
        let cloud = Cloud {
            provider: p,
            allocation,
            // Off in the API and console (and the Terraform provider from 5.0, issue 11012).
            eim: false,
            // Load balancer SNAT (App Service's too): 64,000 per frontend address.
            ports_per_address: if matches!(p, Provider::AzureLb | Provider::AppService) {
                64_000
            } else {
                64_512
            },
            static_max: None,
        };
        Some((cloud, timeouts(p)))
    }

    /// Most addresses the provider allows on one gateway.
    pub fn max_addresses(&self) -> usize {
        match self.provider {
            Provider::Aws => 8,
            Provider::AzureNat => 16,
            _ => 1000,
        }
    }

    /// Sets knob `key` (already checked to be one of [`knob_names`]).
    pub fn set_knob(
        &mut self,
        key: &str,
        v: &toml::Value,
        timeouts: &mut [Duration; CtState::ALL.len()],
    ) -> Result<(), KnobError> {
        let secs = |v: &toml::Value, lo: i64, hi: i64| {
            v.as_integer()
                .filter(|i| (lo..=hi).contains(i))
                .map(|i| Duration::from_secs(i as u64))
                .ok_or_else(|| KnobError(format!("an integer number of seconds from {lo} to {hi}")))
        };
        let t = |s: CtState| s as usize;
        match key {
            "min_ports_per_vm" | "max_ports_per_vm" => {
                let n = v
                    .as_integer()
                    .filter(|i| (2..=65_536).contains(i))
                    .ok_or_else(|| KnobError("an integer from 2 to 65536".into()))?
                    as u32;
                self.set_ports(key == "max_ports_per_vm", n);
            }
            "enable_dynamic_port_allocation" => {
                let on = boolean(v)?;
                self.allocation = match (on, self.allocation) {
                    (true, Allocation::PerVm { ports }) => Allocation::Dynamic {
                        // The dynamic default minimum is 32; a minimum set before stays.
                        min: if ports == 64 { 32 } else { ports },
                        max: 65_536,
                    },
                    (false, Allocation::Dynamic { min, .. }) => Allocation::PerVm { ports: min },
                    (_, a) => a,
                };
            }
            "enable_endpoint_independent_mapping" => self.eim = boolean(v)?,
            "tcp_established_idle_timeout_sec" => {
                let d = secs(v, 1, 1 << 31)?;
                for s in [
                    CtState::Established,
                    CtState::FinWait,
                    CtState::CloseWait,
                    CtState::LastAck,
                ] {
                    timeouts[t(s)] = d;
                }
            }
            "tcp_transitory_idle_timeout_sec" => {
                let d = secs(v, 1, 1 << 31)?;
                timeouts[t(CtState::SynSent)] = d;
                timeouts[t(CtState::SynRecv)] = d;
            }
            "tcp_time_wait_timeout_sec" => {
                let d = secs(v, 1, 1 << 31)?;
                timeouts[t(CtState::TimeWait)] = d;
                timeouts[t(CtState::Close)] = d;
            }
            "hold_after_close_sec" => {
                let d = secs(v, 0, 1 << 31)?;
                timeouts[t(CtState::TimeWait)] = d;
                timeouts[t(CtState::Close)] = d;
            }
            "hold_after_fin_sec" => timeouts[t(CtState::TimeWait)] = secs(v, 0, 1 << 31)?,
            "hold_after_rst_sec" => timeouts[t(CtState::Close)] = secs(v, 0, 1 << 31)?,
            "allocated_outbound_ports" => {
                let n = v
                    .as_integer()
                    .filter(|i| (0..=64_000).contains(i) && i % 8 == 0)
                    .ok_or_else(|| {
                        KnobError(
                            "a multiple of 8 from 0 (ports by backend pool size) to 64000".into(),
                        )
                    })?;
                self.allocation = Allocation::PerVm { ports: n as u32 };
            }
            "idle_timeout_in_minutes" => {
                let d = v
                    .as_integer()
                    .filter(|i| (4..=120).contains(i))
                    .ok_or_else(|| {
                        KnobError("an integer number of minutes from 4 to 120".into())
                    })?;
                let d = Duration::from_secs(d as u64 * 60);
                timeouts[t(CtState::Established)] = d;
                for s in [CtState::FinWait, CtState::CloseWait, CtState::LastAck] {
                    timeouts[t(s)] = d;
                }
                if self.provider == Provider::AzureLb {
                    timeouts[t(CtState::SynSent)] = d;
                    timeouts[t(CtState::SynRecv)] = d;
                }
            }
            _ => {
                return Err(KnobError(format!(
                    "unknown knob for {}; known: {}",
                    self.provider.profile(),
                    list(knob_names(self.provider))
                )));
            }
        }
        Ok(())
    }

    fn set_ports(&mut self, max: bool, n: u32) {
        match (&mut self.allocation, max) {
            (Allocation::Dynamic { max: m, .. }, true) => *m = n,
            (Allocation::Dynamic { min, .. }, false) => *min = n,
            (Allocation::PerVm { ports }, false) => *ports = n,
            _ => self.static_max = Some(n),
        }
    }

    /// The settings together, as the provider refuses them: GCP's dynamic allocation takes
    /// powers of two from 32 and no endpoint-independent mapping; `max_ports_per_vm` needs
    /// it; AWS takes 8 addresses, Azure NAT Gateway 16.
    pub fn validate(&self, addresses: usize) -> Result<(), KnobError> {
        let err = |m: &str| Err(KnobError(m.into()));
        if addresses > self.max_addresses() {
            return Err(KnobError(format!(
                "{} takes at most {} addresses",
                self.provider.profile(),
                self.max_addresses()
            )));
        }
        if self.static_max.is_some() {
            return err("max_ports_per_vm applies only with enable_dynamic_port_allocation = true");
        }
        if let Allocation::Dynamic { min, max } = self.allocation {
            if self.eim {
                return err(
                    "enable_dynamic_port_allocation needs enable_endpoint_independent_mapping = false",
                );
            }
            // compute_router_nat: max "must be set to a power of two greater than" min.
            if !min.is_power_of_two() || !max.is_power_of_two() || min < 32 || min >= max {
                return err(
                    "with dynamic allocation min_ports_per_vm and max_ports_per_vm are powers of \
                     two, 32 <= min < max <= 65536",
                );
            }
        }
        Ok(())
    }

    /// The knobs as the report lists them, in [`knob_names`] order, read back from the
    /// settings and `timeouts`.
    pub fn knobs(&self, timeouts: &[Duration; CtState::ALL.len()]) -> Vec<(String, String)> {
        let secs = |s: CtState| (timeouts[s as usize].0 / 1_000_000_000).to_string();
        let (min, max, dynamic) = match self.allocation {
            Allocation::PerVm { ports } => (ports, None, false),
            Allocation::Dynamic { min, max } => (min, Some(max), true),
            Allocation::Shared { .. } => (0, None, false),
        };
        knob_names(self.provider)
            .iter()
            .map(|&k| {
                let v = match k {
                    "min_ports_per_vm" => min.to_string(),
                    "max_ports_per_vm" => max.map_or("-".into(), |m| m.to_string()),
                    "enable_dynamic_port_allocation" => dynamic.to_string(),
                    "enable_endpoint_independent_mapping" => self.eim.to_string(),
                    "tcp_established_idle_timeout_sec" => secs(CtState::Established),
                    "tcp_transitory_idle_timeout_sec" => secs(CtState::SynSent),
                    "tcp_time_wait_timeout_sec" => secs(CtState::TimeWait),
                    "hold_after_close_sec" | "hold_after_fin_sec" => {
                        format!("{} (UNVERIFIED)", secs(CtState::TimeWait))
                    }
                    "hold_after_rst_sec" => format!("{} (UNVERIFIED)", secs(CtState::Close)),
                    "allocated_outbound_ports" if min == 0 => "0 (by backend pool size)".into(),
                    "allocated_outbound_ports" => min.to_string(),
                    "idle_timeout_in_minutes" => {
                        (timeouts[CtState::Established as usize].0 / 60_000_000_000).to_string()
                    }
                    _ => String::new(),
                };
                (k.to_string(), v)
            })
            .collect()
    }
}

/// Azure's default outbound ports per VM by backend pool size
/// (load-balancer-outbound-connections.md, "Default port allocation"); `None` above 1,000.
pub fn azure_ports_for_pool(vms: usize) -> Option<u32> {
    Some(match vms {
        0..=50 => 1024,
        51..=100 => 512,
        101..=200 => 256,
        201..=400 => 128,
        401..=800 => 64,
        801..=1000 => 32,
        _ => return None,
    })
}

fn boolean(v: &toml::Value) -> Result<bool, KnobError> {
    v.as_bool().ok_or_else(|| KnobError("true or false".into()))
}
