//! The run report: steps with durations, the actions taken (a batch with each item's job),
//! errors, total time, and the runbook's own record (its result rows, per-VM RTO and RPO).
//! Printed at the end of `drbook run` (text on a terminal, JSON with `--output json`) and
//! saved beside the journal as `report.json`, `report.txt` and `report.html` (`html.rs`);
//! `saved.rs` reads them back for `drbook runs` and `drbook report`.

pub mod html;
pub mod saved;

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::Human;

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionReport {
    pub primitive: String,
    pub site: Option<String>,
    pub args: String,
    pub ok: bool,
    pub error: Option<String>,
    /// When it was sent (for a replayed act, when the resumed run found it in the journal).
    #[serde(default = "Utc::now")]
    pub started: DateTime<Utc>,
    pub took_ms: u64,
    pub replayed: bool,
    /// A batch's items with their own jobs (each VM's start in `start_vms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemSpan>,
}

/// One item of a batch: when its command was sent and how long it took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemSpan {
    pub name: String,
    pub ok: bool,
    pub started: DateTime<Utc>,
    pub took_ms: u64,
}

impl ItemSpan {
    /// The items of a batch's result (`[#{vm or image, ok, started, took_ms}, …]`); an
    /// item without a time is left out.
    pub fn of_batch(result: &serde_json::Value) -> Vec<Self> {
        let Some(items) = result.as_array() else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| {
                let name = i.get("vm").or_else(|| i.get("image"))?.as_str()?;
                let started = i.get("started")?.as_str()?;
                let started = DateTime::parse_from_rfc3339(started).ok()?;
                Some(Self {
                    name: name.to_string(),
                    ok: i.get("ok").and_then(serde_json::Value::as_bool)?,
                    started: started.with_timezone(&Utc),
                    took_ms: i.get("took_ms").and_then(serde_json::Value::as_u64)?,
                })
            })
            .collect()
    }
}

/// What the runbook itself recorded of its result (`record()`, which the shipped runbooks'
/// `dr::report` calls): the rows it printed, and per VM what was measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub rows: Vec<Row>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<VmMeasure>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Row {
    pub label: String,
    pub text: String,
}

/// One VM's measures: RTO (the run's start to the VM running) and RPO (how old the data it
/// runs on is, or the writes at risk), in seconds; anything else the runbook gave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmMeasure {
    pub vm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_s: Option<i64>,
    #[serde(default, flatten)]
    pub more: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    /// The worst RTO measured, when any was.
    pub fn rto_s(&self) -> Option<i64> {
        self.vms.iter().filter_map(|v| v.rto_s).max()
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The DR clusters whose lock the run took (the ones it acted on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
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
            clusters: Vec::new(),
            record: None,
        }
    }

    /// The DR cluster the run was about: the one its record names, else the ones it locked.
    pub fn cluster(&self) -> Option<String> {
        self.record
            .as_ref()
            .and_then(|r| r.cluster.clone())
            .or_else(|| (!self.clusters.is_empty()).then(|| self.clusters.join(", ")))
    }

    /// The saved record for people: when and what, the runbook's own rows (which a live run
    /// printed as it ended), then [`RunReport::render`].
    pub fn render_saved(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}{} started {}",
            self.script,
            if self.plan { " (plan)" } else { "" },
            self.started
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        if let Some(r) = &self.record {
            let width = r
                .rows
                .iter()
                .map(|row| row.label.chars().count())
                .max()
                .unwrap_or(0);
            let _ = writeln!(out, "== {} ==", r.title);
            for row in &r.rows {
                let _ = writeln!(
                    out,
                    "  {:<width$}  {}",
                    format!("{}:", row.label),
                    row.text,
                    width = width + 1
                );
            }
        }
        out.push_str(&self.render());
        out
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
