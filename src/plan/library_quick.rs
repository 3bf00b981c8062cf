//! `portsim plan --library NAME --concurrency N --rate R`: the scenario a client library's
//! load stands for, without a file. One client host (the local host's profile, or
//! `--profile`), one server at a documentation address (192.0.2.1:443, RFC 5737), and the
//! requests in rounds: `N` at once every `N / R` seconds, as a program that sends `N`
//! requests together and waits for them does (golang/go #13801's pattern; a round is a
//! burst, the arrival form pool workloads take). The round must end before the next starts,
//! so at most `N` are in flight.

use super::PlanError;
use crate::client::pool::library::NAMES;
use crate::plan::import;
use crate::profile::{Profile, nearest};
use crate::scenario;
use crate::time::Duration;
use crate::workload::Rate;
use std::fmt::Write;

/// The load, from the flags.
#[derive(Clone, Debug)]
pub struct LibraryQuick {
    /// `[workload.library] name`.
    pub library: String,
    /// Requests in flight at once (a round).
    pub concurrency: u32,
    /// Requests per second, e.g. `500/s`.
    pub rate: String,
    /// The library's options, `KEY=VALUE` as given.
    pub options: Vec<String>,
    /// The client's profile; `None`: the local host's.
    pub profile: Option<String>,
    pub server_profile: String,
    pub rtt: String,
    pub service_time: String,
    /// `None`: four TIME-WAITs of the client's profile (the plan's horizon).
    pub duration: Option<String>,
}

/// The scenario and what it assumes (for standard error).
#[derive(Clone, Debug)]
pub struct Synthesized {
    pub text: String,
    pub notes: Vec<String>,
}

/// Rounds at most: each is a line of the scenario.
pub const MAX_ROUNDS: u64 = 200_000;

fn flag(flag: &str, message: String) -> PlanError {
    PlanError::Flag {
        flag: flag.into(),
        message,
    }
}

/// A duration as the scenario writes it: the largest whole unit.
fn show(d: Duration) -> String {
    match d.0 {
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

fn duration(name: &str, text: &str) -> Result<Duration, PlanError> {
    Duration::parse(text).map_err(|e| flag(name, format!("{text:?}: {e}; e.g. \"1ms\"")))
}

/// The client's `[[host]]` lines after its name: a shipped profile, or the local host's
/// imported release and knobs.
fn client_profile(
    q: &LibraryQuick,
    notes: &mut Vec<String>,
) -> Result<(String, Profile), PlanError> {
    if let Some(p) = &q.profile {
        let profile = Profile::named(p).ok_or_else(|| {
            flag(
                "--profile",
                format!("{p:?}: unknown; see `portsim profiles`"),
            )
        })?;
        return Ok((format!("profile = \"{p}\"\n"), profile));
    }
    match import::from_proc(std::path::Path::new("/proc/sys")) {
        Ok(i) => {
            notes.push(format!(
                "client: this host's profile ({}{})",
                i.name,
                i.note
                    .as_deref()
                    .map_or(String::new(), |n| format!("; {n}"))
            ));
            let mut s = format!("profile = \"{}\"\n\n[host.knobs]\n", i.name);
            for (k, v, _) in &i.knobs {
                let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
                match v.parse::<i64>() {
                    Ok(n) => writeln!(s, "\"{k}\" = {n}"),
                    Err(_) => writeln!(s, "\"{k}\" = {}", toml::Value::String(v)),
                }
                .expect("a String takes writes");
            }
            Ok((s, i.profile))
        }
        Err(e) => {
            notes.push(format!(
                "client: profile \"linux\" (the newest Linux release): this host's could not be read ({e}); give --profile"
            ));
            Ok((
                "profile = \"linux\"\n".into(),
                Profile::named("linux").expect("shipped"),
            ))
        }
    }
}

/// A `KEY=VALUE` option as TOML: `True`/`False` (Python) as booleans.
fn option(arg: &str) -> Result<(String, toml::Value), PlanError> {
    let c = crate::plan::whatif::parse_set(arg)
        .map_err(|e| flag(&format!("--option {arg}"), e.message))?;
    if c.key == "name" {
        return Err(flag(
            &format!("--option {arg}"),
            "the library is given by --library".into(),
        ));
    }
    let v = match &c.value {
        toml::Value::String(s) if s == "True" => toml::Value::Boolean(true),
        toml::Value::String(s) if s == "False" => toml::Value::Boolean(false),
        v => v.clone(),
    };
    Ok((c.key, v))
}

/// The scenario text the library flags stand for, and the notes on what it assumes.
pub fn library_scenario(q: &LibraryQuick) -> Result<Synthesized, PlanError> {
    if !NAMES.contains(&q.library.as_str()) {
        let hint = nearest(&q.library, NAMES.iter().copied())
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        return Err(flag(
            "--library",
            format!(
                "{:?}: unknown; allowed: {}{hint}",
                q.library,
                NAMES.join(", ")
            ),
        ));
    }
    if q.concurrency == 0 {
        return Err(flag("--concurrency", "at least 1 request in flight".into()));
    }
    let rate_text = q.rate.trim().trim_end_matches("/s").trim();
    let rate = Rate::parse_decimal(rate_text)
        .filter(|r| r.num > 0)
        .ok_or_else(|| {
            flag(
                "--rate",
                format!(
                    "{:?}: requests per second, a number > 0 (at most 9 decimals), e.g. 500/s",
                    q.rate
                ),
            )
        })?;
    if Profile::named(&q.server_profile).is_none() {
        return Err(flag(
            "--server-profile",
            format!("{:?}: unknown; see `portsim profiles`", q.server_profile),
        ));
    }
    let rtt = duration("--rtt", &q.rtt)?;
    let service = duration("--service-time", &q.service_time)?;
    let options = q
        .options
        .iter()
        .map(|o| option(o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut notes = vec![];
    let (client, profile) = client_profile(q, &mut notes)?;
    let n = u64::from(q.concurrency);
    let period = rate.nth(n);
    // A new connection's request: the handshake, then the request (one RTT each), then the
    // server's service time.
    let hold = Duration(rtt.0.saturating_mul(2).saturating_add(service.0));
    if period.0 <= hold.0 {
        return Err(flag(
            "--rate",
            format!(
                "rounds of {n} every {} ms, but a request on a new connection takes {} ms (two RTTs and the service time): more than {n} would be in flight; lower --rate, raise --concurrency, or shorten --rtt/--service-time",
                period.as_secs_f64() * 1e3,
                hold.as_secs_f64() * 1e3
            ),
        ));
    }
    let horizon = Duration(4 * profile.time_wait.0);
    let asked = match &q.duration {
        Some(d) => duration("--duration", d)?,
        None => horizon,
    };
    if asked.0 == 0 {
        return Err(flag("--duration", "longer than 0s".into()));
    }
    let total = Duration(asked.0.max(horizon.0));
    if asked.0 < horizon.0 {
        notes.push(format!(
            "duration: {} instead of {} (a plan runs at least four TIME-WAITs)",
            show(total),
            show(asked)
        ));
    }
    let rounds = (0..)
        .take_while(|k| rate.nth(k * n).0 < total.0)
        .take(MAX_ROUNDS as usize + 1)
        .count() as u64;
    if rounds > MAX_ROUNDS {
        return Err(flag(
            "--rate",
            format!(
                "more than {MAX_ROUNDS} rounds of {n} in {}: raise --concurrency or give --duration shorter",
                show(total)
            ),
        ));
    }
    notes.push(format!(
        "load: rounds of {n} requests at once every {} ({} /s), each round done before the next; RTT {}, service time {}; server 192.0.2.1:443 ({}), keeps idle connections open",
        show(period),
        rate_text,
        show(rtt),
        show(service),
        q.server_profile
    ));
    let mut s = String::new();
    writeln!(
        s,
        "# portsim plan --library {} --concurrency {n} --rate {}\n# Assumes: {}\n",
        q.library,
        q.rate,
        notes.join("\n#          ")
    )
    .expect("a String takes writes");
    writeln!(
        s,
        "[scenario]\nname = \"{}\"\ndescription = \"{} requests at {} /s, {n} at once\"\nduration = \"{}\"\nseed = 1\n",
        q.library,
        q.library,
        rate_text,
        show(total)
    )
    .expect("a String takes writes");
    writeln!(
        s,
        "[[host]]\nname = \"server\"\nprofile = \"{}\"\nips = [\"192.0.2.1\"]\nlisten = [\"192.0.2.1:443\"]\n",
        q.server_profile
    )
    .expect("a String takes writes");
    writeln!(
        s,
        "[[host]]\nname = \"client\"\nips = [\"198.51.100.10\"]\n{client}"
    )
    .expect("a String takes writes");
    writeln!(
        s,
        "[[workload]]\nname = \"requests\"\nclient = \"client\"\ndestinations = [\"192.0.2.1:443\"]\nrtt = \"{}\"\nservice_time = \"{}\"\non_error = {{ action = \"count\" }}\n\n[workload.arrival]\nkind = \"burst\"\nbursts = [",
        show(rtt),
        show(service)
    )
    .expect("a String takes writes");
    for k in 0..rounds {
        writeln!(
            s,
            "  {{ at = \"{}\", count = {n} }},",
            show(rate.nth(k * n))
        )
        .expect("a String takes writes");
    }
    writeln!(s, "]\n\n[workload.library]\nname = \"{}\"", q.library)
        .expect("a String takes writes");
    for (k, v) in &options {
        writeln!(s, "{} = {v}", toml::Value::String(k.clone())).expect("a String takes writes");
    }
    scenario::parse("(plan --library)", &s).map_err(|e| match e.key.split_once(".library.") {
        Some((_, k)) => {
            let arg = q
                .options
                .iter()
                .find(|o| o.split('=').next().map(str::trim) == Some(k))
                .cloned()
                .unwrap_or_else(|| k.to_string());
            flag(
                &format!("--option {arg}"),
                format!("{} option: {}", q.library, e.message),
            )
        }
        None => flag("flags", e.to_string()),
    })?;
    Ok(Synthesized { text: s, notes })
}
