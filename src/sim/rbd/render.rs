//! Statuses as `rbd … --format json` prints them and Glue passes them on (spec §3, §6.4–§6.6).
//!
//! Simplification: a status shows the model's state at once. Real rbd-mirror rewrites a
//! replaying image's status about every 30 s, so real pollers see changes up to 30 s late;
//! they must tolerate that anyway (§5.6), and tests run faster without it.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, TimeDelta};
use serde_json::{Map, Value, json};

use super::ModelStorage;
use super::state::{
    Frozen, Image, Link, Mirror, Pair, ParentRef, ReplicaStep, Report, Role, SiteIx, SnapKind,
    StateKind, Transfer, peer_of,
};
use crate::sim::storage::Storage as _;

pub(super) const PRIMARY: &str = "local image is primary";
pub(super) const ORPHAN_FORCE_PROMOTING: &str = "orphan (force promoting)";
pub(super) const STATUS_NOT_FOUND: &str = "status not found";
pub(super) const RESYNC_REQUESTED: &str = "resync requested";
pub(super) const REMOTE_DEMOTED: &str = "remote image demoted";
pub(super) const REMOTE_NOT_PRIMARY: &str = "remote image is not primary";
pub(super) const SPLIT_BRAIN: &str = "split-brain";
pub(super) const STARTING_REPLAY: &str = "starting replay";

/// The Ceph release whose behaviour the model follows (§6.6).
const CEPH_VERSION: &str = "16.2.15";
/// `rbd info` features of an image Mold creates.
const FEATURES: [&str; 5] = [
    "layering",
    "exclusive-lock",
    "object-map",
    "fast-diff",
    "deep-flatten",
];

/// One site's status of one copy, as a site sees it.
#[derive(Debug, Clone)]
pub(super) struct View {
    /// A daemon reports it (`up+…`).
    up: bool,
    /// `None`: nothing was ever reported (`down+unknown` / `status not found`).
    report: Option<Report>,
    /// When it was reported (`last_update`).
    at: Option<Instant>,
}

impl View {
    /// What a daemon reports right now.
    fn live(report: Option<Report>, now: Instant) -> Self {
        Self {
            up: report.is_some(),
            at: report.as_ref().map(|_| now),
            report,
        }
    }

    /// What was heard last, `up+` while `still_up` says so.
    fn heard(frozen: Option<&Frozen>, still_up: impl FnOnce(&Frozen) -> bool) -> Self {
        match frozen {
            Some(frozen) => Self {
                up: frozen.report.is_some() && still_up(frozen),
                at: frozen.report.as_ref().map(|_| frozen.at),
                report: frozen.report.clone(),
            },
            None => Self {
                up: false,
                report: None,
                at: None,
            },
        }
    }

    fn state(&self) -> String {
        match &self.report {
            Some(report) => format!(
                "{}+{}",
                if self.up { "up" } else { "down" },
                report.kind.as_str()
            ),
            None => "down+unknown".to_string(),
        }
    }

    fn description(&self) -> &str {
        self.report
            .as_ref()
            .map_or(STATUS_NOT_FOUND, |report| report.description.as_str())
    }

    /// The state the pool summary counts: a site nobody reports for counts as unknown.
    fn summary_kind(&self) -> StateKind {
        match &self.report {
            Some(report) if self.up => report.kind,
            _ => StateKind::Unknown,
        }
    }
}

/// Pool health values, in Ceph's order of severity (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Health {
    Ok,
    Unknown,
    Warning,
    Error,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Unknown => "UNKNOWN",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }
}

impl ModelStorage {
    /// The model's clock: set by the first call that passes `now`.
    pub(super) fn now(&self) -> Instant {
        self.clock
            .expect("every timed operation advances the clock before it looks at it")
    }

    fn wall(&self, at: Instant) -> DateTime<FixedOffset> {
        let (anchor, wall) = self.wall.unwrap_or((at, super::default_wall_clock()));
        let shifted = if at >= anchor {
            TimeDelta::from_std(at - anchor)
                .ok()
                .and_then(|d| wall.checked_add_signed(d))
        } else {
            TimeDelta::from_std(anchor - at)
                .ok()
                .and_then(|d| wall.checked_sub_signed(d))
        };
        shifted.unwrap_or(wall)
    }

    fn last_update(&self, at: Option<Instant>) -> String {
        at.map(|at| self.wall(at).format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default()
    }

    /// A snapshot's `timestamp` as `rbd snap ls` prints it (`ctime`'s format).
    pub(super) fn ctime(&self, at: Instant) -> String {
        self.wall(at).format("%a %b %e %H:%M:%S %Y").to_string()
    }

    fn epoch(&self, at: Instant) -> i64 {
        self.wall(at).timestamp()
    }

    /// A librbd log line as the CLI prints it on stderr: `<time> <thread> -1 <text>`.
    pub(super) fn librbd_line(&self, text: &str) -> String {
        let at = self
            .clock
            .map_or_else(super::default_wall_clock, |now| self.wall(now));
        format!(
            "{} 7f2a4c7f9700 -1 {text}",
            at.format("%Y-%m-%dT%H:%M:%S%.3f%z")
        )
    }

    /// What the daemon of `site` reports for its copy right now; `None` when it reports
    /// nothing (no mirrored copy, or not reported yet).
    pub(super) fn live_report(&self, pair: &Pair, site: SiteIx) -> Option<Report> {
        let image = pair.copies[site].as_ref()?;
        let mirror = image.mirror.as_ref()?;
        let (kind, description) = match mirror.role {
            Role::Primary {
                force_promoting: Some(_),
            } => (StateKind::StoppingReplay, ORPHAN_FORCE_PROMOTING),
            Role::Primary {
                force_promoting: None,
            } => (StateKind::Stopped, PRIMARY),
            Role::NonPrimary(ReplicaStep::NotReported { .. }) => return None,
            Role::NonPrimary(ReplicaStep::ResyncRequested { .. }) => {
                (StateKind::Stopped, RESYNC_REQUESTED)
            }
            Role::NonPrimary(ReplicaStep::Running) => {
                return Some(match &pair.views[site].stalled {
                    Some(stalled) => stalled.clone(),
                    None => self.replayer_report(pair, site, mirror),
                });
            }
        };
        Some(Report {
            kind,
            description: description.to_string(),
        })
    }

    /// The replayer's status of a non-primary copy against the peer (§6.2, §6.6).
    fn replayer_report(&self, pair: &Pair, site: SiteIx, mirror: &Mirror) -> Report {
        let now = self.now();
        let report = |kind, description: &str| Report {
            kind,
            description: description.to_string(),
        };
        let Some(remote) = pair.mirror(peer_of(site)) else {
            return report(StateKind::Unknown, REMOTE_NOT_PRIMARY);
        };
        if let Some(transfer) = &mirror.transfer {
            return report(
                StateKind::Replaying,
                &self.replaying_description(mirror, remote, Some(transfer)),
            );
        }
        if !remote.is_primary() {
            let replayed_demotion = mirror
                .newest_complete()
                .is_some_and(|snap| snap.kind == SnapKind::NonPrimaryDemoted);
            let recently = mirror
                .demotion_replayed_at
                .is_some_and(|at| now < at + super::demoted_shown_for(&self.timing));
            let description = if replayed_demotion && recently {
                REMOTE_DEMOTED
            } else {
                REMOTE_NOT_PRIMARY
            };
            return report(StateKind::Unknown, description);
        }
        match mirror.link_to(remote) {
            Link::Linked { .. } => report(
                StateKind::Replaying,
                &self.replaying_description(mirror, remote, None),
            ),
            Link::Unlinked
                if mirror
                    .unlinked_since
                    .is_some_and(|since| now >= since + self.timing.split_brain_after) =>
            {
                report(StateKind::Error, SPLIT_BRAIN)
            }
            Link::Unlinked | Link::Fresh => report(StateKind::StartingReplay, STARTING_REPLAY),
        }
    }

    /// `replaying, {…}` with the key set of spec §3.2, compact JSON with sorted keys.
    fn replaying_description(
        &self,
        mirror: &Mirror,
        remote: &Mirror,
        transfer: Option<&Transfer>,
    ) -> String {
        let mut detail = Map::new();
        let last_bytes = mirror.last_sync.map_or(0, |sync| sync.bytes);
        let last_seconds = mirror
            .last_sync
            .map_or(0, |sync| (sync.duration.as_millis() + 500) / 1000);
        let rate = if transfer.is_some() {
            approx_f64(self.timing.bandwidth_bytes_per_sec)
        } else {
            0.0
        };
        detail.insert("bytes_per_second".into(), json!(rate));
        detail.insert("bytes_per_snapshot".into(), json!(approx_f64(last_bytes)));
        detail.insert("last_snapshot_bytes".into(), json!(last_bytes));
        detail.insert("last_snapshot_sync_seconds".into(), json!(last_seconds));
        if mirror
            .synced_at
            .is_some_and(|at| self.now() >= at + self.timing.status_refresh)
            && let Some(local) = mirror.newest_complete()
        {
            detail.insert(
                "local_snapshot_timestamp".into(),
                json!(self.epoch(local.taken_at)),
            );
        }
        if let Some(newest) = remote.newest_primary_kind() {
            detail.insert(
                "remote_snapshot_timestamp".into(),
                json!(self.epoch(newest.taken_at)),
            );
        }
        detail.insert(
            "replay_state".into(),
            json!(if transfer.is_some() {
                "syncing"
            } else {
                "idle"
            }),
        );
        if let Some(transfer) = transfer {
            detail.insert(
                "syncing_percent".into(),
                json!(transfer.percent(self.now())),
            );
            if let Some(snap) = mirror.snap(transfer.local) {
                detail.insert(
                    "syncing_snapshot_timestamp".into(),
                    json!(self.epoch(snap.taken_at)),
                );
            }
        }
        format!("replaying, {}", Value::Object(detail))
    }

    /// A site's own status of its copy: live while its daemon reports, else as last reported.
    fn own_view(&self, pair: &Pair, site: SiteIx) -> View {
        if self.sites[site].reporting() {
            View::live(self.live_report(pair, site), self.now())
        } else {
            View::heard(pair.views[site].own.as_ref(), |_| false)
        }
    }

    /// The status of the copy on `shown` as the other site sees it (`peer_sites[0]`): live
    /// while reports cross, else the last one heard, `down+` after `peer_down_after` (§6.6).
    fn peer_view(&self, pair: &Pair, shown: SiteIx) -> View {
        if self.sites[shown].reporting() && self.env().linked {
            View::live(self.live_report(pair, shown), self.now())
        } else {
            let down_after = self.timing.peer_down_after;
            View::heard(pair.views[shown].for_peer.as_ref(), |frozen| {
                self.now() < frozen.at + down_after
            })
        }
    }

    /// One image of `rbd mirror image status --format json` (or of the verbose pool status,
    /// which has no `snapshots`).
    pub(super) fn image_json(
        &self,
        name: &str,
        pair: &Pair,
        site: SiteIx,
        with_snapshots: bool,
    ) -> Value {
        let own = self.own_view(pair, site);
        let seen = self.peer_view(pair, peer_of(site));
        self.image_json_of(name, pair, site, (&own, &seen), with_snapshots)
    }

    /// An image's status from its two views, computed once by the caller.
    fn image_json_of(
        &self,
        name: &str,
        pair: &Pair,
        site: SiteIx,
        (own, seen): (&View, &View),
        with_snapshots: bool,
    ) -> Value {
        let peer = peer_of(site);
        let mut status = json!({
            "name": name,
            "global_id": pair.global_id,
            "state": own.state(),
            "description": own.description(),
            "daemon_service": self.daemon_service_json(site, own.up),
            "last_update": self.last_update(own.at),
            "peer_sites": [{
                "site_name": self.sites[peer].glue_name,
                "mirror_uuids": self.sites[peer].mirror_uuid,
                "state": seen.state(),
                "description": seen.description(),
                "last_update": self.last_update(seen.at),
            }],
        });
        if with_snapshots && let Some(mirror) = pair.mirror(site).filter(|m| m.is_primary()) {
            status["snapshots"] = self.snapshots_json(pair, site, mirror);
        }
        status
    }

    /// A primary's mirror snapshots; each stays linked to the peer until the peer copied a
    /// newer one.
    fn snapshots_json(&self, pair: &Pair, site: SiteIx, mirror: &Mirror) -> Value {
        let peer_base = pair
            .mirror(peer_of(site))
            .filter(|peer| !peer.is_primary())
            .and_then(|peer| match peer.link_to(mirror) {
                Link::Linked { base } => Some(base),
                Link::Fresh | Link::Unlinked => None,
            });
        let peer_uuid = &self.sites[site].peer_uuid;
        mirror
            .snaps
            .iter()
            .filter(|snap| snap.kind.is_primary_kind())
            .map(|snap| {
                let linked = peer_base.is_none_or(|base| snap.id >= base);
                json!({
                    "id": snap.id,
                    "name": format!(".mirror.primary.{}.{}", pair.global_id, snap.uuid),
                    "demoted": snap.kind == SnapKind::PrimaryDemoted,
                    "mirror_peer_uuids": if linked { vec![peer_uuid.as_str()] } else { Vec::new() },
                })
            })
            .collect()
    }

    /// The daemon instance of `site`, as its name parts.
    fn daemon_identity(&self, site: SiteIx) -> (String, String, String, String) {
        let s = &self.sites[site];
        let service_id = 4161 + 1000 * site as u64 + 2 * s.daemon_starts;
        let hostname = format!("{}-scvm1", s.name);
        let suffix: String = s
            .mirror_uuid
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(6)
            .collect();
        (
            service_id.to_string(),
            (service_id + 2).to_string(),
            format!("{hostname}.{suffix}"),
            hostname,
        )
    }

    /// Glue always emits `daemon_service`: empty strings when the daemon does not serve the
    /// image (§3.1).
    fn daemon_service_json(&self, site: SiteIx, serving: bool) -> Value {
        let (service_id, instance_id, daemon_id, hostname) = if serving {
            self.daemon_identity(site)
        } else {
            Default::default()
        };
        json!({
            "service_id": service_id,
            "instance_id": instance_id,
            "daemon_id": daemon_id,
            "hostname": hostname,
        })
    }

    fn daemons_json(&self, site: SiteIx) -> Value {
        if !self.sites[site].reporting() {
            return Value::Null;
        }
        let (service_id, instance_id, daemon_id, hostname) = self.daemon_identity(site);
        json!([{
            "service_id": service_id,
            "instance_id": instance_id,
            "client_id": format!("rbd-mirror.{daemon_id}"),
            "hostname": hostname,
            "ceph_version": CEPH_VERSION,
            "leader": true,
            "health": "OK",
        }])
    }

    /// The mirrored copies present on `site`, by name.
    fn mirrored_here(&self, site: SiteIx) -> impl Iterator<Item = (&String, &Pair)> {
        self.pairs
            .iter()
            .filter(move |(_, pair)| pair.mirror(site).is_some())
    }

    /// `GET /mirror`: the pool summary (§3.3, health rules §6.5). Each image counts under the
    /// lowest state any site reports for it, as Ceph's summary does (§6.6: `replaying` on
    /// both sites in steady state, `error` on both in split-brain).
    pub(super) fn summary_json(&self, site: SiteIx) -> Value {
        let views: Vec<(View, View)> = self
            .mirrored_here(site)
            .map(|(_, pair)| {
                (
                    self.own_view(pair, site),
                    self.peer_view(pair, peer_of(site)),
                )
            })
            .collect();
        self.summary_of(site, views.iter().map(|(own, seen)| (own, seen)))
    }

    /// The pool summary from each mirrored image's two views.
    fn summary_of<'v>(
        &self,
        site: SiteIx,
        views: impl Iterator<Item = (&'v View, &'v View)>,
    ) -> Value {
        let mut states: BTreeMap<&str, u64> = BTreeMap::new();
        let mut image_health = Health::Ok;
        for (own, seen) in views {
            let kind = own.summary_kind().min(seen.summary_kind());
            *states.entry(kind.as_str()).or_default() += 1;
            image_health = image_health.max(match kind {
                StateKind::Error => Health::Error,
                StateKind::Replaying | StateKind::Stopped => Health::Ok,
                _ => Health::Warning,
            });
        }
        let daemon_health = if self.sites[site].reporting() {
            Health::Ok
        } else {
            Health::Unknown
        };
        json!({
            "health": image_health.max(daemon_health).as_str(),
            "daemon_health": daemon_health.as_str(),
            "image_health": image_health.as_str(),
            "states": states,
        })
    }

    /// Each image's state and its peer's, as `pool_json` shows them (none while pool mirroring
    /// is disabled).
    pub(super) fn pool_states_of(&self, site: SiteIx) -> BTreeMap<String, (String, String)> {
        if !self.sites[site].pool_mirroring {
            return BTreeMap::new();
        }
        self.mirrored_here(site)
            .map(|(name, pair)| {
                let own = self.own_view(pair, site).state();
                let seen = self.peer_view(pair, peer_of(site)).state();
                (name.clone(), (own, seen))
            })
            .collect()
    }

    /// `GET /mirror/image/rbd`: the verbose pool status; Go nil lists as `null` (§1, §6.5).
    /// Each image's views are computed once, for its entry and the summary both.
    pub(super) fn pool_json(&self, site: SiteIx) -> Value {
        if !self.sites[site].pool_mirroring {
            return json!({
                "summary": {"health": "", "daemon_health": "", "image_health": "", "states": null},
                "daemons": null,
                "images": null,
            });
        }
        let viewed: Vec<(&String, &Pair, View, View)> = self
            .mirrored_here(site)
            .map(|(name, pair)| {
                (
                    name,
                    pair,
                    self.own_view(pair, site),
                    self.peer_view(pair, peer_of(site)),
                )
            })
            .collect();
        let images: Vec<Value> = viewed
            .iter()
            .map(|(name, pair, own, seen)| self.image_json_of(name, pair, site, (own, seen), false))
            .collect();
        json!({
            "summary": self.summary_of(site, viewed.iter().map(|(_, _, own, seen)| (own, seen))),
            "daemons": self.daemons_json(site),
            "images": if images.is_empty() { Value::Null } else { Value::Array(images) },
        })
    }

    /// `rbd info --format json` as Glue's info route answers it: Glue decodes rbd's JSON into
    /// its own struct, whose `parent` is `{pool, image, snapshot}` (empty strings for an image
    /// that is no clone).
    pub(super) fn info_json(&self, site: SiteIx, name: &str, image: &Image) -> Value {
        let parent = image.parent.as_ref().map_or_else(
            || json!({"pool": "", "image": "", "snapshot": ""}),
            |parent| {
                json!({
                    "pool": "rbd",
                    "image": parent.image_name,
                    "snapshot": self.parent_snap_name(site, parent),
                })
            },
        );
        json!({
            "name": name,
            "id": image.id,
            "size": image.size,
            "snapshot_count": image.mirror.as_ref().map_or(0, |m| m.snaps.len()) + image.snaps.len(),
            "features": FEATURES,
            "parent": parent,
        })
    }

    /// `rbd info --format json` as the CLI prints it on a storage VM (measured on 16.2.15): a
    /// clone has `parent` (`{pool, pool_namespace, image, id, snapshot, trash, overlap}`,
    /// `snapshot` the trashed snapshot's uuid name once it is in the trash namespace, `trash`
    /// whether the parent image is in the pool's trash) and clone v2's `operations` feature;
    /// a mirrored image has `mirroring` (`{mode, state, global_id, primary}`); neither key is there
    /// otherwise. Fields nobody reads (objects, order, timestamps) are left out.
    pub(super) fn cli_info_json(&self, site: SiteIx, name: &str, image: &Image) -> Value {
        let mut features: Vec<&str> = FEATURES.to_vec();
        let mut info = json!({
            "name": name,
            "id": image.id,
            "size": image.size,
            "snapshot_count": image.mirror.as_ref().map_or(0, |m| m.snaps.len()) + image.snaps.len(),
            "format": 2,
            "op_features": [],
            "flags": [],
        });
        if let Some(parent) = &image.parent {
            features.push("operations");
            info["op_features"] = json!(["clone-child"]);
            info["parent"] = json!({
                "pool": "rbd",
                "pool_namespace": "",
                "image": parent.image_name,
                "id": parent.image_id,
                "snapshot": self.parent_snap_name(site, parent),
                "trash": self.pairs.get(&parent.image_name).is_some_and(|pair| {
                    pair.trashed[site].iter().any(|i| i.id == parent.image_id)
                }),
                "overlap": image.size,
            });
        }
        if let Some(mirror) = &image.mirror {
            let global_id = self
                .pairs
                .get(name)
                .map(|pair| pair.global_id.clone())
                .unwrap_or_default();
            info["mirroring"] = json!({
                "mode": "snapshot",
                "state": "enabled",
                "global_id": global_id,
                "primary": mirror.is_primary(),
            });
        }
        info["features"] = json!(features);
        info
    }

    /// The name `rbd info` gives a clone's parent snapshot: its own, or its uuid name once it
    /// is in the trash namespace.
    fn parent_snap_name(&self, site: SiteIx, parent: &ParentRef) -> String {
        self.pairs
            .get(&parent.image_name)
            .and_then(|pair| pair.copy_by_id(site, &parent.image_id))
            .and_then(|image| image.snaps.iter().find(|s| s.id == parent.snap_id))
            .map(|snap| {
                if snap.trashed {
                    super::snapshots::trash_name(snap)
                } else {
                    snap.name.clone()
                }
            })
            .unwrap_or_default()
    }

    /// The model as the control API's `/state` shows it.
    pub(super) fn state_value(&self) -> Value {
        let sites: Map<String, Value> = (0..2)
            .map(|site| {
                let s = &self.sites[site];
                (
                    s.name.clone(),
                    json!({
                        "glue_site_name": s.glue_name,
                        "up": s.up,
                        "daemon_up": s.daemon_up,
                        "mirroring": s.pool_mirroring,
                        "peer_reachable": self.peer_reachable(&s.name),
                    }),
                )
            })
            .collect();
        let images: Map<String, Value> = self
            .pairs
            .iter()
            .map(|(name, pair)| {
                let per_site: Map<String, Value> = (0..2)
                    .map(|site| (self.sites[site].name.clone(), self.copy_state(pair, site)))
                    .collect();
                (
                    name.clone(),
                    json!({
                        "global_id": pair.global_id,
                        "sites": per_site,
                        "data_movement": pair.movement,
                    }),
                )
            })
            .collect();
        json!({
            "sites": sites,
            "partitioned": self.partitioned,
            "last_write": self.writes.last(),
            "images": images,
            "data_movement": self.data_movement(),
        })
    }

    fn copy_state(&self, pair: &Pair, site: SiteIx) -> Value {
        let Some(image) = &pair.copies[site] else {
            return json!({"present": false});
        };
        let own = self.own_view(pair, site);
        let mirrored = image.mirror.is_some();
        json!({
            "present": true,
            "mirrored": mirrored,
            "primary": image.mirror.as_ref().map(Mirror::is_primary),
            "state": if mirrored { own.state() } else { String::new() },
            "description": if mirrored { own.description() } else { "" },
            "ledger_head": image.content.head(),
            "ledger_count": image.content.len(),
        })
    }
}

/// Byte counts and rates as the floats Ceph prints; precision far beyond what a status needs.
#[expect(
    clippy::cast_precision_loss,
    reason = "a status rate loses nothing that matters above 2^53 bytes"
)]
fn approx_f64(n: u64) -> f64 {
    n as f64
}
