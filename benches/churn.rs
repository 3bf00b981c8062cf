//! Engine throughput on the churn scenario: Linux, one client IP, one destination, open loop
//! at 1,000 connections/s (above the 470.5/s limit), client closes, 300 s simulated:
//! 300,000 connection attempts per run. The same load from a FreeBSD client (random-start
//! cursor walking a 55,536-port range near exhaustion), and the macOS seed with a 2 s
//! TIME-WAIT (one host-wide pool, 82,051 attempts, SYN retransmissions).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portsim::scenario;
use portsim::sim::Simulation;
use std::hint::black_box;
use std::path::Path;

fn churn(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/linux-default-churn.toml");
    let sc = scenario::load(&path).expect("shipped scenario");
    let attempts = Simulation::new(&sc).run().summary.connections.attempted;
    let mut g = c.benchmark_group("churn");
    g.sample_size(20);
    g.throughput(Throughput::Elements(attempts));
    g.bench_function("linux-default-churn/300s", |b| {
        b.iter(|| black_box(Simulation::new(black_box(&sc)).run()))
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/fix-more-server-ips.toml");
    let sc = scenario::load(&path).expect("shipped scenario");
    g.throughput(Throughput::Elements(150_000));
    g.bench_function("fix-more-server-ips/300s (no failures)", |b| {
        b.iter(|| black_box(Simulation::new(black_box(&sc)).run()))
    });
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/linux-default-churn.toml"),
    )
    .expect("shipped scenario")
    .replacen("profile = \"linux\"", "profile = \"freebsd\"", 1);
    let sc = scenario::parse("freebsd-churn.toml", &text).expect("valid");
    let attempts = Simulation::new(&sc).run().summary.connections.attempted;
    g.throughput(Throughput::Elements(attempts));
    g.bench_function("freebsd-churn/300s", |b| {
        b.iter(|| black_box(Simulation::new(black_box(&sc)).run()))
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/macos-16k-cap-msl-1000.toml");
    let sc = scenario::load(&path).expect("shipped scenario");
    let attempts = Simulation::new(&sc).run().summary.connections.attempted;
    g.throughput(Throughput::Elements(attempts));
    g.bench_function("macos-16k-cap-msl-1000/10s", |b| {
        b.iter(|| black_box(Simulation::new(black_box(&sc)).run()))
    });
    g.finish();
}

criterion_group!(benches, churn);
criterion_main!(benches);
