//! A run's report kept beside its journal: `report.json` (the record itself, what
//! `drbook report` reads back), `report.txt` and `report.html` (made from it).

use std::path::{Path, PathBuf};

use super::RunReport;

#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error("cannot write the report {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("no report in {}: the run has not ended (still running, or killed: its journal is there; `drbook run --resume RUN` finishes it)", dir.display())]
    Missing { dir: PathBuf },
    #[error("cannot read the report {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
}

pub const JSON: &str = "report.json";
pub const TEXT: &str = "report.txt";
pub const HTML: &str = "report.html";

/// Writes the three forms into the run's directory; the JSON first, so that what can be
/// read back exists even if a later write fails.
pub fn save(dir: &Path, report: &RunReport) -> Result<(), SavedError> {
    let json = serde_json::to_string_pretty(report).map_err(|e| SavedError::Write {
        path: dir.join(JSON),
        reason: e.to_string(),
    })?;
    for (name, body) in [
        (JSON, json),
        (TEXT, report.render_saved() + "\n"),
        (HTML, super::html::render(report)),
    ] {
        let path = dir.join(name);
        write_whole(&path, &body).map_err(|e| SavedError::Write {
            path,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// The report saved in `dir`.
pub fn load(dir: &Path) -> Result<RunReport, SavedError> {
    let path = dir.join(JSON);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SavedError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(SavedError::Read {
                path,
                reason: e.to_string(),
            });
        }
    };
    serde_json::from_str(&text).map_err(|e| SavedError::Read {
        path,
        reason: e.to_string(),
    })
}

/// Written to a temporary file and renamed over the old one, so a reader never sees half a
/// report (a resumed run rewrites it).
fn write_whole(path: &Path, body: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_report_reads_back_and_a_missing_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RunReport::new("failover", "run-1", false);
        r.clusters.push("DR".into());
        save(dir.path(), &r).unwrap();
        let back = load(dir.path()).unwrap();
        assert_eq!(back.run, "run-1");
        assert_eq!(back.cluster().as_deref(), Some("DR"));
        assert!(dir.path().join(HTML).exists() && dir.path().join(TEXT).exists());
        let empty = tempfile::tempdir().unwrap();
        let e = load(empty.path()).unwrap_err().to_string();
        assert!(e.contains("has not ended"), "{e}");
    }
}
