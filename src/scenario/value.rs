//! Errors that point into the file ([`Ctx`]), and the readers of single values every table
//! uses: durations, addresses, port pairs, rates, latency distributions, one-of choices.
//! Each refusal names the key, what was given and what is allowed.

use super::ScenarioError;
use crate::profile::nearest;
use crate::time::Duration;
use crate::workload::{Dist, Rate};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;
use toml::Spanned;

/// The file being read: its name and text, to turn a span into a line and column.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    /// Line and column (both from 1) of byte `offset`.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, column)
    }

    pub(super) fn err(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ScenarioError {
        let (line, column) = self.position(span.start);
        ScenarioError {
            file: self.file.to_string(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A TOML syntax or shape error, at its position, with the nearest valid key named.
    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ScenarioError {
        let span = e.span().unwrap_or(0..0);
        let key = self.key_at(span.start);
        let (line, column) = self.position(span.start);
        ScenarioError {
            file: self.file.to_string(),
            line,
            column,
            key,
            message: with_suggestion(&e.message().trim().replace('\n', " ")),
        }
    }

    /// The key path at `offset`, read from the text: the enclosing table header and the key.
    fn key_at(&self, offset: usize) -> String {
        let before = &self.text[..offset.min(self.text.len())];
        let mut header = String::new();
        for line in before.lines() {
            let t = line.trim();
            if t.starts_with('[') && !t.contains('=') {
                header = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            }
        }
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let line = &self.text[line_start..line_end];
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string());
        match (header.is_empty(), key) {
            (_, Some(k)) if line.trim_start().starts_with('[') => k,
            (true, Some(k)) => k,
            (false, Some(k)) => format!("{header}.{k}"),
            (_, None) => header,
        }
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the nearest valid key named.
fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((given, rest)) = rest.split_once('`') else {
        return message.to_string();
    };
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match nearest(given, expected.iter().copied()) {
        Some(n) => format!("{message}; did you mean `{n}`?"),
        None => message.to_string(),
    }
}

pub(super) fn duration(
    ctx: &Ctx,
    v: &Spanned<String>,
    key: &str,
) -> Result<Duration, ScenarioError> {
    Duration::parse(v.get_ref())
        .map_err(|e| ctx.err(v.span(), key, format!("{:?}: {e}", v.get_ref())))
}

pub(super) fn positive_duration(
    ctx: &Ctx,
    v: &Spanned<String>,
    key: &str,
) -> Result<Duration, ScenarioError> {
    let d = duration(ctx, v, key)?;
    if d.0 == 0 {
        return Err(ctx.err(
            v.span(),
            key,
            format!("{:?}: must be greater than zero", v.get_ref()),
        ));
    }
    Ok(d)
}

pub(super) fn ip(ctx: &Ctx, v: &Spanned<String>, key: &str) -> Result<u32, ScenarioError> {
    v.get_ref().parse::<Ipv4Addr>().map(u32::from).map_err(|_| {
        ctx.err(
            v.span(),
            key,
            format!(
                "{:?} is not an IPv4 address (e.g. \"10.0.0.1\")",
                v.get_ref()
            ),
        )
    })
}

/// `"IP:PORT"`, port 1–65535.
pub(super) fn endpoint(
    ctx: &Ctx,
    v: &Spanned<String>,
    key: &str,
) -> Result<(u32, u16), ScenarioError> {
    let bad = || {
        ctx.err(
            v.span(),
            key,
            format!(
                "{:?} is not IPv4:PORT with a port 1–65535 (e.g. \"10.0.0.2:80\")",
                v.get_ref()
            ),
        )
    };
    let a: SocketAddrV4 = v.get_ref().parse().map_err(|_| bad())?;
    if a.port() == 0 {
        return Err(bad());
    }
    Ok((u32::from(*a.ip()), a.port()))
}

/// `"LOW HIGH"`, 1 ≤ LOW ≤ HIGH ≤ 65535.
pub(super) fn port_pair(
    ctx: &Ctx,
    v: &Spanned<String>,
    key: &str,
) -> Result<(u16, u16), ScenarioError> {
    let nums: Vec<Option<u16>> = v
        .get_ref()
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect();
    match nums[..] {
        [Some(a), Some(b)] if a >= 1 && a <= b => Ok((a, b)),
        _ => Err(ctx.err(
            v.span(),
            key,
            format!(
                "{:?}: expected \"LOW HIGH\" with 1 ≤ LOW ≤ HIGH ≤ 65535",
                v.get_ref()
            ),
        )),
    }
}

/// Connections per second, at most 9 decimals; zero only where `allow_zero`.
pub(super) fn rate(
    ctx: &Ctx,
    v: &Spanned<toml::Value>,
    key: &str,
    allow_zero: bool,
) -> Result<Rate, ScenarioError> {
    let text = match v.get_ref() {
        toml::Value::Integer(i) if *i >= 0 => i.to_string(),
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => format!("{f}"),
        _ => String::new(),
    };
    let r = Rate::parse_decimal(&text).filter(|r| allow_zero || r.num > 0);
    r.ok_or_else(|| {
        let what = if allow_zero {
            "a number ≥ 0"
        } else {
            "a number > 0"
        };
        ctx.err(
            v.span(),
            key,
            format!(
                "{}: expected {what} of connections per second (at most 9 decimals)",
                v.get_ref()
            ),
        )
    })
}

/// A latency: a duration, or `{ dist = "fixed" | "uniform" | "exponential", … }`.
pub(super) fn dist(ctx: &Ctx, v: &Spanned<toml::Value>, key: &str) -> Result<Dist, ScenarioError> {
    const ALLOWED: &str = "a duration (\"100us\"), { dist = \"uniform\", min = \"…\", max = \"…\" } or { dist = \"exponential\", mean = \"…\" }";
    let bad = |m: String| ctx.err(v.span(), key, m);
    let d = |s: Option<&toml::Value>, k: &str| -> Result<Duration, ScenarioError> {
        let s = s
            .and_then(toml::Value::as_str)
            .ok_or_else(|| bad(format!("missing `{k}`; expected {ALLOWED}")))?;
        Duration::parse(s).map_err(|e| bad(format!("`{k}` {s:?}: {e}")))
    };
    match v.get_ref() {
        toml::Value::String(s) => Duration::parse(s)
            .map(Dist::Fixed)
            .map_err(|e| bad(format!("{s:?}: {e}"))),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if !["dist", "min", "max", "mean"].contains(&k.as_str()) {
                    return Err(bad(format!("unknown key `{k}`; expected {ALLOWED}")));
                }
            }
            match t.get("dist").and_then(toml::Value::as_str) {
                Some("fixed") => Ok(Dist::Fixed(d(t.get("mean"), "mean")?)),
                Some("uniform") => {
                    let (a, b) = (d(t.get("min"), "min")?, d(t.get("max"), "max")?);
                    if a > b {
                        return Err(bad(format!("min {a} is above max {b}")));
                    }
                    Ok(Dist::Uniform(a, b))
                }
                Some("exponential") => Ok(Dist::Exponential(d(t.get("mean"), "mean")?)),
                other => Err(bad(format!(
                    "dist {other:?}: expected \"fixed\", \"uniform\" or \"exponential\""
                ))),
            }
        }
        other => Err(bad(format!("{other}: expected {ALLOWED}"))),
    }
}

/// One of `allowed`, with the nearest named when the value is none of them.
pub(super) fn one_of<'a>(
    ctx: &Ctx,
    v: &Spanned<String>,
    key: &str,
    allowed: &[&'a str],
) -> Result<&'a str, ScenarioError> {
    allowed
        .iter()
        .find(|a| **a == v.get_ref())
        .copied()
        .ok_or_else(|| {
            let hint = nearest(v.get_ref(), allowed.iter().copied())
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            ctx.err(
                v.span(),
                key,
                format!("{:?} is not one of {}{hint}", v.get_ref(), list(allowed)),
            )
        })
}

/// `"a", "b", "c"`.
pub(crate) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
