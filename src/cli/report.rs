//! `drbook report RUN`: one past run's saved report — the runbook's record (per-VM RTO and
//! RPO, the proof of cleanup), its steps and actions — as text, JSON, or the self-contained
//! HTML page, made again from the saved JSON so that it is the same whichever is asked.

use std::process::ExitCode;

use super::output::OutputFormat;
use super::runs::{list, state_dir};
use crate::config::Config;
use crate::error::Error;
use crate::script::journal::Journal;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("form").args(["html", "json"])))]
pub struct ReportArgs {
    /// The run id (`drbook runs` lists them), or `last` for the newest run
    #[arg(value_name = "RUN", add = clap_complete::engine::ArgValueCandidates::new(super::completions::run_ids))]
    pub run: String,

    /// Print the report as one self-contained HTML page (no network needed to open it; the
    /// same page is saved as report.html beside the run's journal)
    #[arg(long)]
    pub html: bool,

    /// Print the saved JSON (the same as --output json)
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub state: super::StateDir,
}

pub fn run(
    args: &ReportArgs,
    output: OutputFormat,
    config: impl FnOnce() -> Result<Config, Error>,
) -> Result<ExitCode, Error> {
    let dir = state_dir(&args.state, config)?;
    let runs = list(&dir);
    let run = if args.run == "last" {
        match runs.first() {
            Some(r) => r.run.clone(),
            None => {
                return Err(Error::Usage(format!(
                    "no runs under {}",
                    dir.join("runs").display()
                )));
            }
        }
    } else {
        args.run.clone()
    };
    let Some(listed) = runs.iter().find(|r| r.run == run) else {
        let names: Vec<String> = runs.iter().map(|r| r.run.clone()).collect();
        let near = crate::suggest::closest(&run, &names);
        return Err(Error::Usage(format!(
            "no run {run:?} under {}{}",
            dir.join("runs").display(),
            if near.is_empty() {
                String::from(" (drbook runs lists them)")
            } else {
                format!("; did you mean {}?", near.join(", "))
            }
        )));
    };
    let run_dir = Journal::run_dir(&dir, &run);
    let report = match &listed.report {
        Some(r) => r.clone(),
        // Not ended, or unreadable: the saved error says which and what to do.
        None => return Err(Error::Failed(load_error(&run_dir))),
    };
    if args.html {
        crate::term::line(&crate::report::html::render(&report));
    } else if args.json || output == OutputFormat::Json {
        crate::term::line(&serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        crate::term::line(&report.render_saved());
        crate::term::line(&format!(
            "saved: {}",
            run_dir.join(crate::report::saved::HTML).display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn load_error(run_dir: &std::path::Path) -> String {
    match crate::report::saved::load(run_dir) {
        Ok(_) => String::from("the report changed while it was read; try again"),
        Err(e) => e.to_string(),
    }
}
