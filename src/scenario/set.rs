//! One value of a scenario's text replaced, found by a key path through `[scenario]`, a
//! `[[host]]` or a `[[workload]]` named by its `name`: what-if `--set`, sweeps, remedies.

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

/// Scenario `text` with one value replaced: `path` is `scenario.KEY…`, `host.NAME.KEY…` or
/// `workload.NAME.KEY…` (NAME is the entry's `name`; quote keys that hold dots, as in
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

/// The table a path starts in — `[scenario]`, or the `[[host]]` or `[[workload]]` entry its
/// second key names — and the keys left after it.
fn section<'a>(
    doc: &'a mut toml::Table,
    keys: &'a [String],
) -> Result<(&'a mut toml::Table, &'a [String]), String> {
    match keys[0].as_str() {
        "scenario" => Ok((
            doc.entry("scenario")
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| "[scenario] is not a table".to_string())?,
            &keys[1..],
        )),
        section @ ("host" | "workload") => {
            let name = keys
                .get(1)
                .ok_or_else(|| format!("name the {section}: {section}.NAME.KEY"))?;
            let entries = doc
                .get_mut(section)
                .and_then(toml::Value::as_array_mut)
                .ok_or_else(|| format!("the scenario has no [[{section}]]"))?;
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
        other => Err(format!(
            "{other:?}: a path starts with scenario, host or workload"
        )),
    }
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
"#;

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
