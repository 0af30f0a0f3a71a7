//! Runbook control: steps, confirmations, waits, time, vars, logging, errors, unknowns and
//! notifications.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, FnPtr, Map, NativeCallContext};
use serde_json::json;

use super::{CLUSTER, Kind, Overload, Param, Primitive, SITE, Ty, VMS};
use crate::script::convert;
use crate::script::error::{ErrorKind, ScriptError};
use crate::script::error::{StopReason, stop};
use crate::script::host::{Host, RhaiResult, script_error};
use crate::script::types::{Time, Unknown};
use crate::sync::Locked as _;

const MESSAGE: Param = Param::new("message", Ty::Value);

pub static PRIMITIVES: &[Primitive] = &[
    Primitive {
        name: "step",
        kind: Kind::Control,
        doc: "A journaled, resumable unit; on --resume a finished step returns its recorded result without running.",
        question: "",
        overloads: &[Overload {
            params: &[
                Param::new("name", Ty::Text),
                Param::new("body", Ty::Closure).shown("|| { ... }"),
            ],
            returns: "",
        }],
        register: step,
    },
    Primitive {
        name: "confirm",
        kind: Kind::Control,
        doc: "Ask the operator; --yes answers yes; a yes also covers the destructive acts of the current step.",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("question", Ty::Text)],
            returns: "bool",
        }],
        register: confirm,
    },
    Primitive {
        name: "wait_until",
        kind: Kind::Control,
        doc: "Poll a condition until true; times out with a clear error.",
        question: "",
        overloads: &[
            Overload {
                params: &[CONDITION],
                returns: "",
            },
            Overload {
                params: &[
                    CONDITION,
                    Param::new("options", Ty::Options(&["timeout", "every", "what"])),
                ],
                returns: "",
            },
        ],
        register: wait_until,
    },
    Primitive {
        name: "wait_synced",
        kind: Kind::Control,
        doc: "Wait until every mirrored volume of the cluster is synced; with #{home: SITE} only those of the VMs at home there.",
        question: "",
        overloads: &[
            Overload {
                params: &[CLUSTER],
                returns: "MirrorStatus",
            },
            Overload {
                params: &[
                    CLUSTER,
                    Param::new("options", Ty::Options(&["timeout", "home"])),
                ],
                returns: "MirrorStatus",
            },
        ],
        register: wait_synced,
    },
    Primitive {
        name: "wait_running",
        kind: Kind::Control,
        doc: "Wait until the VMs run on the site.",
        question: "",
        overloads: &[
            Overload {
                params: &[SITE, VMS],
                returns: "[Vm]",
            },
            Overload {
                params: &[SITE, VMS, TIMEOUT],
                returns: "[Vm]",
            },
        ],
        register: wait_running,
    },
    Primitive {
        name: "sleep",
        kind: Kind::Control,
        doc: "Pause (\"30s\", \"5m\" or seconds); Ctrl-C cuts it short.",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("duration", Ty::Duration)],
            returns: "",
        }],
        register: sleep,
    },
    Primitive {
        name: "run_id",
        kind: Kind::Control,
        doc: "This run's id (`20261203-095430-baab`; a nested run's is `<run id>.<n>`): the same when the run is resumed, so names made from it are found again.",
        question: "",
        overloads: &[Overload {
            params: &[],
            returns: "string",
        }],
        register: run_id,
    },
    Primitive {
        name: "record",
        kind: Kind::Control,
        doc: "The run's dated record: a title, rows `[label, text]`, and optionally `#{cluster, vms: [#{vm, rto, rpo, …}]}` (RTO and RPO in seconds; other keys become columns). Saved with the report beside the journal (JSON, text, HTML) and listed by `drbook runs`; a later call replaces it.",
        question: "",
        overloads: &[
            Overload {
                params: &[Param::new("title", Ty::Text), Param::new("rows", Ty::Value)],
                returns: "",
            },
            Overload {
                params: &[
                    Param::new("title", Ty::Text),
                    Param::new("rows", Ty::Value),
                    Param::new("facts", Ty::Map)
                        .shown("#{cluster: \"DR\", vms: [#{vm: \"web-1\", rto: 75, rpo: 40}]}"),
                ],
                returns: "",
            },
        ],
        register: record,
    },
    Primitive {
        name: "now",
        kind: Kind::Control,
        doc: "The current time.",
        question: "",
        overloads: &[Overload {
            params: &[],
            returns: "Time",
        }],
        register: now,
    },
    Primitive {
        name: "elapsed",
        kind: Kind::Control,
        doc: "Whole seconds since a time from now() (also as the text a resumed step gives back).",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("time", Ty::Value)],
            returns: "int",
        }],
        register: elapsed,
    },
    Primitive {
        name: "duration",
        kind: Kind::Control,
        doc: "Seconds in \"1h30m\"-style text (units d, h, m, s, ms).",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("text", Ty::Text)],
            returns: "int",
        }],
        register: duration,
    },
    Primitive {
        name: "vars",
        kind: Kind::Control,
        doc: "The run's vars (ARGS), declared and parsed before anything is done: kinds text, bool (true/yes/1/on…), int (min, max), duration (as seconds), list (comma-separated, no empty item), choice (of: […]), runbook (a file from the current directory, given back as its absolute path, or a shipped runbook's name; found before anything is done); fallbacks filled in; a var not declared or a value that cannot be meant is a usage error naming it.",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("declared", Ty::Map)
                .shown("#{name: #{kind, fallback, min, max, of, required, doc}, …}")],
            returns: "map",
        }],
        register: vars,
    },
    Primitive {
        name: "plan_mode",
        kind: Kind::Control,
        doc: "True under --plan.",
        question: "",
        overloads: &[Overload {
            params: &[],
            returns: "bool",
        }],
        register: plan_mode,
    },
    Primitive {
        name: "info",
        kind: Kind::Control,
        doc: "A log line.",
        question: "",
        overloads: ONE_MESSAGE,
        register: info,
    },
    Primitive {
        name: "warn",
        kind: Kind::Control,
        doc: "A warning line.",
        question: "",
        overloads: ONE_MESSAGE,
        register: warn,
    },
    Primitive {
        name: "fail",
        kind: Kind::Control,
        doc: "Stop the run with exit code 1 (not catchable).",
        question: "",
        overloads: ONE_MESSAGE,
        register: fail,
    },
    Primitive {
        name: "error",
        kind: Kind::Control,
        doc: "An Error of one of the documented kinds (\"unknown\", \"guard\", …) to throw, so callers decide on e.kind: throw error(\"guard\", \"site-a still answers\").",
        question: "",
        overloads: &[Overload {
            params: &[
                Param::new("kind", Ty::Text),
                Param::new("message", Ty::Text),
            ],
            returns: "Error",
        }],
        register: error,
    },
    Primitive {
        name: "is_unknown",
        kind: Kind::Control,
        doc: "Whether a value is an Unknown: something drbook could not read (a dark site, a failed or garbled answer). Comparing or negating an Unknown throws an \"unknown\" error.",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("value", Ty::Value)],
            returns: "bool",
        }],
        register: is_unknown,
    },
    Primitive {
        name: "require_known",
        kind: Kind::Control,
        doc: "The value itself, or, for an Unknown, an \"unknown\" error saying that `what` could not be read, where and what to do.",
        question: "",
        overloads: &[Overload {
            params: &[Param::new("value", Ty::Value), Param::new("what", Ty::Text)],
            returns: "value",
        }],
        register: require_known,
    },
    Primitive {
        name: "notify",
        kind: Kind::Control,
        doc: "Post a message to the configured webhook ([notify] webhook_url).",
        question: "",
        overloads: ONE_MESSAGE,
        register: notify,
    },
    Primitive {
        name: "notify_webhook",
        kind: Kind::Control,
        doc: "Post a JSON payload (a map) to a webhook URL.",
        question: "",
        overloads: &[Overload {
            params: &[
                Param::new("url", Ty::Text),
                Param::new("payload", Ty::Value),
            ],
            returns: "",
        }],
        register: notify_webhook,
    },
];

const CONDITION: Param = Param::new("condition", Ty::Closure).shown("|| cond");
const TIMEOUT: Param = Param::new("options", Ty::Options(&["timeout"]));
const ONE_MESSAGE: &[Overload] = &[Overload {
    params: &[MESSAGE],
    returns: "",
}];

fn step(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |ctx: NativeCallContext, name: &str, f: FnPtr| -> RhaiResult<Dynamic> {
            if let Some(recorded) = h.step_start(name)? {
                h.log(
                    "info",
                    &format!("step {name}: done in an earlier run, skipped"),
                );
                return convert::from_json(&recorded);
            }
            h.log("info", &format!("step {name}"));
            match f.call_within_context::<Dynamic>(&ctx, ()) {
                Ok(v) => {
                    h.step_end(name, Ok(&convert::to_json(&v)))?;
                    Ok(v)
                }
                Err(err) => {
                    let msg = crate::script::diagnostic::message_of(&err);
                    h.step_end(name, Err(&msg))?;
                    Err(err)
                }
            }
        },
    );
}

fn confirm(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |question: &str| h.confirm(question));
}

fn poll(
    p: &'static Primitive,
    h: &Arc<Host>,
    ctx: &NativeCallContext,
    condition: &FnPtr,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let options = p.options(opts)?;
    let timeout = options.duration("timeout", Duration::from_secs(30 * 60))?;
    let every = options.duration("every", h.poll_interval)?;
    let what = options
        .string("what")?
        .unwrap_or_else(|| "the condition".into());
    if h.plan_mode() {
        return Ok(Dynamic::TRUE);
    }
    let progress =
        crate::script::progress::Progress::start(&format!("waiting for {what}"), timeout);
    let started = std::time::Instant::now();
    loop {
        // Why the condition could not be told on this round, if it could not.
        let unknown = match condition.call_within_context::<Dynamic>(ctx, ()) {
            Ok(v) if v.is_bool() => {
                if v.as_bool().unwrap_or(false) {
                    progress.finish(&format!("{what}: done"));
                    return Ok(v);
                }
                None
            }
            Ok(v) => {
                return Err(script_error(format!(
                    "wait_until: the condition must return true or false, and it returned {} ({})",
                    crate::script::types::value_message(&v),
                    v.type_name()
                )));
            }
            // What could not be read is waited through like a false, and said.
            Err(err) => match crate::script::error::unknown_reason(&err) {
                Some(reason) => Some(reason),
                None => return Err(err),
            },
        };
        if started.elapsed() >= timeout {
            progress.finish(&format!("{what}: timed out"));
            let why = unknown.map_or_else(String::new, |r| format!("; last round: {r}"));
            return Err(ScriptError::new(
                ErrorKind::Timeout,
                format!(
                    "timed out after {} waiting for {what}{why}",
                    crate::duration::Human(timeout)
                ),
            )
            .into_eval());
        }
        progress.status(unknown.as_deref().unwrap_or("not yet"));
        h.block(&format!("waiting for {what}"), tokio::time::sleep(every))?;
    }
}

fn wait_until(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, poll, (ctx: NativeCallContext, condition: FnPtr));
}

fn synced(
    p: &'static Primitive,
    h: &Arc<Host>,
    cluster: &Dynamic,
    opts: &Map,
) -> RhaiResult<Dynamic> {
    let o = p.options(opts)?;
    let timeout = o.duration("timeout", Duration::from_secs(2 * 3600))?;
    let home = o.string("home")?;
    let cluster = convert::cluster(cluster)?;
    let dr = h.dr.clone();
    if h.plan_mode() {
        let status = h.read("mirror_status", async move {
            match home {
                None => dr.mirror_status(&cluster).await,
                Some(home) => dr.mirror_status_of(&cluster, &home).await,
            }
        })?;
        return Ok(Dynamic::from(status));
    }
    let progress = crate::script::progress::Progress::start(
        &format!("waiting for DR cluster {cluster} to sync"),
        timeout,
    );
    let poll = h.poll_interval;
    let status = h.read(p.name, async move {
        let show = |w: &crate::dr::WaitProgress<'_>| progress.status(&w.line());
        match home {
            None => dr.wait_synced(&cluster, timeout, poll, &show).await,
            Some(home) => {
                dr.wait_synced_of(&cluster, &home, timeout, poll, &show)
                    .await
            }
        }
    })?;
    Ok(Dynamic::from(status))
}

fn wait_synced(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, synced, (cluster: Dynamic));
}

fn running(
    p: &'static Primitive,
    h: &Arc<Host>,
    site: &Dynamic,
    vms: &Array,
    opts: &Map,
) -> RhaiResult<Array> {
    let timeout = p
        .options(opts)?
        .duration("timeout", Duration::from_secs(15 * 60))?;
    let (site, names) = (convert::site(site)?, convert::vms(vms)?);
    if h.plan_mode() {
        return Ok(names.into_iter().map(Dynamic::from).collect());
    }
    let dr = h.dr.clone();
    let vms = h.read(p.name, async move {
        dr.wait_running(&site, &names, timeout).await
    })?;
    Ok(vms.into_iter().map(Dynamic::from).collect())
}

fn wait_running(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, running, (site: Dynamic, vms: Array));
}

fn pause(h: &Host, d: &Dynamic) -> RhaiResult<()> {
    let d = convert::duration(d)?;
    if h.plan_mode() {
        return Ok(());
    }
    h.block("sleep", tokio::time::sleep(d))
}

fn sleep(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    // Rhai's own sleep(int) and sleep(float) would win over a Dynamic overload: they ignore
    // a negative pause and cannot be cut short by Ctrl-C. These take their place.
    let h1 = h.clone();
    p.register_fn(engine, move |d: Dynamic| pause(&h1, &d));
    let h2 = h.clone();
    p.register_fn(engine, move |n: rhai::INT| pause(&h2, &Dynamic::from(n)));
    let h3 = h.clone();
    p.register_fn(engine, move |f: rhai::FLOAT| pause(&h3, &Dynamic::from(f)));
}

fn run_id(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let id = h.run_id.clone();
    p.register_fn(engine, move || id.clone());
}

fn record(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h1 = h.clone();
    p.register_fn(engine, move |title: &str, rows: Dynamic| {
        keep_record(&h1, title, &rows, &Map::new())
    });
    let h2 = h.clone();
    p.register_fn(engine, move |title: &str, rows: Dynamic, facts: Map| {
        keep_record(&h2, title, &rows, &facts)
    });
}

fn keep_record(h: &Host, title: &str, rows: &Dynamic, facts: &Map) -> RhaiResult<()> {
    let record = crate::report::Record {
        title: title.to_string(),
        cluster: match facts.get("cluster") {
            None => None,
            Some(c) if c.is_unit() => None,
            Some(c) => Some(convert::cluster(c)?),
        },
        rows: record_rows(rows)?,
        vms: match facts.get("vms") {
            None => Vec::new(),
            Some(v) => record_vms(v)?,
        },
    };
    if let Some(k) = facts
        .keys()
        .find(|k| !matches!(k.as_str(), "cluster" | "vms"))
    {
        return Err(script_error(format!(
            "record: facts take `cluster` and `vms`, not `{k}` (put other figures in each VM's map or in a row)"
        )));
    }
    h.report.locked().record = Some(record);
    Ok(())
}

fn record_rows(rows: &Dynamic) -> RhaiResult<Vec<crate::report::Row>> {
    let Some(rows) = rows.read_lock::<Array>() else {
        return Err(script_error(format!(
            "record: rows must be an array of [label, text], not a {}",
            rows.type_name()
        )));
    };
    rows.iter()
        .enumerate()
        .map(|(n, row)| {
            let pair = row
                .read_lock::<Array>()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| {
                    script_error(format!("record: row {n} is not [label, text]: {row}"))
                })?;
            Ok(crate::report::Row {
                label: pair[0].to_string(),
                text: pair[1].to_string(),
            })
        })
        .collect()
}

fn record_vms(vms: &Dynamic) -> RhaiResult<Vec<crate::report::VmMeasure>> {
    let Some(vms) = vms.read_lock::<Array>() else {
        return Err(script_error("record: vms must be an array of maps"));
    };
    let seconds = |m: &Map, key: &str| -> RhaiResult<Option<i64>> {
        match m.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => v.as_int().map(Some).map_err(|_| {
                script_error(format!(
                    "record: a VM's {key} is whole seconds (an int), not {v}"
                ))
            }),
        }
    };
    vms.iter()
        .map(|v| {
            let m = v
                .read_lock::<Map>()
                .ok_or_else(|| script_error(format!("record: each of vms is a map, not {v}")))?;
            let vm = m
                .get("vm")
                .ok_or_else(|| script_error(format!("record: a VM's map needs `vm`: {v}")))?;
            let more = m
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "vm" | "rto" | "rpo"))
                .map(|(k, v)| (k.to_string(), convert::to_json(v)))
                .collect();
            Ok(crate::report::VmMeasure {
                vm: convert::vm(vm)?,
                rto_s: seconds(&m, "rto")?,
                rpo_s: seconds(&m, "rpo")?,
                more,
            })
        })
        .collect()
}

fn now(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(engine, || Time(chrono::Utc::now()));
}

fn elapsed(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(engine, |t: Time| (chrono::Utc::now() - t.0).num_seconds());
    // A step's `now()` comes back from the journal, on --resume, as its RFC 3339 text.
    p.register_fn(engine, |t: &str| -> RhaiResult<i64> {
        let at = chrono::DateTime::parse_from_rfc3339(t).map_err(|e| {
            script_error(format!(
                "elapsed: {t:?} is not a time from now() (nor one a resumed step gave back): {e}"
            ))
        })?;
        Ok((chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_seconds())
    });
}

fn duration(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(engine, |s: &str| -> RhaiResult<i64> {
        let d = crate::duration::parse(s).map_err(|e| script_error(e.to_string()))?;
        Ok(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    });
}

fn vars(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |spec: Map| -> RhaiResult<Map> {
        crate::script::vars::parse_all(&spec, &h.args, &crate::script::modules::named_runbook)
            .map_err(script_error)
    });
}

fn plan_mode(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move || h.plan_mode());
}

fn info(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |msg: Dynamic| h.log("info", &msg.to_string()));
}

fn warn(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |msg: Dynamic| h.log("warn", &msg.to_string()));
}

fn fail(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(engine, |msg: Dynamic| -> RhaiResult<()> {
        Err(stop(StopReason::Failed, &msg.to_string()))
    });
}

fn error(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(
        engine,
        |kind: &str, message: &str| -> RhaiResult<ScriptError> {
            let kind = ErrorKind::ALL
                .iter()
                .map(|(k, _)| *k)
                .find(|k| k.as_str() == kind)
                .ok_or_else(|| {
                    script_error(format!(
                        "error({kind:?}, …): no such kind (kinds: {})",
                        ErrorKind::ALL
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            Ok(ScriptError::new(kind, message))
        },
    );
}

fn is_unknown(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(engine, |v: Dynamic| v.is::<Unknown>());
}

fn require_known(p: &'static Primitive, engine: &mut Engine, _h: &Arc<Host>) {
    p.register_fn(engine, |v: Dynamic, what: &str| -> RhaiResult<Dynamic> {
        match v.read_lock::<Unknown>() {
            None => Ok(v.clone()),
            Some(u) => Err(u.refuse_for(what)),
        }
    });
}

/// Posts to a webhook (nothing under --plan); a failure is the script's to catch.
fn post(h: &Host, url: &str, payload: serde_json::Value) -> RhaiResult<()> {
    if h.plan_mode() {
        return Ok(());
    }
    let url = url.to_string();
    h.block("notify", async move {
        crate::http::webhook::post(&url, &payload).await
    })?
    .map_err(|e| script_error(e.to_string()))
}

fn notify(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(engine, move |msg: Dynamic| -> RhaiResult<()> {
        let Some(url) = h.webhook.clone() else {
            h.log(
                "warn",
                &format!("notify: no [notify] webhook_url configured; message: {msg}"),
            );
            return Ok(());
        };
        post(&h, url.expose(), json!({"text": msg.to_string()}))
    });
}

fn notify_webhook(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |url: &str, payload: Dynamic| -> RhaiResult<()> {
            post(&h, url, convert::to_json(&payload))
        },
    );
}
