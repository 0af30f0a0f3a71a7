//! Mirroring status of a DR cluster, per VM and per volume, from one list call and one Glue
//! pool status per site — never one call per VM.
//!
//! Mold's map rows give the VMs and their volumes (an RBD image per volume, same name on both
//! sites); each site's Glue gives its own view of every image. A volume is **synced** when
//! exactly one side is primary and the other side's own status is `replaying` + `idle` and
//! caught up to the newest snapshot it knows. Its **lag** is how old the newest snapshot the
//! replica holds is: the writes a failover to that replica would lose are at most that old.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use super::cluster::ClusterRead;
use super::vm::Vm;
use super::{Dr, DrError};
use crate::glue::types::ReplayDetail;
use crate::glue::{ImageStatus, MirrorSide, PoolStatus};
use crate::mold::types::{DrClusterRecord, VmMapRow};

/// The whole cluster's mirroring, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorStatus {
    pub cluster: String,
    /// The protected site.
    pub primary_site: String,
    pub dr_site: String,
    pub taken_at: DateTime<Utc>,
    pub vms: Vec<VmMirror>,
    pub summary: MirrorSummary,
    /// Sites (Mold or Glue) that could not be read, and why; their side shows `unknown`.
    pub unreachable: BTreeMap<String, String>,
}

/// Counts over the VMs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MirrorSummary {
    pub vms: usize,
    pub synced: usize,
    pub unsynced: usize,
    /// The largest volume lag, in seconds.
    pub max_lag_secs: Option<i64>,
}

/// One mirrored VM: its copy on the protected site, its mirrored VM on the DR site.
#[derive(Debug, Clone, Serialize)]
pub struct VmMirror {
    pub name: String,
    pub primary_vm: Option<Vm>,
    pub dr_vm: Option<Vm>,
    pub volumes: Vec<VolumeMirror>,
    /// Every volume synced.
    pub synced: bool,
}

/// One mirrored volume (one RBD image on each site).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeMirror {
    /// `ROOT` or `DATADISK`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The RBD image name (the volume's path), the same on both sites.
    pub path: String,
    /// The protected site's own status `state` (`up+stopped`, `up+replaying`, …), `unknown`
    /// when that site cannot be read, `absent` when its Glue does not list the image.
    pub primary_state: String,
    pub dr_state: String,
    /// The description without its JSON detail: `local image is primary`, `replaying`,
    /// `split-brain`, `orphan (force promoting)`, …
    pub primary_description: String,
    pub dr_description: String,
    /// What the DR site last heard from the protected site's copy (its `peer_sites` entry,
    /// without JSON detail): the view Mold's failback checks read. Right after the protected
    /// site returns it lags its own status (`status not found` until its rbd-mirror reports
    /// again); empty when the DR site cannot be read.
    pub primary_seen_from_dr: String,
    /// The `state` of that view: `up+…` once the protected site's rbd-mirror reports again
    /// (while it is `down+…` the view is the frozen one from before the outage).
    pub primary_state_seen_from_dr: String,
    pub synced: bool,
    /// When the newest snapshot the replica holds was taken.
    pub last_snapshot: Option<DateTime<Utc>>,
    /// Now − `last_snapshot` (seconds in JSON).
    #[serde(serialize_with = "super::ser::opt_delta_secs")]
    pub lag: Option<chrono::Duration>,
    /// Progress of a snapshot being copied.
    pub syncing_percent: Option<f64>,
}

/// A VM whose DR copy may lack writes: what a forced promote would lose.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AtRisk {
    pub vm: String,
    /// The largest lag of its volumes; `None` when no snapshot has reached the DR site yet.
    pub lag_secs: Option<i64>,
    /// The oldest of its volumes' newest replicated snapshots: writes after it are at risk.
    pub last_snapshot: Option<DateTime<Utc>>,
    pub reason: String,
}

impl fmt::Display for AtRisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.last_snapshot, self.lag_secs) {
            (Some(t), Some(lag)) => write!(
                f,
                "{}: writes after {} (lag {}s) may be lost — {}",
                self.vm,
                t.format("%Y-%m-%d %H:%M:%S UTC"),
                lag,
                self.reason
            ),
            _ => write!(
                f,
                "{}: no snapshot has reached the DR site — {}",
                self.vm, self.reason
            ),
        }
    }
}

/// One side of one image, as its own site reports it.
enum Side<'a> {
    Unreachable,
    Absent,
    Status(&'a ImageStatus),
}

impl<'a> Side<'a> {
    fn of(pool: Option<&'a PoolStatus>, image: &str) -> Self {
        match pool {
            None => Self::Unreachable,
            Some(p) => p.image(image).map_or(Self::Absent, Self::Status),
        }
    }

    fn status(&self) -> Option<&'a ImageStatus> {
        match self {
            Self::Status(s) => Some(s),
            _ => None,
        }
    }

    fn state(&self) -> String {
        match self {
            Self::Unreachable => "unknown".into(),
            Self::Absent => "absent".into(),
            Self::Status(s) => s.state.clone(),
        }
    }

    fn description(&self) -> String {
        match self {
            Self::Unreachable => "site unreachable".into(),
            Self::Absent => "not mirrored there".into(),
            Self::Status(s) => s.description_kind().to_string(),
        }
    }
}

/// Whether a description says the image serves as primary (also while force promoting).
pub(crate) fn acts_as_primary(description_kind: &str) -> bool {
    description_kind == crate::glue::types::PRIMARY || description_kind.contains("force promoting")
}

/// Exactly one side primary, the other replaying, idle and caught up.
pub(crate) fn pair_synced(protected: &ImageStatus, dr: &ImageStatus) -> bool {
    let replica = match (protected.is_primary(), dr.is_primary()) {
        (true, false) => dr,
        (false, true) => protected,
        _ => return false,
    };
    replica.is_replaying_idle() && replica.replay_detail().as_ref().is_some_and(caught_up)
}

/// Idle on the newest snapshot the replica knows of (when both timestamps are reported).
pub(crate) fn caught_up(detail: &ReplayDetail) -> bool {
    detail.is_idle()
        && match (
            detail.local_snapshot_timestamp,
            detail.remote_snapshot_timestamp,
        ) {
            (Some(local), Some(remote)) => local >= remote,
            _ => true,
        }
}

/// The replica's replay detail: its own report when it has one, else what the primary last
/// heard from it.
fn replica_detail(p: &Side<'_>, d: &Side<'_>) -> Option<ReplayDetail> {
    let own = |s: &Side<'_>| s.status().and_then(MirrorSide::replay_detail);
    let heard = |s: &Side<'_>| {
        s.status()
            .and_then(ImageStatus::peer)
            .and_then(MirrorSide::replay_detail)
    };
    own(d)
        .or_else(|| own(p))
        .or_else(|| heard(p))
        .or_else(|| heard(d))
}

/// Now − `then`, never negative (the storage clock may run a little ahead).
pub(crate) fn lag(now: DateTime<Utc>, then: DateTime<Utc>) -> chrono::Duration {
    (now - then).max(chrono::Duration::zero())
}

fn volume(
    kind: &str,
    path: &str,
    protected: Option<&PoolStatus>,
    dr: Option<&PoolStatus>,
    now: DateTime<Utc>,
) -> VolumeMirror {
    let p = Side::of(protected, path);
    let d = Side::of(dr, path);
    let detail = replica_detail(&p, &d);
    let last_snapshot = detail.as_ref().and_then(ReplayDetail::local_snapshot_time);
    let synced = match (p.status(), d.status()) {
        (Some(ps), Some(ds)) => pair_synced(ps, ds),
        _ => false,
    };
    VolumeMirror {
        kind: kind.to_string(),
        path: path.to_string(),
        primary_state: p.state(),
        dr_state: d.state(),
        primary_description: p.description(),
        dr_description: d.description(),
        primary_seen_from_dr: d
            .status()
            .and_then(ImageStatus::peer)
            .map(|peer| peer.description_kind().to_string())
            .unwrap_or_default(),
        primary_state_seen_from_dr: d
            .status()
            .and_then(ImageStatus::peer)
            .map(|peer| peer.state.clone())
            .unwrap_or_default(),
        synced,
        last_snapshot,
        lag: last_snapshot.map(|t| lag(now, t)),
        syncing_percent: detail
            .as_ref()
            .filter(|d| !d.is_idle())
            .and_then(|d| d.syncing_percent),
    }
}

fn map_vm(id: &str, name: Option<&str>, state: Option<&str>, site: &str) -> Vm {
    Vm {
        id: id.to_string(),
        name: name.unwrap_or(id).to_string(),
        state: state.unwrap_or("unknown").to_string(),
        site: site.to_string(),
        host: None,
        tags: BTreeMap::new(),
    }
}

/// The index of the VM called `name`, added if new.
fn slot(vms: &mut Vec<VmMirror>, name: &str) -> usize {
    if let Some(i) = vms.iter().position(|v| v.name == name) {
        return i;
    }
    vms.push(VmMirror {
        name: name.to_string(),
        primary_vm: None,
        dr_vm: None,
        volumes: Vec::new(),
        synced: false,
    });
    vms.len() - 1
}

/// Builds the status from what was read: the protected site's record rows first (its
/// order), then any row only the DR site knows.
pub(crate) fn build(read: &ClusterRead, now: DateTime<Utc>) -> MirrorStatus {
    let protected = read.protected();
    let dr = read.dr();
    let p_pool = read.pools.get(protected);
    let d_pool = read.pools.get(dr);
    let mut vms: Vec<VmMirror> = Vec::new();
    let mut rows: Vec<(usize, &VmMapRow)> = Vec::new();
    if let Some(r) = read.records.get(protected) {
        for row in &r.vm_map {
            let name = row
                .vm_name
                .as_deref()
                .or(row.mirror_vm_name.as_deref())
                .unwrap_or(&row.vm_id);
            let i = slot(&mut vms, name);
            rows.push((i, row));
            vms[i].primary_vm.get_or_insert_with(|| {
                map_vm(
                    &row.vm_id,
                    row.vm_name.as_deref(),
                    row.vm_state.as_deref(),
                    protected,
                )
            });
            if !read.records.contains_key(dr)
                && let Some(id) = &row.mirror_vm_id
            {
                vms[i].dr_vm.get_or_insert_with(|| {
                    map_vm(
                        id,
                        row.mirror_vm_name.as_deref(),
                        row.mirror_vm_state.as_deref(),
                        dr,
                    )
                });
            }
        }
    }
    if let Some(r) = read.records.get(dr) {
        for row in &r.vm_map {
            let name = row
                .mirror_vm_name
                .as_deref()
                .or(row.vm_name.as_deref())
                .unwrap_or(&row.vm_id);
            let i = slot(&mut vms, name);
            rows.push((i, row));
            vms[i].dr_vm.get_or_insert_with(|| {
                map_vm(
                    &row.vm_id,
                    row.vm_name.as_deref(),
                    row.vm_state.as_deref(),
                    dr,
                )
            });
            if let Some(id) = &row.mirror_vm_id {
                vms[i].primary_vm.get_or_insert_with(|| {
                    map_vm(
                        id,
                        row.mirror_vm_name.as_deref(),
                        row.mirror_vm_state.as_deref(),
                        protected,
                    )
                });
            }
        }
    }
    for (i, row) in rows {
        if vms[i].volumes.iter().any(|v| v.path == row.volume_path) {
            continue;
        }
        let kind = row.volume_type.as_deref().unwrap_or("unknown");
        let v = volume(kind, &row.volume_path, p_pool, d_pool, now);
        vms[i].volumes.push(v);
    }
    for vm in &mut vms {
        vm.synced = !vm.volumes.is_empty() && vm.volumes.iter().all(|v| v.synced);
    }
    let synced = vms.iter().filter(|v| v.synced).count();
    let summary = MirrorSummary {
        vms: vms.len(),
        synced,
        unsynced: vms.len() - synced,
        max_lag_secs: vms
            .iter()
            .flat_map(|v| &v.volumes)
            .filter_map(|v| v.lag.map(|l| l.num_seconds()))
            .max(),
    };
    MirrorStatus {
        cluster: read.cluster.name.clone(),
        primary_site: protected.to_string(),
        dr_site: dr.to_string(),
        taken_at: now,
        vms,
        summary,
        unreachable: read.cluster.unreachable.clone(),
    }
}

impl VolumeMirror {
    /// One line for waits and errors: `ROOT 6f1c…: site-a up+stopped, site-b up+replaying
    /// (syncing 42%)`.
    pub(crate) fn describe(&self, primary_site: &str, dr_site: &str) -> String {
        let mut s = format!(
            "{} {}: {primary_site} {} ({}), {dr_site} {} ({})",
            self.kind,
            self.path,
            self.primary_state,
            self.primary_description,
            self.dr_state,
            self.dr_description
        );
        if let Some(p) = self.syncing_percent {
            let _ = write!(s, ", copying {p:.0}%");
        }
        s
    }

    /// Whether the DR side's image already serves as primary (promoted or force promoting).
    pub(crate) fn dr_is_primary(&self) -> bool {
        acts_as_primary(&self.dr_description)
    }
}

impl MirrorStatus {
    /// What is not synced yet, one entry per volume (for waits and errors).
    pub(crate) fn pending(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .vms
            .iter()
            .filter(|v| !v.synced)
            .flat_map(|v| {
                let volumes: Vec<String> = v
                    .volumes
                    .iter()
                    .filter(|vol| !vol.synced)
                    .map(|vol| {
                        format!(
                            "{}: {}",
                            v.name,
                            vol.describe(&self.primary_site, &self.dr_site)
                        )
                    })
                    .collect();
                if volumes.is_empty() {
                    vec![format!("{}: no mirrored volume", v.name)]
                } else {
                    volumes
                }
            })
            .collect();
        out.extend(
            self.unreachable
                .iter()
                .map(|(s, why)| format!("{s} unreachable ({why})")),
        );
        out
    }

    /// The VMs a forced promote of the DR site would leave short of writes: every VM with an
    /// image still to promote, unless its protected VM is known stopped and every such image
    /// is synced (then the DR copy provably holds every write).
    pub fn at_risk(&self) -> Vec<AtRisk> {
        let mut out = Vec::new();
        for vm in &self.vms {
            let to_promote: Vec<&VolumeMirror> =
                vm.volumes.iter().filter(|v| !v.dr_is_primary()).collect();
            if to_promote.is_empty() {
                continue;
            }
            let protected_stopped = vm.primary_vm.as_ref().is_some_and(Vm::is_stopped);
            if protected_stopped && to_promote.iter().all(|v| v.synced) {
                continue;
            }
            let reason = if self.unreachable.contains_key(&self.primary_site) {
                format!(
                    "{} cannot be read, so writes made there since the last replicated snapshot cannot be ruled out",
                    self.primary_site
                )
            } else if !protected_stopped {
                format!(
                    "the VM is {} on {}: it may write after the last replicated snapshot",
                    vm.primary_vm
                        .as_ref()
                        .map_or("unknown", |v| v.state.as_str()),
                    self.primary_site
                )
            } else {
                "a snapshot has not finished copying to the DR site".to_string()
            };
            let any_missing = to_promote.iter().any(|v| v.last_snapshot.is_none());
            out.push(AtRisk {
                vm: vm.name.clone(),
                lag_secs: if any_missing {
                    None
                } else {
                    to_promote
                        .iter()
                        .filter_map(|v| v.lag.map(|l| l.num_seconds()))
                        .max()
                },
                last_snapshot: if any_missing {
                    None
                } else {
                    to_promote.iter().filter_map(|v| v.last_snapshot).min()
                },
                reason,
            });
        }
        out
    }
}

fn state_of(vm: Option<&Vm>) -> &str {
    vm.map_or("-", |v| v.state.as_str())
}

impl fmt::Display for MirrorSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} VMs, {} synced, {} not",
            self.vms, self.synced, self.unsynced
        )?;
        if let Some(lag) = self.max_lag_secs {
            write!(f, ", max lag {lag}s")?;
        }
        Ok(())
    }
}

impl VolumeMirror {
    fn fmt_between(&self, f: &mut fmt::Formatter<'_>, primary: &str, dr: &str) -> fmt::Result {
        f.write_str(&self.describe(primary, dr))?;
        if let Some(lag) = self.lag {
            write!(f, ", lag {}s", lag.num_seconds())?;
        }
        Ok(())
    }
}

impl fmt::Display for VolumeMirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_between(f, "protected", "DR")
    }
}

impl fmt::Display for VmMirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let site = |v: &Option<Vm>, fallback: &'static str| {
            v.as_ref().map_or(fallback.to_string(), |v| v.site.clone())
        };
        let (primary, dr) = (site(&self.primary_vm, "protected"), site(&self.dr_vm, "DR"));
        write!(
            f,
            "{:<20} {:<8} {primary}: {:<8} {dr}: {}",
            self.name,
            if self.synced { "synced" } else { "UNSYNCED" },
            state_of(self.primary_vm.as_ref()),
            state_of(self.dr_vm.as_ref())
        )?;
        for v in &self.volumes {
            f.write_str("\n    ")?;
            v.fmt_between(f, &primary, &dr)?;
        }
        Ok(())
    }
}

impl fmt::Display for MirrorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DR cluster {} ({} → {}) at {}: {}",
            self.cluster,
            self.primary_site,
            self.dr_site,
            self.taken_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.summary
        )?;
        for (site, why) in &self.unreachable {
            write!(f, "\n  {site} UNREACHABLE: {why}")?;
        }
        for vm in &self.vms {
            write!(f, "\n  {}", vm.to_string().replace('\n', "\n  "))?;
        }
        Ok(())
    }
}

impl Dr {
    /// The cluster's mirroring status: one `getDisasterRecoveryClusterList` and one
    /// `GET /mirror/image/rbd` per site, concurrently. A dark site shows as `unknown`.
    pub async fn mirror_status(&self, cluster: &str) -> Result<MirrorStatus, DrError> {
        let read = self.read_cluster(cluster, true).await?;
        Ok(build(&read, Utc::now()))
    }

    /// Polls the status every `poll` until every volume is synced; `progress` sees each
    /// status. The timeout error names what is still unsynced.
    pub async fn wait_synced(
        &self,
        cluster: &str,
        timeout: Duration,
        poll: Duration,
        progress: &(dyn Fn(&MirrorStatus) + Sync),
    ) -> Result<MirrorStatus, DrError> {
        let started = Instant::now();
        loop {
            let status = self.mirror_status(cluster).await?;
            progress(&status);
            if status.summary.unsynced == 0 && status.unreachable.is_empty() {
                return Ok(status);
            }
            if started.elapsed() >= timeout {
                return Err(DrError::Timeout {
                    what: format!("DR cluster {cluster:?} to be synced"),
                    waited: started.elapsed(),
                    pending: status.pending(),
                });
            }
            tokio::time::sleep(poll.min(timeout.saturating_sub(started.elapsed()))).await;
        }
    }
}

/// The record rows of one VM, matched by exact local VM name or id.
pub(crate) fn rows_of<'a>(record: &'a DrClusterRecord, name_or_id: &str) -> Vec<&'a VmMapRow> {
    let by_id: Vec<&VmMapRow> = record
        .vm_map
        .iter()
        .filter(|r| r.vm_id == name_or_id)
        .collect();
    if !by_id.is_empty() {
        return by_id;
    }
    record
        .vm_map
        .iter()
        .filter(|r| r.vm_name.as_deref() == Some(name_or_id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IDLE: &str = r#"replaying, {"bytes_per_second":0.0,"local_snapshot_timestamp":1719214141,"remote_snapshot_timestamp":1719214141,"replay_state":"idle"}"#;
    const BEHIND: &str = r#"replaying, {"bytes_per_second":0.0,"local_snapshot_timestamp":1719214100,"remote_snapshot_timestamp":1719214141,"replay_state":"idle"}"#;
    const SYNCING: &str = r#"replaying, {"local_snapshot_timestamp":1719214100,"remote_snapshot_timestamp":1719214141,"replay_state":"syncing","syncing_percent":42}"#;

    fn st(state: &str, description: &str) -> ImageStatus {
        serde_json::from_value(json!({"name": "img", "state": state, "description": description}))
            .unwrap()
    }

    #[test]
    fn synced_needs_one_primary_and_an_idle_caught_up_replica() {
        let primary = st("up+stopped", "local image is primary");
        assert!(pair_synced(&primary, &st("up+replaying", IDLE)));
        // Either direction: after a failback resync the protected site is the replica.
        assert!(pair_synced(&st("up+replaying", IDLE), &primary));
        assert!(!pair_synced(&primary, &st("up+replaying", SYNCING)));
        assert!(!pair_synced(&primary, &st("up+replaying", BEHIND)));
        assert!(!pair_synced(&primary, &primary));
        assert!(!pair_synced(
            &primary,
            &st("up+stopping_replay", "orphan (force promoting)")
        ));
        assert!(!pair_synced(
            &st("up+unknown", "remote image is not primary"),
            &st("up+unknown", "remote image demoted")
        ));
    }

    #[test]
    fn lag_is_now_minus_the_replicas_last_snapshot_and_never_negative() {
        let t = DateTime::from_timestamp(1_719_214_141, 0).unwrap();
        assert_eq!(lag(t + chrono::Duration::seconds(90), t).num_seconds(), 90);
        assert_eq!(lag(t - chrono::Duration::seconds(5), t).num_seconds(), 0);
        let detail = st("up+replaying", IDLE).replay_detail().unwrap();
        assert_eq!(detail.local_snapshot_time(), Some(t));
    }

    #[test]
    fn primary_like_descriptions() {
        assert!(acts_as_primary("local image is primary"));
        assert!(acts_as_primary("orphan (force promoting)"));
        assert!(!acts_as_primary("replaying"));
        assert!(!acts_as_primary("split-brain"));
    }
}
