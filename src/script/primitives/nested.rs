//! Nested runs: `run()` runs another runbook in an engine of its own. The one import cycle
//! the runtime keeps is here: the engine registers `run()`, and `run()` builds an engine.

use std::sync::Arc;

use rhai::{Dynamic, Engine, Map};

use super::{Kind, Overload, Param, Primitive, Ty};
use crate::script::convert;
use crate::script::error::Stop;
use crate::script::host::{Host, RhaiResult, script_error};
use crate::sync::Locked as _;

const RUNBOOK: Param = Param::new("runbook", Ty::Runbook);

pub static PRIMITIVES: &[Primitive] = &[Primitive {
    name: "run",
    kind: Kind::Control,
    doc: "Run another runbook (a file next to this script, else a shipped one) as a nested run with its own journal; returns its report. Vars reach its ARGS as the values given (arrays, maps, numbers, bools; not functions). A nested run resumes with its parent: on --resume its finished steps and calls are not repeated.",
    question: "",
    overloads: &[
        Overload {
            params: &[RUNBOOK],
            returns: "RunReport",
        },
        Overload {
            params: &[RUNBOOK, Param::new("vars", Ty::Map).shown("#{vars}")],
            returns: "RunReport",
        },
    ],
    register: run,
}];

/// How deep runbooks may nest `run()`.
const MAX_NESTED_RUNS: usize = 8;

fn run(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(
        p,
        engine,
        h,
        |_, h, runbook: &&str, vars| run_nested(h, runbook, vars),
        (runbook: &str)
    );
}
fn run_nested(h: &Arc<Host>, runbook: &str, vars: &Map) -> RhaiResult<Dynamic> {
    if h.depth >= MAX_NESTED_RUNS {
        return Err(script_error(format!(
            "run({runbook:?}): runbooks nested {MAX_NESTED_RUNS} deep — does a runbook run itself?"
        )));
    }
    let found = crate::script::modules::runbook(&h.script_path, runbook)
        .map_err(|e| script_error(format!("run({runbook:?}): {e}")))?;
    let (path, source, shipped, name) = (found.path, found.source, found.shipped, found.name);
    // Vars go through as the values they are; a function cannot be journaled nor called
    // in the nested run's engine.
    let mut args = Map::new();
    for (k, v) in vars {
        let v = convert::plain_data(v).ok_or_else(|| {
            script_error(format!(
                "run({runbook:?}): var {k} holds a function; pass data, not closures"
            ))
        })?;
        args.insert(k.clone(), v);
    }
    let child = Arc::new(h.child(path.clone(), args)?);
    let engine = crate::script::engine::build(&child, &path, child.stdlib_dir.clone());
    let mut scope = crate::script::engine::scope(&child);
    // Errors and logs name the file the source came from: the shipped one is `scripts/…`.
    let file = if shipped {
        format!("scripts/{name}")
    } else {
        path.display().to_string()
    };
    let ast = engine.compile_with_scope(&scope, &source).map_err(|e| {
        script_error(format!(
            "run({runbook:?}): {}",
            crate::script::diagnostic::Diagnostic::from_parse(&file, &source, &e).one_line()
        ))
    })?;
    let started = std::time::Instant::now();
    h.log(
        "info",
        &format!(
            "run {file} (nested run {}{})",
            child.run_id,
            if child.resumed() { ", resumed" } else { "" }
        ),
    );
    let result = engine.run_ast_with_scope(&mut scope, &ast);
    let ok = result.is_ok();
    child.finish(ok, u8::from(!ok));
    // The nested run's planned acts belong to the outer plan.
    let planned = std::mem::take(&mut *child.planned.locked());
    h.planned.locked().extend(planned);
    let mut report = child.report.locked().clone();
    report.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.ok = ok;
    // The outer run's report shows what the nested run did, each step under its runbook.
    {
        let mut outer = h.report.locked();
        let label = runbook.strip_suffix(".rhai").unwrap_or(runbook);
        outer
            .steps
            .extend(report.steps.iter().cloned().map(|mut s| {
                s.name = format!("{label} › {}", s.name);
                s
            }));
        outer.actions.extend(report.actions.iter().cloned());
    }
    match result {
        Ok(()) => Ok(Dynamic::from(report)),
        Err(err) => {
            let d = crate::script::diagnostic::Diagnostic::from_eval(&file, &source, &err);
            // A refusal, an abort or fail() ends the outer run too; any other error is the
            // outer script's to catch.
            if let Some(stop) = Stop::of(&err) {
                let at = d.one_line();
                let at = at.split(": ").next().unwrap_or(&file);
                return Err(
                    Stop::new(stop.reason, format!("in {at}: {}", stop.message)).into_eval()
                );
            }
            let inner = crate::script::error::innermost(&err);
            // The nested run's kind stays: the caller decides on it as if it had called the
            // primitive itself.
            // The inner error's own words, once; where it came from is in the trace.
            let label = runbook.strip_suffix(".rhai").unwrap_or(runbook);
            let message = format!("{label}: {}", d.message);
            let mut e = match inner {
                rhai::EvalAltResult::ErrorRuntime(v, _) => v
                    .read_lock::<crate::script::error::ScriptError>()
                    .map_or_else(
                        || {
                            crate::script::error::ScriptError::new(
                                crate::script::error::ErrorKind::Script,
                                "",
                            )
                        },
                        |e| e.clone(),
                    ),
                _ => crate::script::error::ScriptError::new(
                    crate::script::error::ErrorKind::Script,
                    "",
                ),
            };
            e.message = message;
            Err(e.into_eval())
        }
    }
}
