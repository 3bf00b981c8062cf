//! The planner behind cloud NAT gateways: each provider's limit by its allocation rule, and
//! its remedy as the provider's CLI and Terraform take it, simulated and ranked with the
//! host-side remedies.

use portsim::plan::{self, Plan, nat::NatPlan, remedy::Remedy};
use std::process::Command;

fn portsim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portsim"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("portsim runs")
}

/// `vms` VMs behind gateway `profile` (with `knobs`, `addresses`), `rate` new connections
/// per second over all of them (Poisson) to one server port, each request served in
/// `service`, the client closing.
fn behind(
    profile: &str,
    knobs: &str,
    addresses: u32,
    vms: u32,
    rate: u32,
    service: &str,
) -> String {
    let names: Vec<String> = (1..=vms).map(|k| format!("\"vm{k}\"")).collect();
    let mut s = "[scenario]\nname = \"cloud\"\nduration = \"240s\"\nseed = 1\n\n".to_string();
    for k in 1..=vms {
        s.push_str(&format!(
            "[[host]]\nname = \"vm{k}\"\nprofile = \"linux\"\nips = [\"10.0.0.{k}\"]\n\n"
        ));
    }
    let ips: Vec<String> = (1..=addresses)
        .map(|k| format!("\"203.0.113.{k}\""))
        .collect();
    s.push_str(&format!(
        "[[host]]\nname = \"server\"\nprofile = \"linux\"\nips = [\"10.1.0.1\"]\nlisten = [\"10.1.0.1:443\"]\n\n\
         [[nat]]\nname = \"gw\"\nprofile = \"{profile}\"\nips = [{}]\nbehind = [{}]\n{knobs}\n\n\
         [[workload]]\nname = \"load\"\nclients = [{}]\nspread = \"random\"\ndestinations = [\"10.1.0.1:443\"]\n\
         arrival = {{ kind = \"poisson\", rate = {rate} }}\nrtt = \"200us\"\nservice_time = \"{service}\"\n\
         closer = \"client\"\non_error = {{ action = \"count\" }}\n",
        ips.join(", "),
        names.join(", "),
        names.join(", ")
    ));
    s
}

fn plan_of(text: &str) -> Plan {
    plan::plan("(test)", text, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn gateway(p: &Plan) -> &NatPlan {
    assert_eq!(p.now.nat_pools.len(), 1, "{:?}", p.now.nat_pools);
    &p.now.nat_pools[0]
}

/// The remedy titled `title`, which must say `how` (whole lines, after the NAT's name) and,
/// simulated, complete as many requests as today or more with fewer failed or stalled
/// connects.
fn remedy<'a>(p: &'a Plan, title: &str, how: &[&str]) -> &'a Remedy {
    let r = p
        .remedies
        .iter()
        .find(|r| r.title.starts_with(title))
        .unwrap_or_else(|| {
            let titles: Vec<&str> = p.remedies.iter().map(|r| r.title.as_str()).collect();
            panic!("no remedy {title:?} among {titles:?}")
        });
    for line in how {
        assert!(
            r.how.iter().any(|h| h == &format!("gw: {line}")),
            "{title}: {line:?} not in {:?}",
            r.how
        );
    }
    let o = r.outcome.as_ref().expect("simulated");
    let today = &p.now.outcome;
    let short = |o: &plan::Outcome| o.failed + o.stalled;
    assert!(short(today) > 0, "today's run must exhaust the gateway");
    assert!(
        o.requests_per_s >= today.requests_per_s && short(o) < short(today),
        "{title}: {} /s, {} failed or stalled against today's {} /s, {}",
        o.requests_per_s,
        short(o),
        today.requests_per_s,
        short(today)
    );
    r
}

/// A host-side remedy is ranked beside the provider's.
fn ranks_host_side_remedies_too(p: &Plan) {
    assert!(
        p.remedies.iter().any(|r| r.title.contains("keep-alive")),
        "{:?}",
        p.remedies.iter().map(|r| &r.title).collect::<Vec<_>>()
    );
}

#[test]
fn gcp_static_allocation_sustains_64_ports_over_the_time_wait_per_vm_and_destination() {
    // 4 VMs at 2/s each to one destination: 64 ports per VM held 120 s after each close.
    let p = plan_of(&behind("gcp-cloud-nat", "", 1, 4, 8, "1ms"));
    let n = gateway(&p);
    let c = n.cloud.as_ref().expect("a cloud limit");
    assert_eq!(c.ports_per_vm, Some(64));
    assert_eq!(n.hold_s, 120.0);
    assert!(c.connection_s < 0.01, "{c:?}");
    let per_vm = 64.0 / (120.0 + c.connection_s);
    assert!((per_vm - 64.0 / 120.0).abs() < 1e-4);
    assert!(
        (c.per_vm_limit_per_s.unwrap() - per_vm).abs() < 1e-3,
        "{c:?}"
    );
    assert!((n.formula_limit_per_s - 4.0 * per_vm).abs() < 1e-3, "{n:?}");
    assert!(n.syns_dropped.contains_key("OUT_OF_RESOURCES"), "{n:?}");
    // 2/s × 120 s = 240 held per VM: with headroom and a Poisson margin, 512.
    let r = remedy(
        &p,
        "Cloud NAT: raise min_ports_per_vm",
        &[
            "gcloud compute routers nats update NAT --router=ROUTER --region=REGION --min-ports-per-vm=512",
            "or in Terraform (google_compute_router_nat): min_ports_per_vm = 512",
        ],
    );
    assert!(r.fixes, "{r:?}");
    remedy(
        &p,
        "Cloud NAT: dynamic port allocation",
        &[
            "gcloud compute routers nats update NAT --router=ROUTER --region=REGION --enable-dynamic-port-allocation --max-ports-per-vm=512",
        ],
    );
    remedy(
        &p,
        "Cloud NAT: TIME_WAIT down to 30 s",
        &[
            "gcloud compute routers nats update NAT --router=ROUTER --region=REGION --tcp-time-wait-timeout=30s",
            "or in Terraform (google_compute_router_nat): tcp_time_wait_timeout_sec = 30",
        ],
    );
    ranks_host_side_remedies_too(&p);
}

#[test]
fn gcp_vms_beyond_the_addresses_get_no_ports_and_more_addresses_fix_it() {
    // 2,048 ports per VM: one address holds 31 VMs; 40 are behind it.
    let p = plan_of(&behind(
        "gcp-cloud-nat",
        "knobs = { min_ports_per_vm = 2048 }",
        1,
        40,
        40,
        "1ms",
    ));
    let n = gateway(&p);
    let c = n.cloud.as_ref().unwrap();
    assert_eq!((c.vms, c.vms_with_ports), (40, 64_512 / 2048));
    assert!(
        n.notes
            .iter()
            .any(|x| x.contains("9 of 40 VMs get no ports")),
        "{n:?}"
    );
    remedy(
        &p,
        "Cloud NAT: more NAT addresses",
        &[
            "gcloud compute addresses create NAT_IP_2 --region=REGION",
            "gcloud compute routers nats update NAT --router=ROUTER --region=REGION --nat-external-ip-pool=NAT_IP_1,NAT_IP_2",
        ],
    );
}

#[test]
fn aws_without_a_documented_hold_is_limited_by_flows_open_at_once() {
    // 400/s held open 150 s each: 60,000 open toward one destination, over 55,000.
    let p = plan_of(&behind("aws-nat-gateway", "", 1, 10, 400, "150s"));
    let n = gateway(&p);
    let c = n.cloud.as_ref().unwrap();
    assert_eq!(n.hold_s, 0.0);
    assert_eq!(c.per_destination, Some(55_000));
    assert!(
        (n.formula_limit_per_s - 55_000.0 / c.connection_s).abs() < 1e-2,
        "{n:?}"
    );
    assert!((c.connection_s - 150.0).abs() < 0.01, "{c:?}");
    assert!(
        n.notes
            .iter()
            .any(|x| x.contains("UNVERIFIED") && x.contains("flows open at once")),
        "{n:?}"
    );
    remedy(
        &p,
        "AWS NAT Gateway: more addresses",
        &[
            "aws ec2 associate-nat-gateway-address --nat-gateway-id NAT_GATEWAY_ID --allocation-ids EIPALLOC_2",
            "or in Terraform (aws_nat_gateway): secondary_allocation_ids = [aws_eip.nat_2.id]",
        ],
    );
}

#[test]
fn azure_nat_gateway_holds_50000_per_address_and_destination_for_the_connection_and_65_s() {
    // 400/s × (100 s open + 65 s after the FINs) = 66,000 > 50,000.
    let p = plan_of(&behind("azure-nat-gateway", "", 1, 10, 400, "100s"));
    let n = gateway(&p);
    let c = n.cloud.as_ref().unwrap();
    assert_eq!((n.hold_s, c.per_destination), (65.0, Some(50_000)));
    let want = 50_000.0 / (c.connection_s + 65.0);
    assert!((n.formula_limit_per_s - want).abs() < 1e-2, "{n:?}");
    remedy(
        &p,
        "Azure NAT Gateway: more public IPs",
        &[
            "az network nat gateway update -g RG -n NAT --public-ip-addresses PUBLIC_IP_1 PUBLIC_IP_2",
        ],
    );
}

#[test]
fn azure_lb_gives_1024_ports_per_vm_in_a_small_pool_and_the_outbound_rule_raises_them() {
    // 10 VMs (1,024 ports each by pool size) at 10/s each, held 240 s after FINs
    // (UNVERIFIED): 2,400.01 per VM, over 0.8: 3,001, the next multiple of 8.
    let p = plan_of(&behind("azure-lb-outbound", "", 1, 10, 100, "1ms"));
    let n = gateway(&p);
    let c = n.cloud.as_ref().unwrap();
    assert_eq!((c.ports_per_vm, n.hold_s), (Some(1024), 240.0));
    let want = 10.0 * 1024.0 / (c.connection_s + 240.0);
    assert!((n.formula_limit_per_s - want).abs() < 1e-2, "{n:?}");
    assert!(n.notes.iter().any(|x| x.contains("UNVERIFIED")), "{n:?}");
    remedy(
        &p,
        "Azure Load Balancer: outbound rule",
        &[
            "az network lb outbound-rule update -g RG --lb-name LB -n RULE --outbound-ports 3008",
            "or in Terraform (azurerm_lb_outbound_rule): allocated_outbound_ports = 3008",
        ],
    );
}

#[test]
fn app_service_runs_out_of_its_128_ports_and_a_nat_gateway_fixes_it() {
    // 2 instances at 2/s each, each close held 240 s: 480 per instance against 128.
    let p = plan_of(&behind("azure-app-service", "", 1, 2, 4, "1ms"));
    let n = gateway(&p);
    let c = n.cloud.as_ref().unwrap();
    assert_eq!((c.ports_per_vm, n.hold_s), (Some(128), 240.0));
    let r = remedy(
        &p,
        "App Service: VNet integration through a NAT gateway",
        &[
            "az webapp vnet-integration add -g RG -n APP --vnet VNET --subnet SUBNET",
            "az network vnet subnet update -g RG --vnet-name VNET -n SUBNET --nat-gateway NAT",
            "az webapp config set -g RG -n APP --vnet-route-all-enabled true",
        ],
    );
    assert!(r.fixes, "{r:?}");
    ranks_host_side_remedies_too(&p);
}

#[test]
fn plan_without_a_file_builds_vms_behind_gcp_cloud_nat_and_names_the_fix() {
    let out = portsim(&[
        "plan",
        "--nat",
        "gcp-cloud-nat",
        "--vms",
        "200",
        "--rate",
        "5/s",
        "--destinations",
        "3",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verdict       runs out"), "{text}");
    assert!(
        text.contains("200 VMs × 64 ports per VM / (0.001 s open + 120 s TIME_WAIT)"),
        "{text}"
    );
    assert!(
        text.contains(
            "gcloud compute routers nats update NAT --router=ROUTER --region=REGION --min-ports-per-vm=256"
        ),
        "{text}"
    );
    assert!(
        text.contains("--nat-external-ip-pool=NAT_IP_1,NAT_IP_2 --min-ports-per-vm=512"),
        "{text}"
    );
}

#[test]
fn bad_cloud_flags_are_refused_with_the_flag_named() {
    for (args, says) in [
        (
            &["--nat", "gcp", "--vms", "2", "--rate", "5/s"][..],
            "--nat: \"gcp\": not a cloud NAT gateway",
        ),
        (
            &["--nat", "gcp-cloud-nat", "--vms", "0", "--rate", "5/s"][..],
            "--vms: 0: 1 to 10000 VMs",
        ),
        (
            &[
                "--nat",
                "aws-nat-gateway",
                "--addresses",
                "9",
                "--rate",
                "5/s",
            ][..],
            "--addresses: 9: aws-nat-gateway takes 1 to 8 addresses",
        ),
        (
            &[
                "--nat",
                "aws-nat-gateway",
                "--ports-per-vm",
                "64",
                "--rate",
                "5/s",
            ][..],
            "--ports-per-vm: aws-nat-gateway shares its ports",
        ),
        (
            &["--nat", "gcp-cloud-nat", "--rate", "0/s"][..],
            "--rate: \"0/s\"",
        ),
        (
            &["--vms", "3", "--rate", "5/s"][..],
            "give --nat PROFILE too",
        ),
    ] {
        let mut all = vec!["plan"];
        all.extend_from_slice(args);
        let out = portsim(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
