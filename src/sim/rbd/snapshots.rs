//! User snapshots, clones and the pool's trash: what a DR test without an outage runs on the
//! storage VMs over SSH (`rbd snap create`, `rbd clone`, `rbd rm`, `rbd trash ls`), since Glue
//! has no route for them. The rules and texts are those measured on two Ceph 16.2.15 clusters
//! (issue 19) and held to them by the differential test (`tests/integration/differential.rs`):
//! `snap create` (30 on a replica, 17 when it exists), `snap rm` (30 on a replica, 2 when
//! absent), `clone` (22 `parent snapshot must be protected` without format 2, 2 with
//! librbd's three lines for a missing snapshot, 17 from `handle_create_child`), `snap ls
//! --all`'s JSON (a `namespace` object: `type` user, trash with `original_name`, or mirror
//! with its state and `primary_snap_id`) and `info`'s `parent` (`rbd/cli.rs`, `render.rs`):
//! - only a primary (or unmirrored) image takes a user snapshot; a replica refuses with
//!   `(30) Read-only file system`;
//! - a user snapshot of the primary reaches the replica with the next mirror snapshot, listed
//!   at once but holding the previous sync point until that copy completes (`replay.rs`);
//! - `rbd clone` names a `user` snapshot only, and without clone format 2 wants it protected;
//!   a clone is not mirrored and moves no data (copy on write);
//! - a snapshot a clone still reads from is moved to the `trash` namespace instead of removed,
//!   and an image the daemon deletes under a clone is parked in the pool's trash; both go with
//!   their last clone.

use std::time::Instant;

use serde_json::{Value, json};

use super::ModelStorage;
use super::state::{Image, ParentRef, SiteIx, UserSnap};
use crate::sim::storage::{RbdError, Storage as _};

impl RbdError {
    fn snap_create_failed(errno: i32, text: &str) -> Self {
        Self::new(
            errno,
            format!("rbd: failed to create snapshot: ({errno}) {text}"),
        )
    }

    fn snap_remove_failed(errno: i32, text: &str) -> Self {
        Self::new(
            errno,
            format!("rbd: failed to remove snapshot: ({errno}) {text}"),
        )
    }
}

impl ModelStorage {
    /// `rbd snap create rbd/<image>@<snap>`.
    pub fn snap_create(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
        snap: &str,
    ) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let copy = self.image(ix, image)?;
        if !copy.is_writable() {
            return Err(RbdError::snap_create_failed(30, "Read-only file system"));
        }
        if copy.user_snap(snap).is_some() {
            return Err(RbdError::snap_create_failed(17, "File exists"));
        }
        let id = self.ids.next();
        let copy = self.image_mut(ix, image)?;
        let user_snap = UserSnap {
            id,
            name: snap.to_string(),
            trashed: false,
            taken_at: now,
            size: copy.size,
            content: copy.content.clone(),
            clones: 0,
            source: None,
            arriving: None,
        };
        copy.snaps.push(user_snap);
        Ok(String::new())
    }

    /// `rbd snap rm rbd/<image>@<snap>`: gone, or into the trash namespace while a clone reads
    /// from it. A replica's snapshots follow the primary's and cannot be removed here.
    pub fn snap_remove(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
        snap: &str,
    ) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let copy = self.image(ix, image)?;
        if copy.user_snap(snap).is_none() {
            return Err(RbdError::snap_remove_failed(2, "No such file or directory"));
        }
        if !copy.is_writable() {
            return Err(RbdError::snap_remove_failed(30, "Read-only file system"));
        }
        let copy = self.image_mut(ix, image)?;
        copy.snaps.retain_mut(|s| {
            if s.trashed || s.name != snap {
                return true;
            }
            s.trashed = true;
            s.clones > 0
        });
        Ok(String::new())
    }

    /// `rbd snap ls [--all] --format json`: without `--all` the user namespace only; with it
    /// also mirror and trash snapshots, in id order, as Pacific prints them.
    pub fn snap_list(
        &mut self,
        now: Instant,
        site: &str,
        image: &str,
        all: bool,
    ) -> Result<Value, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let copy = self.image(ix, image)?;
        let mut rows: Vec<(u64, Value)> = Vec::new();
        for snap in &copy.snaps {
            if snap.trashed && !all {
                continue;
            }
            let mut row = json!({
                "id": snap.id,
                "name": if snap.trashed { trash_name(snap) } else { snap.name.clone() },
                "size": snap.size,
                "protected": "false",
                "timestamp": self.ctime(snap.taken_at),
            });
            if all {
                // Pacific's shape (measured on 16.2.15): `namespace` is an object whose
                // `type` says which, with the namespace's own fields beside it.
                row["namespace"] = if snap.trashed {
                    json!({"type": "trash", "original_name": snap.name})
                } else {
                    json!({"type": "user"})
                };
            }
            rows.push((snap.id, row));
        }
        if all && let Some(mirror) = &copy.mirror {
            for snap in &mirror.snaps {
                let mut namespace = json!({
                    "type": "mirror",
                    "state": snap_state(snap.kind),
                    "mirror_peer_uuids": self.mirror_peer_uuids(ix, snap.kind),
                    "complete": snap.complete,
                });
                if let Some(source) = snap.source {
                    namespace["primary_mirror_uuid"] = json!(self.sites[1 - ix].mirror_uuid);
                    namespace["primary_snap_id"] = json!(source);
                    namespace["last_copied_object_number"] = json!(0);
                }
                rows.push((
                    snap.id,
                    json!({
                        "id": snap.id,
                        // `.mirror.non_primary.…` with an underscore, as librbd names it.
                        "name": format!(".mirror.{}.{}", snap_state(snap.kind).replace('-', "_"), snap.uuid),
                        "size": copy.size,
                        "protected": "false",
                        "timestamp": self.ctime(snap.taken_at),
                        "namespace": namespace,
                    }),
                ));
            }
        }
        rows.sort_by_key(|(id, _)| *id);
        Ok(Value::Array(rows.into_iter().map(|(_, row)| row).collect()))
    }

    /// `rbd clone [--rbd-default-clone-format 2] rbd/<parent>@<snap> rbd/<child>`: a writable,
    /// unmirrored image on this site reading what it has not written from the snapshot.
    pub fn clone_image(
        &mut self,
        now: Instant,
        site: &str,
        parent: &str,
        snap: &str,
        child: &str,
        clone_format_2: bool,
    ) -> Result<String, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let source = self.image(ix, parent)?;
        let Some(parent_snap) = source.user_snap(snap) else {
            // Measured on 16.2.15: opening the parent at the snapshot fails in three places.
            let lines = [
                format!("librbd::image::RefreshRequest: failed to locate snapshot: {snap}"),
                format!("librbd::image::OpenRequest: failed to find snapshot {snap}"),
                "librbd::image::CloneRequest: 0x55e3a1c2e800 handle_open_parent: failed to open parent image: (2) No such file or directory".to_string(),
            ]
            .map(|line| self.librbd_line(&line));
            return Err(RbdError::new(
                2,
                format!(
                    "{}\nrbd: clone error: (2) No such file or directory",
                    lines.join("\n")
                ),
            ));
        };
        if !clone_format_2 {
            let line = self.librbd_line(
                "librbd::image::CloneRequest: 0x55e3a1c2e800 validate_parent: parent snapshot must be protected",
            );
            return Err(RbdError::new(
                22,
                format!("{line}\nrbd: clone error: (22) Invalid argument"),
            ));
        }
        if self.image(ix, child).is_ok() {
            let line = self.librbd_line(
                "librbd::image::CloneRequest: 0x55e3a1c2e800 handle_create_child: error creating child: (17) File exists",
            );
            return Err(RbdError::new(
                17,
                format!("{line}\nrbd: clone error: (17) File exists"),
            ));
        }
        let parent_ref = ParentRef {
            image_id: source.id.clone(),
            image_name: parent.to_string(),
            snap_id: parent_snap.id,
        };
        let (snap_id, snap_size, content) = (
            parent_snap.id,
            parent_snap.size,
            parent_snap.content.clone(),
        );
        let id = self.ids.image_id();
        let mut clone = Image::new(id, snap_size, content, None);
        clone.parent = Some(parent_ref);
        self.pairs.entry(child.to_string()).or_default().copies[ix] = Some(clone);
        self.image_snap_mut(ix, parent, snap_id)
            .expect("found above")
            .clones += 1;
        Ok(String::new())
    }

    /// A clone was removed: its parent snapshot loses a reader, and a trashed snapshot or a
    /// trashed image nothing reads from any more is purged.
    pub(super) fn release_parent(&mut self, site: SiteIx, parent: &ParentRef) {
        let Some(pair) = self.pairs.get_mut(&parent.image_name) else {
            return;
        };
        let Some(image) = pair.copy_by_id_mut(site, &parent.image_id) else {
            return;
        };
        image.snaps.retain_mut(|snap| {
            if snap.id != parent.snap_id {
                return true;
            }
            snap.clones = snap.clones.saturating_sub(1);
            !(snap.trashed && snap.clones == 0)
        });
        pair.trashed[site].retain(Image::has_clones);
        if pair.is_gone() {
            self.retired += pair.movement;
            self.pairs.remove(&parent.image_name);
        }
    }

    /// `rbd trash ls --all --format json`: the images parked there because a clone reads
    /// from them.
    pub fn trash_list(&mut self, now: Instant, site: &str) -> Result<Value, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        let rows: Vec<Value> = self
            .pairs
            .iter()
            .flat_map(|(name, pair)| {
                pair.trashed[ix].iter().map(move |image| {
                    json!({
                        "id": image.id,
                        "name": name,
                        "source": "MIRRORING",
                    })
                })
            })
            .collect();
        Ok(Value::Array(rows))
    }

    /// `rbd ls --format json`: the images of pool `rbd` on this site.
    pub fn image_list(&mut self, now: Instant, site: &str) -> Result<Value, RbdError> {
        self.advance(now);
        let ix = self.live_site(site)?;
        Ok(self
            .pairs
            .iter()
            .filter(|(_, pair)| pair.copies[ix].is_some())
            .map(|(name, _)| json!(name))
            .collect())
    }

    fn image_snap_mut(&mut self, site: SiteIx, image: &str, id: u64) -> Option<&mut UserSnap> {
        self.image_mut(site, image)
            .ok()?
            .snaps
            .iter_mut()
            .find(|snap| snap.id == id)
    }

    /// Mirror snapshot peers: a primary's snapshot names the peer it is for; a replica's none.
    fn mirror_peer_uuids(&self, site: SiteIx, kind: super::state::SnapKind) -> Value {
        if kind.is_primary_kind() {
            json!([self.sites[site].peer_uuid])
        } else {
            json!([])
        }
    }
}

/// A trashed snapshot's name: its uuid-like placeholder (librbd names it by a uuid).
pub(super) fn trash_name(snap: &UserSnap) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", snap.id, snap.id)
}

/// `rbd snap ls --all`'s mirror state of a snapshot kind.
fn snap_state(kind: super::state::SnapKind) -> &'static str {
    use super::state::SnapKind;
    match kind {
        SnapKind::Primary | SnapKind::Orphan => "primary",
        SnapKind::PrimaryDemoted => "demoted",
        SnapKind::NonPrimary | SnapKind::NonPrimaryDemoted => "non-primary",
    }
}
