//! Load generators built on Go's net/http: hey and k6. Both keep alive through a Go
//! `Transport`; without keep-alive both set `DisableKeepAlives` (notes/client-libraries.md
//! §1 for the Transport, §5 for the tools).

use super::http::{MAX_TOTAL, one_url, requests_or_duration};
use super::scan::{At, Spec, Style, scan, switch, val};
use super::{Destination, Tool, ToolError, ToolRate, ToolRun};
use crate::workload::{Closer, Rate};

const HEY: Spec = Spec {
    tool: Tool::Hey,
    style: Style::Go,
    read: &[
        val(&["-c"]),
        val(&["-n"]),
        val(&["-z"]),
        val(&["-q"]),
        switch(&["-disable-keepalive"]),
    ],
    ignored: &[
        val(&["-m"]),
        val(&["-H"]),
        val(&["-t"]),
        val(&["-A"]),
        val(&["-d"]),
        val(&["-D"]),
        val(&["-T"]),
        val(&["-a"]),
        val(&["-x"]),
        val(&["-o"]),
        val(&["-host"]),
        val(&["-cpus"]),
        switch(&["-disable-compression"]),
        switch(&["-disable-redirects"]),
    ],
};

/// Go's idle cap in hey's Transport: `MaxIdleConnsPerHost: min(b.C, maxIdleConn)`.
const HEY_MAX_IDLE: u32 = 500;

const HEY_KEPT: &str = "hey's one Go Transport keeps up to min(c, 500) idle connections; \
    above that the client closes the extras after each round (stored copies of \
    requester/requester.go; notes/client-libraries.md §1, §5)";

const K6_KEPT: &str = "each VU's Go Transport keeps its connections across iterations \
    (stored copies of js/runner.go; notes/client-libraries.md §5)";

/// Why a Go client without keep-alive (hey `-disable-keepalive`, k6
/// `--no-connection-reuse`) is given the client's TIME-WAIT.
const GO_CLOSE: &str = "Go DisableKeepAlives: `Connection: close`, and the client closes \
    after reading the body (net/http transport.go readLoop); a server may send its FIN first, \
    so which side holds TIME-WAIT is UNVERIFIED; grafana/k6 #826 (the client ran out of ports) \
    is the evidence for the client (notes/client-libraries.md §1, §5)";

/// hey: `-c` 50 workers, `-n` 200 requests (at least `-c`), `-z` a duration that overrides
/// `-n`, `-q` a rate per worker, `-disable-keepalive`. One shared Go Transport with
/// `MaxIdleConnsPerHost: min(b.C, 500)`, so above 500 workers the extras are closed by the
/// client after each round. Sources: rakyll/hey `hey.go` @ 0003feec (flags); the shared
/// Transport from stored copies of `requester/requester.go` (notes §5).
pub(super) fn hey(args: &[String]) -> Result<ToolRun, ToolError> {
    let s = scan(&HEY, args)?;
    let (mut c, mut n, mut z, mut q, mut keep_alive) = (50, 200, None, None, true);
    for (flag, v) in &s.flags {
        let at = At {
            tool: Tool::Hey,
            flag,
        };
        match *flag {
            "-c" => c = at.count(v, "workers")?,
            "-n" => n = at.int(v, 1, MAX_TOTAL, "requests in all")?,
            "-z" => z = Some(at.duration(v, false)?),
            "-q" => q = Some(at.rate(v, "requests per second per worker")?),
            _ => keep_alive = !at.on(v)?,
        }
    }
    if z.is_none() && n < u64::from(c) {
        return Err(ToolError::BadValue {
            tool: Tool::Hey,
            flag: "-n".into(),
            value: Some(n.to_string()),
            allowed: format!("at least the workers (-c {c}): \"-n cannot be less than -c\""),
        });
    }
    let mut run = ToolRun::new(
        Tool::Hey,
        one_url(Tool::Hey, &s.positional, false)?,
        HEY_KEPT,
    );
    run.concurrency = Some(c);
    run.limit = requests_or_duration(n, z);
    run.rate = q.map(|q| per_worker(q, c)).transpose()?;
    run.max_idle_per_host = Some(c.min(HEY_MAX_IDLE));
    if !keep_alive {
        run.one_request_each(Closer::Client, GO_CLOSE);
    }
    Ok(run)
}

/// hey's `-q` is per worker: the run's rate is `q × c`.
fn per_worker(q: Rate, c: u32) -> Result<ToolRate, ToolError> {
    let num = q.num.checked_mul(u64::from(c));
    num.map(|num| ToolRate::Requests(Rate { num, den: q.den }))
        .ok_or_else(|| ToolError::BadValue {
            tool: Tool::Hey,
            flag: "-q".into(),
            value: Some(format!("{}", q.per_sec())),
            allowed: format!("a rate whose product with -c {c} fits in 64 bits"),
        })
}

const K6: Spec = Spec {
    tool: Tool::K6,
    style: Style::Getopt,
    read: &[
        val(&["-u", "--vus"]),
        val(&["-d", "--duration"]),
        val(&["-i", "--iterations"]),
        val(&["--rps"]),
        switch(&["--no-connection-reuse"]),
        switch(&["--no-vu-connection-reuse"]),
    ],
    ignored: &[
        val(&["-e", "--env"]),
        val(&["-o", "--out"]),
        val(&["--tag"]),
        val(&["--summary-export"]),
        val(&["--batch"]),
        val(&["--batch-per-host"]),
        switch(&["-q", "--quiet"]),
        switch(&["--no-color"]),
        switch(&["--insecure-skip-tls-verify"]),
    ],
};

const K6_VU_CLOSE: &str = "k6 --no-vu-connection-reuse calls Transport.CloseIdleConnections() at \
    the end of every iteration: the client closes (stored copies of js/runner.go; \
    notes/client-libraries.md §5); one request per iteration is an assumption";

/// k6, the minimal form `k6 run [--vus N] [--duration D | --iterations N] SCRIPT`: `--vus`
/// 1, and one iteration when neither a duration nor iterations is given (k6's documented
/// defaults, not in the notes: UNVERIFIED). The script is not parsed: each iteration is
/// taken as one request, and the destination is the script's (give its address when
/// rendering). One Go Transport per VU; `--no-connection-reuse` is Go `DisableKeepAlives`,
/// `--no-vu-connection-reuse` closes idle connections after every iteration. Source:
/// stored copies of k6 `js/runner.go` (notes §5).
pub(super) fn k6(args: &[String]) -> Result<ToolRun, ToolError> {
    let s = scan(&K6, args)?;
    let script = k6_script(&s.positional)?;
    let mut run = ToolRun::new(Tool::K6, Destination::Script { path: script }, K6_KEPT);
    let (mut vus, mut iterations) = (1, None);
    let (mut no_reuse, mut no_vu_reuse) = (false, false);
    for (flag, v) in &s.flags {
        let at = At {
            tool: Tool::K6,
            flag,
        };
        match *flag {
            "-u" => vus = at.count(v, "virtual users")?,
            "-d" => run.limit.duration = Some(at.duration(v, false)?),
            "-i" => iterations = Some(at.int(v, 1, MAX_TOTAL, "iterations in all")?),
            "--rps" => run.rate = Some(ToolRate::Requests(at.rate(v, "requests per second")?)),
            "--no-connection-reuse" => no_reuse = at.on(v)?,
            _ => no_vu_reuse = at.on(v)?,
        }
    }
    run.concurrency = Some(vus);
    if run.limit.duration.is_none() {
        run.limit.requests = Some(iterations.unwrap_or(1));
    }
    if no_reuse {
        run.one_request_each(Closer::Client, GO_CLOSE);
    } else if no_vu_reuse {
        run.one_request_each(Closer::Client, K6_VU_CLOSE);
    }
    Ok(run)
}

/// `run SCRIPT`: the subcommand and the script path.
fn k6_script(positional: &[String]) -> Result<String, ToolError> {
    let missing = || ToolError::MissingTarget {
        tool: Tool::K6,
        expected: "`k6 run [flags] SCRIPT` (the script is not parsed)",
    };
    match positional {
        [] => Err(missing()),
        [cmd, ..] if cmd != "run" => Err(ToolError::BadValue {
            tool: Tool::K6,
            flag: "subcommand".into(),
            value: Some(cmd.clone()),
            allowed: "run (portsim reads `k6 run [flags] SCRIPT`)".into(),
        }),
        [_] => Err(missing()),
        [_, script] => Ok(script.clone()),
        [_, _, extra, ..] => Err(ToolError::BadValue {
            tool: Tool::K6,
            flag: "argument".into(),
            value: Some(extra.clone()),
            allowed: "one script after `run`".into(),
        }),
    }
}
