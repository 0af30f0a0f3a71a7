//! `drbook run FILE`: a runbook, once — with plan mode, confirmations, a journal, resume and a
//! report at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use rhai::EvalAltResult;

use super::output::OutputFormat;
use crate::config::Config;
use crate::dr::Dr;
use crate::error::{Error, exit};
use crate::script::diagnostic::Diagnostic;
use crate::script::error::{Stop, StopReason};
use crate::script::host::{Confirmer, Host, HostOptions, Mode, PlannedAction};
use crate::script::journal::{Journal, Replay, new_run_id};
use crate::script::{engine, journal};
use crate::sync::Locked as _;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The runbook to run (a .rhai file, or a shipped runbook's name)
    #[arg(value_name = "FILE", add = clap_complete::engine::ArgValueCompleter::new(super::completions::runbooks))]
    pub script: PathBuf,

    /// A value for the script's ARGS map (repeatable): --var cluster=DR
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,

    /// Answer yes to every confirmation (destructive acts included)
    #[arg(long)]
    pub yes: bool,

    /// Dry run: reads happen, mutations are only listed, nothing is asked
    #[arg(long, conflicts_with = "resume")]
    pub plan: bool,

    /// Continue an interrupted run: finished steps and calls are taken from its journal
    #[arg(long, value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(super::completions::run_ids))]
    pub resume: Option<String>,

    #[command(flatten)]
    pub stdlib: super::StdlibDir,

    #[command(flatten)]
    pub state: super::StateDir,
}

/// A runbook file, or a shipped one by name when no such file exists: its source, the name
/// errors use, and the path imports and `run()` resolve against.
fn load_script(path: &Path) -> Result<(String, String, PathBuf), Error> {
    match std::fs::read_to_string(path) {
        Ok(source) => Ok((source, path.display().to_string(), path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // `scripts/failover.rhai` (as logs and journals name a shipped runbook) is the
            // shipped `failover` when no such file is here.
            let given = path.to_string_lossy();
            let name = given.strip_prefix("scripts/").unwrap_or(&given);
            let shipped = (!name.contains('/'))
                .then(|| crate::script::modules::shipped(name))
                .flatten();
            match shipped {
                Some(source) => {
                    let file = format!(
                        "scripts/{}.rhai",
                        name.strip_suffix(".rhai").unwrap_or(name)
                    );
                    Ok((source.to_string(), file.clone(), PathBuf::from(file)))
                }
                None => Err(Error::Usage(format!(
                    "no runbook {name:?}: not a file here, nor a shipped runbook ({})",
                    crate::script::modules::shipped_names()
                ))),
            }
        }
        Err(e) => Err(Error::Usage(format!("cannot read {}: {e}", path.display()))),
    }
}

fn parse_vars(vars: &[String]) -> Result<BTreeMap<String, String>, Error> {
    vars.iter()
        .map(|v| {
            v.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| Error::Usage(format!("--var {v:?}: expected KEY=VALUE")))
        })
        .collect()
}

pub async fn run(
    config: &Config,
    args: &RunArgs,
    output: OutputFormat,
    config_flag: Option<&Path>,
) -> Result<ExitCode, Error> {
    let mut vars = parse_vars(&args.vars)?;
    let state_dir = args.state.resolve(config);
    let (source, file, script_path) = load_script(&args.script)?;
    let (run_id, replay) = match &args.resume {
        Some(id) => {
            let replay =
                Replay::for_run(&state_dir, id).map_err(|e| Error::Usage(e.to_string()))?;
            if let Some(original) = &replay.script
                && original != &file
            {
                return Err(Error::Usage(format!(
                    "run {id} was a run of {original}, not {file}: resume it with the same script"
                )));
            }
            // The original run's variables hold unless given again.
            for (k, v) in &replay.args {
                vars.entry(k.clone()).or_insert_with(|| v.clone());
            }
            (id.clone(), Some(replay))
        }
        None => (new_run_id(), None),
    };
    let dr = Dr::new(config)?.with_reporter(crate::script::progress::WaitLog::reporter());
    let mode = if args.plan { Mode::Plan } else { Mode::Live };
    let host = Host::new(
        dr,
        tokio::runtime::Handle::current(),
        config,
        HostOptions {
            mode,
            args: vars,
            confirmer: if args.plan {
                Confirmer::Yes
            } else {
                Confirmer::for_run(args.yes)
            },
            state_dir: state_dir.clone(),
            locks: args.state.locks(config)?,
            run_id: run_id.clone(),
            replay,
            script: file.clone(),
            script_path: script_path.clone(),
            stdlib_dir: args.stdlib.stdlib.clone(),
        },
    )
    .map_err(|e| Error::Failed(e.to_string()))?;
    let host = Arc::new(host);
    let engine = engine::build(&host, &script_path, args.stdlib.stdlib.clone());
    let mut scope = engine::scope(&host);
    let ast = match engine.compile_with_scope(&scope, &source) {
        Ok(ast) => ast,
        Err(e) => {
            eprint!("{}", Diagnostic::from_parse(&file, &source, &e).render());
            host.finish(false, exit::USAGE);
            return Ok(ExitCode::from(exit::USAGE));
        }
    };
    if mode == Mode::Live {
        eprintln!(
            "drbook: run {run_id} of {file} (journal {})",
            Journal::run_dir(&state_dir, &run_id)
                .join("journal.jsonl")
                .display()
        );
    }
    let ctrl_c = tokio::spawn(signals(host.interrupts.clone()));
    let runner = host.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let result = engine.run_ast_with_scope(&mut scope, &ast);
        (result, started.elapsed())
    })
    .await;
    ctrl_c.abort();
    let (result, took) =
        outcome.map_err(|e| Error::Failed(format!("the script thread failed: {e}")))?;
    let (mut code, message) = match &result {
        Ok(()) => (exit::OK, None),
        Err(err) => {
            let (code, text) = classify(err);
            let mut d = Diagnostic::from_eval(&file, &source, err);
            d.message = text;
            (code, Some(d))
        }
    };
    // A run a signal stopped ends with the signal's code, whatever error it stopped at.
    if code != exit::OK && runner.interrupts.count() > 0 {
        code = if runner.interrupts.terminated() {
            exit::TERMINATED
        } else {
            exit::INTERRUPTED
        };
    }
    runner.finish(code == exit::OK, code);
    let report = {
        let mut r = runner.report.locked();
        r.took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        r.ok = code == exit::OK;
        r.exit = code;
        if let Some(d) = &message {
            r.errors.push(d.one_line());
        }
        r.clone()
    };
    if let Some(d) = &message {
        eprint!("{}", d.render());
    }
    if mode == Mode::Plan {
        let planned = runner.planned.locked().clone();
        print_plan(&planned, output, code == exit::OK);
    } else {
        save_report(&state_dir, &run_id, &report);
        match output {
            OutputFormat::Json => {
                crate::term::line(&serde_json::to_string_pretty(&report).unwrap_or_default());
            }
            OutputFormat::Text => crate::term::line(&report.render()),
        }
        // Only when a resume would skip something: else running it again is the same.
        let progress = report.steps.iter().any(|s| s.ok) || !report.actions.is_empty();
        if code != exit::OK && code != exit::USAGE && progress {
            eprintln!(
                "drbook: to continue this run after fixing the cause: {}",
                resume_command(args, config_flag, &run_id)
            );
        }
    }
    Ok(ExitCode::from(code))
}

/// SIGINT and SIGTERM, until the run ends: the first cancels the current wait or read (a
/// mutation under way finishes and is journaled), the next aborts the run.
async fn signals(interrupts: Arc<crate::script::host::Interrupts>) {
    let say = |interrupts: &crate::script::host::Interrupts, what: &str| {
        if interrupts.aborted() {
            crate::term::eline(&format!("\ndrbook: {what} again: aborting the run"));
        } else {
            crate::term::eline(&format!(
                "\ndrbook: {what} — the current wait is cancelled and the run stops after the act under way (if any) is journaled; {what} again aborts"
            ));
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() {
                        return;
                    }
                    interrupts.signal();
                    say(&interrupts, "interrupted");
                }
                Some(()) = term.recv() => {
                    interrupts.terminate();
                    say(&interrupts, "SIGTERM");
                }
            }
        }
    }
    #[cfg(not(unix))]
    while tokio::signal::ctrl_c().await.is_ok() {
        interrupts.signal();
        say(&interrupts, "interrupted");
    }
}

/// The command that resumes this run, as the operator would type it: the runbook as given
/// (a shipped one by name), the same `-c` and `--state-dir` when they were given.
fn resume_command(args: &RunArgs, config_flag: Option<&Path>, run_id: &str) -> String {
    let mut words = vec!["drbook".to_string()];
    if let Some(c) = config_flag {
        words.extend(["-c".to_string(), shell_word(&c.display().to_string())]);
    }
    words.extend([
        "run".to_string(),
        shell_word(&args.script.display().to_string()),
    ]);
    if let Some(dir) = &args.state.state_dir {
        words.extend([
            "--state-dir".to_string(),
            shell_word(&dir.display().to_string()),
        ]);
    }
    words.extend(["--resume".to_string(), run_id.to_string()]);
    words.join(" ")
}

/// A word as a shell reads it back: quoted when it holds anything but plain characters.
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,".contains(c))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The exit code and the words of a script's end.
pub(super) fn classify(err: &EvalAltResult) -> (u8, String) {
    if let Some(stop) = Stop::of(err) {
        let code = match stop.reason {
            StopReason::Refused => exit::REFUSED,
            StopReason::Interrupted => exit::INTERRUPTED,
            StopReason::Failed => exit::FAILURE,
        };
        return (code, stop.message);
    }
    let inner = crate::script::error::innermost(err);
    if let EvalAltResult::ErrorTooManyOperations(_) = inner {
        return (
            exit::FAILURE,
            format!(
                "the script ran more than {} operations: a loop that never ends?",
                engine::MAX_OPERATIONS
            ),
        );
    }
    (exit::FAILURE, crate::script::diagnostic::message_of(inner))
}

/// Saves the report beside the journal (JSON, text, HTML); a failure to is a warning, not
/// the run's failure: what the run did is in its journal either way.
pub(super) fn save_report(state_dir: &Path, run: &str, report: &crate::report::RunReport) {
    let dir = journal::Journal::run_dir(state_dir, run);
    if let Err(e) = crate::report::saved::save(&dir, report) {
        crate::term::eline(&format!("warning: {e}"));
    }
}

/// The plan: what would run, in order, per site (like `terraform plan`).
fn print_plan(planned: &[PlannedAction], output: OutputFormat, complete: bool) {
    if output == OutputFormat::Json {
        let doc = serde_json::json!({ "plan": planned, "complete": complete });
        crate::term::line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    if !complete {
        // The run stopped: what follows the error was never planned.
        crate::term::line(&format!(
            "plan: incomplete — the runbook stopped at the error above after planning {} action(s){}",
            planned.len(),
            if planned.is_empty() { "" } else { ":" }
        ));
        if planned.is_empty() {
            return;
        }
    } else if planned.is_empty() {
        crate::term::line("plan: no changes — this runbook would only read.");
        return;
    }
    if complete {
        crate::term::line(&format!(
            "plan: {} action(s) would run, in this order:",
            planned.len()
        ));
    }
    for (i, a) in planned.iter().enumerate() {
        let site = a.site.as_deref().unwrap_or("-");
        let mark = if a.kind == "destructive" { "!" } else { "~" };
        crate::term::line(&format!(
            "  {:>3}. {mark} {site:<10} {}({})",
            i + 1,
            a.primitive,
            crate::script::host::short_args(&a.args)
        ));
    }
    let mut per_site: BTreeMap<&str, usize> = BTreeMap::new();
    for a in planned {
        *per_site
            .entry(a.site.as_deref().unwrap_or("-"))
            .or_default() += 1;
    }
    let summary: Vec<String> = per_site.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    crate::term::line(&format!(
        "per site: {}    (! destructive, ~ mutate)",
        summary.join(", ")
    ));
}
