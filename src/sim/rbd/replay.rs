//! What happens with time: the rbd-mirror daemons' work (bootstrap, snapshot copies, resync,
//! removal of a replica whose primary stopped mirroring) and the settling of transient
//! statuses. Everything is due at a computed instant; [`ModelStorage::advance`] processes due
//! instants in order, so the model is the same however often it is asked.

use std::time::{Duration, Instant};

use super::state::{
    ForcePromoting, Frozen, Ids, Image, Link, Mirror, MirrorSnap, Pair, ReplicaStep, Report, Role,
    SiteIx, SnapKind, SyncStats, Transfer, UserSnap, peer_of,
};
use super::{ModelStorage, StorageTiming};
use crate::sim::ledger::{DataMovement, Writes};

/// Mirror snapshots each copy keeps beyond those still needed for replay
/// (`rbd_mirroring_max_mirroring_snapshots`, spec §5.2).
const KEEP_SNAPSHOTS: usize = 5;

/// A guard against a settling loop that never ends (it ends after a few rounds).
const MAX_SETTLE_ROUNDS: usize = 10_000;

/// What the sites can do right now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Env {
    /// Both sites are up and no partition separates them.
    pub linked: bool,
    /// Each site's daemon can work on its replicas: linked, its daemon up, and both pools
    /// mirrored. rbd-mirror pulls, so only the replica's daemon matters (spec §5.1, §6.3).
    pub can_replay: [bool; 2],
}

/// Connectivity flags before and after an environment change, per site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Channels {
    /// The site's daemon reports its own copies' statuses.
    reporting: [bool; 2],
    /// The site's reports reach the other site.
    reaching_peer: [bool; 2],
    /// The site's replayer can see the other site.
    sees_peer: [bool; 2],
}

impl ModelStorage {
    pub(super) fn env(&self) -> Env {
        let linked = self.sites[0].up && self.sites[1].up && !self.partitioned;
        let pools = self.sites[0].pool_mirroring && self.sites[1].pool_mirroring;
        let can = |site: SiteIx| linked && pools && self.sites[site].daemon_up;
        Env {
            linked,
            can_replay: [can(0), can(1)],
        }
    }

    pub(super) fn channels(&self) -> Channels {
        let env = self.env();
        let reporting = [self.sites[0].reporting(), self.sites[1].reporting()];
        Channels {
            reporting,
            reaching_peer: [reporting[0] && env.linked, reporting[1] && env.linked],
            sees_peer: [env.linked; 2],
        }
    }

    /// Processes everything due up to `now`, in order: each pair due on the way is settled at
    /// its own instant, so the model is the same as if every instant were visited.
    pub(super) fn advance_to(&mut self, now: Instant) {
        let Some(clock) = self.clock else {
            self.clock = Some(now);
            self.wall.get_or_insert((now, super::default_wall_clock()));
            self.settle();
            return;
        };
        let now = now.max(clock);
        while let Some((due, image)) = self.due.first().filter(|(due, _)| *due <= now).cloned() {
            self.clock = Some(due.max(clock));
            self.settle_pair(&image);
        }
        self.clock = Some(now);
    }

    /// Applies an environment change at the current clock, keeping what each site last heard
    /// from the other where the change silences it.
    pub(super) fn change_environment(&mut self, change: impl FnOnce(&mut Self)) {
        let before = self.channels();
        let reports: Vec<[Option<Report>; 2]> = self
            .pairs
            .values()
            .map(|pair| [self.live_report(pair, 0), self.live_report(pair, 1)])
            .collect();
        change(self);
        let after = self.channels();
        let at = self.now();
        for (pair, reports) in self.pairs.values_mut().zip(reports) {
            for (site, (views, report)) in pair.views.iter_mut().zip(&reports).enumerate() {
                let frozen = || Frozen {
                    report: report.clone(),
                    at,
                };
                refreeze(
                    &mut views.own,
                    before.reporting[site],
                    after.reporting[site],
                    frozen,
                );
                refreeze(
                    &mut views.for_peer,
                    before.reaching_peer[site],
                    after.reaching_peer[site],
                    frozen,
                );
                // Only a replayer stalls; a role change meanwhile drops this (see promote).
                if before.sees_peer[site] && !after.sees_peer[site] {
                    views.stalled.clone_from(report);
                } else if after.sees_peer[site] {
                    views.stalled = None;
                }
            }
        }
        self.settle();
    }

    /// Applies every transition due at the current clock, on every pair (after a change of
    /// what the sites can do, which every pair depends on).
    pub(super) fn settle(&mut self) {
        let images: Vec<String> = self.pairs.keys().cloned().collect();
        for image in images {
            self.settle_pair(&image);
        }
    }

    /// Applies one pair's transitions due at the current clock, until nothing changes, then
    /// files when it next changes by itself. A pair left without copies is dropped, its data
    /// movement kept.
    pub(super) fn settle_pair(&mut self, image: &str) {
        let Some(now) = self.clock else {
            return;
        };
        let env = self.env();
        let Self {
            pairs,
            ids,
            timing,
            retired,
            ..
        } = self;
        let mut next = None;
        if let Some(pair) = pairs.get_mut(image) {
            let mut rounds = 0;
            while pair.settle_once(now, env, timing, ids) {
                rounds += 1;
                assert!(
                    rounds < MAX_SETTLE_ROUNDS,
                    "the storage model does not settle"
                );
            }
            if pair.copies.iter().any(Option::is_some) {
                next = pair.next_due(now, env, timing);
            } else if pair.is_gone() {
                *retired += pair.movement;
                pairs.remove(image);
            }
            // Both copies gone but one parked in the trash for a clone: the pair stays, with
            // nothing due, until `release_parent` purges it with the last clone.
        }
        if let Some(was) = self.due_of.remove(image) {
            self.due.remove(&(was, image.to_string()));
        }
        if let Some(at) = next {
            self.due.insert((at, image.to_string()));
            self.due_of.insert(image.to_string(), at);
        }
    }

    /// The next instant after the clock at which something changes, statuses included.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }
}

/// Keeps `slot` frozen while a channel is down: set when it goes down, cleared when it
/// comes back.
fn refreeze<T>(slot: &mut Option<T>, was_up: bool, is_up: bool, frozen: impl FnOnce() -> T) {
    if was_up && !is_up {
        *slot = Some(frozen());
    } else if is_up {
        *slot = None;
    }
}

impl Pair {
    /// The next instant after `now` at which this pair changes by itself, statuses included.
    fn next_due(&self, now: Instant, env: Env, timing: &StorageTiming) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |due: Instant| {
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        };
        self.dues(env, timing, &mut consider);
        for views in &self.views {
            if let Some(frozen) = &views.for_peer {
                consider(frozen.at + timing.peer_down_after);
            }
        }
        next
    }

    /// One round of transitions at `now`; whether anything changed.
    fn settle_once(
        &mut self,
        now: Instant,
        env: Env,
        timing: &StorageTiming,
        ids: &mut Ids,
    ) -> bool {
        let mut changed = false;
        for site in 0..2 {
            changed |= self.settle_copy(site, now, env, timing, ids);
        }
        if changed {
            self.prune();
        }
        changed
    }

    fn settle_copy(
        &mut self,
        site: SiteIx,
        now: Instant,
        env: Env,
        timing: &StorageTiming,
        ids: &mut Ids,
    ) -> bool {
        let recreate_after = self.recreate_after[site];
        // A peer deleted by its own resync comes back: that is no reason to delete this copy.
        let peer_coming_back = self.recreate_after[peer_of(site)].is_some();
        let (copy, peer) = self.both_mut(site);
        let peer_is_primary = peer.as_ref().is_some_and(Image::mirrored_primary);
        let Some(image) = copy else {
            // The daemon creates a replica of a mirrored primary (bootstrap, or after a
            // resync deleted it).
            let due = recreate_after.is_none_or(|after| now >= after);
            if peer_is_primary && due && env.can_replay[site] {
                *copy = Some(Image::new(
                    ids.image_id(),
                    peer.as_ref().map_or(0, |p| p.size),
                    Writes::default(),
                    Some(Mirror::new(Role::NonPrimary(ReplicaStep::NotReported {
                        since: now,
                    }))),
                ));
                self.recreate_after[site] = None;
                return true;
            }
            return false;
        };
        let Some(mirror) = image.mirror.as_mut() else {
            return false;
        };
        match mirror.role {
            Role::Primary {
                force_promoting: Some(promoting),
            } => match force_promoting_next(promoting, now, env, timing) {
                Some(role) => {
                    mirror.role = role;
                    true
                }
                None => false,
            },
            Role::Primary {
                force_promoting: None,
            } => false,
            Role::NonPrimary(step) => {
                if !env.can_replay[site] {
                    return mirror.transfer.as_mut().is_some_and(|t| t.pause(now));
                }
                let peer_mirrored = peer.as_ref().is_some_and(|p| p.mirror.is_some());
                if !peer_mirrored && !peer_coming_back {
                    // Mirroring was disabled on the primary (or it was removed): the daemon
                    // deletes this replica (spec §6.5).
                    self.delete_copy(site);
                    return true;
                }
                if !peer_mirrored {
                    return mirror.transfer.as_mut().is_some_and(|t| t.pause(now));
                }
                match step {
                    ReplicaStep::ResyncRequested { since } => {
                        if now < since + resync_reaction(timing) {
                            return false;
                        }
                        self.delete_copy(site);
                        self.recreate_after[site] = Some(now + timing.resync_absent);
                        true
                    }
                    ReplicaStep::NotReported { since } => {
                        if now < since + timing.bootstrap_not_found {
                            return false;
                        }
                        mirror.role = Role::NonPrimary(ReplicaStep::Running);
                        true
                    }
                    ReplicaStep::Running => {
                        let primary = peer.as_ref().expect("checked above");
                        let (replayed, moved) = replay(image, primary, now, timing, ids);
                        self.movement += moved;
                        replayed
                    }
                }
            }
        }
    }

    /// Drops mirror snapshots nobody needs any more: each copy keeps its newest few, plus
    /// every snapshot its peer still has to copy or continues from.
    fn prune(&mut self) {
        for site in 0..2 {
            let needed: Vec<u64> = match (self.mirror(site), self.mirror(peer_of(site))) {
                (Some(mine), Some(peer)) if !peer.is_primary() => {
                    let mut needed: Vec<u64> = peer.transfer.iter().map(|t| t.source).collect();
                    match peer.link_to(mine) {
                        Link::Linked { base } => {
                            needed.extend(mine.snaps.iter().map(|s| s.id).filter(|id| *id >= base));
                        }
                        Link::Fresh => {
                            needed.extend(mine.newest_primary_kind().map(|s| s.id));
                        }
                        Link::Unlinked => {}
                    }
                    needed
                }
                _ => Vec::new(),
            };
            let Some(mirror) = self.copies[site].as_mut().and_then(|i| i.mirror.as_mut()) else {
                continue;
            };
            let local = mirror.transfer.as_ref().map(|t| t.local);
            let keep_from = mirror.snaps.len().saturating_sub(KEEP_SNAPSHOTS);
            let mut index = 0;
            mirror.snaps.retain(|snap| {
                let keep =
                    index >= keep_from || needed.contains(&snap.id) || Some(snap.id) == local;
                index += 1;
                keep
            });
        }
    }

    /// Reports every instant at which this pair changes by itself.
    fn dues(&self, env: Env, timing: &StorageTiming, consider: &mut impl FnMut(Instant)) {
        for site in 0..2 {
            let peer_is_primary = self.copies[peer_of(site)]
                .as_ref()
                .is_some_and(Image::mirrored_primary);
            let Some(image) = &self.copies[site] else {
                if let Some(after) = self.recreate_after[site]
                    && peer_is_primary
                    && env.can_replay[site]
                {
                    consider(after);
                }
                continue;
            };
            let Some(mirror) = &image.mirror else {
                continue;
            };
            match mirror.role {
                Role::Primary {
                    force_promoting:
                        Some(ForcePromoting {
                            settles_at: Some(at),
                        }),
                } => consider(at),
                Role::NonPrimary(step) if env.can_replay[site] => match step {
                    ReplicaStep::NotReported { since } => {
                        consider(since + timing.bootstrap_not_found);
                    }
                    ReplicaStep::ResyncRequested { since } => {
                        consider(since + resync_reaction(timing));
                    }
                    ReplicaStep::Running => {
                        if let Some(at) = mirror.transfer.as_ref().and_then(Transfer::completes_at)
                        {
                            consider(at);
                        }
                    }
                },
                Role::Primary { .. } | Role::NonPrimary(_) => {}
            }
            // Status-only changes: `remote image demoted` settles, split-brain shows.
            if let Some(at) = mirror.demotion_replayed_at {
                consider(at + super::demoted_shown_for(timing));
            }
            if let Some(since) = mirror.unlinked_since {
                consider(since + timing.split_brain_after);
            }
        }
    }
}

/// How long a resync flag shows (`resync requested`) before the daemon deletes the image:
/// its shortest step. Real Pacific acts within a second (§6.6 never caught the flag).
pub(super) fn resync_reaction(timing: &StorageTiming) -> Duration {
    timing.min_transfer
}

/// A forced-promoted image leaves `orphan (force promoting)` some time after its peer is
/// reachable again (§6.6: ~14 s). The new role, if it changes.
fn force_promoting_next(
    promoting: ForcePromoting,
    now: Instant,
    env: Env,
    timing: &StorageTiming,
) -> Option<Role> {
    let force_promoting = match (env.linked, promoting.settles_at) {
        (false, None) => return None,
        (true, Some(at)) if now < at => return None,
        (false, Some(_)) => Some(ForcePromoting { settles_at: None }),
        (true, None) => Some(ForcePromoting {
            settles_at: Some(now + timing.orphan_settle),
        }),
        (true, Some(_)) => None,
    };
    Some(Role::Primary { force_promoting })
}

/// The replayer of a non-primary `image` against its `primary`: starts, resumes and
/// completes copies, and notices split-brain. Returns whether anything changed and the data
/// moved by a completed copy.
fn replay(
    image: &mut Image,
    primary_image: &Image,
    now: Instant,
    timing: &StorageTiming,
    ids: &mut Ids,
) -> (bool, DataMovement) {
    let primary = primary_image
        .mirror
        .as_ref()
        .expect("a primary is mirrored");
    let mirror = image.mirror.as_mut().expect("a replica is mirrored");
    let link = mirror.link_to(primary);
    let mut changed = false;

    // Split-brain detection runs only against a primary; against a non-primary peer the
    // replayer just reports that the remote is not primary.
    let unlinked = link == Link::Unlinked && primary.is_primary();
    if unlinked != mirror.unlinked_since.is_some() {
        mirror.unlinked_since = unlinked.then_some(now);
        changed = true;
    }

    // Continue a copy in flight while its source exists; otherwise pick the next one.
    let current = mirror
        .transfer
        .as_ref()
        .and_then(|t| primary.snap(t.source))
        .filter(|_| link != Link::Unlinked);
    let fresh_from_non_primary = link == Link::Fresh && !primary.is_primary();
    let target = match current {
        Some(snap) => Some(snap),
        None if fresh_from_non_primary => None,
        None => mirror.next_to_copy(primary),
    };
    let Some(target) = target else {
        changed |= mirror.drop_transfer();
        return (changed, DataMovement::default());
    };

    if mirror
        .transfer
        .as_ref()
        .is_none_or(|t| t.source != target.id)
    {
        mirror.drop_transfer();
        let full = link == Link::Fresh;
        let bytes = if full {
            image.size
        } else {
            image.content.missing_from(&target.content) * timing.write_size_bytes
        };
        let local = announce_user_snaps(image, primary_image, target.id, ids);
        let mirror = image.mirror.as_mut().expect("a replica is mirrored");
        mirror.snaps.push(MirrorSnap {
            id: local,
            uuid: ids.uuid(),
            kind: if target.kind == SnapKind::PrimaryDemoted {
                SnapKind::NonPrimaryDemoted
            } else {
                SnapKind::NonPrimary
            },
            complete: false,
            source: Some(target.id),
            taken_at: target.taken_at,
            content: Writes::default(),
        });
        mirror.transfer = Some(Transfer {
            source: target.id,
            local,
            full,
            bytes,
            duration: timing.transfer_duration(bytes),
            done: Duration::ZERO,
            running_since: None,
            not_before: (target.kind == SnapKind::PrimaryDemoted)
                .then(|| target.taken_at + timing.demote_propagation),
        });
        changed = true;
    }

    let mirror = image.mirror.as_mut().expect("a replica is mirrored");
    let transfer = mirror.transfer.as_mut().expect("set above");
    if transfer.running_since.is_none() {
        transfer.running_since = Some(now);
        changed = true;
    }
    if transfer.completes_at().is_some_and(|at| now >= at) {
        let transfer = mirror.transfer.take().expect("present");
        let snap = mirror
            .snaps
            .iter_mut()
            .find(|s| s.id == transfer.local)
            .expect("a transfer has its local snapshot");
        snap.complete = true;
        snap.content = target.content.clone();
        if snap.kind == SnapKind::NonPrimaryDemoted {
            mirror.demotion_replayed_at = Some(now);
        }
        image.content = target.content.clone();
        let source = transfer.source;
        mirror.last_sync = Some(SyncStats {
            bytes: transfer.bytes,
            duration: transfer.duration,
        });
        mirror.synced_at = Some(now);
        let moved = if transfer.full {
            DataMovement::full(transfer.bytes)
        } else {
            DataMovement::delta(transfer.bytes)
        };
        settle_user_snaps(image, primary_image, source);
        return (true, moved);
    }
    (changed, DataMovement::default())
}

/// A copy of the primary's mirror snapshot `target` starts: the primary's user snapshots taken
/// before it that the replica lacks are listed at once (rbd-mirror copies them before it
/// creates its non-primary snapshot), holding the replica's previous sync point until the copy
/// completes (the user snapshot shows up before its data, measured on Ceph 16.2.15). Returns
/// the id for the non-primary snapshot, after theirs.
fn announce_user_snaps(image: &mut Image, primary: &Image, target: u64, ids: &mut Ids) -> u64 {
    for snap in primary.snaps.iter().filter(|s| !s.trashed && s.id < target) {
        if image.snaps.iter().any(|mine| mine.source == Some(snap.id)) {
            continue;
        }
        image.snaps.push(UserSnap {
            id: ids.next(),
            name: snap.name.clone(),
            trashed: false,
            taken_at: snap.taken_at,
            size: snap.size,
            content: image.content.clone(),
            source: Some(snap.id),
            arriving: Some((target, snap.content.clone())),
            clones: 0,
        });
    }
    ids.next()
}

/// The copy of the primary's snapshot `source` completed: the user snapshots taken before it
/// hold their data now, and the replica's user snapshots the primary no longer has are
/// removed, or moved to the trash namespace while a clone reads from them.
fn settle_user_snaps(image: &mut Image, primary: &Image, source: u64) {
    for snap in &mut image.snaps {
        if let Some((carrier, content)) = &snap.arriving
            && *carrier <= source
        {
            snap.content = content.clone();
            snap.arriving = None;
        }
    }
    let kept = |source: Option<u64>| {
        primary
            .snaps
            .iter()
            .any(|p| !p.trashed && Some(p.id) == source)
    };
    image.snaps.retain_mut(|snap| {
        if snap.trashed || snap.arriving.is_some() || kept(snap.source) {
            return true;
        }
        snap.trashed = true;
        snap.clones > 0
    });
}
