//! The speed targets of the engine, on the scenarios in `benches/scenarios/` (see each file):
//! churn-open-loop (one hour, 3.6 M attempts), many-pools (1,024 pools, 3 M attempts) and
//! retry-storm (30 M attempts, nearly all failing). Throughput is connection attempts per
//! second of wall time, on one core. day-long (86.4 M attempts) is measured with
//! `portsim run benches/scenarios/day-long.toml --stats` instead: one run takes about a minute.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portsim::scenario;
use portsim::sim::Simulation;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn speed(c: &mut Criterion) {
    let mut g = c.benchmark_group("speed");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    for name in ["churn-open-loop", "many-pools", "retry-storm"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches/scenarios")
            .join(format!("{name}.toml"));
        let sc = scenario::load(&path).expect("bench scenario");
        let attempts = Simulation::new(&sc).run().summary.connections.attempted;
        g.throughput(Throughput::Elements(attempts));
        g.bench_function(name, |b| {
            b.iter(|| black_box(Simulation::new(black_box(&sc)).run()))
        });
    }
    g.finish();
}

criterion_group!(benches, speed);
criterion_main!(benches);
