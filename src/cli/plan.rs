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
    /// Client kernel profile (default: linux; with --library, this host's, as `portsim
    /// profile --from-host` reads it, or linux where it cannot be read).
    #[arg(long)]
    profile: Option<String>,
    /// Server kernel profile.
    #[arg(long, default_value = "linux")]
    server_profile: String,
    /// New connections per second, e.g. 800/s (required without a scenario); with --library,
    /// requests per second.
    #[arg(long)]
    rate: Option<String>,
    /// A client library (go-net-http, python-requests): plan its load without a scenario
    /// file. The scenario assumes rounds of --concurrency requests at once, every
    /// concurrency / rate seconds, each round done before the next (at most --concurrency in
    /// flight); one client host (this host's profile unless --profile), one server at
    /// 192.0.2.1:443 that keeps idle connections open, --rtt, --service-time, and the
    /// library's defaults unless --option. See it with --print-scenario.
    #[arg(long, value_name = "NAME")]
    library: Option<String>,
    /// Requests in flight at once (with --library).
    #[arg(long)]
    concurrency: Option<u32>,
    /// One of the library's options, as the library names it: MaxIdleConnsPerHost=10,
    /// session=true, pool_maxsize=32 (with --library; repeat for several).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Server time per request (with --library).
    #[arg(long, default_value = "1ms")]
    service_time: String,
    /// How long the load runs (with --library; default and least: four TIME-WAITs of the
    /// client's profile, the plan's horizon).
    #[arg(long)]
    duration: Option<String>,
    /// Print the scenario the flags stand for (TOML, for `portsim run`) instead of planning.
    #[arg(long)]
    print_scenario: bool,
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
    if a.print_scenario {
        emit(a.output.as_deref(), &text)?;
        return Ok(ExitCode::SUCCESS);
    }
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
    if a.library.is_some() {
        return library_text(a);
    }
    if a.concurrency.is_some() || !a.options.is_empty() || a.duration.is_some() {
        eprintln!(
            "error: --concurrency, --option and --duration describe a client library's load: give --library NAME too"
        );
        return Err(ExitCode::from(BAD_INPUT));
    }
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
                profile: a.profile.clone().unwrap_or_else(|| "linux".into()),
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

/// The scenario of `--library NAME --concurrency N --rate R`, its assumptions on standard
/// error.
fn library_text(a: &PlanArgs) -> Result<(String, String), ExitCode> {
    let refuse = |what: &str| {
        eprintln!("error: --library: {what}");
        Err(ExitCode::from(BAD_INPUT))
    };
    if a.scenario.is_some() {
        return refuse(
            "give a scenario or --library and its flags, not both (a scenario names its library in [workload.library])",
        );
    }
    if a.nat.is_some()
        || a.poisson
        || a.client_ips != 1
        || a.destinations != 1
        || a.requests_per_connection != 1
        || a.connection.is_some()
        || !matches!(a.closer, CloserArg::Client)
    {
        return refuse(
            "not with --nat, --poisson, --client-ips, --destinations, --requests-per-connection, --connection or --closer (the pool decides the connections; write a scenario for more)",
        );
    }
    let (Some(rate), Some(concurrency)) = (&a.rate, a.concurrency) else {
        return refuse(
            "give --concurrency N and --rate R, e.g. portsim plan --library go-net-http --concurrency 10 --rate 500/s",
        );
    };
    let q = plan::library_quick::LibraryQuick {
        library: a.library.clone().unwrap_or_default(),
        concurrency,
        rate: rate.clone(),
        options: a.options.clone(),
        profile: a.profile.clone(),
        server_profile: a.server_profile.clone(),
        rtt: a.rtt.clone(),
        service_time: a.service_time.clone(),
        duration: a.duration.clone(),
    };
    match plan::library_quick::library_scenario(&q) {
        Ok(s) => {
            for n in &s.notes {
                eprintln!("assumes: {n}");
            }
            Ok(("(flags)".to_string(), s.text))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(BAD_INPUT))
        }
    }
}
