//! `portsim sweep` on one and on two threads: the same 20-point grid (httperf-error-99 at
//! 100–1,000 connections/s on two port ranges), so the ratio of the two times is the
//! parallel speed-up (target: at least 1.8× on two cores).

use criterion::{Criterion, criterion_group, criterion_main};
use portsim::plan::sweep::{Sweep, parse_vary};
use std::hint::black_box;
use std::time::Duration;

fn sweep(c: &mut Criterion) {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/httperf-error-99.toml"
    );
    let text = std::fs::read_to_string(file).expect("the httperf scenario");
    let vary = [
        parse_vary("workload.httperf.arrival.rate=100..1000/10").expect("a range"),
        parse_vary("net.ipv4.ip_local_port_range=49152 65535,32768 60999").expect("a list"),
    ];
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    for threads in [1, 2] {
        g.bench_function(format!("20 points, {threads} thread(s)"), |b| {
            b.iter(|| {
                let s = Sweep::new(file, &text, &[], &vary, None).expect("a valid grid");
                black_box(s.run(threads, &|| {}))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, sweep);
criterion_main!(benches);
