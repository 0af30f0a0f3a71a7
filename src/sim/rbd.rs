//! The storage model: RBD images on two sites with Ceph's snapshot-based mirroring between
//! them, as Glue drives it (spec `glue-and-rbd.md` §5, §6).
//!
//! [`ModelStorage`] answers the `rbd` commands Glue runs with the CLI's own output, exit
//! statuses and status JSON, and keeps a data ledger: which write sequence numbers each copy
//! holds, and how much data mirroring moved. It is pure and synchronous: every operation takes
//! the current instant, and [`ModelStorage::next_event`] says when the model next changes, so
//! a server can sleep until then and a test can step through a scenario without sleeping.
//!
//! The rules followed, briefly (details at each item):
//! - enabling mirroring makes the image primary; the peer's daemon creates the replica and
//!   copies it in full (§5.1, §6.6 "just enabled");
//! - each mirror snapshot on the primary is copied to the replica as a delta, in order; a
//!   replica holds exactly the writes of its last complete snapshot (§5.2);
//! - demote writes a demotion snapshot; once the peer replayed it, a promote there is a clean
//!   swap (§5.3); a forced promote rolls back to the last complete snapshot and, without a
//!   clean demotion, leads to two primaries, split-brain and a resync with a full copy (§5.4);
//! - rbd-mirror pulls: a copy progresses while the replica's site, its daemon and the link to
//!   the primary's site are up (§6.3).

mod cli;
mod render;
mod replay;
mod snapshots;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};

use crate::sim::storage::{RbdError, SiteContent, Storage};

pub use crate::sim::ledger::DataMovement;
use crate::sim::ledger::{WriteCounter, Writes};
use state::{
    ForcePromoting, Ids, Image, Mirror, MirrorSnap, Pair, ReplicaStep, Role, Site, SiteIx,
    SnapKind, peer_of,
};

// What the status rendering and the replay both need of the model's time.

/// Where the wall clock starts unless told otherwise: a fixed instant in ABLESTACK's home time
/// zone, so that rendered JSON is the same on every run.
fn default_wall_clock() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2024-06-24T16:00:00+09:00").expect("a valid timestamp")
}

/// How long `remote image demoted` shows before it settles to `remote image is not primary`
/// (§6.6: shown at ~2 s, settled by ~4 s).
fn demoted_shown_for(timing: &StorageTiming) -> Duration {
    timing
        .demote_settle
        .saturating_sub(timing.demote_propagation)
}

/// The model's rbd failures, in the CLI's words.
impl RbdError {
    /// The image does not exist on that site (also while a resync re-creates it, §6.6).
    fn image_absent(image: &str) -> Self {
        Self::new(
            2,
            format!("rbd: error opening image {image}: (2) No such file or directory"),
        )
    }

    fn not_mirrored() -> Self {
        Self::new(22, "rbd: mirroring not enabled on the image")
    }

    /// Glue's `GET /mirror` passes this text on without the `exit status` prefix (§6.5).
    fn pool_not_mirrored() -> Self {
        Self::new(22, "rbd: mirroring not enabled on the pool")
    }

    /// A command against a dead cluster hangs (§6.6); the model answers at once with what rbd
    /// says when it finally gives up on the monitors (so does the Ceph backend for a site it
    /// has taken down).
    pub(crate) fn cluster_down() -> Self {
        Self::new(110, "rbd: couldn't connect to the cluster!")
    }

    fn unknown_site(site: &str) -> Self {
        Self::new(2, format!("no site named {site:?} in the storage model"))
    }
}

/// Every duration of the model, configurable so that tests run in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageTiming {
    /// Transfer duration = bytes / bandwidth (at least `min_transfer`).
    pub bandwidth_bytes_per_sec: u64,
    /// The floor for any transfer (and the daemon's reaction to a resync flag).
    pub min_transfer: Duration,
    /// Bytes one ledger write adds to a delta.
    pub write_size_bytes: u64,
    /// A new replica shows `down+unknown` / `status not found` this long (real: ~14 s).
    pub bootstrap_not_found: Duration,
    /// Until the peer shows `remote image demoted` (real: ~2 s).
    pub demote_propagation: Duration,
    /// Until both sides show `remote image is not primary` (real: ~4 s).
    pub demote_settle: Duration,
    /// The survivor's `peer_sites[0]` turns `down+<last state>` this long after the peer
    /// went silent (real: ~29 s).
    pub peer_down_after: Duration,
    /// After the old primary returns, the force-promoted side leaves
    /// `orphan (force promoting)` this much later (real: ~14 s).
    pub orphan_settle: Duration,
    /// A demoted old primary shows `up+error` / `split-brain` this long after its replayer
    /// found no common snapshot (real: 11–22 s).
    pub split_brain_after: Duration,
    /// A resynced image is absent this long before it is re-created (real: ~4 s).
    pub resync_absent: Duration,
    /// A replica's first status report after a copy completes lacks
    /// `local_snapshot_timestamp`; the next one, this much later, has it (real: ~5 s).
    pub status_refresh: Duration,
}

impl StorageTiming {
    /// The durations observed on two real Ceph 16.2.15 clusters (§6.6), with a 1 Gbit/s link.
    pub fn realistic() -> Self {
        Self {
            bandwidth_bytes_per_sec: 125_000_000,
            min_transfer: Duration::from_millis(500),
            write_size_bytes: 4 << 20,
            bootstrap_not_found: Duration::from_secs(14),
            demote_propagation: Duration::from_secs(2),
            demote_settle: Duration::from_secs(4),
            peer_down_after: Duration::from_secs(29),
            orphan_settle: Duration::from_secs(14),
            split_brain_after: Duration::from_secs(15),
            resync_absent: Duration::from_secs(4),
            status_refresh: Duration::from_secs(5),
        }
    }

    /// Tens of milliseconds, in the same proportions, for tests.
    pub fn fast() -> Self {
        Self {
            bandwidth_bytes_per_sec: 4 << 30,
            min_transfer: Duration::from_millis(10),
            write_size_bytes: 4 << 20,
            bootstrap_not_found: Duration::from_millis(30),
            demote_propagation: Duration::from_millis(20),
            demote_settle: Duration::from_millis(40),
            peer_down_after: Duration::from_millis(60),
            orphan_settle: Duration::from_millis(30),
            split_brain_after: Duration::from_millis(30),
            resync_absent: Duration::from_millis(20),
            status_refresh: Duration::from_millis(20),
        }
    }

    /// How long copying `bytes` takes.
    fn transfer_duration(&self, bytes: u64) -> Duration {
        let nanos =
            u128::from(bytes) * 1_000_000_000 / u128::from(self.bandwidth_bytes_per_sec.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).max(self.min_transfer)
    }
}

impl Default for StorageTiming {
    fn default() -> Self {
        Self::realistic()
    }
}

/// RBD images on two sites, mirrored the way Ceph mirrors them; see the module documentation.
#[derive(Debug)]
pub struct ModelStorage {
    timing: StorageTiming,
    sites: [Site; 2],
    partitioned: bool,
    /// Per image name, both sites' copies.
    pairs: BTreeMap<String, Pair>,
    writes: WriteCounter,
    ids: Ids,
    /// The instant processed last; `None` before the first timed call.
    clock: Option<Instant>,
    /// Which wall-clock time an instant stands for (`last_update`, snapshot timestamps).
    wall: Option<(Instant, DateTime<FixedOffset>)>,
    /// Data movement of images that no longer exist on either site.
    retired: DataMovement,
    /// When each pair next changes by itself, earliest first: a step of the clock visits only
    /// the pairs due then, so a request costs what it touches, not every image.
    due: BTreeSet<(Instant, String)>,
    /// Each pair's entry in `due`.
    due_of: HashMap<String, Instant>,
}

impl ModelStorage {
    /// Two sites with pool mirroring already set up between them (Glue's `POST /mirror`
    /// done), their daemons running. `site_a` is where setup ran: Glue calls it `local`,
    /// `site_b` `remote` (§3.1).
    pub fn new(site_a: &str, site_b: &str, timing: StorageTiming) -> Self {
        assert_ne!(site_a, site_b, "the two sites need different names");
        let mut ids = Ids::default();
        let mut site = |name: &str, glue_name| Site {
            name: name.to_string(),
            glue_name,
            up: true,
            daemon_up: true,
            pool_mirroring: true,
            daemon_starts: 0,
            mirror_uuid: ids.uuid(),
            peer_uuid: ids.uuid(),
        };
        let sites = [site(site_a, "local"), site(site_b, "remote")];
        Self {
            timing,
            sites,
            partitioned: false,
            pairs: BTreeMap::new(),
            writes: WriteCounter::default(),
            ids,
            clock: None,
            wall: None,
            retired: DataMovement::default(),
            due: BTreeSet::new(),
            due_of: HashMap::new(),
        }
    }

    pub fn timing(&self) -> &StorageTiming {
        &self.timing
    }

    /// The sites' names, `site_a` first.
    pub fn site_names(&self) -> [&str; 2] {
        [&self.sites[0].name, &self.sites[1].name]
    }

    fn site_ix(&self, site: &str) -> Result<SiteIx, RbdError> {
        self.sites
            .iter()
            .position(|s| s.name == site)
            .ok_or_else(|| RbdError::unknown_site(site))
    }

    /// The site, if it answers at all.
    fn live_site(&self, site: &str) -> Result<SiteIx, RbdError> {
        let ix = self.site_ix(site)?;
        if self.sites[ix].up {
            Ok(ix)
        } else {
            Err(RbdError::cluster_down())
        }
    }

    fn image(&self, site: SiteIx, image: &str) -> Result<&Image, RbdError> {
        self.pairs
            .get(image)
            .and_then(|pair| pair.copies[site].as_ref())
            .ok_or_else(|| RbdError::image_absent(image))
    }

    fn image_mut(&mut self, site: SiteIx, image: &str) -> Result<&mut Image, RbdError> {
        self.pairs
            .get_mut(image)
            .and_then(|pair| pair.copies[site].as_mut())
            .ok_or_else(|| RbdError::image_absent(image))
    }

    /// The mirroring state of an image, for a command that needs it mirrored (rbd's
    /// `validate_mirroring_enabled`).
    fn mirror_mut(&mut self, site: SiteIx, image: &str) -> Result<&mut Mirror, RbdError> {
        self.image_mut(site, image)?
            .mirror
            .as_mut()
            .ok_or_else(RbdError::not_mirrored)
    }

    pub fn image_exists(&self, site: &str, image: &str) -> bool {
        self.site_ix(site)
            .is_ok_and(|ix| self.image(ix, image).is_ok())
    }

    /// Promote and demote: the role changes with the snapshot that marks it. What the
    /// replayer noticed or showed under the old role no longer applies.
    fn change_role(
        &mut self,
        site: SiteIx,
        image: &str,
        marker: MirrorSnap,
        role: Role,
    ) -> Result<(), RbdError> {
        let mirror = self.mirror_mut(site, image)?;
        mirror.snaps.push(marker);
        mirror.role = role;
        mirror.demotion_replayed_at = None;
        mirror.unlinked_since = None;
        self.pairs.get_mut(image).expect("the image exists").views[site].stalled = None;
        self.settle_pair(image);
        Ok(())
    }

    /// A complete snapshot of the image's current content, taken now.
    fn new_snap(
        &mut self,
        site: SiteIx,
        image: &str,
        kind: SnapKind,
    ) -> Result<MirrorSnap, RbdError> {
        let now = self.now();
        let content = self.image(site, image)?.content.clone();
        Ok(MirrorSnap {
            id: self.ids.next(),
            uuid: self.ids.uuid(),
            kind,
            complete: true,
            source: None,
            taken_at: now,
            content,
        })
    }

    /// Everything mirroring copied, over all images (removed ones included).
    pub fn data_movement(&self) -> DataMovement {
        self.retired + self.pairs.values().map(|pair| pair.movement).sum()
    }

    /// What mirroring copied for one image name.
    pub fn image_data_movement(&self, image: &str) -> DataMovement {
        self.pairs
            .get(image)
            .map(|pair| pair.movement)
            .unwrap_or_default()
    }

    /// Per site: the write sequence numbers the image holds there, ascending. Sites without
    /// the image are left out.
    pub fn ledger(&self, image: &str) -> BTreeMap<String, Vec<u64>> {
        let Some(pair) = self.pairs.get(image) else {
            return BTreeMap::new();
        };
        (0..2)
            .filter_map(|ix| {
                let copy = pair.copies[ix].as_ref()?;
                Some((
                    self.sites[ix].name.clone(),
                    copy.content.as_slice().to_vec(),
                ))
            })
            .collect()
    }
}

impl Storage for ModelStorage {
    fn backend(&self) -> &'static str {
        "model"
    }

    /// Which wall-clock time `at` stands for. Without this the model's time starts at
    /// 2024-06-24 16:00:00 +09:00 at the first instant it sees, so that output is the same on
    /// every run; a server passes `chrono::Local::now().fixed_offset()`.
    fn set_wall_clock(&mut self, at: Instant, wall: DateTime<FixedOffset>) {
        self.wall = Some((at, wall));
    }

    /// Mold creates a plain (unmirrored) RBD image for a volume, on one site. Creating an
    /// image that exists already leaves it as it is.
    fn create_image(&mut self, site: &str, image: &str, size_bytes: u64) -> Result<(), RbdError> {
        let ix = self.site_ix(site)?;
        let id = self.ids.image_id();
        let copy = &mut self.pairs.entry(image.to_string()).or_default().copies[ix];
        if copy.is_none() {
            *copy = Some(Image::new(id, size_bytes, Writes::default(), None));
        }
        Ok(())
    }

    /// `rbd rm`. Removing a mirrored primary disables its mirroring first, so the peer's
    /// daemon deletes its replica; removing a clone releases its parent snapshot. Refused, in
    /// librbd's order (measured on 16.2.15): an absent image, an image with user snapshots
    /// (rbd's `snap purge` hint, exit 39, a replica too), then a non-primary copy (disabling its
    /// mirroring fails, exit 22). An image a clone still reads from through a trashed snapshot
    /// is refused with exit 16 (plausible text, not measured).
    fn remove_image(&mut self, now: Instant, site: &str, image: &str) -> Result<(), RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let copy = self
            .image(ix, image)
            .map_err(|_| RbdError::new(2, "rbd: delete error: (2) No such file or directory"))?;
        if copy.snaps.iter().any(|snap| !snap.trashed) {
            return Err(RbdError::new(
                39,
                "rbd: image has snapshots - these must be deleted with 'rbd snap purge' before the image can be removed.",
            ));
        }
        if copy.has_clones() {
            return Err(RbdError::new(
                16,
                "rbd: error: image still has children\nrbd: delete error: (16) Device or resource busy",
            ));
        }
        if !copy.is_writable() {
            let lines = [
                "librbd::mirror::DisableRequest: 0x55e3a1c2e600 handle_get_mirror_info: mirrored image is not primary, add force option to disable mirroring",
                "librbd::api::Trash: disable_mirroring: failed to disable mirroring: (22) Invalid argument",
            ]
            .map(|line| self.librbd_line(line));
            return Err(RbdError::new(
                22,
                format!(
                    "{}\nrbd: delete error: (22) Invalid argument",
                    lines.join("\n")
                ),
            ));
        }
        let removed = self
            .pairs
            .get_mut(image)
            .and_then(|pair| pair.copies[ix].take());
        if let Some(parent) = removed.and_then(|image| image.parent) {
            self.release_parent(ix, &parent);
        }
        self.settle_pair(image);
        Ok(())
    }

    /// The subset of the rbd CLI in `rbd/cli.rs`.
    fn rbd_command(
        &mut self,
        now: Instant,
        site: &str,
        args: &[String],
    ) -> Result<String, RbdError> {
        ModelStorage::rbd_command(self, now, site, args)
    }

    /// `rbd mirror image enable <img> snapshot`: the image becomes primary with a first
    /// mirror snapshot; the peer's daemon bootstraps a replica (§5.1). Enabling an enabled
    /// image succeeds again (§6.5).
    fn enable_mirroring(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let copy = self.image(ix, image)?;
        if copy.mirror.is_some() {
            return Ok("Mirroring enabled\n".to_string());
        }
        if !self.sites[ix].pool_mirroring {
            return Err(RbdError::new(
                22,
                self.librbd_line(
                    "librbd::api::Mirror: image_enable: cannot enable mirroring in the current pool mirroring mode",
                ),
            ));
        }
        let global_id = self.ids.uuid();
        let snap = self.new_snap(ix, image, SnapKind::Primary)?;
        let pair = self.pairs.get_mut(image).expect("the image exists");
        if pair.mirror(peer_of(ix)).is_none() {
            pair.global_id = global_id;
        }
        let copy = pair.copies[ix].as_mut().expect("the image exists");
        let mut mirror = Mirror::new(Role::Primary {
            force_promoting: None,
        });
        mirror.snaps.push(snap);
        copy.mirror = Some(mirror);
        self.settle_pair(image);
        Ok("Mirroring enabled\n".to_string())
    }

    /// `rbd mirror image disable`. On the primary this also removes the peer's replica, once
    /// the peer's daemon can act (§6.5). A non-primary needs `--force`, which Glue never
    /// passes.
    fn disable_mirroring(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let copy = self.image(ix, image)?;
        if copy.mirror.as_ref().is_some_and(|m| !m.is_primary()) {
            return Err(RbdError::new(
                22,
                self.librbd_line(
                    "librbd::api::Mirror: image_disable: mirrored image is not primary, add force option to disable mirroring",
                ),
            ));
        }
        self.image_mut(ix, image)?.mirror = None;
        self.settle_pair(image);
        Ok("Mirroring disabled\n".to_string())
    }

    /// `rbd mirror image promote [--force]` (librbd rules §5.3, §6.5, §6.6).
    ///
    /// Without `--force` it succeeds only when the newest snapshot here is a demotion
    /// snapshot, which includes the just-demoted old primary itself. A promote keeps the
    /// content of the last complete snapshot: a delta in flight is lost (§5.4). Without a clean
    /// demotion, a forced promote writes an orphan snapshot; with the peer unreachable the
    /// image then shows `orphan (force promoting)` for the whole outage.
    fn promote(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
        force: bool,
    ) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let linked = self.env().linked;
        let mirror = &*self.mirror_mut(ix, image)?;
        let failure = if mirror.is_primary() {
            Some((22, "handle_get_info: image is already primary"))
        } else if !force
            && !mirror
                .newest_complete()
                .is_some_and(|snap| snap.kind.is_demotion())
        {
            Some((
                16,
                "handle_get_info: image is primary within a remote cluster or demotion is not propagated yet",
            ))
        } else {
            None
        };
        if let Some((exit_status, reason)) = failure {
            // As real rbd prints them: librbd's reason, its API's summary, then the CLI's line.
            let reason = self.librbd_line(&format!(
                "librbd::mirror::PromoteRequest: 0x55e3a1c2e000 {reason}"
            ));
            let failed =
                self.librbd_line("librbd::api::Mirror: image_promote: failed to promote image");
            return Err(RbdError::new(
                exit_status,
                format!("{reason}\n{failed}\nrbd: error promoting image to primary"),
            ));
        }
        let mirror = self.mirror_mut(ix, image)?;
        mirror.drop_transfer();
        let cleanly_demoted = mirror
            .newest_complete()
            .is_some_and(|snap| snap.kind.is_demotion());
        if !cleanly_demoted {
            let orphan = self.new_snap(ix, image, SnapKind::Orphan)?;
            self.mirror_mut(ix, image)?.snaps.push(orphan);
        }
        let promoted = self.new_snap(ix, image, SnapKind::Primary)?;
        let role = Role::Primary {
            force_promoting: (!cleanly_demoted && !linked)
                .then_some(ForcePromoting { settles_at: None }),
        };
        self.change_role(ix, image, promoted, role)?;
        Ok("Image promoted to primary\n".to_string())
    }

    /// `rbd mirror image demote`: the image becomes non-primary with a demotion snapshot
    /// that the peer replays (§5.3). (Glue first tries `--force`, which stock rbd rejects with
    /// exit 1 `rbd: unrecognised option '--force'`; that retry belongs to the Glue layer.)
    fn demote(&mut self, now: Instant, site: &str, image: &str) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        if !self.mirror_mut(ix, image)?.is_primary() {
            let reason = self.librbd_line(
                "librbd::mirror::DemoteRequest: 0x55e3a1c2e400 handle_get_info: image is not primary",
            );
            let failed =
                self.librbd_line("librbd::api::Mirror: image_demote: failed to demote image");
            return Err(RbdError::new(
                22,
                format!("{reason}\n{failed}\nrbd: error demoting image to non-primary"),
            ));
        }
        let demotion = self.new_snap(ix, image, SnapKind::PrimaryDemoted)?;
        self.change_role(ix, image, demotion, Role::NonPrimary(ReplicaStep::Running))?;
        Ok("Image demoted to non-primary\n".to_string())
    }

    /// `rbd mirror image resync`: flags a non-primary image; its daemon deletes it and copies
    /// it again in full from the primary, discarding whatever only this copy held (§5.4).
    fn resync(&mut self, now: Instant, site: &str, image: &str) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let since = self.now();
        let mirror = self.mirror_mut(ix, image)?;
        match mirror.role {
            Role::Primary { .. } => {
                let line = self.librbd_line(
                    "librbd::api::Mirror: image_resync: image is primary, cannot resync to itself",
                );
                return Err(RbdError::new(
                    22,
                    format!("{line}\nrbd: error flagging image resync"),
                ));
            }
            Role::NonPrimary(ReplicaStep::ResyncRequested { .. }) => {}
            Role::NonPrimary(_) => {
                mirror.drop_transfer();
                mirror.unlinked_since = None;
                mirror.role = Role::NonPrimary(ReplicaStep::ResyncRequested { since });
                self.pairs.get_mut(image).expect("the image exists").views[ix].stalled = None;
            }
        }
        self.settle_pair(image);
        Ok("Flagged image for resync from primary\n".to_string())
    }

    /// `rbd mirror image snapshot`: captures the primary's content for the peer to copy.
    /// On a non-primary librbd refuses with EINVAL; the text here is the CLI's generic
    /// `rbd: error creating snapshot: <strerror>` (§6.5), the librbd detail is not confirmed.
    fn mirror_snapshot(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
    ) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        if !self.mirror_mut(ix, image)?.is_primary() {
            return Err(RbdError::new(
                22,
                "rbd: error creating snapshot: (22) Invalid argument",
            ));
        }
        let snap = self.new_snap(ix, image, SnapKind::Primary)?;
        let id = snap.id;
        self.mirror_mut(ix, image)?.snaps.push(snap);
        self.settle_pair(image);
        Ok(format!("Snapshot ID: {id}\n"))
    }

    /// `rbd mirror image status --format json` as Glue returns it (§3.1): the local status,
    /// the peer's as last heard (`peer_sites`), and on a primary its mirror snapshots.
    fn image_status(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
    ) -> Result<serde_json::Value, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        if self.image(ix, image)?.mirror.is_none() {
            return Err(RbdError::not_mirrored());
        }
        let pair = &self.pairs[image];
        Ok(self.image_json(image, pair, ix, true))
    }

    /// `rbd mirror pool status --verbose --format json` as Glue's `GET /mirror/image/rbd`
    /// returns it: `{summary, daemons, images}`; with pool mirroring disabled, empty strings
    /// and `null` lists (§6.5). `null` for a site the model does not have.
    fn pool_status(&mut self, now: Instant, site: &str) -> serde_json::Value {
        self.advance(now);
        match self.site_ix(site) {
            Ok(ix) => self.pool_json(ix),
            Err(_) => serde_json::Value::Null,
        }
    }

    /// The states of [`pool_status`](Storage::pool_status) without rendering the rest.
    fn pool_states(&mut self, now: Instant, site: &str) -> BTreeMap<String, (String, String)> {
        self.advance(now);
        match self.site_ix(site) {
            Ok(ix) => self.pool_states_of(ix),
            Err(_) => BTreeMap::new(),
        }
    }

    /// Glue's `GET /mirror`: the pool summary only.
    fn pool_summary(&mut self, now: Instant, site: &str) -> Result<serde_json::Value, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        if !self.sites[ix].pool_mirroring {
            return Err(RbdError::pool_not_mirrored());
        }
        Ok(self.summary_json(ix))
    }

    /// `rbd info --format json` as Glue's route answers it: `{name, id, size,
    /// snapshot_count, features, parent}` (the CLI's own is `rbd/cli.rs`'s).
    fn image_info(&self, site: &str, image: &str) -> Result<serde_json::Value, RbdError> {
        let ix = self.live_site(site)?;
        Ok(self.info_json(ix, image, self.image(ix, image)?))
    }

    /// Whether the image is primary there: `None` when it does not exist there. A plain,
    /// unmirrored image counts as primary (it takes writes; librbd says the same).
    fn is_primary(&self, site: &str, image: &str) -> Option<bool> {
        let ix = self.site_ix(site).ok()?;
        self.image(ix, image).ok().map(Image::is_writable)
    }

    /// Appends `count` writes to the image on that site and returns their sequence numbers.
    /// Only a primary (or unmirrored) image takes writes: a non-primary one is read-only.
    fn write(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
        count: u64,
    ) -> Result<Vec<u64>, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        if !self.image(ix, image)?.is_writable() {
            return Err(RbdError::new(
                30,
                format!(
                    "write refused: image {image} on site {site} is non-primary (read-only); writes land only on a primary image"
                ),
            ));
        }
        let seqs = self.writes.issue(count);
        self.image_mut(ix, image)?.content.append(&seqs);
        Ok(seqs)
    }

    /// What mirroring copied for one image name.
    fn image_data_movement(&self, image: &str) -> Option<DataMovement> {
        Some(ModelStorage::image_data_movement(self, image))
    }

    /// The ledger's writes; the model has no bytes to checksum.
    fn content(&self, image: &str) -> BTreeMap<String, SiteContent> {
        self.ledger(image)
            .into_iter()
            .map(|(site, writes)| {
                (
                    site,
                    SiteContent {
                        writes,
                        sha256: None,
                    },
                )
            })
            .collect()
    }

    /// A disaster (`up = false`) or recovery: the site's cluster and daemon are gone; its
    /// state is kept as it was, so its images come back primary (two primaries if the peer
    /// was force-promoted meanwhile, §5.4).
    fn set_site_up(&mut self, now: Instant, site: &str, up: bool) -> Result<(), String> {
        self.advance(now);
        let ix = self.site_ix(site).map_err(|e| e.output)?;
        self.change_environment(|model| {
            let s = &mut model.sites[ix];
            if up && !s.up && s.daemon_up {
                s.daemon_starts += 1;
            }
            s.up = up;
        });
        Ok(())
    }

    /// Starts or stops the rbd-mirror daemon of a site: no copy into that site progresses
    /// while it is stopped, and its statuses show `down+…`.
    fn set_daemon_up(&mut self, now: Instant, site: &str, up: bool) -> Result<(), String> {
        self.advance(now);
        let ix = self.site_ix(site).map_err(|e| e.output)?;
        self.change_environment(|model| {
            let s = &mut model.sites[ix];
            if up && !s.daemon_up {
                s.daemon_starts += 1;
            }
            s.daemon_up = up;
        });
        Ok(())
    }

    /// Cuts (or restores) all traffic between the sites; each stays reachable on its own.
    fn set_partitioned(&mut self, now: Instant, partitioned: bool) -> Result<(), String> {
        self.advance(now);
        self.change_environment(|model| model.partitioned = partitioned);
        Ok(())
    }

    /// Pool mirroring on one site (`rbd mirror pool enable|disable`, part of Glue's setup and
    /// teardown). Disabling refuses while images there are still mirrored.
    fn set_pool_mirroring(
        &mut self,
        now: Instant,
        site: &str,
        enabled: bool,
    ) -> Result<(), RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        if !enabled && self.pairs.values().any(|pair| pair.mirror(ix).is_some()) {
            return Err(RbdError::new(
                22,
                format!(
                    "{}\nrbd: failed to disable mirroring: (22) Invalid argument",
                    self.librbd_line(
                        "librbd::api::Mirror: mode_set: mirroring is enabled on one or more images"
                    )
                ),
            ));
        }
        self.change_environment(|model| model.sites[ix].pool_mirroring = enabled);
        Ok(())
    }

    /// For Glue's `/peer` routes: whether this site can reach the other one's cluster.
    fn peer_reachable(&self, site: &str) -> bool {
        self.site_ix(site).is_ok() && self.env().linked
    }

    /// Processes everything due up to `now`. Every method that takes `now` calls it first;
    /// time never runs backwards (an earlier `now` counts as the last one).
    fn advance(&mut self, now: Instant) {
        self.advance_to(now);
    }

    /// When the model next changes by itself (a copy completes, a status settles), so that a
    /// server can sleep until then; `None` when nothing is under way.
    fn next_event(&self) -> Option<Instant> {
        self.next_due()
    }

    /// Steps through the model's own events, up to a day of simulated time (the copies
    /// need no real time).
    fn settle_initial_copies(
        &mut self,
        start: Instant,
        _images: &[String],
    ) -> Result<Instant, String> {
        let mut settled = start;
        while let Some(t) = self.next_event() {
            if t > start + Duration::from_secs(86_400) {
                break;
            }
            settled = settled.max(t);
            self.advance(t);
        }
        Ok(settled)
    }

    /// The whole storage state for the control API's `/state`: per site up, daemon and pool
    /// mirroring; per image and site presence, role, status, ledger head and count; data
    /// movement per image and in total.
    fn state_json(&mut self, now: Instant) -> serde_json::Value {
        self.advance(now);
        self.state_value()
    }
}
