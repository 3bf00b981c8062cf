//! `portsim plan`.

use super::io::{emit, extension_is, parse_seeds, parse_sets, read_text};
use super::{BAD_INPUT, LiveFormat, Outcome};
use crate::plan;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct PlanArgs {
    /// The scenario file (TOML); without it, the flags below describe the load.
    scenario: Option<PathBuf>,
    /// Client kernel profile.
    #[arg(long, default_value = "linux")]
    profile: String,
    /// Server kernel profile.
    #[arg(long, default_value = "linux")]
    server_profile: String,
    /// New connections per second, e.g. 800/s (required without a scenario).
    #[arg(long)]
    rate: Option<String>,
    /// Poisson arrivals instead of a constant rate.
    #[arg(long)]
    poisson: bool,
    #[arg(long, default_value_t = 1)]
    client_ips: u32,
    #[arg(long, default_value_t = 1)]
    destinations: u32,
    /// Who closes first (and holds TIME-WAIT).
    #[arg(long, value_enum, default_value_t = CloserArg::Client)]
    closer: CloserArg,
    #[arg(long, default_value_t = 1)]
    requests_per_connection: u32,
    /// Round-trip time.
    #[arg(long, default_value = "200us")]
    rtt: String,
    /// connect, bind_no_port or bind (default: connect with one client IP, else
    /// bind_no_port on Linux, bind elsewhere).
    #[arg(long)]
    connection: Option<String>,
    /// A cloud NAT gateway the VMs sit behind (gcp-cloud-nat, aws-nat-gateway,
    /// azure-lb-outbound, azure-nat-gateway, azure-app-service), with its defaults: --rate is
    /// then per VM (Poisson), to --destinations servers.
    #[arg(long, value_name = "PROFILE")]
    nat: Option<String>,
    /// VMs behind the --nat gateway.
    #[arg(long, default_value_t = 1)]
    vms: u32,
    /// The --nat gateway's addresses.
    #[arg(long, default_value_t = 1)]
    addresses: u32,
    /// Ports per VM on the --nat gateway (GCP min_ports_per_vm, Azure LB
    /// allocated_outbound_ports).
    #[arg(long)]
    ports_per_vm: Option<u32>,
    /// What-if: KEY=VALUE on top of the scenario; the plan shows before and after.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Output format (default: json for an output file named .json, else text).
    #[arg(long, value_enum)]
    format: Option<LiveFormat>,
    /// Write the plan to this file instead of standard output (atomically).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Run the scenario and every remedy once per seed A to B (both included): remedies
    /// ranked by their means, a fix one that fixes every seed, each outcome's numbers as
    /// mean, sd, min, p5, p50, p95 and max.
    #[arg(long, value_name = "A..B")]
    seeds: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CloserArg {
    Client,
    Server,
}

/// `portsim plan`: the plan of a scenario file, or of the load the flags describe.
pub(super) fn plan(a: PlanArgs) -> Outcome {
    let seeds = parse_seeds(a.seeds.as_deref())?;
    let (file, text) = scenario_text(&a)?;
    let changes = parse_sets(&a.set)?;
    let spin =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    spin.set_message("simulating the scenario and each remedy");
    spin.enable_steady_tick(std::time::Duration::from_millis(200));
    let planned = plan::plan_seeds(&file, &text, &changes, seeds);
    spin.finish_and_clear();
    let p = planned.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(BAD_INPUT)
    })?;
    let json = match a.format {
        Some(f) => matches!(f, LiveFormat::Json),
        None => extension_is(a.output.as_deref(), "json"),
    };
    let text = if json { p.to_json() } else { p.to_text() };
    emit(a.output.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

/// The scenario's file name and text: the file given, or one written from the flags
/// (named "(flags)").
fn scenario_text(a: &PlanArgs) -> Result<(String, String), ExitCode> {
    if a.nat.is_none() && (a.vms != 1 || a.addresses != 1 || a.ports_per_vm.is_some()) {
        eprintln!(
            "error: --vms, --addresses and --ports-per-vm describe VMs behind a cloud NAT: give --nat PROFILE too"
        );
        return Err(ExitCode::from(BAD_INPUT));
    }
    if a.nat.is_some() && a.scenario.is_some() {
        eprintln!(
            "error: give a scenario or --nat and the other flags, not both (a scenario declares its gateway in [[nat]])"
        );
        return Err(ExitCode::from(BAD_INPUT));
    }
    match (&a.scenario, &a.rate) {
        (Some(path), None) => Ok((path.display().to_string(), read_text(path)?)),
        (Some(_), Some(_)) => {
            eprintln!("error: give a scenario or --rate and the other flags, not both");
            Err(ExitCode::from(BAD_INPUT))
        }
        (None, None) => {
            eprintln!(
                "error: give a scenario file, or describe the load with flags, e.g. portsim plan --profile linux --rate 800/s"
            );
            Err(ExitCode::from(BAD_INPUT))
        }
        (None, Some(rate)) => {
            let q = plan::Quick {
                profile: a.profile.clone(),
                server_profile: a.server_profile.clone(),
                rate: rate.clone(),
                poisson: a.poisson,
                client_ips: a.client_ips,
                destinations: a.destinations,
                closer: match a.closer {
                    CloserArg::Client => crate::workload::Closer::Client,
                    CloserArg::Server => crate::workload::Closer::Server,
                },
                requests_per_connection: a.requests_per_connection,
                rtt: a.rtt.clone(),
                connection: a.connection.clone(),
            };
            let made = match &a.nat {
                Some(nat) => plan::cloud_quick_scenario(
                    &q,
                    &plan::CloudQuick {
                        nat: nat.clone(),
                        vms: a.vms,
                        addresses: a.addresses,
                        ports_per_vm: a.ports_per_vm,
                    },
                ),
                None => plan::quick_scenario(&q),
            };
            match made {
                Ok(t) => Ok(("(flags)".to_string(), t)),
                Err(e) => {
                    eprintln!("error: {e}");
                    Err(ExitCode::from(BAD_INPUT))
                }
            }
        }
    }
}
