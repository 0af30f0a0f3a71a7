//! Mirroring status of a DR cluster, per VM and per volume, from one list call and one Glue
//! pool status per site — never one call per VM.
//!
//! Mold's map rows give the VMs and their volumes (an RBD image per volume, same name on both
//! sites); each site's Glue gives its own view of every image. A volume is **synced** when
//! exactly one side is primary and the other side's own status is `replaying` + `idle` and
//! caught up to the newest snapshot it knows. Its **lag** is how old the newest snapshot the
//! replica holds is: the writes a failover to that replica would lose are at most that old.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use super::cluster::ClusterRead;
pub use super::outcome::AtRisk;
use super::storage_read::Via;
use super::two_way::{self, Way};
use super::unknown::{Fact, Unreadable};
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
    /// What could not be read (a site's Mold or Glue), and why: whatever depends on it is
    /// [`Fact::Unknown`] below, never a default.
    pub unknown: Vec<Unreadable>,
    /// Site → where its storage (the pool status) was read from: `glue`, or `ssh` when no
    /// Glue endpoint answered (`storage_read.rs`). Sites whose storage was not read are
    /// absent (they are in `unknown`).
    pub storage_read_via: BTreeMap<String, Via>,
    /// One line per site read over SSH: `site-b: Glue unreachable, read over SSH from
    /// 127.0.2.1`.
    pub notes: Vec<String>,
}

/// Counts over the VMs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MirrorSummary {
    pub vms: usize,
    pub synced: usize,
    /// Known not to be synced.
    pub unsynced: usize,
    /// Whether synced or not could not be told (a site could not be read).
    pub unknown: usize,
    /// The largest volume lag known, in seconds.
    pub max_lag_secs: Option<i64>,
}

/// One mirrored VM: its copy on the protected site, its mirrored VM on the DR site.
#[derive(Debug, Clone, Serialize)]
pub struct VmMirror {
    pub name: String,
    pub primary_vm: Option<Vm>,
    pub dr_vm: Option<Vm>,
    pub volumes: Vec<VolumeMirror>,
    /// Every volume synced; unknown when a volume's is unknown and none is known unsynced.
    pub synced: Fact<bool>,
    /// Its home, the site where it runs in normal operation (`direction.rs`): `None` when
    /// drbook never recorded it; unknown when a site's tags could not be read or contradict.
    pub home: Fact<Option<String>>,
    /// The direction drbook acts by (`two_way.rs`): its home, or in a one-way pairing the
    /// protected site when no home could be read.
    pub way: Way,
}

/// What one site's copy of an image is, as that site's own Glue reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves as primary: promoted, or force promoting.
    Primary,
    /// A non-primary copy: replaying, stopped, demoted, split-brain, …
    Replica,
    /// That site's Glue does not list the image as mirrored.
    Absent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::Absent => "absent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// when that site cannot be read, `absent` when its Glue does not list the image. For
    /// display; decisions use `primary_role`.
    pub primary_state: String,
    pub dr_state: String,
    /// The description without its JSON detail: `local image is primary`, `replaying`,
    /// `split-brain`, `orphan (force promoting)`, … (`unknown` when not read).
    pub primary_description: String,
    pub dr_description: String,
    /// Whether each site's copy is primary, a replica or absent there.
    pub primary_role: Fact<Role>,
    pub dr_role: Fact<Role>,
    /// What the DR site last heard from the protected site's copy (its `peer_sites` entry,
    /// without JSON detail): the view Mold's failback checks read. Right after the protected
    /// site returns it lags its own status (`status not found` until its rbd-mirror reports
    /// again); empty when the DR site lists no such peer entry.
    pub primary_seen_from_dr: Fact<String>,
    /// The `state` of that view: `up+…` once the protected site's rbd-mirror reports again
    /// (while it is `down+…` the view is the frozen one from before the outage).
    pub primary_state_seen_from_dr: Fact<String>,
    pub synced: Fact<bool>,
    /// When the newest snapshot the replica holds was taken (`None`: none reached it yet).
    pub last_snapshot: Fact<Option<DateTime<Utc>>>,
    /// Now − `last_snapshot` (seconds in JSON).
    #[serde(serialize_with = "super::ser::fact_opt_delta_secs")]
    pub lag: Fact<Option<chrono::Duration>>,
    /// Progress of a snapshot being copied.
    pub syncing_percent: Option<f64>,
    /// What the replica's last snapshot sync copied, in bytes (Glue's replay detail), when
    /// it says.
    pub last_snapshot_bytes: Option<u64>,
}

/// Where a cluster's images are primary now (see [`MirrorStatus::primary_side`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimarySide {
    /// Every image primary on the protected site only.
    Protected,
    /// Every image primary on the DR site only.
    Dr,
    /// Primary on both sites (the protected site came back after a failover), or some
    /// already replaying from the DR site and the rest still on both: a resync is due.
    Both,
    /// No image is primary anywhere (or there is none).
    None,
    /// Some one way, some another: a person should look before any runbook acts.
    Mixed,
}

impl PrimarySide {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protected => "protected",
            Self::Dr => "dr",
            Self::Both => "both",
            Self::None => "none",
            Self::Mixed => "mixed",
        }
    }
}

/// One side of one image, as its own site reports it.
enum Side<'a> {
    Unknown(Arc<Unreadable>),
    Absent,
    Status(&'a ImageStatus),
}

impl<'a> Side<'a> {
    fn of(pool: Result<&'a PoolStatus, &Arc<Unreadable>>, image: &str) -> Self {
        match pool {
            Err(u) => Self::Unknown(u.clone()),
            Ok(p) => p.image(image).map_or(Self::Absent, Self::Status),
        }
    }

    fn status(&self) -> Option<&'a ImageStatus> {
        match self {
            Self::Status(s) => Some(s),
            _ => None,
        }
    }

    fn unknown(&self) -> Option<&Arc<Unreadable>> {
        match self {
            Self::Unknown(u) => Some(u),
            _ => None,
        }
    }

    fn state(&self) -> String {
        match self {
            Self::Unknown(_) => "unknown".into(),
            Self::Absent => "absent".into(),
            Self::Status(s) => s.state.clone(),
        }
    }

    fn description(&self) -> String {
        match self {
            Self::Unknown(_) => "unknown".into(),
            Self::Absent => "not mirrored there".into(),
            Self::Status(s) => s.description_kind().to_string(),
        }
    }

    fn role(&self) -> Fact<Role> {
        match self {
            Self::Unknown(u) => Fact::Unknown(u.clone()),
            Self::Absent => Fact::Known(Role::Absent),
            Self::Status(s) if acts_as_primary(s.description_kind()) => Fact::Known(Role::Primary),
            Self::Status(_) => Fact::Known(Role::Replica),
        }
    }

    /// What this side's peer entry says of the other side's copy.
    fn peer_view(&self, pick: impl Fn(&crate::glue::types::PeerSite) -> String) -> Fact<String> {
        match self {
            Self::Unknown(u) => Fact::Unknown(u.clone()),
            Self::Absent => Fact::Known(String::new()),
            Self::Status(s) => Fact::Known(s.peer().map(pick).unwrap_or_default()),
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
    replica_caught_up(replica)
}

fn replica_caught_up(replica: &ImageStatus) -> bool {
    replica.is_replaying_idle() && replica.replay_detail().as_ref().is_some_and(caught_up)
}

/// Synced, from what could be read: both sides decide; with one side unknown, the known side
/// can still prove it is not (a replica that is not caught up, a copy that is absent).
fn synced(p: &Side<'_>, d: &Side<'_>) -> Fact<bool> {
    match (p, d) {
        (Side::Status(ps), Side::Status(ds)) => Fact::Known(pair_synced(ps, ds)),
        (Side::Absent, _) | (_, Side::Absent) => Fact::Known(false),
        (Side::Unknown(u), Side::Status(known)) | (Side::Status(known), Side::Unknown(u)) => {
            if !known.is_primary() && !replica_caught_up(known) {
                Fact::Known(false)
            } else {
                Fact::Unknown(u.clone())
            }
        }
        (Side::Unknown(u), Side::Unknown(_)) => Fact::Unknown(u.clone()),
    }
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
    protected: Result<&PoolStatus, &Arc<Unreadable>>,
    dr: Result<&PoolStatus, &Arc<Unreadable>>,
    now: DateTime<Utc>,
) -> VolumeMirror {
    let p = Side::of(protected, path);
    let d = Side::of(dr, path);
    let detail = replica_detail(&p, &d);
    // No replay detail anywhere: "never synced" only when both sides were read.
    let last_snapshot = match (&detail, d.unknown().or(p.unknown())) {
        (Some(detail), _) => Fact::Known(detail.local_snapshot_time()),
        (None, Some(u)) => Fact::Unknown(u.clone()),
        (None, None) => Fact::Known(None),
    };
    VolumeMirror {
        kind: kind.to_string(),
        path: path.to_string(),
        primary_state: p.state(),
        dr_state: d.state(),
        primary_description: p.description(),
        dr_description: d.description(),
        primary_role: p.role(),
        dr_role: d.role(),
        primary_seen_from_dr: d.peer_view(|peer| peer.description_kind().to_string()),
        primary_state_seen_from_dr: d.peer_view(|peer| peer.state.clone()),
        synced: synced(&p, &d),
        lag: last_snapshot.clone().map(|t| t.map(|t| lag(now, t))),
        last_snapshot,
        syncing_percent: detail
            .as_ref()
            .filter(|d| !d.is_idle())
            .and_then(|d| d.syncing_percent),
        last_snapshot_bytes: detail.as_ref().and_then(|d| d.last_snapshot_bytes),
    }
}

/// The largest lag and the oldest newest-snapshot of the volumes a promote would take over:
/// unknown if any of theirs is, `None` if any never got a snapshot.
fn worst_of(volumes: &[&VolumeMirror]) -> (Fact<Option<i64>>, Fact<Option<DateTime<Utc>>>) {
    if let Some(u) = volumes
        .iter()
        .find_map(|v| v.last_snapshot.unreadable().cloned())
    {
        return (Fact::Unknown(u.clone()), Fact::Unknown(u));
    }
    let snapshots: Vec<Option<DateTime<Utc>>> = volumes
        .iter()
        .filter_map(|v| v.last_snapshot.known().copied())
        .collect();
    if snapshots.iter().any(Option::is_none) {
        return (Fact::Known(None), Fact::Known(None));
    }
    let lag = volumes
        .iter()
        .filter_map(|v| v.lag.known().copied().flatten())
        .map(|l| l.num_seconds())
        .max();
    (
        Fact::Known(lag),
        Fact::Known(snapshots.into_iter().flatten().min()),
    )
}

/// Every volume synced → synced; any known unsynced → not; otherwise unknown.
fn all_synced<'a>(facts: impl IntoIterator<Item = &'a Fact<bool>>) -> Fact<bool> {
    let mut unknown = None;
    let mut any = false;
    for f in facts {
        any = true;
        match f {
            Fact::Known(false) => return Fact::Known(false),
            Fact::Known(true) => {}
            Fact::Unknown(u) => unknown = unknown.or_else(|| Some(u.clone())),
        }
    }
    match unknown {
        Some(u) => Fact::Unknown(u),
        None => Fact::Known(any),
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
        offering: None,
    }
}

/// The index of the VM called `name`, added if new; `by_name` indexes `vms` (a thousand VMs'
/// rows must not scan the list each).
fn slot(vms: &mut Vec<VmMirror>, by_name: &mut HashMap<String, usize>, name: &str) -> usize {
    if let Some(&i) = by_name.get(name) {
        return i;
    }
    by_name.insert(name.to_string(), vms.len());
    vms.push(VmMirror {
        name: name.to_string(),
        primary_vm: None,
        dr_vm: None,
        volumes: Vec::new(),
        synced: Fact::Known(false),
        home: Fact::Known(None),
        way: Way::Untold("its home was not read".into()),
    });
    vms.len() - 1
}

/// Builds the status from what was read: the protected site's record rows first (its
/// order), then any row only the DR site knows.
pub(crate) fn build(read: &ClusterRead, now: DateTime<Utc>) -> MirrorStatus {
    let protected = read.protected();
    let dr = read.dr();
    let p_unread = not_read(read, protected);
    let d_unread = not_read(read, dr);
    let p_pool = read.pools.get(protected).ok_or(&p_unread);
    let d_pool = read.pools.get(dr).ok_or(&d_unread);
    let mut vms: Vec<VmMirror> = Vec::new();
    let mut by_name = HashMap::new();
    let mut rows: Vec<(usize, &VmMapRow)> = Vec::new();
    if let Some(r) = read.records.get(protected) {
        for row in &r.vm_map {
            let name = row
                .vm_name
                .as_deref()
                .or(row.mirror_vm_name.as_deref())
                .unwrap_or(&row.vm_id);
            let i = slot(&mut vms, &mut by_name, name);
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
            let i = slot(&mut vms, &mut by_name, name);
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
        vm.synced = all_synced(vm.volumes.iter().map(|v| &v.synced));
    }
    let count = |f: fn(&Fact<bool>) -> bool| vms.iter().filter(|v| f(&v.synced)).count();
    let summary = MirrorSummary {
        vms: vms.len(),
        synced: count(Fact::is_true),
        unsynced: count(Fact::is_false),
        unknown: count(|f| !f.is_known()),
        max_lag_secs: vms
            .iter()
            .flat_map(|v| &v.volumes)
            .filter_map(|v| v.lag.known().copied().flatten().map(|l| l.num_seconds()))
            .max(),
    };
    MirrorStatus {
        cluster: read.cluster.name.clone(),
        primary_site: protected.to_string(),
        dr_site: dr.to_string(),
        taken_at: now,
        vms,
        summary,
        unknown: read.cluster.unknown.clone(),
        storage_read_via: read
            .storage_read
            .iter()
            .map(|(site, r)| (site.clone(), r.via))
            .collect(),
        notes: read
            .storage_read
            .values()
            .filter_map(super::storage_read::StorageRead::note)
            .collect(),
    }
}

/// Why `site`'s pool status is missing from `read` (its Glue failed, or was not asked).
fn not_read(read: &ClusterRead, site: &str) -> Arc<Unreadable> {
    Arc::new(
        read.glue_down
            .get(site)
            .cloned()
            .unwrap_or_else(|| Unreadable {
                site: site.to_string(),
                api: super::unknown::Api::Glue,
                command: super::cluster::POOL_STATUS_ROUTE.to_string(),
                error: "not read".to_string(),
                dark: false,
            }),
    )
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

    /// Whether the DR side's image already serves as primary (promoted or force
    /// promoting); unknown when the DR site's Glue could not be read.
    pub(crate) fn dr_is_primary(&self) -> Fact<bool> {
        self.dr_role.clone().map(|r| r == Role::Primary)
    }
}

impl MirrorStatus {
    /// What is not synced yet, or not known to be, one entry per volume (for waits and
    /// errors), then what could not be read.
    pub(crate) fn pending(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .vms
            .iter()
            .filter(|v| !v.synced.is_true())
            .flat_map(|v| {
                let volumes: Vec<String> = v
                    .volumes
                    .iter()
                    .filter(|vol| !vol.synced.is_true())
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
        out.extend(self.unknown.iter().map(ToString::to_string));
        out
    }

    /// Whether everything was read: no site's Mold or Glue is missing from this status.
    pub fn complete(&self) -> bool {
        self.unknown.is_empty()
    }

    /// Nothing, or an unknown error for `purpose` naming the first site and API that could
    /// not be read: for decisions that need every part of the status.
    pub fn require_complete(&self, purpose: &str) -> Result<(), DrError> {
        match self.unknown.first() {
            None => Ok(()),
            Some(u) => Err(DrError::unknown(
                &format!("go on with {purpose}"),
                &format!("part of DR cluster {:?}'s status", self.cluster),
                u,
            )),
        }
    }

    /// What could not be read about `site`, if anything (its Glue first: image roles).
    fn unread(&self, site: &str) -> Option<&Unreadable> {
        let on = |api| self.unknown.iter().find(|u| u.site == site && u.api == api);
        on(super::unknown::Api::Glue).or_else(|| on(super::unknown::Api::Mold))
    }

    /// The VMs a forced promote of the DR site would leave short of writes: every VM with an
    /// image still to promote (or whose DR copy could not be read), unless its protected VM
    /// is known stopped and every such image is synced (then the DR copy provably holds
    /// every write). What a VM would lose is unknown when its DR copies were not read.
    pub fn at_risk(&self) -> Vec<AtRisk> {
        let mut out = Vec::new();
        for vm in &self.vms {
            let to_promote: Vec<&VolumeMirror> = vm
                .volumes
                .iter()
                .filter(|v| !v.dr_is_primary().is_true())
                .collect();
            if to_promote.is_empty() {
                continue;
            }
            let protected_stopped = vm.primary_vm.as_ref().is_some_and(Vm::is_stopped);
            if protected_stopped && to_promote.iter().all(|v| v.synced.is_true()) {
                continue;
            }
            let reason = if let Some(u) = self.unread(&self.primary_site) {
                format!(
                    "{} could not be read, so writes made there since the last replicated snapshot cannot be ruled out",
                    u.source()
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
            let (lag_secs, last_snapshot) = worst_of(&to_promote);
            out.push(AtRisk {
                vm: vm.name.clone(),
                lag_secs,
                last_snapshot,
                reason,
            });
        }
        out
    }

    /// Where the images are primary now, from both sites' own reports. Unknown (an error
    /// naming what could not be read) unless every copy's role was read on both sites.
    pub fn primary_side(&self) -> Result<PrimarySide, DrError> {
        let action = format!(
            "tell where the images of DR cluster {:?} are primary",
            self.cluster
        );
        let mut sides = Vec::new();
        for v in self.vms.iter().flat_map(|m| &m.volumes) {
            let what = |site: &str| format!("the roles of the images on {site}");
            let p = v
                .primary_role
                .clone()
                .require(&action, &what(&self.primary_site))?;
            let d = v.dr_role.clone().require(&action, &what(&self.dr_site))?;
            sides.push(match (p == Role::Primary, d == Role::Primary) {
                (true, true) => PrimarySide::Both,
                (true, false) => PrimarySide::Protected,
                (false, true) => PrimarySide::Dr,
                (false, false) => PrimarySide::None,
            });
        }
        if sides.iter().all(|s| *s == PrimarySide::None) {
            return Ok(PrimarySide::None);
        }
        for side in [PrimarySide::Protected, PrimarySide::Dr, PrimarySide::Both] {
            if sides.iter().all(|s| *s == side) {
                return Ok(side);
            }
        }
        // Some copies replay from the DR site already, the rest are still split: a resync
        // is still due for those.
        if sides
            .iter()
            .all(|s| matches!(s, PrimarySide::Dr | PrimarySide::Both))
        {
            return Ok(PrimarySide::Both);
        }
        Ok(PrimarySide::Mixed)
    }

    /// Whether every image is primary on the DR site already (a failover promoted it),
    /// from the DR site's own report alone: the protected site may be dark. Unknown when
    /// the DR site's copies could not be read.
    pub fn dr_promoted(&self) -> Result<bool, DrError> {
        let action = format!(
            "tell whether DR cluster {:?} is promoted on {}",
            self.cluster, self.dr_site
        );
        let mut any = false;
        for v in self.vms.iter().flat_map(|m| &m.volumes) {
            any = true;
            let what = format!("the roles of the images on {}", self.dr_site);
            if !v.dr_is_primary().require(&action, &what)? {
                return Ok(false);
            }
        }
        Ok(any)
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
        if self.unknown > 0 {
            write!(f, ", {} unknown", self.unknown)?;
        }
        if let Some(lag) = self.max_lag_secs {
            write!(f, ", max lag {lag}s")?;
        }
        Ok(())
    }
}

impl VolumeMirror {
    fn fmt_between(&self, f: &mut fmt::Formatter<'_>, primary: &str, dr: &str) -> fmt::Result {
        f.write_str(&self.describe(primary, dr))?;
        match &self.lag {
            Fact::Known(Some(lag)) => write!(f, ", lag {}s", lag.num_seconds()),
            Fact::Known(None) => Ok(()),
            Fact::Unknown(_) => f.write_str(", lag unknown"),
        }
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
            match self.synced {
                Fact::Known(true) => "synced",
                Fact::Known(false) => "UNSYNCED",
                Fact::Unknown(_) => "UNKNOWN",
            },
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
        for u in &self.unknown {
            write!(f, "\n  UNKNOWN: {u}")?;
        }
        for note in &self.notes {
            write!(f, "\n  NOTE: {note}")?;
        }
        for vm in &self.vms {
            write!(f, "\n  {}", vm.to_string().replace('\n', "\n  "))?;
        }
        Ok(())
    }
}

/// A VM's home from the tags on its two copies.
fn home_from_tags(
    read: &ClusterRead,
    vm: &VmMirror,
    tags: &super::home_tags::SiteTags,
) -> Fact<Option<String>> {
    super::home_tags::home_fact(
        [
            (
                read.protected(),
                vm.primary_vm.as_ref().map(|v| v.id.as_str()),
            ),
            (read.dr(), vm.dr_vm.as_ref().map(|v| v.id.as_str())),
        ],
        tags,
    )
}

impl Dr {
    /// The cluster's mirroring status: one `getDisasterRecoveryClusterList` and one
    /// `GET /mirror/image/rbd` per site, concurrently. A dark site shows as `unknown`.
    pub async fn mirror_status(&self, cluster: &str) -> Result<MirrorStatus, DrError> {
        let sites = self.site_names();
        let sites: Vec<&str> = sites.iter().map(String::as_str).collect();
        // A read: where no Glue endpoint answers, the pool status is read over SSH.
        let (read, tags) = futures_util::future::join(
            self.read_cluster_with(cluster, super::cluster::Pools::GlueOrSsh),
            self.home_tags(&sites),
        )
        .await;
        let read = read?;
        let mut status = build(&read, Utc::now());
        for vm in &mut status.vms {
            vm.home = home_from_tags(&read, vm, &tags);
        }
        let homes: Vec<(&str, &Fact<Option<String>>)> = status
            .vms
            .iter()
            .map(|v| (v.name.as_str(), &v.home))
            .collect();
        let ways: Vec<Way> = two_way::ways(&homes, read.protected(), read.dr())
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        for (vm, way) in status.vms.iter_mut().zip(ways) {
            vm.way = way;
        }
        Ok(status)
    }

    /// Each mirrored VM of an already read cluster with its home (one `listTags` per site):
    /// what the cluster-level acts judge their reach by.
    pub(crate) async fn homes(&self, read: &ClusterRead) -> Vec<(String, Fact<Option<String>>)> {
        let sites = self.site_names();
        let sites: Vec<&str> = sites.iter().map(String::as_str).collect();
        let tags = self.home_tags(&sites).await;
        build(read, Utc::now())
            .vms
            .iter()
            .map(|vm| (vm.name.clone(), home_from_tags(read, vm, &tags)))
            .collect()
    }

    /// Polls the status every `poll` until every volume is known synced; `progress` sees
    /// what is still pending each time (volumes, and what could not be read). A read that
    /// fails is waited through like an unsynced volume, never taken for synced. The timeout
    /// error names what is still pending.
    pub async fn wait_synced(
        &self,
        cluster: &str,
        timeout: Duration,
        poll: Duration,
        progress: &(dyn Fn(&WaitProgress<'_>) + Sync),
    ) -> Result<MirrorStatus, DrError> {
        self.wait_synced_with(cluster, timeout, poll, progress, || {
            self.mirror_status(cluster)
        })
        .await
    }

    /// [`Dr::wait_synced`] over the statuses `read` returns (all VMs, or one direction's).
    pub(crate) async fn wait_synced_with<F, Fut>(
        &self,
        cluster: &str,
        timeout: Duration,
        poll: Duration,
        progress: &(dyn Fn(&WaitProgress<'_>) + Sync),
        read: F,
    ) -> Result<MirrorStatus, DrError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<MirrorStatus, DrError>>,
    {
        let started = Instant::now();
        loop {
            let pending = match read().await {
                Ok(status) => {
                    progress(&WaitProgress::Status(&status));
                    if status.summary.synced == status.summary.vms && status.complete() {
                        return Ok(status);
                    }
                    status.pending()
                }
                // Nothing answered well enough to tell: that is what is pending.
                Err(e @ DrError::Unknown { .. }) => {
                    progress(&WaitProgress::Failed(&e));
                    vec![e.to_string()]
                }
                Err(e) => return Err(e),
            };
            if started.elapsed() >= timeout {
                return Err(DrError::Timeout {
                    what: format!("DR cluster {cluster:?} to be synced"),
                    waited: started.elapsed(),
                    pending,
                });
            }
            tokio::time::sleep(poll.min(timeout.saturating_sub(started.elapsed()))).await;
        }
    }
}

/// What a wait for sync saw on one round: a status short of synced, or a read that failed.
pub enum WaitProgress<'a> {
    Status(&'a MirrorStatus),
    Failed(&'a DrError),
}

impl WaitProgress<'_> {
    /// One line: how many are synced, and what could not be read.
    pub fn line(&self) -> String {
        match self {
            Self::Status(s) => {
                let mut line = format!("{} of {} VMs synced", s.summary.synced, s.summary.vms);
                for u in &s.unknown {
                    let _ = write!(line, "; {}", u.short());
                }
                line
            }
            Self::Failed(e) => format!("no status: {e}"),
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

    fn pool(images: &[(&str, &str, &str)]) -> PoolStatus {
        let images: Vec<serde_json::Value> = images
            .iter()
            .map(|(name, state, description)| json!({"name": name, "state": state, "description": description}))
            .collect();
        serde_json::from_value(json!({"images": images})).unwrap()
    }

    fn dark(site: &str) -> Arc<Unreadable> {
        Arc::new(Unreadable {
            site: site.into(),
            api: crate::dr::Api::Glue,
            command: "GET /mirror/image/rbd".into(),
            error: "no Glue endpoint could be reached".into(),
            dark: true,
        })
    }

    fn status_of(volumes: Vec<VolumeMirror>, unknown: Vec<Unreadable>) -> MirrorStatus {
        let vm = VmMirror {
            name: "vm".into(),
            primary_vm: None,
            dr_vm: None,
            synced: all_synced(volumes.iter().map(|v| &v.synced)),
            volumes,
            home: Fact::Known(None),
            way: Way::Home("site-a".into()),
        };
        MirrorStatus {
            cluster: "DR".into(),
            primary_site: "site-a".into(),
            dr_site: "site-b".into(),
            taken_at: Utc::now(),
            vms: vec![vm],
            summary: MirrorSummary {
                vms: 1,
                synced: 0,
                unsynced: 0,
                unknown: 0,
                max_lag_secs: None,
            },
            unknown,
            storage_read_via: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_side_that_could_not_be_read_is_unknown_never_a_default() {
        let now = Utc::now();
        let primary = pool(&[("img", "up+stopped", "local image is primary")]);
        let replica = pool(&[("img", "up+replaying", IDLE)]);
        let b = dark("site-b");

        // The DR site's Glue is dark: its role, the sync and the lag are unknown (before
        // this, they read "not primary", "not synced" and "never synced").
        let v = volume("ROOT", "img", Ok(&primary), Err(&b), now);
        assert_eq!(v.primary_role, Fact::Known(Role::Primary));
        assert!(!v.dr_role.is_known() && !v.synced.is_known() && !v.last_snapshot.is_known());
        let s = status_of(vec![v], vec![(*b).clone()]);
        assert!(matches!(s.primary_side(), Err(DrError::Unknown { .. })));
        assert!(matches!(s.dr_promoted(), Err(DrError::Unknown { .. })));
        let risk = s.at_risk();
        assert_eq!(risk.len(), 1);
        assert!(!risk[0].lag_secs.is_known(), "{}", risk[0]);
        assert!(
            risk[0]
                .to_string()
                .contains("what a promote would lose is unknown")
        );
        assert!(s.require_complete("a test").is_err());

        // The protected site is dark (a disaster): what the DR site says of itself is known,
        // and enough for a failover: not promoted yet, and how old its copy is.
        let a = dark("site-a");
        let v = volume("ROOT", "img", Err(&a), Ok(&replica), now);
        assert_eq!(v.dr_role, Fact::Known(Role::Replica));
        assert!(matches!(v.last_snapshot, Fact::Known(Some(_))));
        assert!(!v.synced.is_known(), "the primary may hold newer writes");
        let s = status_of(vec![v], vec![(*a).clone()]);
        assert!(!s.dr_promoted().unwrap());
        assert!(matches!(s.primary_side(), Err(DrError::Unknown { .. })));
        let risk = s.at_risk();
        assert!(
            matches!(risk[0].lag_secs, Fact::Known(Some(_))),
            "{}",
            risk[0]
        );
        assert!(risk[0].reason.contains("site-a's Glue could not be read"));

        // A known side can still prove a copy is not synced.
        let syncing = pool(&[("img", "up+replaying", SYNCING)]);
        let v = volume("ROOT", "img", Err(&a), Ok(&syncing), now);
        assert_eq!(v.synced, Fact::Known(false));

        // Both read: every role known, and the side is told.
        let v = volume("ROOT", "img", Ok(&primary), Ok(&replica), now);
        assert_eq!(v.synced, Fact::Known(true));
        let s = status_of(vec![v], vec![]);
        assert_eq!(s.primary_side().unwrap(), PrimarySide::Protected);
        assert!(s.require_complete("a test").is_ok());
    }

    #[test]
    fn a_vm_is_unsynced_if_any_volume_is_known_unsynced_and_unknown_otherwise() {
        let u = dark("site-b");
        let (t, f, x) = (Fact::Known(true), Fact::Known(false), Fact::Unknown(u));
        assert_eq!(all_synced([&t, &t]), Fact::Known(true));
        assert_eq!(all_synced([&t, &x, &f]), Fact::Known(false));
        assert!(!all_synced([&t, &x]).is_known());
        assert_eq!(
            all_synced([]),
            Fact::Known(false),
            "no volume is not synced"
        );
    }
}
