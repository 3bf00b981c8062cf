//! Key-value load generators: memtier_benchmark and redis-benchmark. Defaults and behaviour
//! from `notes/client-libraries.md` §5; the server's default host and port from the tools'
//! usage texts (stored copies).

use super::scan::{At, Spec, Style, scan, switch, val};
use super::{Destination, OnConnectError, Tool, ToolError, ToolRun};
use crate::workload::Closer;

/// The server's address from a host flag and a port flag.
fn server(tool: Tool, flag: &str, host: &str, port: u16) -> Result<Destination, ToolError> {
    super::host_port(host, port).ok_or_else(|| ToolError::BadValue {
        tool,
        flag: flag.into(),
        value: Some(host.into()),
        allowed: "an IPv4 address, localhost or a host name".into(),
    })
}

fn no_positional(tool: Tool, positional: &[String]) -> Result<(), ToolError> {
    match positional.first() {
        None => Ok(()),
        Some(extra) => Err(ToolError::BadValue {
            tool,
            flag: "argument".into(),
            value: Some(extra.clone()),
            allowed: "flags only (the server is given by flags)".into(),
        }),
    }
}

const MEMTIER: Spec = Spec {
    tool: Tool::Memtier,
    style: Style::Getopt,
    read: &[
        val(&["-s", "--server"]),
        val(&["-p", "--port"]),
        val(&["-t", "--threads"]),
        val(&["-c", "--clients"]),
        val(&["-n", "--requests"]),
        val(&["--test-time"]),
        val(&["--reconnect-interval"]),
    ],
    ignored: &[
        val(&["-P", "--protocol"]),
        val(&["-a", "--authenticate"]),
        val(&["-d", "--data-size"]),
        val(&["--data-size-range"]),
        val(&["--ratio"]),
        val(&["--pipeline"]),
        val(&["--key-pattern"]),
        val(&["--key-prefix"]),
        val(&["--key-minimum"]),
        val(&["--key-maximum"]),
        val(&["--select-db"]),
        val(&["-o", "--out-file"]),
        val(&["--json-out-file"]),
        val(&["--print-percentiles"]),
        switch(&["--hide-histogram"]),
        switch(&["--distinct-client-seed"]),
        switch(&["--randomize"]),
    ],
};

const MEMTIER_KEPT: &str = "memtier keeps its connections unless --reconnect-interval is \
    given (stored copies of client.cpp; notes/client-libraries.md §5)";

const MEMTIER_CLOSE: &str = "memtier --reconnect-interval N: after every N requests \
    `m_conns_manager->disconnect(); connect()`: the client closes (client TIME-WAIT) \
    (stored copies of client.cpp; notes/client-libraries.md §5)";

/// memtier_benchmark: `-t` 4 threads of `-c` 50 clients each (a connection per client, so
/// `t × c` in all), `-n` 10000 requests per client or `--test-time` seconds, and
/// `--reconnect-interval N` ("Number of requests after which re-connection is performed"):
/// the client closes every N requests. A failed connect ends the run (the assertion in
/// memtier issue 232, scenarios/memtier-232.toml). Sources: stored copies of memtier's usage
/// text and `client.cpp` (notes §5); `-s` localhost and `-p` 6379 are its usage text's
/// defaults (UNVERIFIED: not in the notes).
pub(super) fn memtier(args: &[String]) -> Result<ToolRun, ToolError> {
    let s = scan(&MEMTIER, args)?;
    no_positional(Tool::Memtier, &s.positional)?;
    let (mut host, mut port) = ("localhost".to_string(), 6379);
    let (mut t, mut c, mut n, mut secs, mut every) = (4, 50, 10_000, None, None);
    for (flag, v) in &s.flags {
        let at = At {
            tool: Tool::Memtier,
            flag,
        };
        match *flag {
            "-s" => host = at.text(v)?.to_string(),
            "-p" => port = at.int(v, 1, 65_535, "the server's port")? as u16,
            "-t" => t = at.count(v, "threads")?,
            "-c" => c = at.count(v, "clients per thread")?,
            "-n" => n = at.int(v, 1, 1_000_000_000, "requests per client")?,
            "--test-time" => secs = Some(at.duration(v, true)?),
            _ => every = Some(at.count(v, "requests per connection")?),
        }
    }
    let total = t.checked_mul(c).filter(|&n| n <= 1_000_000);
    let concurrency = total.ok_or_else(|| ToolError::BadValue {
        tool: Tool::Memtier,
        flag: "-c".into(),
        value: Some(c.to_string()),
        allowed: format!("clients per thread such that -t {t} × -c is at most 1,000,000"),
    })?;
    let mut run = ToolRun::new(
        Tool::Memtier,
        server(Tool::Memtier, "-s", &host, port)?,
        MEMTIER_KEPT,
    );
    run.concurrency = Some(concurrency);
    run.threads = Some(t);
    match secs {
        Some(d) => run.limit.duration = Some(d),
        None => run.limit.requests = Some(u64::from(concurrency) * n),
    }
    run.on_connect_error = OnConnectError::Stop;
    if let Some(every) = every {
        run.reconnect_interval = Some(every);
        run.keep_alive = every > 1;
        run.requests_per_connection = Some(every);
        run.closer = Some(Closer::Client);
        run.closer_source = MEMTIER_CLOSE;
    }
    Ok(run)
}

const REDIS_BENCHMARK: Spec = Spec {
    tool: Tool::RedisBenchmark,
    style: Style::Getopt,
    read: &[
        val(&["-h"]),
        val(&["-p"]),
        val(&["-c"]),
        val(&["-n"]),
        val(&["-k"]),
    ],
    ignored: &[
        val(&["-a"]),
        val(&["--user"]),
        val(&["-d"]),
        val(&["-P"]),
        val(&["-r"]),
        val(&["-t"]),
        val(&["--dbnum"]),
        val(&["--threads"]),
        val(&["--precision"]),
        switch(&["-q"]),
        switch(&["-e"]),
        switch(&["--csv"]),
    ],
};

const REDIS_KEPT: &str = "redis-benchmark -k 1 (the default) reuses each client's connection \
    (`clientDone` → `resetClient`; stored copies; notes/client-libraries.md §5)";

const REDIS_CLOSE: &str = "redis-benchmark -k 0: `clientDone` frees the client and creates a \
    new one for every request, so the client closes (client TIME-WAIT); derived, the \
    freeClient line is UNVERIFIED (notes/client-libraries.md §5)";

/// redis-benchmark: `-h` 127.0.0.1, `-p` 6379 (its usage text), `-c` 50 clients, `-n`
/// 100000 requests (10000 in older releases), `-k` "1=keep alive 0=reconnect (default 1)".
/// `-n` is per test; the default suite runs several tests, of which only one is modelled.
/// A failed connect ends the run (UNVERIFIED). Sources: stored copies of its usage text and
/// of `clientDone` (notes §5).
pub(super) fn redis_benchmark(args: &[String]) -> Result<ToolRun, ToolError> {
    let s = scan(&REDIS_BENCHMARK, args)?;
    no_positional(Tool::RedisBenchmark, &s.positional)?;
    let (mut host, mut port) = ("127.0.0.1".to_string(), 6379);
    let (mut c, mut n, mut keep_alive) = (50, 100_000, true);
    for (flag, v) in &s.flags {
        let at = At {
            tool: Tool::RedisBenchmark,
            flag,
        };
        match *flag {
            "-h" => host = at.text(v)?.to_string(),
            "-p" => port = at.int(v, 1, 65_535, "the server's port")? as u16,
            "-c" => c = at.count(v, "clients")?,
            "-n" => n = at.int(v, 1, 1_000_000_000_000, "requests")?,
            _ => keep_alive = at.int(v, 0, 1, "1 = keep alive, 0 = reconnect")? == 1,
        }
    }
    let dest = server(Tool::RedisBenchmark, "-h", &host, port)?;
    let mut run = ToolRun::new(Tool::RedisBenchmark, dest, REDIS_KEPT);
    run.concurrency = Some(c);
    run.limit.requests = Some(n);
    run.on_connect_error = OnConnectError::Stop;
    if !keep_alive {
        run.one_request_each(Closer::Client, REDIS_CLOSE);
    }
    Ok(run)
}
