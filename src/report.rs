//! The run report: steps with durations, the actions taken, errors, total time. Printed at the
//! end of `drbook run` (text on a terminal, JSON with `--output json`) and saved beside the
//! journal.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::duration::Human;

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub name: String,
    pub started: DateTime<Utc>,
    pub took_ms: u64,
    pub ok: bool,
    pub error: Option<String>,
    /// Answered from the journal of the resumed run, not run again.
    pub replayed: bool,
}

impl StepReport {
    pub fn replayed(name: &str) -> Self {
        Self {
            name: name.to_string(),
            started: Utc::now(),
            took_ms: 0,
            ok: true,
            error: None,
            replayed: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    pub primitive: String,
    pub site: Option<String>,
    pub args: String,
    pub ok: bool,
    pub error: Option<String>,
    pub took_ms: u64,
    pub replayed: bool,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub script: String,
    pub run: String,
    pub plan: bool,
    pub started: DateTime<Utc>,
    pub took_ms: u64,
    pub ok: bool,
    pub exit: u8,
    pub steps: Vec<StepReport>,
    pub actions: Vec<ActionReport>,
    pub errors: Vec<String>,
}

impl RunReport {
    pub fn new(script: &str, run: &str, plan: bool) -> Self {
        Self {
            script: script.to_string(),
            run: run.to_string(),
            plan,
            started: Utc::now(),
            took_ms: 0,
            ok: true,
            exit: 0,
            steps: Vec::new(),
            actions: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// For people: one line per step and per action, then the total.
    pub fn render(&self) -> String {
        // Each error is said once: an act's error that its step already gave, or the run's
        // own that a step gave, is not repeated.
        let mut said: Vec<&str> = Vec::new();
        let mut out = String::new();
        let _ = writeln!(out, "run {} of {}", self.run, self.script);
        if !self.steps.is_empty() {
            out.push_str("steps:\n");
            for s in &self.steps {
                let mark = match (s.ok, s.replayed) {
                    (_, true) => "↺",
                    (true, _) => "✓",
                    (false, _) => "✗",
                };
                let took = if s.replayed {
                    "done in an earlier run".to_string()
                } else {
                    Human(std::time::Duration::from_millis(s.took_ms)).to_string()
                };
                let _ = writeln!(out, "  {mark} {:<32} {took}", s.name);
                if let Some(e) = &s.error {
                    let _ = writeln!(out, "      {e}");
                    said.push(e);
                }
            }
        }
        if !self.actions.is_empty() {
            out.push_str("actions:\n");
            for a in &self.actions {
                let mark = match (a.ok, a.replayed) {
                    (_, true) => "↺",
                    (true, _) => "✓",
                    (false, _) => "✗",
                };
                let site = a.site.as_deref().unwrap_or("-");
                let _ = writeln!(out, "  {mark} {:<8} {}({})", site, a.primitive, a.args);
                if let Some(e) = &a.error
                    && !said.iter().any(|s| s.contains(e.as_str()))
                {
                    let _ = writeln!(out, "      {e}");
                    said.push(e);
                }
            }
        }
        for e in &self.errors {
            if !said.iter().any(|s| e.ends_with(s)) {
                let _ = writeln!(out, "error: {e}");
            }
        }
        let _ = write!(
            out,
            "{} in {} (exit {})",
            if self.ok { "finished" } else { "FAILED" },
            Human(std::time::Duration::from_millis(self.took_ms)),
            self.exit
        );
        out
    }
}
