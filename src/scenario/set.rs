//! One value of a scenario's text replaced, found by a key path through `[scenario]`, a
//! `[[host]]`, `[[workload]]` or `[[nat]]` named by its `name` (or by its index, as errors
//! write it: `nat[0]`): what-if `--set`, sweeps, remedies.

/// Why [`set`] could not change a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct SetError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Splits `host.client.knobs."net.ipv4.tcp_tw_reuse"` into its keys.
fn split_path(path: &str) -> Option<Vec<String>> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in path.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                if cur.is_empty() && !was_quoted {
                    return None;
                }
                out.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    if quoted || (cur.is_empty() && !was_quoted) {
        return None;
    }
    out.push(cur);
    Some(out)
}

/// Scenario `text` with one value replaced: `path` is `scenario.KEY…`, `host.NAME.KEY…`,
/// `workload.NAME.KEY…` or `nat.NAME.KEY…` (NAME is the entry's `name`; `nat[0].KEY…` names
/// it by index; quote keys that hold dots, as in
/// `host.client.knobs."net.ipv4.ip_local_port_range"`). Missing tables on the way are made.
/// The result still has to pass [`parse`](super::parse).
pub fn set(text: &str, path: &str, value: toml::Value) -> Result<String, SetError> {
    let fail = |message: String| SetError {
        path: path.to_string(),
        message,
    };
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| fail(e.message().to_string()))?;
    let keys = split_path(path).ok_or_else(|| {
        fail("not a key path; write e.g. workload.NAME.arrival.rate or host.NAME.knobs.\"net.ipv4.tcp_tw_reuse\"".into())
    })?;
    let (mut table, rest) = section(&mut doc, &keys).map_err(fail)?;
    let (last, walk) = rest
        .split_last()
        .ok_or_else(|| fail("the path names a table, not a key in it".into()))?;
    for k in walk {
        table = table
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| fail(format!("{k:?} is a value, not a table")))?;
    }
    table.insert(last.clone(), value);
    toml::to_string(&doc).map_err(|e| fail(e.to_string()))
}

/// The sections whose entries a path names.
const SECTIONS: [&str; 3] = ["host", "workload", "nat"];

/// The table a path starts in — `[scenario]`, or the `[[host]]`, `[[workload]]` or `[[nat]]`
/// entry its second key names (or its first key indexes) — and the keys left after it.
fn section<'a>(
    doc: &'a mut toml::Table,
    keys: &'a [String],
) -> Result<(&'a mut toml::Table, &'a [String]), String> {
    if keys[0] == "scenario" {
        let t = doc
            .entry("scenario")
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| "[scenario] is not a table".to_string())?;
        return Ok((t, &keys[1..]));
    }
    if let Some((section, index)) = indexed(&keys[0]) {
        let entries = entries(doc, section)?;
        let n = entries.len();
        let entry = entries
            .get_mut(index)
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| format!("{section}[{index}]: the scenario has {n} [[{section}]]"))?;
        return Ok((entry, &keys[1..]));
    }
    let section = keys[0].as_str();
    if !SECTIONS.contains(&section) {
        return Err(format!(
            "{section:?}: a path starts with scenario, host, workload or nat"
        ));
    }
    let name = keys
        .get(1)
        .ok_or_else(|| format!("name the {section}: {section}.NAME.KEY"))?;
    let entries = entries(doc, section)?;
    let names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.get("name").and_then(|n| n.as_str()).map(String::from))
        .collect();
    let entry = entries
        .iter_mut()
        .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(name.as_str()))
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| {
            format!(
                "no {section} named {name:?}; the scenario has {}",
                names.join(", ")
            )
        })?;
    Ok((entry, &keys[2..]))
}

/// `nat[0]` as (`"nat"`, 0), for the sections of [`SECTIONS`].
fn indexed(key: &str) -> Option<(&'static str, usize)> {
    let (name, rest) = key.split_once('[')?;
    let section = SECTIONS.into_iter().find(|s| *s == name)?;
    Some((section, rest.strip_suffix(']')?.parse().ok()?))
}

/// The entries of `[[section]]`.
fn entries<'a>(
    doc: &'a mut toml::Table,
    section: &str,
) -> Result<&'a mut Vec<toml::Value>, String> {
    doc.get_mut(section)
        .and_then(toml::Value::as_array_mut)
        .ok_or_else(|| format!("the scenario has no [[{section}]]"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse;

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
profile = "linux"
ips = ["10.0.0.2"]
listen = ["10.0.0.2:80"]

[[workload]]
name = "w"
client = "client"
destinations = ["10.0.0.2:80"]
arrival = { kind = "constant", rate = 100 }
rtt = "1ms"

[[nat]]
name = "router"
ips = ["203.0.113.10"]
behind = ["client"]
"#;

    #[test]
    fn a_nat_knob_is_set_by_the_nat_s_name_or_its_index() {
        let t = set(
            TEXT,
            "nat.router.knobs.port_range",
            toml::Value::String("40000 40009".into()),
        )
        .unwrap();
        let t = set(
            &t,
            "nat[0].knobs.\"net.netfilter.nf_conntrack_tcp_timeout_time_wait\"",
            toml::Value::Integer(30),
        )
        .unwrap();
        let sc = parse("t", &t).unwrap();
        let cfg = &sc.nats[0].config;
        assert_eq!(cfg.ports_per_address(), 10);
        let tw = crate::nat::conntrack::CtState::TimeWait as usize;
        assert_eq!(cfg.timeouts[tw], crate::time::Duration::from_secs(30));
        let e = set(TEXT, "nat[1].ips", toml::Value::Array(vec![])).unwrap_err();
        assert!(e.message.contains("has 1 [[nat]]"), "{e}");
        let e = set(TEXT, "nat.gateway.ips", toml::Value::Array(vec![])).unwrap_err();
        assert!(e.message.contains("router"), "{e}");
    }

    #[test]
    fn a_set_value_is_what_the_parsed_scenario_holds() {
        let t = set(TEXT, "workload.w.arrival.rate", toml::Value::Integer(700)).unwrap();
        let t = set(
            &t,
            "host.client.knobs.\"net.ipv4.ip_local_port_range\"",
            toml::Value::String("60000 60999".into()),
        )
        .unwrap();
        let sc = parse("t", &t).unwrap();
        assert_eq!(sc.hosts[0].profile.port_range, (60000, 60999));
        assert!(matches!(
            sc.workloads[0].arrival,
            crate::workload::Arrival::Constant(r) if r.per_sec() == 700.0
        ));
    }

    #[test]
    fn a_wrong_path_says_what_exists() {
        let e = set(
            TEXT,
            "host.nobody.profile",
            toml::Value::String("macos".into()),
        )
        .unwrap_err();
        assert!(e.message.contains("client, server"), "{e}");
        assert!(set(TEXT, "hosts.client.x", toml::Value::Integer(1)).is_err());
        assert!(set(TEXT, "host..x", toml::Value::Integer(1)).is_err());
        assert!(set(TEXT, "host.client.\"open", toml::Value::Integer(1)).is_err());
    }
}
