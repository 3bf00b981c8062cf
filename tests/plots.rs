//! Charts: every shipped scenario has one, the committed ones in plots/ are current, they
//! are valid SVG with the text a reader needs, and the same input draws the same bytes.

use portsim::plot::{self, ReportView};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn portsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portsim"))
}

fn report(name: &str) -> ReportView {
    let r = portsim::run_file(&root().join("scenarios").join(name)).unwrap();
    ReportView::of(&r)
}

/// Every text element of an SVG, which must parse as XML with an <svg> root of `size`.
fn texts(svg: &str, size: (u32, u32)) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG parses as XML");
    let r = doc.root_element();
    assert_eq!(r.tag_name().name(), "svg");
    assert_eq!(r.attribute("width"), Some(size.0.to_string().as_str()));
    assert_eq!(r.attribute("height"), Some(size.1.to_string().as_str()));
    doc.descendants()
        .filter(|n| n.tag_name().name() == "text")
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect()
}

#[test]
fn the_committed_charts_are_current_and_cover_every_scenario() {
    let made = plot::manifest::make(&root().join("plots/plots.toml")).unwrap();
    let mut scenarios: Vec<String> = std::fs::read_dir(root().join("scenarios"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= 13);
    for s in &scenarios {
        let m = made
            .iter()
            .find(|m| m.path.file_stem().unwrap().to_string_lossy() == *s)
            .unwrap_or_else(|| panic!("no chart for scenarios/{s}.toml"));
        // A scenario with a NAT has two panels more (its ports, its conntrack entries).
        let text = std::fs::read_to_string(root().join(format!("scenarios/{s}.toml"))).unwrap();
        let nat = toml::from_str::<toml::Table>(&text)
            .unwrap()
            .contains_key("nat");
        let t = texts(&m.svg, (1200, if nat { 1598 } else { 998 }));
        assert!(t.iter().any(|x| x == "time (s)"), "{s}: x axis title");
        assert!(t.iter().any(|x| x == "sockets"), "{s}: panel 1");
        assert!(t.iter().any(|x| x == "connections / s"), "{s}: panel 2");
        assert!(
            t.iter().any(|x| x.starts_with("connect latency (ms")),
            "{s}: panel 3"
        );
    }
    let stale = plot::manifest::stale(&made, &root().join("plots"));
    assert!(
        stale.is_empty(),
        "{}\nregenerate with: cargo run --release -- plots",
        stale.join("\n")
    );
}

#[test]
fn the_httperf_chart_tells_its_story_in_text() {
    let r = report("httperf-error-99.toml");
    let fig = plot::scenario_chart(&r);
    let t = texts(&plot::render_svg(&fig).unwrap(), (1200, 998));
    // The title names the scenario, the subtitle the knobs that decide exhaustion.
    assert!(t.contains(&"httperf-error-99".to_string()));
    let sub = t
        .iter()
        .find(|x| x.contains("ports 49152–65535"))
        .expect("subtitle");
    assert!(
        sub.contains("16,384") && sub.contains("TIME_WAIT 60 s"),
        "{sub}"
    );
    // Annotations: first failure at 16,384 / 500 = 32.768 s; the first TIME_WAIT, taken at
    // the first connection's close (~1.4 ms in), expires 60–62.048 s later, at the timer
    // wheel's next 2.048 s slot (HZ=250, src/tw_timer.rs).
    assert!(t.contains(&"first failure 32.768 s".to_string()), "{t:?}");
    let expiry = t
        .iter()
        .find_map(|x| x.strip_prefix("first TIME_WAIT expiry "))
        .and_then(|x| x.trim_end_matches(" s").parse::<f64>().ok())
        .expect("the expiry annotation");
    assert!((60.0..=62.05).contains(&expiry), "{t:?}");
    // The reference line is the seed's formula, 16,384 / 60.
    assert!(
        t.contains(&"ports / TIME_WAIT = 273 / s".to_string()),
        "{t:?}"
    );
    assert!(t.contains(&"failed / s, EADDRNOTAVAIL".to_string()));
}

#[test]
fn the_same_report_draws_the_same_bytes() {
    let a = plot::render_svg(&plot::scenario_chart(&report("macos-16k-cap.toml"))).unwrap();
    let b = plot::render_svg(&plot::scenario_chart(&report("macos-16k-cap.toml"))).unwrap();
    assert_eq!(a, b);
    // From the JSON a user saved, the chart is the one drawn from the run itself.
    let dir = std::env::temp_dir().join(format!("portsim-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let out = portsim()
        .args(["run", "--format", "json", "-o"])
        .arg(&json)
        .arg(root().join("scenarios/macos-16k-cap.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let svg = dir.join("r.svg");
    let out = portsim()
        .arg("plot")
        .arg(&json)
        .arg("-o")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&svg).unwrap(), a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn png_renders_with_the_embedded_font_and_bad_names_leave_files_alone() {
    let dir = std::env::temp_dir().join(format!("portsim-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("c.png");
    let out = portsim()
        .arg("run")
        .arg(root().join("scenarios/httperf-error-99-tw240.toml"))
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, at bytes 16..24.
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1200);
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 998);
    // A name that is neither .svg nor .png is refused before anything runs or is written.
    let keep = dir.join("keep.pdf");
    std::fs::write(&keep, "old").unwrap();
    let out = portsim()
        .arg("run")
        .arg(root().join("scenarios/httperf-error-99.toml"))
        .arg("--plot")
        .arg(&keep)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".svg (the default) or .png"));
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "old");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_names_the_file_and_the_place() {
    let dir = std::env::temp_dir().join(format!("portsim-badplot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"schema\": \"portsim.report/1\",\n  \"seed\": x\n}\n",
    )
    .unwrap();
    let e = plot::input::load(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.json:3:"), "{e}");
    let other = dir.join("other.json");
    std::fs::write(&other, "{\"schema\": \"something/2\"}").unwrap();
    let e = plot::input::load(&other).unwrap_err().to_string();
    assert!(
        e.contains("something/2") && e.contains("portsim.report/1"),
        "{e}"
    );
    let e = plot::input::load(Path::new("x.csv"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(".toml") && e.contains(".json"), "{e}");
    // A manifest with an unknown key says where.
    let m = dir.join("plots.toml");
    std::fs::write(
        &m,
        "scenarios = \".\"\n[[sweep]]\nfile = \"a.svg\"\ncolour = 1\n",
    )
    .unwrap();
    let e = plot::manifest::make(&m).err().unwrap().to_string();
    assert!(e.contains("plots.toml:") && e.contains("colour"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_comparison_and_the_sweep_charts_have_what_they_promise() {
    let runs = vec![
        ("seed".to_string(), report("httperf-error-99.toml")),
        ("keepalive".to_string(), report("fix-keepalive.toml")),
    ];
    let fig = plot::comparison_chart("compared", &runs);
    let t = texts(&plot::render_svg(&fig).unwrap(), (1200, 998));
    // Totals in the legend: 81,920 = 5 uses × 16,384 ports; the fix completes all 150,000.
    assert!(t.contains(&"seed · 81,920".to_string()), "{t:?}");
    assert!(t.contains(&"keepalive · 150,000".to_string()), "{t:?}");
    // A line over a swept parameter, and a heat map with a value in every cell.
    let line = plot::line_chart(
        "l",
        "s",
        "offered / s",
        "sustained / s",
        vec![("a".into(), vec![Some((1.0, 2.0)), None, Some((2.0, 3.0))])],
        vec![],
    );
    let t = texts(&plot::render_svg(&line).unwrap(), (1200, 398));
    assert!(t.contains(&"offered / s".to_string()) && t.contains(&"sustained / s".to_string()));
    let map = plot::HeatMap {
        title: "h".into(),
        subtitle: String::new(),
        x_label: "x".into(),
        y_label: "y".into(),
        value_label: "v".into(),
        xs: vec!["a".into(), "b".into()],
        ys: vec!["c".into()],
        cells: vec![vec![Some(1.5), None]],
    };
    let t = texts(&plot::render_svg(&map).unwrap(), (1200, 760));
    assert!(
        t.contains(&"1.5".to_string()) && t.contains(&"–".to_string()),
        "{t:?}"
    );
    let ragged = plot::HeatMap {
        cells: vec![vec![Some(1.0)]],
        ..map
    };
    assert!(plot::render_svg(&ragged).is_err());
}

#[test]
fn the_sustained_metric_reads_the_seed_formula() {
    // linux-default-churn: 28,232 ports / 60 s = 470.53 connections per second.
    let r = report("linux-default-churn.toml");
    let v = plot::manifest::Metric::SustainedPerS.of(&r).unwrap();
    assert!((v - 28_232.0 / 60.0).abs() < 0.01, "{v}");
    assert_eq!(plot::manifest::sustained_window(&r), Some((180.0, 300.0)));
}

fn inline(text: &str) -> ReportView {
    let sc = portsim::scenario::parse("inline.toml", text).unwrap();
    ReportView::of(&portsim::sim::Simulation::new(&sc).run())
}

const STEADY: &str = r#"
[scenario]
name = "steady"
duration = "DURATION"
bin = "BIN"

[[host]]
name = "c"
profile = "linux"
ips = ["10.0.0.1"]

[[host]]
name = "s"
profile = "linux"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "c"
destinations = ["10.0.0.2:80"]
arrival = { kind = "constant", rate = 500 }
rtt = "100us"
closer = "client"
"#;

/// Every rate point of the "established / s" line.
fn established_rate(r: &ReportView) -> Vec<(f64, f64)> {
    let fig = plot::scenario_chart(r);
    let l = fig.panels[1]
        .lines
        .iter()
        .find(|l| l.name == "established / s")
        .unwrap();
    l.points.iter().flatten().copied().collect()
}

#[test]
fn a_short_last_bin_is_a_rate_over_its_own_length() {
    // 500/s for 10 s in 3 s bins: the last bin covers 1 s and still reads 500/s, at 9.5 s.
    let r = inline(&STEADY.replace("DURATION", "10s").replace("BIN", "3s"));
    let pts = established_rate(&r);
    assert_eq!(pts.len(), 4);
    assert!(pts.iter().all(|&(_, y)| (y - 500.0).abs() < 1.0), "{pts:?}");
    assert_eq!(pts[3].0, 9.5);
    // A run shorter than its bin: one point, inside the run, at the run's own rate.
    let r = inline(&STEADY.replace("DURATION", "300ms").replace("BIN", "1s"));
    let pts = established_rate(&r);
    assert_eq!(pts.len(), 1);
    assert!(
        (pts[0].0 - 0.15).abs() < 1e-9 && (pts[0].1 - 500.0).abs() < 5.0,
        "{pts:?}"
    );
    plot::render_svg(&plot::scenario_chart(&r)).unwrap();
}

#[test]
fn values_no_run_produces_are_refused_not_drawn() {
    let good = portsim::run_file(&root().join("scenarios/httperf-error-99-tw240.toml")).unwrap();
    let json = good.to_json();
    let p = Path::new("edited.json");
    // A limit line at 1.7e308 would make plotters loop for ever; a zero bin divides by zero.
    for (from, to, field) in [
        (
            "\"formula_limit_per_s\": 68.",
            "\"formula_limit_per_s\": 1.7e308, \"x\": 68.",
            "formula_limit_per_s",
        ),
        ("\"bin_s\": 1.0", "\"bin_s\": 0.0", "bin_s"),
    ] {
        assert!(json.contains(from), "{from}");
        let e = plot::input::parse_json(p, &json.replacen(from, to, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("edited.json") && e.contains(field), "{e}");
    }
    // A chart built in code with an infinite value is an error, not a hang.
    let fig = plot::line_chart(
        "l",
        "",
        "x",
        "y",
        vec![("a".into(), vec![Some((1.0, f64::INFINITY))])],
        vec![],
    );
    assert!(plot::render_svg(&fig).is_err());
}

#[test]
fn narrow_axes_label_each_tick_differently_and_off_range_markers_are_left_out() {
    let line = plot::line_chart(
        "narrow",
        "",
        "x",
        "y",
        vec![(
            "a".into(),
            vec![Some((10.0, 1.0)), Some((12.0, 2.0)), Some((14.0, 3.0))],
        )],
        vec![],
    );
    let svg = plot::render_svg(&line).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let ticks: Vec<String> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "text")
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .filter(|t| t.parse::<f64>().is_ok_and(|v| (9.0..=15.0).contains(&v)))
        .collect();
    let mut unique = ticks.clone();
    unique.dedup();
    assert!(ticks.len() >= 3 && unique == ticks, "{ticks:?}");
    let mut fig = plot::scenario_chart(&report("httperf-error-99-tw240.toml"));
    fig.markers.push(plot::Marker {
        x: 1e6,
        label: "beyond the run".into(),
        colour: plot::GREY,
    });
    let svg = plot::render_svg(&fig).unwrap();
    assert!(!svg.contains("beyond the run"));
}

#[test]
fn a_manifest_that_makes_one_file_twice_or_labels_a_sweep_axis_is_refused() {
    let dir = std::env::temp_dir().join(format!("portsim-manifest-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sc")).unwrap();
    std::fs::copy(
        root().join("scenarios/httperf-error-99-tw240.toml"),
        dir.join("sc/a.toml"),
    )
    .unwrap();
    let m = dir.join("plots.toml");
    let cmp = "[[comparison]]\nfile = \"a.svg\"\ntitle = \"t\"\nscenarios = [\"sc/a.toml\"]\n";
    std::fs::write(&m, format!("scenarios = \"sc\"\n{cmp}")).unwrap();
    let e = plot::manifest::make(&m).err().unwrap().to_string();
    assert!(e.contains("\"a.svg\" is already made by scenario"), "{e}");
    let sweep = "[[sweep]]\nfile = \"s.svg\"\ntitle = \"t\"\nscenario = \"sc/a.toml\"\n\
                 metric = \"success_percent\"\n\
                 x = { set = \"workload.httperf.arrival.rate\", values = [100, 200], labels = [\"a\", \"b\"] }\n";
    std::fs::write(&m, format!("scenarios = \"sc\"\n{sweep}")).unwrap();
    let e = plot::manifest::make(&m).err().unwrap().to_string();
    assert!(e.contains("`labels` is for heat maps"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_nat_chart_sets_its_ports_and_conntrack_states_beside_the_client_pool_the_same_each_time() {
    let path = root().join("tests/samples/nat-router.toml");
    let draw = || {
        let r = ReportView::of(&portsim::run_file(&path).unwrap());
        plot::render_svg(&plot::scenario_chart(&r)).unwrap()
    };
    let svg = draw();
    assert_eq!(svg, draw());
    // Five panels of 300 px: sockets, NAT ports, conntrack entries, rates, latency.
    let t = texts(&svg, (1200, 78 + 5 * 300 + 20));
    let at = |s: &str| {
        t.iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s:?} not in {t:?}"))
    };
    assert!(at("sockets") < at("NAT ports in use"));
    assert!(at("NAT ports in use") < at("conntrack entries"));
    assert!(at("conntrack entries") < at("connections / s"));
    at("free ports (pool of 28,232)");
    at("router in use");
    at("1 addr × 10 ports");
    at("TIME_WAIT");
    at("NAT router / TIME_WAIT = 0.08 / s");
}
