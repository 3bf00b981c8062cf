//! The kernel's clock: TIME-WAIT on the timer wheel (src/tw_timer.rs) and the Linux
//! TIME-WAIT SYN path that re-arms it (`tcp_timewait_state_process`).

use portsim::report::Report;
use portsim::scenario;
use portsim::sim::Simulation;

fn run(text: &str) -> Report {
    let dir = std::env::temp_dir().join(format!("portsim-kc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.toml", portsim::rng::fnv1a(text.as_bytes())));
    std::fs::write(&path, text).unwrap();
    let sc = scenario::load(&path).unwrap();
    Simulation::new(&sc).run()
}

/// A client closing first at 200/s through 1,000 ports to one server for 200 s.
fn churn(model: &str) -> String {
    format!(
        r#"
[scenario]
name = "churn"
duration = "200s"

[[host]]
name = "client"
profile = "linux"
ips = ["10.0.0.1"]
knobs = {{ "net.ipv4.ip_local_port_range" = "40000 40999" }}
model = {{ {model} }}

[[host]]
name = "server"
profile = "linux"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "client"
destinations = ["10.0.0.2:80"]
arrival = {{ kind = "constant", rate = 200 }}
requests_per_connection = 1
rtt = "1ms"
service_time = "0s"
closer = "client"
on_error = {{ action = "count" }}
"#
    )
}

fn lasted(r: &Report) -> (f64, f64, u64) {
    let d = r.summary.time_wait.duration_s.expect("TIME-WAITs expired");
    (d.min, d.max, d.count)
}

#[test]
fn time_waits_last_sixty_seconds_plus_at_most_one_wheel_slot_of_the_hosts_hz() {
    // kernel/time/timer.c: 60 × HZ jiffies sit on level 3 (HZ 100, 250, 300) or 4 (1000),
    // granularity 8^level jiffies; the timer fires at the next slot boundary after it.
    for (hz, gran) in [
        (100, 5.12),
        (250, 2.048),
        (300, 1.706_666_667),
        (1000, 4.096),
    ] {
        let r = run(&churn(&format!("hz = {hz}")));
        let (min, max, n) = lasted(&r);
        assert!(
            min > 60.0 && max <= 60.0 + gran + 1e-9,
            "HZ={hz}: {min}..{max}"
        );
        // Closes every 5 ms cover every phase of a slot.
        assert!(max > 60.0 + gran - 0.02, "HZ={hz}: {max}");
        assert_eq!(n, r.summary.kernel_counters["tw_expired"]);
    }
    let (min, max, _) = lasted(&run(&churn("time_wait_timer = \"exact\"")));
    assert_eq!((min, max), (60.0, 60.0));
    // Before 4.1: the death row kills one of 8 slots every 7.5 s, 7 to 8 periods later. The
    // first 1,000 closes, in 5 s, last 55–60 s; later ones follow the batches the hangman
    // freed, just after its firings, and last nearly 60 s.
    let (min, max, _) = lasted(&run(&churn("time_wait_timer = \"death-row\"")));
    assert!(min > 52.5 && max <= 60.0 && max > 59.9, "{min}..{max}");
}

#[test]
fn a_burst_of_closes_inside_one_slot_frees_its_ports_at_one_tick() {
    // 1,000 ports fill in 5 s; at HZ=250 their TIME-WAITs end on at most 4 distinct slot
    // boundaries (5 s / 2.048 s, rounded up), so ports come back in that many batches.
    let r = run(&churn("hz = 250"));
    let refills: Vec<f64> = r
        .series
        .windows(2)
        .filter(|w| w[1].free_ports_min > w[0].free_ports_min.map(|f| f + 100))
        .map(|w| w[1].t_s)
        .filter(|&t| t < 70.0)
        .collect();
    assert!((2..=4).contains(&refills.len()), "{refills:?}");
}

/// A macOS client (random timestamp offset per connection, §3.4) to a Linux server that
/// closes first, ten client ports: half the SYNs reaching a server TIME-WAIT carry an older
/// TSval, which PAWS rejects.
fn paws(rfc1337: u8) -> String {
    paws_with(&format!("\"net.ipv4.tcp_rfc1337\" = {rfc1337}"), "linux")
}

fn paws_with(knobs: &str, server: &str) -> String {
    format!(
        r#"
[scenario]
name = "paws"
duration = "300s"

[[host]]
name = "mac"
profile = "macos"
ips = ["10.0.0.1"]
knobs = {{ "net.inet.ip.portrange.first" = 49152, "net.inet.ip.portrange.last" = 49161 }}

[[host]]
name = "server"
profile = "{server}"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]
knobs = {{ {knobs} }}

[[workload]]
name = "w"
client = "mac"
destinations = ["10.0.0.2:80"]
arrival = {{ kind = "closed", concurrency = 2 }}
stop = "20s"
requests_per_connection = 1
rtt = "1ms"
service_time = "0s"
closer = "server"
on_error = {{ action = "count", delay = "10ms" }}
"#
    )
}

#[test]
fn a_paws_rejected_syn_rearms_the_time_wait_which_then_outlives_its_slot() {
    // tcp_rfc1337 = 1 ignores the client's RST: each rejected SYN (the first and the
    // client's retransmissions, for up to keepinit = 75 s) re-arms the TIME-WAIT for a full
    // TIME_WAIT, so it outlives 60 s + one 2.048 s slot, and the client's connect may time
    // out against it.
    let r = run(&paws(1));
    let k = &r.summary.kernel_counters;
    assert!(k["tw_rearmed"] > 0, "{k:?}");
    let (_, max, _) = lasted(&r);
    assert!(max > 62.048, "{max}");
    // With the default tcp_rfc1337 = 0 the RST kills it: no TIME-WAIT outlives its slot.
    let r = run(&paws(0));
    assert!(r.summary.kernel_counters["tw_rearmed"] > 0);
    assert!(r.summary.kernel_counters["tw_killed_by_rst"] > 0);
    if let Some(d) = r.summary.time_wait.duration_s {
        assert!(d.max <= 62.048, "{d:?}");
    }
}

/// `tcp_invalid_ratelimit` (4.0+) limits a TIME-WAIT's ACKs to the SYNs it refuses: at
/// 5000 ms the client's SYN retransmissions, 1 s apart, get one ACK per 5 s; with 0, or on
/// 3.10, which has no limit, every one is answered.
#[test]
fn the_ack_to_a_refused_syn_is_rate_limited_by_tcp_invalid_ratelimit() {
    let limited = |knobs: &str, server: &str| {
        let r = run(&paws_with(knobs, server));
        let k = &r.summary.kernel_counters;
        assert!(k["tw_syn_rejected"] > 0, "{k:?}");
        k["tw_ack_rate_limited"]
    };
    let rfc = "\"net.ipv4.tcp_rfc1337\" = 1";
    let long = limited(
        &format!("{rfc}, \"net.ipv4.tcp_invalid_ratelimit\" = 5000"),
        "linux",
    );
    assert!(long > 0, "{long}");
    assert!(
        limited(
            &format!("{rfc}, \"net.ipv4.tcp_invalid_ratelimit\" = 0"),
            "linux"
        ) == 0
    );
    assert!(limited(rfc, "linux@3.10") == 0);
    assert!(limited(rfc, "linux") <= long);
}
