//! The JSON Schema (draft-07) of scenario files, for editors (`portsim schema`): one piece
//! per table, knobs described with each kernel's names.

use crate::profile::{
    FREEBSD_KNOBS, KnobSpec, LINUX_KNOBS, MACOS_KNOBS, MODEL_PARAMS, WINDOWS_KNOBS,
};
use serde_json::{Map, Value, json};

/// The JSON Schema (draft-07) of scenario files, for editors: `portsim schema`. Knobs are
/// listed with each kernel's names, what they take and the reference section.
pub fn json_schema() -> String {
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "portsim scenario",
        "description": "A portsim scenario file (TOML). See README.md and scenarios/.",
        "type": "object",
        "additionalProperties": false,
        "required": ["scenario", "host", "workload"],
        "properties": {
            "scenario": scenario(),
            "live": live(),
            "host": { "type": "array", "items": host() },
            "workload": { "type": "array", "items": workload() },
            "nat": { "type": "array", "items": nat() }
        }
    });
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    s.push('\n');
    s
}

fn scenario() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "duration"],
        "properties": {
            "name": { "type": "string" },
            "description": { "type": "string" },
            "duration": duration(),
            "seed": { "type": "integer", "minimum": 0, "default": 1 },
            "bin": duration()
        }
    })
}

fn live() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "how `portsim live` judges predicted against measured",
        "properties": {
            "exact": { "type": "array", "items": { "type": "string" } },
            "ignore": { "type": "array", "items": { "type": "string" } },
            "tolerance": { "type": "number", "minimum": 0 },
            "max_connections": { "type": "integer", "minimum": 1 }
        }
    })
}

/// `[[nat]]`: a NAT between the hosts behind it and the rest, and its knobs.
fn nat() -> Value {
    let mut knobs = Map::new();
    for &k in crate::nat::NAT_KNOBS {
        let v = match k {
            "port_range" => {
                json!({ "type": "string", "description": "masquerade to :LO-HI, as \"LO HI\"" })
            }
            "flags" => json!({ "type": "array", "items": { "enum": crate::nat::NAT_FLAGS } }),
            "kernel" => {
                json!({ "type": "string", "description": "MAJOR.MINOR: before 5.0 the shared rover; from 6.5 TIME_WAIT eviction" })
            }
            "race_window" => {
                json!({ "type": "string", "description": "UNVERIFIED: how long a new entry stays unseen by a SYN on another CPU" })
            }
            _ => json!({ "type": "integer", "minimum": 1 }),
        };
        knobs.insert(k.to_string(), v);
    }
    // A cloud gateway's knobs: its Terraform arguments and the model's UNVERIFIED holds.
    use crate::nat::cloud::{Provider, knob_names};
    for p in Provider::ALL {
        for &k in knob_names(p) {
            let takes: Vec<&str> = Provider::ALL
                .into_iter()
                .filter(|q| knob_names(*q).contains(&k))
                .map(Provider::profile)
                .collect();
            let description = format!("profile {}", takes.join(", "));
            let v = if k.starts_with("enable_") {
                json!({ "type": "boolean", "description": description })
            } else {
                json!({ "type": "integer", "minimum": 0, "description": description })
            };
            knobs.insert(k.to_string(), v);
        }
    }
    let profiles: Vec<&str> = crate::nat::NAT_PROFILES.iter().map(|p| p.0).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "ips", "behind"],
        "properties": {
            "name": { "type": "string" },
            "profile": { "enum": profiles, "default": "linux-masquerade" },
            "ips": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
            "behind": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
            "knobs": { "type": "object", "additionalProperties": false, "properties": knobs }
        }
    })
}

fn host() -> Value {
    let profiles: Vec<&str> = crate::profile::all_profiles().iter().map(|p| p.0).collect();
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "ips"],
        "properties": {
            "name": { "type": "string" },
            "profile": { "enum": profiles, "default": "linux" },
            "ips": { "type": "array", "minItems": 1, "items": ip() },
            "count": {
                "type": "integer", "minimum": 1, "maximum": super::hosts::MAX_COUNT, "default": 1,
                "description": "a fleet: this many identical client hosts NAME[1]…NAME[N], instance k's addresses each of ips plus k − 1"
            },
            "listen": { "type": "array", "items": endpoint() },
            "knobs": {
                "type": "object",
                "description": "the kernel's own settings, under its own names",
                "additionalProperties": false,
                "properties": Value::Object(knobs())
            },
            "model": {
                "type": "object",
                "description": "behaviour no knob exposes, and every item the reference marks UNVERIFIED",
                "additionalProperties": false,
                "properties": Value::Object(model())
            }
        }
    })
}

/// Every kernel's knobs by name; a name two kernels share gets both descriptions.
fn knobs() -> Map<String, Value> {
    let mut knobs = Map::new();
    for (kernel, list) in [
        ("Linux", LINUX_KNOBS),
        ("FreeBSD", FREEBSD_KNOBS),
        ("macOS", MACOS_KNOBS),
        ("Windows", WINDOWS_KNOBS),
    ] {
        for k in list {
            let mut d = describe(k);
            if let Some(Value::String(s)) = d.get_mut("description") {
                if let Some(Value::Object(prev)) = knobs.get(k.name)
                    && let Some(Value::String(p)) = prev.get("description")
                {
                    *s = format!("{p} | {kernel}: {s}");
                } else {
                    *s = format!("{kernel}: {s}");
                }
            }
            knobs.insert(k.name.to_string(), d);
        }
    }
    knobs
}

fn model() -> Map<String, Value> {
    MODEL_PARAMS
        .iter()
        .map(|k| (k.name.to_string(), describe(k)))
        .collect()
}

fn describe(k: &KnobSpec) -> Value {
    json!({ "description": format!("{} ({}). Allowed: {}.", k.doc, k.section, k.allowed) })
}

fn workload() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "destinations", "arrival", "rtt"],
        "properties": {
            "name": { "type": "string" },
            "client": { "type": "string", "description": "the client host (or `clients`)" },
            "clients": { "type": "array", "items": { "type": "string" } },
            "source_ips": { "type": "array", "items": ip() },
            "destinations": { "type": "array", "minItems": 1, "items": endpoint() },
            "spread": { "enum": ["round_robin", "random"] },
            "arrival": arrival(),
            "requests_per_connection": { "type": "integer", "minimum": 1 },
            "rtt": dist(),
            "service_time": dist(),
            "request_bytes": { "type": "integer", "minimum": 1 },
            "closer": { "enum": ["client", "server"] },
            "linger_zero": { "type": "boolean" },
            "connection": { "enum": ["connect", "bind", "bind_no_port", "explicit"] },
            "explicit_ports": ports(),
            "reuseaddr": { "type": "boolean" },
            "local_port_range": ports(),
            "on_error": on_error(),
            "start": duration(),
            "stop": duration(),
            "limit": limit(),
            "threads": { "type": "integer", "minimum": 1 },
            "pool": pool(),
            "library": library()
        }
    })
}

/// `[workload.pool]` (`src/scenario/pool.rs`).
fn pool() -> Value {
    let count = json!({ "type": "integer", "minimum": 0 });
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "a client connection pool: requests take idle connections or open new ones",
        "properties": {
            "max_idle_per_host": count,
            "max_idle": { "type": "integer", "minimum": 0, "description": "0: no limit" },
            "max_conns_per_host": { "type": "integer", "minimum": 0, "description": "0: no limit" },
            "idle_timeout": duration(),
            "max_lifetime": duration(),
            "lifetime_jitter": { "enum": ["none", "hikaricp", "hikaricp-25%"] },
            "keep_alive": { "type": "boolean" },
            "reuse": { "enum": ["lifo", "fifo"] },
            "server_keepalive_timeout": duration(),
            "server_keepalive_requests": count
        }
    })
}

/// `[workload.library]`: a client library by its own option names.
fn library() -> Value {
    json!({
        "type": "object",
        "required": ["name"],
        "description": "go-net-http: MaxIdleConns, MaxIdleConnsPerHost, MaxConnsPerHost, IdleConnTimeout, DisableKeepAlives; python-requests: session, pool_connections, pool_maxsize, pool_block; dotnet-httpclient: shared, PooledConnectionLifetime, PooledConnectionIdleTimeout, MaxConnectionsPerServer; hikaricp: maximumPoolSize, minimumIdle, maxLifetime, idleTimeout, lifeTimeVarianceFactor",
        "properties": {
            "name": { "enum": ["go-net-http", "python-requests", "dotnet-httpclient", "hikaricp"] },
            "MaxIdleConns": { "type": "integer", "minimum": 0 },
            "MaxIdleConnsPerHost": { "type": "integer", "minimum": -1 },
            "MaxConnsPerHost": { "type": "integer", "minimum": 0 },
            "IdleConnTimeout": duration(),
            "DisableKeepAlives": { "type": "boolean" },
            "session": { "type": "boolean" },
            "pool_connections": { "type": "integer", "minimum": 1 },
            "pool_maxsize": { "type": "integer", "minimum": 1 },
            "pool_block": { "type": "boolean" },
            "shared": { "type": "boolean" },
            "PooledConnectionLifetime": { "type": "string", "description": "\"infinite\" or a duration" },
            "PooledConnectionIdleTimeout": { "type": "string", "description": "\"infinite\" or a duration" },
            "MaxConnectionsPerServer": { "type": "integer", "minimum": 1 },
            "maximumPoolSize": { "type": "integer", "minimum": 1 },
            "minimumIdle": { "type": "integer", "minimum": 0 },
            "maxLifetime": { "type": ["integer", "string"], "description": "milliseconds or a duration; 0: none" },
            "idleTimeout": { "type": ["integer", "string"], "description": "milliseconds or a duration; 0: none" },
            "lifeTimeVarianceFactor": { "type": "integer", "minimum": 2, "maximum": 40 }
        }
    })
}

fn arrival() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["kind"],
        "properties": {
            "kind": { "enum": ["constant", "poisson", "steps", "closed", "burst"] },
            "rate": rate(),
            "at": duration(),
            "count": { "type": "integer", "minimum": 1, "description": "connections of one burst" },
            "bursts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["at", "count"],
                    "properties": { "at": duration(), "count": { "type": "integer", "minimum": 1 } }
                }
            },
            "process": { "enum": ["constant", "poisson"] },
            "concurrency": { "type": "integer", "minimum": 1 },
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["at", "rate"],
                    "properties": { "at": duration(), "rate": { "type": "number", "minimum": 0 } }
                }
            }
        }
    })
}

fn limit() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "end the workload after N connect() calls or N requests (ab -n)",
        "properties": {
            "connections": { "type": "integer", "minimum": 1 },
            "requests": { "type": "integer", "minimum": 1 }
        }
    })
}

fn on_error() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["action"],
        "properties": {
            "action": { "enum": ["count", "retry", "stop"] },
            "delay": duration(),
            "backoff": { "type": "number", "minimum": 1 },
            "max_delay": duration(),
            "max_retries": { "type": "integer", "minimum": 0 }
        }
    })
}

fn duration() -> Value {
    json!({
        "type": "string",
        "pattern": "^[0-9_]*\\.?[0-9]+ *(ns|us|µs|ms|s|m|min|h)$",
        "description": "a duration with its unit, e.g. \"200us\", \"60s\", \"1.5h\""
    })
}

fn dist() -> Value {
    json!({
        "description": "a duration, or a distribution of them",
        "anyOf": [
            duration(),
            {
                "type": "object",
                "additionalProperties": false,
                "required": ["dist"],
                "properties": {
                    "dist": { "enum": ["fixed", "uniform", "exponential"] },
                    "min": duration(), "max": duration(), "mean": duration()
                }
            }
        ]
    })
}

fn rate() -> Value {
    json!({ "type": "number", "exclusiveMinimum": 0, "description": "connections per second (at most 9 decimals)" })
}

fn ip() -> Value {
    json!({ "type": "string", "format": "ipv4" })
}

fn endpoint() -> Value {
    json!({ "type": "string", "pattern": "^[0-9.]+:[0-9]+$", "description": "\"IP:PORT\"" })
}

fn ports() -> Value {
    json!({ "type": "string", "pattern": "^ *[0-9]+[ -]+[0-9]+ *$", "description": "\"LOW HIGH\"" })
}
