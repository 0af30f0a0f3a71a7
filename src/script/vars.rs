//! A runbook's vars, declared and checked before it does anything: `vars(#{...})` takes the
//! declaration and the run's `ARGS` (strings from `--var`, or values a calling runbook gave
//! to `run()`), and returns them parsed — numbers as numbers, durations as seconds, yes/no
//! as booleans, comma lists as arrays — with the fallbacks (defaults) filled in. A var the runbook does
//! not declare, or a value it cannot take, is an error naming the var, before any mutation.

use rhai::{Array, Dynamic, Map};

/// What a var holds.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Any non-empty text.
    Text,
    /// `true`/`false` (also yes/no, on/off, 1/0).
    Bool,
    /// A whole number, within `min`..=`max` when given.
    Int { min: Option<i64>, max: Option<i64> },
    /// `30s`, `5m`, `1h30m` or whole seconds: returned as seconds.
    Duration { min: Option<i64> },
    /// Comma-separated items (no empty one), or an array: returned as an array.
    List,
    /// One of the listed words.
    Choice(Vec<String>),
    /// A runbook: a file from the current directory (returned as its absolute path, so that
    /// `run()` finds it from any script), or a shipped one's name.
    Runbook,
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Self::Text => "text".into(),
            Self::Bool => "true or false".into(),
            Self::Int { min, max } => match (min, max) {
                (Some(a), Some(b)) => format!("a whole number from {a} to {b}"),
                (Some(1), None) => "a positive whole number".into(),
                (Some(a), None) => format!("a whole number of at least {a}"),
                (None, Some(b)) => format!("a whole number of at most {b}"),
                (None, None) => "a whole number".into(),
            },
            Self::Duration { .. } => "a duration such as 30s, 15m or 1h30m".into(),
            Self::List => "a comma-separated list with no empty item".into(),
            Self::Choice(of) => format!("one of {}", of.join(", ")),
            Self::Runbook => {
                "a runbook: a .rhai file (from the current directory) or a shipped runbook's name"
                    .into()
            }
        }
    }
}

/// One declared var.
#[derive(Debug, Clone)]
struct Var {
    name: String,
    kind: Kind,
    default: Option<Dynamic>,
    required: bool,
}

/// Reads a declaration: `#{name: #{kind: "int", min: 1, fallback: 4}, other: "bool", …}` (a
/// kind alone may be given as a string).
fn declared(spec: &Map) -> Result<Vec<Var>, String> {
    let mut out = Vec::new();
    for (name, decl) in spec {
        let (kind_name, opts) = if decl.is_string() {
            (decl.clone().into_string().unwrap_or_default(), Map::new())
        } else if let Some(m) = decl.read_lock::<Map>() {
            let kind = m
                .get("kind")
                .and_then(|k| k.clone().into_string().ok())
                .ok_or_else(|| format!("vars: {name} needs a kind (\"text\", \"bool\", \"int\", \"duration\", \"list\" or \"choice\")"))?;
            (kind, m.clone())
        } else {
            return Err(format!(
                "vars: {name} must be declared with a kind, e.g. #{{kind: \"int\", min: 1}}"
            ));
        };
        for key in opts.keys() {
            if !["kind", "min", "max", "of", "fallback", "required", "doc"].contains(&key.as_str())
            {
                return Err(format!(
                    "vars: {name}: unknown key {key:?} (keys: kind, min, max, of, fallback, required, doc)"
                ));
            }
        }
        let int = |key: &str| -> Result<Option<i64>, String> {
            opts.get(key)
                .map(|v| {
                    v.as_int()
                        .map_err(|_| format!("vars: {name}: {key} must be a whole number"))
                })
                .transpose()
        };
        let kind = match kind_name.as_str() {
            "text" => Kind::Text,
            "bool" => Kind::Bool,
            "int" => Kind::Int {
                min: int("min")?,
                max: int("max")?,
            },
            "duration" => Kind::Duration { min: int("min")? },
            "list" => Kind::List,
            "runbook" => Kind::Runbook,
            "choice" => {
                let of: Vec<String> = opts
                    .get("of")
                    .and_then(|v| v.read_lock::<Array>().map(|a| a.clone()))
                    .map(|a| a.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                if of.is_empty() {
                    return Err(format!("vars: {name} is a choice and needs of: [\"…\", …]"));
                }
                Kind::Choice(of)
            }
            other => {
                return Err(format!(
                    "vars: {name}: no kind {other:?} (kinds: text, bool, int, duration, list, choice)"
                ));
            }
        };
        let var = Var {
            name: name.to_string(),
            kind,
            default: opts.get("fallback").cloned().filter(|d| !d.is_unit()),
            required: opts
                .get("required")
                .is_some_and(|r| r.as_bool().unwrap_or(false)),
        };
        // A default that does not parse is the runbook's own mistake: say so at once (a runbook
        // default is looked for when it is filled in).
        if let Some(d) = &var.default {
            let _ = parse(&var, d, &|name| Ok(name.to_string()))
                .map_err(|e| format!("vars: the fallback of {e}"))?;
        }
        out.push(var);
    }
    Ok(out)
}

/// `--var name=value`, as errors show it.
fn shown(name: &str, value: &Dynamic) -> String {
    if value.is_string() {
        format!("--var {name}={value}")
    } else {
        format!("var {name} ({value})")
    }
}

/// Where a runbook is (a `runbook` var becomes it), or why it cannot be found.
pub type Runbooks<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// One value parsed as its var's kind.
fn parse(var: &Var, value: &Dynamic, runbooks: Runbooks<'_>) -> Result<Dynamic, String> {
    let bad = || format!("{} is not {}", shown(&var.name, value), var.kind.describe());
    let text = value.is_string().then(|| {
        let s = value.clone().into_string().unwrap_or_default();
        s.trim().to_string()
    });
    match &var.kind {
        Kind::Text => match text {
            Some(t) if !t.is_empty() => Ok(t.into()),
            _ => Err(bad()),
        },
        Kind::Bool => {
            if let Ok(b) = value.as_bool() {
                return Ok(b.into());
            }
            match text.as_deref().map(str::to_lowercase).as_deref() {
                Some("true" | "yes" | "1" | "on") => Ok(true.into()),
                Some("false" | "no" | "0" | "off") => Ok(false.into()),
                _ => Err(bad()),
            }
        }
        Kind::Int { min, max } => {
            let n = match (&text, value.as_int()) {
                (_, Ok(n)) => n,
                (Some(t), _) => t.parse::<i64>().map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return Err(bad());
            }
            Ok(n.into())
        }
        Kind::Duration { min } => {
            let secs = match (&text, value.as_int()) {
                (_, Ok(n)) if n >= 0 => n,
                (Some(t), _) => crate::duration::parse(t)
                    .ok()
                    .and_then(|d| i64::try_from(d.as_secs()).ok())
                    .ok_or_else(bad)?,
                _ => return Err(bad()),
            };
            if min.is_some_and(|m| secs < m) {
                return Err(format!(
                    "{} is shorter than {}s, the least this runbook takes",
                    shown(&var.name, value),
                    min.unwrap_or_default()
                ));
            }
            Ok(secs.into())
        }
        Kind::List => {
            if let Some(items) = value.read_lock::<Array>() {
                if items.is_empty() {
                    return Err(bad());
                }
                return Ok(Dynamic::from_array(items.clone()));
            }
            let t = text.ok_or_else(bad)?;
            let items: Vec<&str> = t.split(',').map(str::trim).collect();
            if items.iter().any(|i| i.is_empty()) {
                return Err(bad());
            }
            Ok(Dynamic::from_array(
                items
                    .into_iter()
                    .map(|i| Dynamic::from(i.to_string()))
                    .collect(),
            ))
        }
        Kind::Choice(of) => match text {
            Some(t) if of.contains(&t) => Ok(t.into()),
            _ => Err(bad()),
        },
        Kind::Runbook => match text {
            Some(t) if !t.is_empty() => match runbooks(&t) {
                Ok(found) => Ok(found.into()),
                Err(why) => Err(format!("{}: {why}", shown(&var.name, value))),
            },
            _ => Err(bad()),
        },
    }
}

/// The run's vars parsed against the declaration: every given var parsed, every default
/// filled in, a var neither given nor defaulted left out (so `"x" in vars` tells).
pub fn parse_all(spec: &Map, args: &Map, runbooks: Runbooks<'_>) -> Result<Map, String> {
    let vars = declared(spec)?;
    let mut out = Map::new();
    for (name, value) in args {
        let Some(var) = vars.iter().find(|v| v.name == name.as_str()) else {
            let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
            let known: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
            let close = crate::suggest::closest(name, &known);
            return Err(format!(
                "{}: this runbook takes no such var{} (its vars: {})",
                shown(name, value),
                if close.is_empty() {
                    String::new()
                } else {
                    format!("; did you mean {}?", close.join(" or "))
                },
                names.join(", ")
            ));
        };
        out.insert(name.clone(), parse(var, value, runbooks)?);
    }
    for var in &vars {
        if out.contains_key(var.name.as_str()) {
            continue;
        }
        match &var.default {
            Some(d) => {
                out.insert(var.name.as_str().into(), parse(var, d, runbooks)?);
            }
            None if var.required => {
                return Err(format!(
                    "this runbook needs --var {}=… ({})",
                    var.name,
                    var.kind.describe()
                ));
            }
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Map {
        let engine = rhai::Engine::new();
        engine
            .eval::<Map>(
                r#"#{
                    cluster: "text",
                    force: #{kind: "bool", fallback: false},
                    concurrency: #{kind: "int", min: 1},
                    timeout: #{kind: "duration", fallback: "15m"},
                    groups: "list",
                    rest: #{kind: "choice", of: ["start", "leave"], fallback: "start"},
                    vm: #{kind: "text", required: true},
                }"#,
            )
            .unwrap()
    }

    /// With one runbook that exists, `checks`.
    fn parse_all_of(spec: &Map, args: &Map) -> Result<Map, String> {
        parse_all(spec, args, &|name: &str| {
            if name == "checks" {
                Ok("/site/checks.rhai".to_string())
            } else {
                Err(format!("no runbook {name}"))
            }
        })
    }

    #[test]
    fn a_runbook_var_is_found_before_anything_is_done() {
        let spec: Map = [("verify".into(), Dynamic::from("runbook"))]
            .into_iter()
            .collect();
        let out = parse_all_of(&spec, &args(&[("verify", "checks")])).unwrap();
        assert_eq!(out["verify"].to_string(), "/site/checks.rhai");
        let e = parse_all_of(&spec, &args(&[("verify", "chekcs")])).unwrap_err();
        assert!(
            e.contains("verify") && e.contains("no runbook chekcs"),
            "{e}"
        );
    }

    fn args(pairs: &[(&str, &str)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), Dynamic::from((*v).to_string())))
            .collect()
    }

    #[test]
    fn strings_from_the_command_line_become_values_and_defaults_fill_in() {
        let out = parse_all_of(
            &spec(),
            &args(&[
                ("vm", "dr-centos-1"),
                ("concurrency", "16"),
                ("force", "yes"),
                ("groups", "tier=db, web-*"),
            ]),
        )
        .unwrap();
        assert_eq!(out["concurrency"].as_int(), Ok(16));
        assert_eq!(out["force"].as_bool(), Ok(true));
        assert_eq!(out["timeout"].as_int(), Ok(900));
        assert_eq!(out["rest"].to_string(), "start");
        assert_eq!(out["groups"].to_string(), r#"["tier=db", "web-*"]"#);
        assert!(!out.contains_key("cluster"), "neither given nor defaulted");
    }

    #[test]
    fn what_cannot_be_meant_is_an_error_naming_the_var() {
        let err = |pairs: &[(&str, &str)]| {
            let mut all = vec![("vm", "x")];
            all.extend_from_slice(pairs);
            parse_all_of(&spec(), &args(&all)).unwrap_err()
        };
        assert_eq!(
            err(&[("concurrency", "banana")]),
            "--var concurrency=banana is not a positive whole number"
        );
        assert_eq!(
            err(&[("concurrency", "0")]),
            "--var concurrency=0 is not a positive whole number"
        );
        assert!(
            err(&[("timeout", "banana")]).starts_with("--var timeout=banana is not a duration")
        );
        assert!(err(&[("groups", ",,,")]).contains("no empty item"));
        assert!(err(&[("rest", "later")]).contains("one of start, leave"));
        assert!(err(&[("force", "maybe")]).contains("true or false"));
        let typo = err(&[("concurency", "16")]);
        assert!(
            typo.starts_with(
                "--var concurency=16: this runbook takes no such var; did you mean concurrency?"
            ),
            "{typo}"
        );
        let missing = parse_all_of(&spec(), &Map::new()).unwrap_err();
        assert!(
            missing.starts_with("this runbook needs --var vm="),
            "{missing}"
        );
    }

    #[test]
    fn values_a_calling_runbook_gives_pass_as_they_are() {
        let mut given = args(&[("vm", "x")]);
        given.insert("concurrency".into(), Dynamic::from(8_i64));
        given.insert("force".into(), Dynamic::TRUE);
        let groups: Array = vec![Dynamic::from(Map::new())];
        given.insert("groups".into(), Dynamic::from_array(groups));
        let out = parse_all_of(&spec(), &given).unwrap();
        assert_eq!(out["concurrency"].as_int(), Ok(8));
        assert!(out["groups"].is_array());
    }
}
