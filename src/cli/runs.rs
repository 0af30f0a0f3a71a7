//! `drbook runs`: the past runs under the state directory, newest first — when, which
//! runbook, which DR cluster, how it ended, the worst RTO it measured. A run killed before
//! its end has a journal and no report: it is listed as not ended, with how to finish it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::output::{OutputFormat, table};
use crate::config::Config;
use crate::duration::Human;
use crate::error::Error;
use crate::report::RunReport;
use crate::script::journal::{Entry, Journal};

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Only runs of this runbook (`test-failover`, `failover`, a script's file name)
    #[arg(long, value_name = "NAME")]
    pub runbook: Option<String>,

    /// Only the newest N runs
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,

    #[command(flatten)]
    pub state: super::StateDir,
}

/// One run as listed.
#[derive(Debug, Serialize)]
pub(super) struct Listed {
    pub run: String,
    pub started: Option<DateTime<Utc>>,
    pub runbook: String,
    pub cluster: Option<String>,
    /// `ok`, `failed`, or `not ended` (no report: still running, or killed).
    pub outcome: &'static str,
    pub exit: Option<u8>,
    pub rto_s: Option<i64>,
    #[serde(skip)]
    pub report: Option<RunReport>,
}

/// The state directory this invocation reads: the flag's, else drbook.toml's default (the
/// configuration is read only when it has to be).
pub(super) fn state_dir(
    state: &super::StateDir,
    config: impl FnOnce() -> Result<Config, Error>,
) -> Result<PathBuf, Error> {
    match &state.state_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(state.resolve(&config()?)),
    }
}

pub fn run(
    args: &RunsArgs,
    output: OutputFormat,
    config: impl FnOnce() -> Result<Config, Error>,
) -> Result<ExitCode, Error> {
    let dir = state_dir(&args.state, config)?;
    let mut runs = list(&dir);
    if let Some(name) = &args.runbook {
        runs.retain(|r| r.runbook == *name);
    }
    if let Some(n) = args.last {
        runs.truncate(n);
    }
    if output == OutputFormat::Json {
        crate::term::line(&serde_json::to_string_pretty(&runs).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        crate::term::line(&format!("no runs under {}", dir.join("runs").display()));
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["STARTED", "RUN", "RUNBOOK", "DR CLUSTER", "OUTCOME", "RTO"]);
    for r in &runs {
        t.add_row(vec![
            r.started.map_or_else(
                || "-".to_string(),
                |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ),
            r.run.clone(),
            r.runbook.clone(),
            r.cluster.clone().unwrap_or_else(|| "-".to_string()),
            match r.exit {
                Some(code) if r.outcome != "ok" => format!("{} (exit {code})", r.outcome),
                _ => r.outcome.to_string(),
            },
            r.rto_s.map_or_else(
                || "-".to_string(),
                |s| Human(std::time::Duration::from_secs(s.unsigned_abs())).to_string(),
            ),
        ]);
    }
    crate::term::line(&t.to_string());
    crate::term::line("details: drbook report RUN (--html for the page to keep, --json)");
    Ok(ExitCode::SUCCESS)
}

/// Every top-level run under `state_dir` (a nested `run()`'s journal, `<run>.<n>`, belongs
/// to its parent), newest first.
pub(super) fn list(state_dir: &Path) -> Vec<Listed> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("runs")) else {
        return Vec::new();
    };
    let mut runs: Vec<Listed> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.contains('.'))
        .map(|name| listed(state_dir, name))
        .collect();
    runs.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.run.cmp(&a.run)));
    runs
}

fn listed(state_dir: &Path, run: String) -> Listed {
    let dir = Journal::run_dir(state_dir, &run);
    if let Ok(report) = crate::report::saved::load(&dir) {
        return Listed {
            started: Some(report.started),
            runbook: runbook_name(&report.script),
            cluster: report.cluster(),
            outcome: if report.ok { "ok" } else { "failed" },
            exit: Some(report.exit),
            rto_s: report
                .record
                .as_ref()
                .and_then(crate::report::Record::rto_s),
            report: Some(report),
            run,
        };
    }
    // No report: what the journal's first entry says of it.
    let first = std::fs::read_to_string(dir.join("journal.jsonl"))
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| serde_json::from_str::<Entry>(l).ok())
        });
    let (started, script) = match first {
        Some(Entry::RunStart { at, script, .. }) => (Some(at), script),
        _ => (None, "?".to_string()),
    };
    Listed {
        run,
        started,
        runbook: runbook_name(&script),
        cluster: None,
        outcome: "not ended",
        exit: None,
        rto_s: None,
        report: None,
    }
}

/// A shipped runbook by its name, a script file by its file stem.
fn runbook_name(script: &str) -> String {
    Path::new(script)
        .file_stem()
        .map_or_else(|| script.to_string(), |s| s.to_string_lossy().into_owned())
}
