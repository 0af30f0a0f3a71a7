//! The model's data: two sites and, per image name, the pair of copies (one per site) with the
//! mirroring state Ceph keeps for each (spec §6.2): role, mirror snapshots, resync flag, content.

use std::time::{Duration, Instant};

use crate::sim::ledger::{DataMovement, Writes};

/// Sites are addressed by index (0 = the site where mirroring was set up, Glue's `local`); an
/// image's two copies sit at the same indices.
pub(super) type SiteIx = usize;

/// The other site.
pub(super) fn peer_of(site: SiteIx) -> SiteIx {
    1 - site
}

/// One site: its cluster, its rbd-mirror daemon and its pool's mirroring.
#[derive(Debug)]
pub(super) struct Site {
    /// The operators' name (`site-a`).
    pub name: String,
    /// Glue's name for it (spec §3.1): `local` where setup ran, `remote` for the other.
    pub glue_name: &'static str,
    /// The cluster answers at all (a disaster takes the whole site).
    pub up: bool,
    /// rbd-mirror runs (it is also gone while the site is down).
    pub daemon_up: bool,
    /// Pool `rbd` is in mirroring mode `image` with the peer configured.
    pub pool_mirroring: bool,
    /// How many times the daemon started: each start is a new instance (new ids).
    pub daemon_starts: u64,
    /// The pool's mirror uuid: what the other site lists as `mirror_uuids`.
    pub mirror_uuid: String,
    /// The uuid of the peer entry for the other site: what primary snapshots link to.
    pub peer_uuid: String,
}

impl Site {
    /// The daemon reports status for this site's images.
    pub fn reporting(&self) -> bool {
        self.up && self.daemon_up
    }
}

/// Mirror snapshot kinds (librbd's mirror snapshot states, plus the orphan a forced promote
/// writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SnapKind {
    Primary,
    PrimaryDemoted,
    NonPrimary,
    NonPrimaryDemoted,
    Orphan,
}

impl SnapKind {
    /// A primary's own snapshots: what a replica copies, and what status lists.
    pub fn is_primary_kind(self) -> bool {
        matches!(self, Self::Primary | Self::PrimaryDemoted)
    }

    /// A demotion snapshot: when it is the newest, a non-forced promote is allowed (§6.5).
    pub fn is_demotion(self) -> bool {
        matches!(self, Self::PrimaryDemoted | Self::NonPrimaryDemoted)
    }
}

/// One mirror snapshot of one copy.
#[derive(Debug, Clone)]
pub(super) struct MirrorSnap {
    /// Unique across the model, like a pool's snapshot ids, so a re-created image never
    /// matches an old link by accident.
    pub id: u64,
    pub uuid: String,
    pub kind: SnapKind,
    /// A non-primary snapshot is incomplete while its delta is still being copied.
    pub complete: bool,
    /// For a non-primary snapshot: the id of the peer's snapshot it copies.
    pub source: Option<u64>,
    /// When the primary took it (non-primary snapshots carry their source's time).
    pub taken_at: Instant,
    /// The writes captured (a non-primary snapshot holds them once complete).
    pub content: Writes,
}

/// One site's copy of an image.
#[derive(Debug)]
pub(super) struct Image {
    /// `rbd info`'s id; a resync re-creates the image with a new one.
    pub id: String,
    pub size: u64,
    pub content: Writes,
    /// `None`: a plain, unmirrored image.
    pub mirror: Option<Mirror>,
    /// Snapshots outside mirroring's namespace: users' and trashed ones (`rbd snap ls --all`).
    pub snaps: Vec<UserSnap>,
    /// For a clone: the snapshot it was cloned from (a clone is never mirrored).
    pub parent: Option<ParentRef>,
}

/// A snapshot in the `user` namespace (`rbd snap create`), or one moved to the `trash`
/// namespace because a clone still reads from it.
#[derive(Debug, Clone)]
pub(super) struct UserSnap {
    /// From the same counter as mirror snapshots: ids grow with time on every image, so
    /// "taken before mirror snapshot N" is `id < N`.
    pub id: u64,
    pub name: String,
    pub trashed: bool,
    pub taken_at: Instant,
    pub size: u64,
    /// What a clone of it holds.
    pub content: Writes,
    /// Clones reading from it: a snapshot with clones is moved to the trash namespace
    /// instead of removed, and removed with its last clone.
    pub clones: u32,
    /// On a replica: the primary's snapshot it copies.
    pub source: Option<u64>,
    /// On a replica, while the mirror snapshot that carries it is copied: that snapshot's id
    /// and the content it brings. The snapshot is listed already, but holds the previous sync
    /// point until then (measured on Ceph 16.2.15).
    pub arriving: Option<(u64, Writes)>,
}

/// Where a clone reads what it has not written: its parent image (by id, which survives a
/// move to the pool's trash) and snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParentRef {
    pub image_id: String,
    pub image_name: String,
    pub snap_id: u64,
}

impl Image {
    /// Clients may write: a primary, or an image that is not mirrored at all (librbd treats
    /// both as primary; only a non-primary copy is read-only).
    pub fn is_writable(&self) -> bool {
        self.mirror.as_ref().is_none_or(Mirror::is_primary)
    }

    pub fn mirrored_primary(&self) -> bool {
        self.mirror.as_ref().is_some_and(Mirror::is_primary)
    }

    /// A new image holding `content`.
    pub fn new(id: String, size: u64, content: Writes, mirror: Option<Mirror>) -> Self {
        Self {
            id,
            size,
            content,
            mirror,
            snaps: Vec::new(),
            parent: None,
        }
    }

    /// Whether a clone still reads from one of its snapshots.
    pub fn has_clones(&self) -> bool {
        self.snaps.iter().any(|snap| snap.clones > 0)
    }

    /// A user snapshot by name (trashed ones have none a CLI can give).
    pub fn user_snap(&self, name: &str) -> Option<&UserSnap> {
        self.snaps
            .iter()
            .find(|snap| !snap.trashed && snap.name == name)
    }
}

/// The mirroring state of one copy.
#[derive(Debug)]
pub(super) struct Mirror {
    pub role: Role,
    pub snaps: Vec<MirrorSnap>,
    /// The copy in flight into this (non-primary) copy.
    pub transfer: Option<Transfer>,
    /// The last completed copy, for the replayer's description.
    pub last_sync: Option<SyncStats>,
    /// When the last copy into this replica completed. The replayer's first report after
    /// it lacks `local_snapshot_timestamp`; later ones carry it (seen on real Ceph).
    pub synced_at: Option<Instant>,
    /// When this copy finished replaying the peer's demotion (`remote image demoted`).
    pub demotion_replayed_at: Option<Instant>,
    /// Since when the replayer finds no snapshot in common with the primary (split-brain
    /// detection, §5.4).
    pub unlinked_since: Option<Instant>,
}

impl Mirror {
    pub fn new(role: Role) -> Self {
        Self {
            role,
            snaps: Vec::new(),
            transfer: None,
            last_sync: None,
            synced_at: None,
            demotion_replayed_at: None,
            unlinked_since: None,
        }
    }

    pub fn is_primary(&self) -> bool {
        matches!(self.role, Role::Primary { .. })
    }

    pub fn newest_complete(&self) -> Option<&MirrorSnap> {
        self.snaps.iter().rev().find(|snap| snap.complete)
    }

    pub fn newest_primary_kind(&self) -> Option<&MirrorSnap> {
        self.snaps
            .iter()
            .rev()
            .find(|snap| snap.kind.is_primary_kind())
    }

    pub fn snap(&self, id: u64) -> Option<&MirrorSnap> {
        self.snaps.iter().find(|snap| snap.id == id)
    }

    /// Stops the copy in flight and forgets its incomplete snapshot: the copy keeps the
    /// content of its last complete snapshot (§5.2).
    pub fn drop_transfer(&mut self) -> bool {
        let had = self.transfer.take().is_some();
        self.snaps.retain(|snap| snap.complete);
        had
    }

    /// How this (non-primary) copy relates to `primary`'s snapshots: where its replay
    /// continues from, if anywhere.
    pub fn link_to(&self, primary: &Mirror) -> Link {
        let Some(newest) = self.newest_complete() else {
            return Link::Fresh;
        };
        let base = match newest.kind {
            // A replica continues after the peer snapshot it copied last.
            SnapKind::NonPrimary | SnapKind::NonPrimaryDemoted => newest
                .source
                .filter(|source| primary.snap(*source).is_some()),
            // An old primary that was demoted continues only if the peer replayed exactly
            // this demotion (§5.3); otherwise there is no common snapshot: split-brain.
            SnapKind::PrimaryDemoted => primary
                .snaps
                .iter()
                .find(|snap| {
                    snap.kind == SnapKind::NonPrimaryDemoted
                        && snap.complete
                        && snap.source == Some(newest.id)
                })
                .map(|snap| snap.id),
            SnapKind::Primary | SnapKind::Orphan => None,
        };
        base.map_or(Link::Unlinked, |base| Link::Linked { base })
    }

    /// The primary's snapshot this copy must copy next: the oldest one after its link, or
    /// for a fresh copy the newest (a full copy).
    pub fn next_to_copy<'p>(&self, primary: &'p Mirror) -> Option<&'p MirrorSnap> {
        match self.link_to(primary) {
            Link::Fresh => primary.newest_primary_kind(),
            Link::Linked { base } => primary
                .snaps
                .iter()
                .find(|snap| snap.kind.is_primary_kind() && snap.id > base),
            Link::Unlinked => None,
        }
    }
}

/// Where a non-primary copy's replay stands against the primary's snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// No complete snapshot yet: the first copy is a full one.
    Fresh,
    /// Shares the primary's snapshot `base`; deltas follow from there.
    Linked { base: u64 },
    /// No snapshot in common: split-brain.
    Unlinked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Primary {
        /// Set by a forced promote while the peer was unreachable (§6.6).
        force_promoting: Option<ForcePromoting>,
    },
    NonPrimary(ReplicaStep),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ForcePromoting {
    /// Set once the peer is reachable again: then the image shows `local image is primary`.
    pub settles_at: Option<Instant>,
}

/// Where the rbd-mirror daemon is with a non-primary copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplicaStep {
    /// Created by the daemon, no status reported yet (`status not found`).
    NotReported { since: Instant },
    /// Replaying (or reporting why it cannot).
    Running,
    /// Flagged by `rbd mirror image resync`; the daemon deletes and re-creates it.
    ResyncRequested { since: Instant },
}

/// A completed copy, as the replayer describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SyncStats {
    pub bytes: u64,
    pub duration: Duration,
}

/// A copy in flight from the primary's snapshot `source` into the local, incomplete snapshot
/// `local`. It pauses while the daemon cannot work and resumes where it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transfer {
    pub source: u64,
    pub local: u64,
    pub full: bool,
    pub bytes: u64,
    pub duration: Duration,
    /// Progress made before the current run.
    pub done: Duration,
    pub running_since: Option<Instant>,
    /// A demotion is not replayed before it propagated (§6.6: ~2 s), however small.
    pub not_before: Option<Instant>,
}

impl Transfer {
    /// When it completes, if it is running.
    pub fn completes_at(&self) -> Option<Instant> {
        let since = self.running_since?;
        let end = since + self.duration.saturating_sub(self.done);
        Some(self.not_before.map_or(end, |floor| end.max(floor)))
    }

    /// Progress in whole percent, below 100 while in flight.
    pub fn percent(&self, now: Instant) -> u64 {
        let done = self.done + self.running_since.map_or(Duration::ZERO, |s| now - s);
        let total = self.duration.as_nanos().max(1);
        let percent = (done.as_nanos() * 100 / total).min(99);
        u64::try_from(percent).unwrap_or(99)
    }

    pub fn pause(&mut self, now: Instant) -> bool {
        match self.running_since.take() {
            Some(since) => {
                self.done += now - since;
                true
            }
            None => false,
        }
    }
}

/// A status as one site's daemon reports it for its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Report {
    pub kind: StateKind,
    pub description: String,
}

/// Ceph's image status states, in Ceph's order: the pool summary counts each image under
/// the lowest state any site reports for it (§6.6). (`syncing` belongs to journal mode only;
/// snapshot mode never shows it, §3.5.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum StateKind {
    Unknown,
    Error,
    StartingReplay,
    Replaying,
    StoppingReplay,
    Stopped,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Error => "error",
            Self::StartingReplay => "starting_replay",
            Self::Replaying => "replaying",
            Self::StoppingReplay => "stopping_replay",
            Self::Stopped => "stopped",
        }
    }
}

/// A report kept as it was when its source went silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Frozen {
    /// `None`: there was no report (`status not found`).
    pub report: Option<Report>,
    pub at: Instant,
}

/// What others last heard from one copy, kept while they cannot hear more.
#[derive(Debug, Clone, Default)]
pub(super) struct Views {
    /// Its own status while its daemon (or site) is down.
    pub own: Option<Frozen>,
    /// Its status as the other site sees it while the report cannot cross.
    pub for_peer: Option<Frozen>,
    /// Its replayer's status while it cannot see the peer: it stays as it was (§6.6).
    pub stalled: Option<Report>,
}

/// Both sites' copies of one image name.
#[derive(Debug, Default)]
pub(super) struct Pair {
    /// Equal on both sites; new each time mirroring is enabled.
    pub global_id: String,
    pub copies: [Option<Image>; 2],
    /// After a resync deleted a copy: the daemon re-creates it no earlier than this.
    pub recreate_after: [Option<Instant>; 2],
    pub views: [Views; 2],
    pub movement: DataMovement,
    /// Per site, copies of this name in the pool's trash (`rbd trash ls`): replicas their
    /// daemon deleted (a resync, mirroring disabled) while clones still read from them. One
    /// is purged with its last clone.
    pub trashed: [Vec<Image>; 2],
}

impl Pair {
    /// The daemon deletes this site's copy: into the pool's trash if clones still read from
    /// it (seen on Ceph 16.2.15 after a resync), gone otherwise.
    pub fn delete_copy(&mut self, site: SiteIx) {
        if let Some(image) = self.copies[site].take()
            && image.has_clones()
        {
            self.trashed[site].push(image);
        }
    }

    /// Nothing left of the image on either site, live or in the trash.
    pub fn is_gone(&self) -> bool {
        self.copies.iter().all(Option::is_none) && self.trashed.iter().all(Vec::is_empty)
    }

    /// A copy here by its image id, live or trashed.
    pub fn copy_by_id(&self, site: SiteIx, id: &str) -> Option<&Image> {
        self.copies[site]
            .as_ref()
            .filter(|image| image.id == id)
            .or_else(|| self.trashed[site].iter().find(|image| image.id == id))
    }

    /// A copy here by its image id, live or trashed.
    pub fn copy_by_id_mut(&mut self, site: SiteIx, id: &str) -> Option<&mut Image> {
        let [a, b] = &mut self.copies;
        let live = if site == 0 { a } else { b };
        match live {
            Some(image) if image.id == id => Some(image),
            _ => self.trashed[site].iter_mut().find(|image| image.id == id),
        }
    }

    pub fn mirror(&self, site: SiteIx) -> Option<&Mirror> {
        self.copies[site].as_ref()?.mirror.as_ref()
    }

    /// The two copies, this site's first, both mutable.
    pub fn both_mut(&mut self, site: SiteIx) -> (&mut Option<Image>, &mut Option<Image>) {
        let [a, b] = &mut self.copies;
        if site == 0 { (a, b) } else { (b, a) }
    }
}

/// Deterministic ids and uuids: the same scenario renders the same JSON every run.
#[derive(Debug, Default)]
pub(super) struct Ids {
    last: u64,
}

impl Ids {
    pub fn next(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// An `rbd info` image id: 12 hex digits.
    pub fn image_id(&mut self) -> String {
        format!("{:012x}", mix(self.next()) >> 16)
    }

    /// A random-looking, version-4-shaped uuid.
    pub fn uuid(&mut self) -> String {
        let n = self.next();
        let (hi, lo) = (mix(n), mix(n ^ 0x5bd1_e995));
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xfff,
            0x8000 | (lo >> 48) & 0x3fff,
            lo & 0xffff_ffff_ffff
        )
    }
}

/// SplitMix64: spreads a counter over 64 bits.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
