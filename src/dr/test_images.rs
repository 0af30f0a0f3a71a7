//! Test copies, the storage side: what a DR test without an outage runs with `rbd` on the
//! storage VMs over SSH, since Glue has no route for it (Ceph 16.2, measured on real
//! clusters):
//!
//! - a user snapshot `drtest-<run>` of a primary image on the protected site — a replica
//!   takes none (`(30) Read-only file system`);
//! - carried to the DR site by the next mirror snapshot, where it shows before its data: it
//!   is usable only once the DR site's newest non-primary mirror snapshot is `complete` with
//!   `primary_snap_id` at or past the user snapshot's id on the primary;
//! - a copy-on-write clone `<image>-drtest-<run>` of it on the DR site (format 2: a replica's
//!   snapshot cannot be protected), unmirrored and writable;
//! - and their removal, which touches nothing without the marker.
//!
//! Each command line is built from checked words only (pool/image names, the run id): no
//! shell syntax reaches the storage VM. A command whose SSH session broke after it started
//! may have run; it is settled by reading the snapshots or images, never run again.

use serde::Serialize;
use serde_json::Value;

use super::test_copy::{MARKER, run_of, test_name};
use super::{Dr, DrError};

/// The pool every mirrored image is in on ABLESTACK.
const POOL: &str = "rbd";

/// A test's user snapshot of one image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TestSnapshot {
    pub site: String,
    pub image: String,
    /// `drtest-<run>`.
    pub snapshot: String,
    /// Its id on that site.
    pub id: u64,
}

/// Whether a test's user snapshot can be cloned on the DR site yet.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Arrival {
    pub image: String,
    pub snapshot: String,
    /// The user snapshot is listed on the DR site.
    pub listed: bool,
    /// Its data is there too: the newest non-primary mirror snapshot is complete and at or
    /// past it.
    pub complete: bool,
    /// What is still missing, in a few words (empty once complete).
    pub pending: String,
}

/// The snapshot name of run `run`'s user snapshots.
pub fn snapshot_name(run: &str) -> Result<String, DrError> {
    // The run id is checked as for every test name; the snapshot carries only the marker's
    // tail (`drtest-<run>`), the image being its own.
    let name = test_name("x", run)?;
    Ok(name["x-".len()..].to_string())
}

/// The run a test snapshot's name names.
fn snapshot_run(name: &str) -> Option<&str> {
    let run = name.strip_prefix("drtest-")?;
    snapshot_name(run).is_ok().then_some(run)
}

/// `rbd/<name>` → `<name>`, after checking it is a plain image name.
fn image_word(image: &str) -> Result<&str, DrError> {
    let name = image.strip_prefix("rbd/").unwrap_or(image);
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name)
    } else {
        Err(DrError::guard(
            format!("use image {image:?}"),
            "an image name here is letters, digits, '-', '_' and '.' in pool rbd",
            "give the image as rbd/<name>, as mirror_status lists it",
        ))
    }
}

/// One row of `rbd snap ls --all --format json`, as Pacific prints it: `namespace` is an
/// object whose `type` says which (`user`, `trash` with `original_name`, `mirror` with its
/// state, `complete` and, on a replica, `primary_snap_id`).
#[derive(Debug, Clone, serde::Deserialize)]
struct SnapRow {
    id: u64,
    name: String,
    #[serde(default)]
    namespace: Option<Namespace>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Namespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    original_name: Option<String>,
    #[serde(default)]
    state: String,
    #[serde(default)]
    complete: bool,
    #[serde(default)]
    primary_snap_id: Option<u64>,
}

impl SnapRow {
    fn is_user(&self) -> bool {
        self.namespace.as_ref().is_none_or(|n| n.kind == "user")
    }

    fn mirror(&self) -> Option<&Namespace> {
        self.namespace.as_ref().filter(|n| n.kind == "mirror")
    }

    /// The name it had before it was trashed, or its name.
    fn original_name(&self) -> &str {
        self.namespace
            .as_ref()
            .and_then(|n| n.original_name.as_deref())
            .unwrap_or(&self.name)
    }
}

/// Whether the DR site's snapshots make the primary's user snapshot `primary_id` usable.
fn arrival(image: &str, snapshot: &str, dr_rows: &[SnapRow], primary_id: u64) -> Arrival {
    let listed = dr_rows.iter().any(|s| s.is_user() && s.name == snapshot);
    let newest = dr_rows
        .iter()
        .filter_map(SnapRow::mirror)
        .rfind(|m| m.state.starts_with("non-primary"));
    let complete = listed
        && newest.is_some_and(|m| m.complete && m.primary_snap_id.is_some_and(|p| p >= primary_id));
    let pending = if complete {
        String::new()
    } else if !listed {
        format!("{snapshot} is not on the DR site yet (the next mirror snapshot carries it)")
    } else {
        match newest {
            Some(m) if !m.complete => "the mirror snapshot carrying it is still copying".into(),
            _ => "no mirror snapshot at or past it has reached the DR site".into(),
        }
    };
    Arrival {
        image: image.to_string(),
        snapshot: snapshot.to_string(),
        listed,
        complete,
        pending,
    }
}

impl Dr {
    /// `rbd <args>` on one of the site's storage VMs: its stdout, or its failure with the
    /// exit status and rbd's own lines.
    async fn rbd(&self, site: &str, args: &[&str]) -> Result<String, DrError> {
        let line = format!("rbd {}", args.join(" "));
        let out = self.ssh(site, &line).await?;
        if out.status == 0 {
            Ok(out.stdout)
        } else {
            Err(DrError::Rbd {
                site: site.to_string(),
                command: line,
                status: out.status,
                output: out.stderr.trim().to_string(),
            })
        }
    }

    async fn snap_rows(&self, site: &str, image: &str) -> Result<Vec<SnapRow>, DrError> {
        let spec = format!("{POOL}/{image}");
        let out = self
            .rbd(site, &["snap", "ls", "--all", &spec, "--format", "json"])
            .await?;
        serde_json::from_str(&out).map_err(|e| {
            DrError::Config(format!(
                "site {site}: rbd snap ls {spec} printed no snapshot list ({e})"
            ))
        })
    }

    async fn image_info(&self, site: &str, image: &str) -> Result<Option<Value>, DrError> {
        let spec = format!("{POOL}/{image}");
        match self.rbd(site, &["info", &spec, "--format", "json"]).await {
            Ok(out) => serde_json::from_str(&out).map(Some).map_err(|e| {
                DrError::Config(format!(
                    "site {site}: rbd info {spec} printed no JSON ({e})"
                ))
            }),
            Err(DrError::Rbd { status: 2, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The user snapshot `drtest-<run>` of `image` on `site`, where the image must be primary.
    /// One already there is returned as it is.
    pub async fn test_snapshot(
        &self,
        site: &str,
        image: &str,
        run: &str,
    ) -> Result<TestSnapshot, DrError> {
        let image = image_word(image)?;
        let snapshot = snapshot_name(run)?;
        let action = format!("take user snapshot {snapshot} of {image} on {site}");
        let found = |rows: &[SnapRow]| {
            rows.iter()
                .find(|s| s.is_user() && s.name == snapshot)
                .map(|s| TestSnapshot {
                    site: site.to_string(),
                    image: image.to_string(),
                    snapshot: snapshot.clone(),
                    id: s.id,
                })
        };
        if let Some(done) = found(&self.snap_rows(site, image).await?) {
            return Ok(done);
        }
        let Some(info) = self.image_info(site, image).await? else {
            return Err(DrError::NotFound {
                what: format!("image on {site}"),
                name: image.to_string(),
                suggestions: Vec::new(),
            });
        };
        if info.pointer("/mirroring/primary").and_then(Value::as_bool) == Some(false) {
            return Err(DrError::guard(
                &action,
                format!("{image} is a replica on {site}"),
                "take it on the site where the image is primary (the protected site)",
            ));
        }
        let spec = format!("{POOL}/{image}@{snapshot}");
        match self.rbd(site, &["snap", "create", &spec]).await {
            Ok(_) => {}
            Err(e) if e.outcome_unknown() => {
                return match self.snap_rows(site, image).await {
                    Ok(rows) => found(&rows).ok_or_else(|| DrError::OutcomeUnknown {
                        action,
                        cause: e.to_string(),
                        found: format!("no snapshot {snapshot} of {image}"),
                        advice: "a resume settles it by reading".into(),
                    }),
                    Err(read) => Err(DrError::OutcomeUnknown {
                        action,
                        cause: e.to_string(),
                        found: format!("nothing (the re-read failed too: {read})"),
                        advice: format!(
                            "check ssh(\"{site}\", \"rbd snap ls {POOL}/{image}\"); a resume settles it"
                        ),
                    }),
                };
            }
            Err(e) => return Err(e),
        }
        found(&self.snap_rows(site, image).await?).ok_or_else(|| DrError::NotApplied {
            action,
            found: format!("no snapshot {snapshot} of {image}"),
            advice: format!("check rbd snap ls {POOL}/{image} on {site}"),
        })
    }

    /// Whether run `run`'s user snapshot of `image`, taken on `protected`, is usable on `dr`.
    pub async fn test_snapshot_arrival(
        &self,
        protected: &str,
        dr: &str,
        image: &str,
        run: &str,
    ) -> Result<Arrival, DrError> {
        let image = image_word(image)?;
        let snapshot = snapshot_name(run)?;
        let (primary, replica) =
            tokio::join!(self.snap_rows(protected, image), self.snap_rows(dr, image));
        let Some(primary_id) = primary?
            .iter()
            .find(|s| s.is_user() && s.name == snapshot)
            .map(|s| s.id)
        else {
            return Err(DrError::NotFound {
                what: format!("user snapshot of {image} on {protected}"),
                name: snapshot,
                suggestions: Vec::new(),
            });
        };
        Ok(arrival(image, &snapshot, &replica?, primary_id))
    }

    /// Waits until run `run`'s user snapshots of `images` (taken on `protected`) are usable
    /// on `dr`, at most `timeout` (the replication wait when `None`). A snapshot not yet
    /// carried is waited for: the caller takes the mirror snapshot that carries it.
    pub async fn wait_test_snapshots(
        &self,
        protected: &str,
        dr: &str,
        images: &[String],
        run: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<Vec<Arrival>, DrError> {
        let limit = timeout.unwrap_or(self.waits.replication);
        let started = tokio::time::Instant::now();
        loop {
            let mut all = Vec::with_capacity(images.len());
            for image in images {
                all.push(
                    self.test_snapshot_arrival(protected, dr, image, run)
                        .await?,
                );
            }
            if all.iter().all(|a| a.complete) {
                return Ok(all);
            }
            if started.elapsed() >= limit {
                return Err(DrError::Timeout {
                    what: format!("run {run}'s user snapshots to be complete on {dr}"),
                    waited: started.elapsed(),
                    pending: all
                        .iter()
                        .filter(|a| !a.complete)
                        .map(|a| format!("{}: {}", a.image, a.pending))
                        .collect(),
                });
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    /// Removes run `run`'s user snapshot of `image` on `site`: `Ok(false)` when it is not
    /// there. On the primary this is the end of a test; the DR site's copy follows with the
    /// next mirror snapshot (into the trash namespace while a clone still reads it).
    pub async fn remove_test_snapshot(
        &self,
        site: &str,
        image: &str,
        run: &str,
    ) -> Result<bool, DrError> {
        let image = image_word(image)?;
        let snapshot = snapshot_name(run)?;
        let action = format!("remove user snapshot {snapshot} of {image} on {site}");
        let present = |rows: &[SnapRow]| rows.iter().any(|s| s.is_user() && s.name == snapshot);
        if !present(&self.snap_rows(site, image).await?) {
            return Ok(false);
        }
        let spec = format!("{POOL}/{image}@{snapshot}");
        let sent = self.rbd(site, &["snap", "rm", &spec]).await;
        let rows = self.snap_rows(site, image).await;
        match (sent, rows) {
            (_, Ok(rows)) if !present(&rows) => Ok(true),
            (Err(e), rows) if e.outcome_unknown() => Err(DrError::OutcomeUnknown {
                action,
                cause: e.to_string(),
                found: match rows {
                    Ok(_) => format!("{snapshot} is still there"),
                    Err(read) => format!("nothing (the re-read failed too: {read})"),
                },
                advice: "a resume settles it by reading".into(),
            }),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(_), Ok(_)) => Err(DrError::NotApplied {
                action,
                found: format!("{snapshot} is still there"),
                advice: format!("check rbd snap ls {POOL}/{image} on {site}"),
            }),
        }
    }

    /// A copy-on-write clone `<image>-drtest-<run>` of run `run`'s user snapshot of `image`
    /// on `site` (the DR site), once that snapshot is there. One already there is returned.
    pub async fn clone_test_image(
        &self,
        site: &str,
        image: &str,
        run: &str,
    ) -> Result<String, DrError> {
        let image = image_word(image)?;
        let snapshot = snapshot_name(run)?;
        let clone = test_name(image, run)?;
        let action = format!("clone {image}@{snapshot} on {site} as {clone}");
        if let Some(info) = self.image_info(site, &clone).await? {
            return if parent_is(&info, image, &snapshot) {
                Ok(clone)
            } else {
                Err(DrError::guard(
                    &action,
                    format!("{clone} exists and is no clone of {image}@{snapshot}"),
                    "look at it (rbd info) before removing anything",
                ))
            };
        }
        let rows = self.snap_rows(site, image).await?;
        if !rows.iter().any(|s| s.is_user() && s.name == snapshot) {
            return Err(DrError::guard(
                &action,
                format!("{image} has no snapshot {snapshot} on {site}"),
                "take it on the protected site and wait until it is complete here (wait_test_snapshot)",
            ));
        }
        let from = format!("{POOL}/{image}@{snapshot}");
        let to = format!("{POOL}/{clone}");
        let sent = self
            .rbd(
                site,
                &["clone", "--rbd-default-clone-format", "2", &from, &to],
            )
            .await;
        match sent {
            Ok(_) => Ok(clone),
            Err(e) if e.outcome_unknown() => match self.image_info(site, &clone).await {
                Ok(Some(info)) if parent_is(&info, image, &snapshot) => Ok(clone),
                found => Err(DrError::OutcomeUnknown {
                    action,
                    cause: e.to_string(),
                    found: match found {
                        Ok(_) => format!("no clone {clone}"),
                        Err(read) => format!("nothing (the re-read failed too: {read})"),
                    },
                    advice: "a resume settles it by reading".into(),
                }),
            },
            Err(e) => Err(e),
        }
    }

    /// Removes the test clone `image` on `site`: only an image whose name carries the marker
    /// and that is a clone (never a mirrored image). `Ok(false)` when it is not there.
    pub async fn remove_test_image(&self, site: &str, image: &str) -> Result<bool, DrError> {
        let image = image_word(image)?;
        let action = format!("remove test image {image} on {site}");
        if run_of(image).is_none() {
            return Err(DrError::guard(
                &action,
                format!("{image} is no test image (no {MARKER}<run> in its name)"),
                "drbook removes only the clones a DR test made",
            ));
        }
        let Some(info) = self.image_info(site, image).await? else {
            return Ok(false);
        };
        if info.get("parent").is_none() || info.get("mirroring").is_some_and(mirroring_on) {
            return Err(DrError::guard(
                &action,
                format!("{image} is no unmirrored clone"),
                "a test image is a clone of a replica's snapshot; look at it (rbd info) first",
            ));
        }
        let spec = format!("{POOL}/{image}");
        let sent = self.rbd(site, &["rm", &spec]).await;
        match (sent, self.image_info(site, image).await) {
            (_, Ok(None)) => Ok(true),
            (Err(e), found) if e.outcome_unknown() => Err(DrError::OutcomeUnknown {
                action,
                cause: e.to_string(),
                found: match found {
                    Ok(_) => format!("{image} is still there"),
                    Err(read) => format!("nothing (the re-read failed too: {read})"),
                },
                advice: "a resume settles it by reading".into(),
            }),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(_), Ok(Some(_))) => Err(DrError::NotApplied {
                action,
                found: format!("{image} is still there"),
                advice: format!("check rbd info {spec} on {site}"),
            }),
        }
    }

    /// The test images of `site` (`rbd ls`): every image whose name carries the marker.
    pub async fn test_images(&self, site: &str) -> Result<Vec<String>, DrError> {
        let out = self.rbd(site, &["ls", POOL, "--format", "json"]).await?;
        let names: Vec<String> = serde_json::from_str(&out).map_err(|e| {
            DrError::Config(format!("site {site}: rbd ls {POOL} printed no list ({e})"))
        })?;
        Ok(names.into_iter().filter(|n| run_of(n).is_some()).collect())
    }

    /// The test snapshots of `images` on `site` (user or trash namespace): `(image,
    /// snapshot name)` for each `drtest-<run>` one.
    pub async fn test_snapshots(
        &self,
        site: &str,
        images: &[String],
    ) -> Result<Vec<(String, String)>, DrError> {
        let mut found = Vec::new();
        for image in images {
            let image = image_word(image)?;
            for row in self.snap_rows(site, image).await? {
                let original = row.original_name().to_string();
                if snapshot_run(&original).is_some() {
                    found.push((image.to_string(), original));
                }
            }
        }
        Ok(found)
    }
}

/// Whether `rbd info` shows a clone of `image@snapshot`.
fn parent_is(info: &Value, image: &str, snapshot: &str) -> bool {
    let parent = &info["parent"];
    parent["image"] == image && parent["snapshot"] == snapshot
}

fn mirroring_on(m: &Value) -> bool {
    m.get("state").and_then(Value::as_str) == Some("enabled")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(json: &str) -> Vec<SnapRow> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_user_snapshot_is_usable_only_once_a_complete_mirror_snapshot_is_past_it() {
        let listed_not_copied = rows(
            r#"[{"id":4,"name":"drtest-r1","namespace":{"type":"user"}},
                {"id":5,"name":".mirror.non_primary.x","namespace":{"type":"mirror","state":"non-primary","mirror_peer_uuids":[],"complete":false,"primary_snap_id":9}}]"#,
        );
        let a = arrival("img", "drtest-r1", &listed_not_copied, 8);
        assert!(a.listed && !a.complete, "{a:?}");
        assert!(a.pending.contains("still copying"));
        let done = rows(
            r#"[{"id":4,"name":"drtest-r1","namespace":{"type":"user"}},
                {"id":5,"name":".mirror.non_primary.x","namespace":{"type":"mirror","state":"non-primary","mirror_peer_uuids":[],"complete":true,"primary_snap_id":9}}]"#,
        );
        assert!(arrival("img", "drtest-r1", &done, 8).complete);
        let older = rows(
            r#"[{"id":4,"name":"drtest-r1","namespace":{"type":"user"}},
                {"id":5,"name":".mirror.non_primary.x","namespace":{"type":"mirror","state":"non-primary","mirror_peer_uuids":[],"complete":true,"primary_snap_id":7}}]"#,
        );
        assert!(!arrival("img", "drtest-r1", &older, 8).complete);
        let absent = arrival("img", "drtest-r1", &rows("[]"), 8);
        assert!(!absent.listed && absent.pending.contains("not on the DR site"));
    }

    #[test]
    fn only_checked_words_reach_the_command_line() {
        assert_eq!(snapshot_name("r1").unwrap(), "drtest-r1");
        assert!(snapshot_name("r 1").is_err());
        assert_eq!(image_word("rbd/abc-1").unwrap(), "abc-1");
        for bad in ["a;b", "a b", "$(x)", "", "other/x"] {
            assert!(image_word(bad).is_err(), "{bad}");
        }
        assert_eq!(snapshot_run("drtest-r1"), Some("r1"));
        assert_eq!(snapshot_run("daily"), None);
    }
}
