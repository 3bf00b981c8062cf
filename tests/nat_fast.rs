//! Whole exchanges through a cloud NAT gateway (`src/sim/fast/gateway.rs`) give the report
//! stepping every segment through the gateway gives, byte for byte: every cloud profile,
//! bins whose edges fall mid-connection, Poisson arrivals, 1 to 8 requests, several seeds;
//! a gateway that drops a SYN (the run starts again, stepped); a timeout that would fire
//! within a connection (refused, stepped).

use portsim::report::Report;
use portsim::scenario;
use portsim::sim::Simulation;

/// What the fast run does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Whole exchanges cross the gateway: far fewer events than stepping.
    Whole,
    /// A SYN is dropped: the run starts again, stepped (the events of both runs counted).
    Restart,
    /// Refused by the condition: the events stepping gives.
    Stepped,
}

/// Six VMs behind gateway `profile` (two addresses), one host outside it beside them, two
/// servers; workload `a` from all seven, Poisson, `n` requests, to both servers at random;
/// workload `b` from the first two VMs, 2 requests. Client TIME-WAIT 1 s over 200 ports per
/// destination: tuples come back while the gateway still holds them.
fn fleet(profile: &str, knobs: &str, n: u32, seed: u64, extra: &str) -> String {
    let mut t = format!(
        "[scenario]\nname = \"fleet\"\nduration = \"3s\"\nbin = \"7ms\"\nseed = {seed}\n\n"
    );
    let mut vms = Vec::new();
    for i in 1..=6 {
        t += &format!(
            "[[host]]\nname = \"vm{i}\"\nips = [\"10.0.0.{i}\"]\n[host.knobs]\n\"net.ipv4.ip_local_port_range\" = \"40000 40199\"\n[host.model]\ntime_wait = \"1s\"\n\n"
        );
        vms.push(format!("\"vm{i}\""));
    }
    t +=
        "[[host]]\nname = \"outside\"\nips = [\"192.0.2.9\"]\n[host.model]\ntime_wait = \"1s\"\n\n";
    for s in 1..=2 {
        t += &format!(
            "[[host]]\nname = \"srv{s}\"\nips = [\"203.0.113.{s}\"]\nlisten = [\"203.0.113.{s}:443\"]\n\n"
        );
    }
    t += &format!(
        "[[nat]]\nname = \"gw\"\nprofile = \"{profile}\"\nips = [\"198.51.100.1\", \"198.51.100.2\"]\nbehind = [{}]\n[nat.knobs]\n{knobs}\n\n",
        vms.join(", ")
    );
    t += &format!(
        "[[workload]]\nname = \"a\"\nclients = [{}, \"outside\"]\ndestinations = [\"203.0.113.1:443\", \"203.0.113.2:443\"]\nspread = \"random\"\narrival = {{ kind = \"poisson\", rate = 1500 }}\nrequests_per_connection = {n}\nrtt = \"2ms\"\nservice_time = \"1ms\"\non_error = {{ action = \"count\" }}\n{extra}\n\n",
        vms.join(", ")
    );
    t += "[[workload]]\nname = \"b\"\nclients = [\"vm1\", \"vm2\"]\ndestinations = [\"203.0.113.2:443\"]\narrival = { kind = \"poisson\", rate = 300 }\nrequests_per_connection = 2\nrtt = \"2ms\"\nservice_time = \"3ms\"\non_error = { action = \"count\" }\n";
    t
}

fn run(sim: Simulation, name: &str) -> (Report, u64) {
    sim.checking(true)
        .run_checked()
        .unwrap_or_else(|v| panic!("{name}: {v}"))
}

/// The fast run against stepping, byte for byte, and how the fast run got there.
fn same_as_stepping(name: &str, text: &str, expect: Expect) -> Report {
    let sc = scenario::parse(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (fast, ef) = run(Simulation::new(&sc), name);
    let (segments, es) = run(Simulation::new(&sc).stepping_segments(), name);
    let (stepped, _) = run(Simulation::new(&sc).stepping().stepping_segments(), name);
    let unchecked = Simulation::new(&sc).checking(false).run();
    assert_eq!(fast.to_json(), stepped.to_json(), "{name}");
    assert_eq!(segments.to_json(), stepped.to_json(), "{name}");
    assert_eq!(unchecked.to_json(), stepped.to_json(), "{name}, unchecked");
    let dropped: u64 = fast.nat[0].drops.values().sum();
    let reopened = fast.nat[0].counters["new flows on a held tuple"];
    let sim = Simulation::new(&sc);
    let (bulk, unseen) = (
        sim.enters_time_wait_in_bulk(),
        sim.makes_sockets_at_time_wait(),
    );
    eprintln!(
        "{name}: {ef} events fast, {es} stepped, {dropped} SYNs dropped, {reopened} reopened; \
         TIME-WAIT in bulk {bulk}, sockets unseen {unseen}"
    );
    match expect {
        Expect::Whole => {
            assert_eq!(dropped, 0, "{name}");
            assert!(ef * 2 < es, "{name}: {ef} events against {es}");
        }
        Expect::Restart => {
            assert!(dropped > 0, "{name}");
            assert!(
                ef > es,
                "{name}: {ef} events, a restart counts both runs' ({es})"
            );
        }
        Expect::Stepped => assert_eq!(ef, es, "{name}"),
    }
    assert!(fast.summary.connections.established > 200, "{name}");
    fast
}

/// Every cloud profile, with the knobs that change its allocation, several request counts
/// and seeds: the fast run's report is stepping's.
#[test]
fn whole_exchanges_through_a_cloud_gateway_give_the_report_stepping_gives() {
    let cases: [(&str, &str, &str); 6] = [
        ("gcp static", "gcp-cloud-nat", "min_ports_per_vm = 1024"),
        (
            "gcp dynamic",
            "gcp-cloud-nat",
            "enable_dynamic_port_allocation = true\nmin_ports_per_vm = 64\nmax_ports_per_vm = 4096\ntcp_time_wait_timeout_sec = 2",
        ),
        ("aws", "aws-nat-gateway", "hold_after_close_sec = 1"),
        ("azure nat gateway", "azure-nat-gateway", ""),
        ("azure lb", "azure-lb-outbound", "hold_after_fin_sec = 2"),
        ("app service", "azure-app-service", ""),
    ];
    for (name, profile, knobs) in cases {
        for (n, seed) in [(1, 1), (3, 2), (8, 3)] {
            let name = format!("{name}, {n} requests, seed {seed}");
            let mut text = fleet(profile, knobs, n, seed, "");
            if profile == "azure-app-service" {
                // 128 ports per VM toward each server, each held 240 s after its close (a
                // client port that comes back gets another): fewer flows per VM and server
                // than that in the 3 s, about 64 + 30.
                text = text
                    .replace("40000 40199", "40000 40099")
                    .replace("rate = 1500", "rate = 300")
                    .replace(
                        "rate = 300 }\nrequests_per_connection = 2",
                        "rate = 20 }\nrequests_per_connection = 2",
                    );
            }
            let r = same_as_stepping(&name, &text, Expect::Whole);
            // Clients take their tuples back while the gateway holds them (except where it
            // holds none after a close or AWS's 1 s hold has passed).
            if profile != "aws-nat-gateway" {
                assert!(r.nat[0].counters["new flows on a held tuple"] > 0, "{name}");
            }
            // Bins see flows in every state before TIME_WAIT.
            let seen = |s: &str| {
                r.series
                    .iter()
                    .any(|b| b.conntrack_states[0].get(s).is_some_and(|&n| n > 0))
            };
            for s in [
                "SYN_SENT",
                "SYN_RECV",
                "ESTABLISHED",
                "FIN_WAIT",
                "LAST_ACK",
                "TIME_WAIT",
            ] {
                // App Service runs a fifth of the load: a SYN_RECV (tens of µs) may fall
                // between bin edges.
                if profile == "azure-app-service" && s == "SYN_RECV" {
                    continue;
                }
                assert!(seen(s), "{name}: no bin saw {s}");
            }
        }
    }
    // Endpoint-independent mapping, one destination: a VM's (address, port) keeps its NAT
    // port, never taken toward the one destination by another of its flows.
    let eim = "min_ports_per_vm = 1024\nenable_endpoint_independent_mapping = true";
    for seed in [8, 9] {
        // The gateway holds 1 s and the clients' TIME-WAIT lasts 2 s: no client port comes
        // back to a held tuple, whose mapped port would be a conflict (a drop).
        let eim = format!("{eim}\ntcp_time_wait_timeout_sec = 1");
        let text = fleet("gcp-cloud-nat", &eim, 2, seed, "")
            .replace("time_wait = \"1s\"", "time_wait = \"2s\"")
            .replace(", \"203.0.113.2:443\"]\nspread", "]\nspread")
            .replace(
                "destinations = [\"203.0.113.2:443\"]",
                "destinations = [\"203.0.113.1:443\"]",
            );
        let name = format!("gcp static, endpoint-independent mapping, seed {seed}");
        same_as_stepping(&name, &text, Expect::Whole);
    }
    // AWS's default: no hold after a close, the entry gone at the last ACK.
    same_as_stepping(
        "aws, no hold",
        &fleet("aws-nat-gateway", "", 2, 4, ""),
        Expect::Whole,
    );
}

/// A gateway out of ports drops a SYN the client retransmits: the run starts again stepped
/// and gives stepping's report, drops and retransmits included.
#[test]
fn a_dropped_syn_at_a_cloud_gateway_restarts_the_run_stepped() {
    // 8 ports per VM toward each server, more flows than that alive at once.
    let text = fleet("gcp-cloud-nat", "min_ports_per_vm = 8", 3, 5, "");
    let r = same_as_stepping("gcp, 8 ports per VM", &text, Expect::Restart);
    assert!(r.nat[0].drops.contains_key("OUT_OF_RESOURCES"));
    // Endpoint-independent mapping, two destinations: a VM's (address, port) keeps the NAT
    // port another of its flows holds toward the other destination
    // (ENDPOINT_INDEPENDENCE_CONFLICT).
    let eim = "min_ports_per_vm = 1024\nenable_endpoint_independent_mapping = true";
    let r = same_as_stepping(
        "gcp eim",
        &fleet("gcp-cloud-nat", eim, 1, 1, ""),
        Expect::Restart,
    );
    assert!(
        r.nat[0]
            .drops
            .contains_key("ENDPOINT_INDEPENDENCE_CONFLICT")
    );
    let text = fleet("azure-app-service", "", 8, 6, "");
    let text = text.replace("rate = 1500", "rate = 30000");
    same_as_stepping("app service, 128 ports per VM", &text, Expect::Restart);
}

/// A timeout shorter than a gap within the connection would end the flow at the gateway
/// mid-connection: whole exchanges are refused across it, and the report is stepping's.
#[test]
fn a_gateway_timeout_within_a_connection_refuses_whole_exchanges() {
    let text = fleet(
        "gcp-cloud-nat",
        "min_ports_per_vm = 1024\ntcp_established_idle_timeout_sec = 1",
        2,
        7,
        "",
    )
    .replace("service_time = \"1ms\"", "service_time = \"1200ms\"");
    let r = same_as_stepping(
        "gcp, idle timeout below the service time",
        &text,
        Expect::Stepped,
    );
    assert!(
        r.nat[0]
            .counters
            .get("idle timeouts")
            .is_some_and(|&n| n > 0)
    );
}

/// The speed bench (benches/scenarios/fleet-behind-nat.toml: 1,000 VMs behind one GCP Cloud
/// NAT, 50,000 connections/s) cut to two seconds, bins of 100 ms.
#[test]
fn the_fleet_behind_a_cloud_nat_gives_the_report_stepping_gives() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/scenarios/fleet-behind-nat.toml"
    );
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("duration = \"3600s\"", "duration = \"2s\"\nbin = \"100ms\"");
    same_as_stepping("fleet-behind-nat, 2 s", &text, Expect::Whole);
}
