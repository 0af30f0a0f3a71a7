//! Shell completion: `drbook completions SHELL` prints the script a shell sources; while
//! completing, the shell calls drbook back (`COMPLETE=<shell> drbook …`, clap_complete's
//! dynamic engine), so candidates are read live — the shipped runbooks and the `.rhai` files
//! here for `drbook run`, the run ids under the state directory for `--resume` and
//! `drbook report` — from the same clap definitions as `--help` and the man pages.

use std::ffi::OsStr;
use std::process::ExitCode;

use clap_complete::engine::CompletionCandidate;
use clap_complete::env::Shells;

use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_name = "SHELL", value_parser = ["bash", "zsh", "fish", "elvish", "powershell"])]
    pub shell: String,
}

/// The variable the shell scripts set when they call drbook back to complete.
pub const VAR: &str = "COMPLETE";

/// Answers a completion request when the shell made one (then exits); else returns.
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(<super::Cli as clap::CommandFactory>::command)
        .var(VAR)
        .complete();
}

pub fn run(args: &CompletionsArgs) -> Result<ExitCode, Error> {
    let shells = Shells::builtins();
    let shell = shells
        .completer(&args.shell)
        .ok_or_else(|| Error::Usage(format!("no completion for the shell {}", args.shell)))?;
    // The script calls back this very binary, wherever it is installed.
    let me =
        std::env::current_exe().map_or_else(|_| "drbook".to_string(), |p| p.display().to_string());
    let mut out = Vec::new();
    shell
        .write_registration(VAR, "drbook", "drbook", &me, &mut out)
        .map_err(|e| Error::Failed(format!("cannot write the completion script: {e}")))?;
    crate::term::line(String::from_utf8_lossy(&out).trim_end());
    Ok(ExitCode::SUCCESS)
}

/// `drbook run`'s runbook: a shipped runbook's name, or a `.rhai` file (here, or in the
/// directory typed so far).
pub fn runbooks(current: &OsStr) -> Vec<CompletionCandidate> {
    let typed = current.to_string_lossy();
    let mut out: Vec<CompletionCandidate> = crate::script::modules::SCRIPTS
        .iter()
        .filter(|(name, _)| name.starts_with(typed.as_ref()))
        .map(|(name, _)| CompletionCandidate::new(*name).help(Some("shipped runbook".into())))
        .collect();
    let (dir, stem) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("", typed.as_ref()),
    };
    let listing = if dir.is_empty() { "." } else { dir };
    if let Ok(entries) = std::fs::read_dir(listing) {
        let mut files: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.starts_with(stem)
                    && std::path::Path::new(n)
                        .extension()
                        .is_some_and(|e| e == "rhai")
            })
            .map(|n| format!("{dir}{n}"))
            .collect();
        files.sort();
        out.extend(files.into_iter().map(CompletionCandidate::new));
    }
    out
}

/// Run ids under the state directory this shell would use (`DRBOOK_STATE_DIR`, else the
/// default), newest first.
pub fn run_ids() -> Vec<CompletionCandidate> {
    let dir = std::env::var_os("DRBOOK_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(crate::paths::default_state_dir, std::path::PathBuf::from);
    super::runs::list(&dir)
        .into_iter()
        .map(|r| {
            let about = format!("{} {}", r.runbook, r.outcome);
            CompletionCandidate::new(r.run).help(Some(about.into()))
        })
        .collect()
}
