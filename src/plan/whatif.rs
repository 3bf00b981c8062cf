//! What-if changes on top of a scenario: `--set KEY=VALUE` and the values a sweep varies.
//!
//! A key is either a [`scenario::set`] path (`workload.churn.arrival.rate`,
//! `host.client.knobs."net.ipv4.ip_local_port_range"`, `nat.router.knobs.port_range`) or a
//! bare knob or model-parameter name (`net.ipv4.tcp_tw_reuse`, `time_wait`), which is set on
//! every host whose kernel has it; a bare NAT knob
//! (`net.netfilter.nf_conntrack_tcp_timeout_time_wait`) is set on every NAT.

use crate::profile::{MODEL_PARAMS, nearest};
use crate::scenario;
use std::fmt;

/// One change: where it goes and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The key as the user wrote it.
    pub key: String,
    pub value: toml::Value,
}

/// Why a change could not be made.
#[derive(Clone, Debug, PartialEq)]
pub struct WhatIfError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for WhatIfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for WhatIfError {}

/// A value as written on the command line: TOML (`800`, `1.5`, `true`, `"60s"`), else the
/// text itself as a string (`60s`, `1024 65535`).
pub fn value(text: &str) -> toml::Value {
    let text = text.trim();
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Parses `KEY=VALUE`.
pub fn parse_set(arg: &str) -> Result<Change, WhatIfError> {
    let (key, v) = arg.split_once('=').ok_or_else(|| WhatIfError {
        key: arg.to_string(),
        message: "write KEY=VALUE, e.g. net.ipv4.tcp_tw_reuse=1 or workload.NAME.arrival.rate=800"
            .into(),
    })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(WhatIfError {
            key: arg.to_string(),
            message: "the key is empty".into(),
        });
    }
    Ok(Change {
        key: key.to_string(),
        value: value(v),
    })
}

/// The value as a person reads it: strings without quotes.
pub fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The [`scenario::set`] paths a key stands for in `text`.
fn paths(text: &str, key: &str) -> Result<Vec<String>, WhatIfError> {
    let fail = |message: String| WhatIfError {
        key: key.to_string(),
        message,
    };
    let first = key.split(['.', '[']).next().unwrap_or_default();
    if matches!(first, "scenario" | "host" | "workload" | "nat") {
        return Ok(vec![key.to_string()]);
    }
    let sc = scenario::parse("what-if", text).map_err(|e| fail(e.to_string()))?;
    let model = MODEL_PARAMS.iter().any(|k| k.name == key);
    let mut out = vec![];
    let mut known: Vec<&str> = MODEL_PARAMS.iter().map(|k| k.name).collect();
    for h in &sc.hosts {
        let knobs = h.profile.knobs();
        known.extend(knobs.iter().map(|k| k.name));
        if model {
            out.push(format!("host.{}.model.{key}", h.name));
        } else if knobs.iter().any(|k| k.name == key) {
            out.push(format!("host.{}.knobs.\"{key}\"", h.name));
        }
    }
    // Every NAT has the same knobs.
    let nat_knobs: Vec<String> = sc.nats.first().map_or(vec![], |n| {
        n.config.knobs().into_iter().map(|k| k.0).collect()
    });
    if nat_knobs.iter().any(|k| k == key) {
        out.extend(
            sc.nats
                .iter()
                .map(|n| format!("nat.{}.knobs.\"{key}\"", n.name)),
        );
    }
    known.extend(nat_knobs.iter().map(String::as_str));
    if out.is_empty() {
        known.sort_unstable();
        known.dedup();
        let hint = nearest(key, known.iter().copied())
            .map(|n| format!(" Did you mean {n}?"))
            .unwrap_or_default();
        let kernels: Vec<String> = sc.hosts.iter().map(|h| h.profile_name.clone()).collect();
        return Err(fail(format!(
            "no host's kernel ({}) has this knob, and it is not a path (scenario.KEY, host.NAME.KEY, workload.NAME.KEY, nat.NAME.KEY).{hint} `portsim profile show NAME` lists each kernel's knobs",
            kernels.join(", ")
        )));
    }
    Ok(out)
}

/// `text` with every change made, checked: the result parses as a scenario.
pub fn apply(file: &str, text: &str, changes: &[Change]) -> Result<String, WhatIfError> {
    let mut text = text.to_string();
    for c in changes {
        for p in paths(&text, &c.key)? {
            text = scenario::set(&text, &p, c.value.clone()).map_err(|e| WhatIfError {
                key: c.key.clone(),
                message: e.message,
            })?;
        }
    }
    if !changes.is_empty() {
        scenario::parse(file, &text).map_err(|e| WhatIfError {
            key: changes
                .iter()
                .map(|c| format!("{}={}", c.key, show(&c.value)))
                .collect::<Vec<_>>()
                .join(" "),
            message: format!("the changed scenario is refused: {}", e.message),
        })?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    const TEXT: &str = r#"
[scenario]
name = "s"
duration = "10s"

[[host]]
name = "client"
profile = "linux"
ips = ["10.0.0.1"]

[[host]]
name = "server"
profile = "freebsd"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "client"
destinations = ["10.0.0.2:80"]
arrival = { kind = "constant", rate = 100 }
rtt = "1ms"
"#;

    #[test]
    fn values_read_as_toml_else_as_text() {
        assert_eq!(value("800"), toml::Value::Integer(800));
        assert_eq!(value("2.5"), toml::Value::Float(2.5));
        assert_eq!(value("60s"), toml::Value::String("60s".into()));
        assert_eq!(
            value("1024 65535"),
            toml::Value::String("1024 65535".into())
        );
        assert_eq!(value("\"a=b\""), toml::Value::String("a=b".into()));
    }

    #[test]
    fn a_bare_knob_goes_to_the_hosts_whose_kernel_has_it() {
        let t = apply(
            "t",
            TEXT,
            &[parse_set("net.ipv4.ip_local_port_range=40000 40999").unwrap()],
        )
        .unwrap();
        let sc = scenario::parse("t", &t).unwrap();
        assert_eq!(sc.hosts[0].profile.port_range, (40000, 40999));
        assert_eq!(sc.hosts[1].profile, Profile::freebsd());
        let t = apply("t", TEXT, &[parse_set("time_wait=30s").unwrap()]).unwrap();
        let sc = scenario::parse("t", &t).unwrap();
        assert!(
            sc.hosts
                .iter()
                .all(|h| h.profile.time_wait.0 == 30_000_000_000)
        );
    }

    #[test]
    fn a_bare_nat_knob_goes_to_every_nat() {
        let text = format!(
            "{TEXT}\n[[nat]]\nname = \"router\"\nips = [\"203.0.113.10\"]\nbehind = [\"client\"]\n"
        );
        let key = "net.netfilter.nf_conntrack_tcp_timeout_time_wait";
        let t = apply("t", &text, &[parse_set(&format!("{key}=30")).unwrap()]).unwrap();
        let sc = scenario::parse("t", &t).unwrap();
        let tw = crate::nat::conntrack::CtState::TimeWait as usize;
        assert_eq!(sc.nats[0].config.timeouts[tw].0, 30_000_000_000);
        let t = apply(
            "t",
            &text,
            &[parse_set("nat[0].knobs.port_range=40000 40009").unwrap()],
        );
        let sc = scenario::parse("t", &t.unwrap()).unwrap();
        assert_eq!(sc.nats[0].config.ports_per_address(), 10);
        let e = apply(
            "t",
            &text,
            &[parse_set("net.netfilter.nf_conntrack_mux=1").unwrap()],
        );
        assert!(e.unwrap_err().message.contains("nf_conntrack_max"));
    }

    #[test]
    fn a_wrong_key_or_value_says_what_is_allowed() {
        let e = apply("t", TEXT, &[parse_set("net.ipv4.tcp_tw_reuze=1").unwrap()]).unwrap_err();
        assert!(
            e.message.contains("Did you mean net.ipv4.tcp_tw_reuse"),
            "{e}"
        );
        let e = apply("t", TEXT, &[parse_set("net.ipv4.tcp_tw_reuse=7").unwrap()]).unwrap_err();
        assert!(e.message.contains("0, 1 or 2"), "{e}");
        assert!(parse_set("nokey").is_err());
    }
}
