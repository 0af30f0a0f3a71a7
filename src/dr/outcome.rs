//! What a mutation did, as primitives return it: one [`Outcome`] per act, a failover's
//! [`PromoteOutcome`] with the writes it put at risk, and a drill's [`DrillReport`].

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::unknown::Fact;
use crate::duration::Human;

/// A VM whose DR copy may lack writes: what a forced promote would lose.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AtRisk {
    pub vm: String,
    /// The largest lag of its volumes; `None` when no snapshot has reached the DR site yet;
    /// unknown when the DR site's copies could not be read.
    pub lag_secs: Fact<Option<i64>>,
    /// The oldest of its volumes' newest replicated snapshots: writes after it are at risk.
    pub last_snapshot: Fact<Option<DateTime<Utc>>>,
    pub reason: String,
}

impl fmt::Display for AtRisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.last_snapshot, &self.lag_secs) {
            (Fact::Known(Some(t)), Fact::Known(Some(lag))) => write!(
                f,
                "{}: writes after {} (lag {}s) may be lost — {}",
                self.vm,
                t.format("%Y-%m-%d %H:%M:%S UTC"),
                lag,
                self.reason
            ),
            (Fact::Unknown(u), _) | (_, Fact::Unknown(u)) => {
                write!(f, "{}: what a promote would lose is unknown — {u}", self.vm)
            }
            _ => write!(
                f,
                "{}: no snapshot has reached the DR site — {}",
                self.vm, self.reason
            ),
        }
    }
}

/// What a mutation did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// What was done, in the operators' words (`promote DR cluster "DR"`).
    pub action: String,
    /// Where it ran.
    pub site: String,
    /// One line for the operator: what happened and what comes next.
    pub message: String,
    /// The command, ids, and what Mold or Glue answered (never a secret).
    pub detail: Value,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.site, self.action, self.message)
    }
}

/// A failover's outcome, with the writes it put at risk (computed before promoting).
#[derive(Debug, Clone, Serialize)]
pub struct PromoteOutcome {
    pub outcome: Outcome,
    pub at_risk: Vec<AtRisk>,
}

impl fmt::Display for PromoteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.outcome)?;
        if self.at_risk.is_empty() {
            write!(
                f,
                "\n  no write at risk: every promoted VM was stopped and synced"
            )?;
        }
        for r in &self.at_risk {
            write!(f, "\n  at risk: {r}")?;
        }
        Ok(())
    }
}

/// One step of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillStep {
    pub name: String,
    pub started: DateTime<Utc>,
    #[serde(serialize_with = "super::ser::secs")]
    pub took: Duration,
    pub ok: bool,
    pub error: Option<String>,
}

/// What a drill did.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub cluster: String,
    pub vm: String,
    /// Every step ran and succeeded, and a fresh read shows the VM where it started.
    pub ok: bool,
    pub steps: Vec<DrillStep>,
    /// From the start of the drill until the mirrored VM ran on the DR site (step 4).
    #[serde(serialize_with = "super::ser::opt_secs")]
    pub rto: Option<Duration>,
    /// A failed drill returned the VM where it started (images primary on the protected
    /// site, the VM running there, its mirrored VM stopped).
    pub returned: bool,
    /// What is not back where it started, each with the call that finishes it; empty when
    /// the VM is home.
    pub left: Vec<String>,
}

impl DrillReport {
    /// The first failed step, as `step 4 (Start mirroring virtual machine)`.
    fn failure(&self) -> Option<String> {
        self.steps
            .iter()
            .enumerate()
            .find(|(_, s)| !s.ok)
            .map(|(i, s)| format!("step {} ({})", i + 1, s.name))
    }

    /// One line for the error a failed drill raises: which step, and whether the VM is back.
    /// The step's own error and what is left are in the report (`details`).
    pub fn summary(&self) -> String {
        let what = self
            .failure()
            .unwrap_or_else(|| "its last check: the VM is not where it started".to_string());
        let end = if self.left.is_empty() {
            format!("{} is back where it started", self.vm)
        } else {
            format!(
                "{} thing(s) left to finish (the report lists them, with the calls that finish them)",
                self.left.len()
            )
        };
        format!("the drill of {} failed at {what}; {end}", self.vm)
    }
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mirroring test of {} in DR cluster {}: {}",
            self.vm,
            self.cluster,
            if self.ok { "OK" } else { "FAILED" }
        )?;
        if let Some(rto) = self.rto {
            write!(f, " (running on the DR site after {})", Human(rto))?;
        }
        for (i, s) in self.steps.iter().enumerate() {
            write!(f, "\n  {}. {s}", i + 1)?;
        }
        if !self.ok {
            if self.left.is_empty() {
                write!(f, "\n  returned: {} is back where it started", self.vm)?;
            }
            for l in &self.left {
                write!(f, "\n  LEFT: {l}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for DrillStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} — {} in {}",
            self.name,
            if self.ok { "ok" } else { "FAILED" },
            Human(self.took)
        )?;
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}
