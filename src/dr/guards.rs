//! The guards: one function per precondition, each on data already read (VM states, image
//! statuses), so that each is tested on its own and a primitive composes the ones it needs.
//!
//! A guard that fails returns [`DrError::Guard`]: what the primitive would have done, what is
//! wrong (naming the VM, volume and site), and the primitive to run next. Nothing was sent.

use std::fmt::Write as _;

use super::DrError;
use super::status::caught_up;
use crate::glue::{ImageStatus, MirrorSide};
use crate::mold::types::{DrClusterRecord, PeerNetwork, PeerServiceOffering};

/// A Rhai string literal.
pub(crate) fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// A Rhai array of string literals.
pub(crate) fn list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items.iter().map(|s| lit(s)).collect::<Vec<_>>().join(", ")
    )
}

/// `up+replaying (replaying, copying 42%)`, `up+stopped (local image is primary)`: an image
/// status in one phrase.
pub(crate) fn describe(st: &ImageStatus) -> String {
    let mut s = format!("{} ({}", st.state, st.description_kind());
    if let Some(d) = st.replay_detail() {
        match (d.replay_state.as_deref(), d.syncing_percent) {
            (Some("syncing"), Some(p)) => {
                let _ = write!(s, ", copying {p:.0}%");
            }
            (Some(state), _) => {
                let _ = write!(s, ", {state}");
            }
            _ => {}
        }
    }
    s.push(')');
    s
}

/// The mirrored VMs of a record, once each: (name, state) from the record's own rows.
pub(crate) fn mapped_vms(record: &DrClusterRecord) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for row in &record.vm_map {
        let name = row.vm_name.as_deref().unwrap_or(&row.vm_id);
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, row.vm_state.as_deref().unwrap_or("unknown")));
        }
    }
    out
}

/// Every listed VM is `Stopped`. `sites` pairs each site with its (name, state) list; the
/// refusal names every VM still up, per site, and the stop to run.
pub fn vms_stopped(action: &str, sites: &[(&str, Vec<(&str, &str)>)]) -> Result<(), DrError> {
    let running: Vec<(&str, Vec<(&str, &str)>)> = sites
        .iter()
        .map(|(site, vms)| {
            (
                *site,
                vms.iter()
                    .filter(|(_, state)| *state != "Stopped")
                    .copied()
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, vms)| !vms.is_empty())
        .collect();
    match running.as_slice() {
        [] => Ok(()),
        [(site, vms)] if vms.len() == 1 => {
            let (name, state) = vms[0];
            Err(DrError::guard(
                action,
                format!("mirrored VM {name} is {state} on {site}"),
                format!("stop it first (stop_vm({}, {}))", lit(site), lit(name)),
            ))
        }
        many => {
            let problem = many
                .iter()
                .map(|(site, vms)| {
                    format!(
                        "{} on {site}",
                        vms.iter()
                            .map(|(n, s)| format!("{n} ({s})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let stops = many
                .iter()
                .map(|(site, vms)| {
                    let names: Vec<&str> = vms.iter().map(|(n, _)| *n).collect();
                    format!("stop_vms({}, {})", lit(site), list(&names))
                })
                .collect::<Vec<_>>()
                .join(" and ");
            Err(DrError::guard(
                action,
                format!("mirrored VMs are not stopped: {problem}"),
                format!("stop them first ({stops})"),
            ))
        }
    }
}

/// `clear_garbage` only once the protected site is lost: neither its Mold nor its Glue may
/// answer (a refusal or an error answer means it is alive).
pub fn protected_site_lost(
    action: &str,
    protected: &str,
    mold_unreachable: bool,
    glue_unreachable: bool,
) -> Result<(), DrError> {
    let answering: Vec<&str> = [("Mold", mold_unreachable), ("Glue", glue_unreachable)]
        .iter()
        .filter(|(_, down)| !down)
        .map(|(what, _)| *what)
        .collect();
    if answering.is_empty() {
        return Ok(());
    }
    Err(DrError::guard(
        action,
        format!(
            "{protected} is not lost: its {} still answers",
            answering.join(" and ")
        ),
        format!(
            "clearing removes mirroring on the DR site for good and is only for a protected site that will not come back; to fail back to {protected}, use resync then demote"
        ),
    ))
}

/// Mold's `mirrorscheduleinterval` grammar, strictly: a positive number of days, hours or
/// minutes (`30m`, `1h`, `1d`).
pub fn mirror_interval(action: &str, interval: &str) -> Result<(), DrError> {
    let ok = interval.strip_suffix(['d', 'h', 'm']).is_some_and(|n| {
        !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err(DrError::guard(
            action,
            format!("{interval:?} is not a mirror interval"),
            "give a whole number of days, hours or minutes with its unit: \"30m\", \"1h\", \"1d\" (Mold accepts nothing else)",
        ))
    }
}

/// A new pairing: a name Mold takes (not blank, no spaces around it, which Mold would keep
/// and every later exact-name lookup would trip over) between two different sites.
pub fn new_pairing(action: &str, name: &str, protected: &str, dr: &str) -> Result<(), DrError> {
    if name.trim().is_empty() || name.trim() != name {
        return Err(DrError::guard(
            action,
            format!("{name:?} is not a DR cluster name"),
            "give a name without leading or trailing spaces, e.g. \"DR\"",
        ));
    }
    if protected == dr {
        return Err(DrError::guard(
            action,
            format!("{protected} cannot be its own DR site"),
            "give the protected site first and the DR site second, two different sites",
        ));
    }
    Ok(())
}

/// No DR cluster called `name` on `site` yet (`existing`: its record read by exact name).
/// A leftover of a failed pairing (status `Error`) is named as such.
pub fn name_unused(
    action: &str,
    name: &str,
    site: &str,
    existing: Option<&DrClusterRecord>,
) -> Result<(), DrError> {
    let Some(r) = existing else {
        return Ok(());
    };
    let status = r.status.as_deref().unwrap_or("no status");
    let advice = if status.eq_ignore_ascii_case("error") {
        format!(
            "it is what a failed pairing leaves: remove it (remove_dr_cluster({}, {}), or in Mold's UI) before pairing under this name again",
            lit(name),
            lit(site)
        )
    } else {
        format!(
            "choose another name, or use this one (dr_cluster({}))",
            lit(name)
        )
    };
    Err(DrError::guard(
        action,
        format!(
            "{site} already holds DR cluster {name:?} (a {} record, {status})",
            r.cluster_type.as_str()
        ),
        advice,
    ))
}

/// The longest `drclusterprivatekey` Mold stores (a detail value's column size).
pub const PRIVATE_KEY_MAX: usize = 16_384;

/// Whether `text` can be a storage VM's private key as Mold stores it: PEM with a
/// `PRIVATE KEY` block (OpenSSH, PKCS#1, PKCS#8) and at most [`PRIVATE_KEY_MAX`] characters.
/// The reason never quotes the text.
pub fn private_key_text(text: &str) -> Result<(), String> {
    let has_block = text.lines().any(|l| {
        let l = l.trim();
        l.starts_with("-----BEGIN ") && l.ends_with("PRIVATE KEY-----")
    });
    if !has_block {
        return Err(
            "it is not a PEM private key (no \"-----BEGIN … PRIVATE KEY-----\" line; a .pub file is the public half)"
                .into(),
        );
    }
    let chars = text.chars().count();
    if chars > PRIVATE_KEY_MAX {
        return Err(format!(
            "it has {chars} characters, more than the {PRIVATE_KEY_MAX} Mold stores"
        ));
    }
    Ok(())
}

/// One mirrored volume as a guard sees it: the VM it belongs to, the image, and each side's
/// own status (`None` when that side's Glue does not list it).
#[derive(Debug, Clone, Copy)]
pub struct VolumeView<'a> {
    pub vm: &'a str,
    pub image: &'a str,
    pub protected: Option<&'a ImageStatus>,
    pub dr: Option<&'a ImageStatus>,
}

/// An image's status in one phrase, `absent` when the site does not list it.
pub(crate) fn shown(st: Option<&ImageStatus>) -> String {
    st.map_or_else(|| "absent".to_string(), describe)
}

fn acts_as_primary(st: Option<&ImageStatus>) -> bool {
    st.is_some_and(|s| s.is_primary() || s.is_force_promoting())
}

/// End states an earlier attempt may have reached (`--resume` settles it by reading): every
/// image acts as primary on the DR site — a promote took effect.
pub fn promoted(volumes: &[VolumeView<'_>]) -> bool {
    !volumes.is_empty() && volumes.iter().all(|v| acts_as_primary(v.dr))
}

/// Every protected copy replays from the DR site again (or is being re-created): a resync
/// took effect.
pub fn resynced(volumes: &[VolumeView<'_>]) -> bool {
    !volumes.is_empty() && volumes.iter().all(|v| classify_resync(v) == Resync::Done)
}

/// Every image is primary on the protected site and a replica on the DR site: a demote (or a
/// failback) took effect.
pub fn demoted(volumes: &[VolumeView<'_>]) -> bool {
    !volumes.is_empty()
        && volumes.iter().all(|v| {
            v.protected.is_some_and(ImageStatus::is_primary)
                && v.dr
                    .is_some_and(|d| !d.is_primary() && !d.is_force_promoting())
        })
}

/// A replica with nothing left to copy.
fn replica_synced(st: Option<&ImageStatus>) -> bool {
    st.is_some_and(|s| s.is_replaying_idle() && s.replay_detail().as_ref().is_some_and(caught_up))
}

/// A replica in the middle of copying a snapshot delta: a transient that ends by itself.
pub fn copying(st: Option<&ImageStatus>) -> bool {
    st.is_some_and(|s| {
        s.state.contains("replaying") && s.replay_detail().is_some() && !replica_synced(Some(s))
    })
}

/// `promote` (forced failover): at least one image is still a replica on the DR site.
pub fn something_to_promote(
    action: &str,
    dr: &str,
    volumes: &[VolumeView<'_>],
) -> Result<(), DrError> {
    if volumes.iter().any(|v| !acts_as_primary(v.dr)) {
        return Ok(());
    }
    Err(DrError::guard(
        action,
        format!("every mirrored image is already primary on {dr} (promoted earlier)"),
        format!(
            "nothing to promote: start the mirrored VMs with start_vms({}, …)",
            lit(dr)
        ),
    ))
}

/// What `resync` would find for one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resync {
    /// Both sides primary: Mold's resync demotes and re-copies the protected copy.
    Needed,
    /// The protected copy already replays from the DR site (or is being re-created).
    Done,
    /// The DR site's copy is still `orphan (force promoting)`: not settled yet.
    NotYet,
    /// Both primary, but the DR site has not heard from the protected copy since its return
    /// (its peer view is stale or `status not found`): Mold's resync reads that view and
    /// would skip the image.
    NotHeard,
    /// The protected copy is in split-brain: Mold's resync skips it.
    SplitBrain,
    /// The DR site's copy is a replica: the DR site was never promoted.
    NotPromoted,
}

fn classify_resync(v: &VolumeView<'_>) -> Resync {
    let Some(dr) = v.dr else {
        return Resync::NotPromoted;
    };
    if dr.is_force_promoting() {
        return Resync::NotYet;
    }
    if !dr.is_primary() {
        return Resync::NotPromoted;
    }
    match v.protected {
        Some(p) if p.is_primary() => {
            if dr.peer().is_some_and(|seen| seen.up() && seen.is_primary()) {
                Resync::Needed
            } else {
                Resync::NotHeard
            }
        }
        Some(p) if p.is_split_brain() => Resync::SplitBrain,
        _ => Resync::Done,
    }
}

/// `resync` (failback, step 1): some image is primary on both sites, none is still force
/// promoting, and none is in split-brain (Mold would skip it silently). Otherwise says why
/// a resync is not needed or not yet possible.
pub fn resync_needed(
    action: &str,
    cluster: &str,
    protected: &str,
    dr: &str,
    volumes: &[VolumeView<'_>],
) -> Result<(), DrError> {
    let first = |kind: Resync| volumes.iter().find(|v| classify_resync(v) == kind);
    if let Some(v) = first(Resync::NotYet) {
        return Err(DrError::guard(
            action,
            format!(
                "image {} of {} is still {} on {dr}: the return of {protected} has not settled",
                v.image,
                v.vm,
                shown(v.dr)
            ),
            "wait until it shows `local image is primary` (seconds to a minute), then resync again",
        ));
    }
    if let Some(v) = first(Resync::NotHeard) {
        let seen = v.dr.and_then(ImageStatus::peer).map_or_else(
            || "nothing".to_string(),
            |p| format!("`{}` / `{}`", p.state, p.description_kind()),
        );
        return Err(DrError::guard(
            action,
            format!(
                "{dr} has not heard from {protected}'s copy of image {} of {} since its return (it shows {seen}), and Mold's resync reads that view: it would skip the image",
                v.image, v.vm
            ),
            format!(
                "wait until {dr} sees it `up+stopped` / `local image is primary` (a minute or two after {protected} returns, once its rbd-mirror reports again), then resync again"
            ),
        ));
    }
    if let Some(v) = first(Resync::SplitBrain) {
        return Err(DrError::guard(
            action,
            format!(
                "image {} of {} is in split-brain on {protected}, and Mold's resync skips such images",
                v.image, v.vm
            ),
            format!(
                "flag it for a full copy with resync_image({}, {}), then run resync again for the others",
                lit(protected),
                lit(v.image)
            ),
        ));
    }
    if first(Resync::Needed).is_some() {
        return Ok(());
    }
    if let Some(v) = first(Resync::NotPromoted) {
        return Err(DrError::guard(
            action,
            format!(
                "image {} of {} is {} on {dr}: the DR site was never promoted",
                v.image,
                v.vm,
                shown(v.dr)
            ),
            "resync is only for failing back after promote(); nothing to do",
        ));
    }
    Err(DrError::guard(
        action,
        format!("every image on {protected} already replays from {dr} (resync was done)"),
        format!("next: wait_synced({}, …), then demote", lit(cluster)),
    ))
}

/// `demote` (failback, step 2): every image primary on the DR site, and its protected copy
/// replaying and idle — nothing left to copy back.
pub fn demote_ready(
    action: &str,
    cluster: &str,
    protected: &str,
    dr: &str,
    volumes: &[VolumeView<'_>],
) -> Result<(), DrError> {
    for v in volumes {
        if !v.dr.is_some_and(ImageStatus::is_primary) {
            return Err(DrError::guard(
                action,
                format!(
                    "image {} of {} is {} on {dr}, not primary",
                    v.image,
                    v.vm,
                    shown(v.dr)
                ),
                "demote hands the images back after a failover; with the DR site not primary there is nothing to hand back",
            ));
        }
        if !replica_synced(v.protected) {
            let advice = if v.protected.is_some_and(ImageStatus::is_primary) {
                format!(
                    "it is still primary on {protected} as well: run resync({}) first",
                    lit(cluster)
                )
            } else {
                format!(
                    "wait until it has caught up: wait_synced({}, …) first",
                    lit(cluster)
                )
            };
            return Err(DrError::guard(
                action,
                format!(
                    "image {} of {} on {protected} is {}, not a replica with nothing left to copy",
                    v.image,
                    v.vm,
                    shown(v.protected)
                ),
                advice,
            ));
        }
    }
    Ok(())
}

/// The VM-level mirroring commands that start from a healthy pair (snapshot, demote): each
/// image primary on the protected site and its replica idle.
pub fn pair_healthy(
    action: &str,
    protected: &str,
    dr: &str,
    volumes: &[VolumeView<'_>],
) -> Result<(), DrError> {
    for v in volumes {
        if !v.protected.is_some_and(ImageStatus::is_primary) {
            return Err(DrError::guard(
                action,
                format!(
                    "image {} of {} is {} on {protected}, not primary",
                    v.image,
                    v.vm,
                    shown(v.protected)
                ),
                "check mirror_status: the VM's images must be primary on the protected site",
            ));
        }
        if !replica_synced(v.dr) {
            return Err(DrError::guard(
                action,
                format!(
                    "the replica of image {} of {} on {dr} is {}",
                    v.image,
                    v.vm,
                    shown(v.dr)
                ),
                "wait until it is replaying and idle (wait_synced), then retry",
            ));
        }
    }
    Ok(())
}

/// `start_mirror_vm`: the mirrored VM's images must already be primary on the DR site, or
/// Mold waits up to 100 minutes and then starts a VM that cannot run.
pub fn dr_images_primary(
    action: &str,
    dr: &str,
    volumes: &[VolumeView<'_>],
    next: &str,
) -> Result<(), DrError> {
    match volumes
        .iter()
        .find(|v| !v.dr.is_some_and(ImageStatus::is_primary))
    {
        None => Ok(()),
        Some(v) => Err(DrError::guard(
            action,
            format!(
                "image {} of {} is {} on {dr}, not primary",
                v.image,
                v.vm,
                shown(v.dr)
            ),
            next,
        )),
    }
}

/// `mirror_snapshot`: each image primary on `site`, and its copy on `peer` a replica that
/// replays (else the snapshot could never arrive). `images` holds (image, status on `site`,
/// status on `peer`).
pub fn snapshot_possible(
    action: &str,
    site: &str,
    peer: &str,
    images: &[(&str, Option<&ImageStatus>, Option<&ImageStatus>)],
) -> Result<(), DrError> {
    for (image, here, there) in images {
        if !here.is_some_and(ImageStatus::is_primary) {
            return Err(DrError::guard(
                action,
                format!("image {image} is {} on {site}, not primary", shown(*here)),
                "a mirror snapshot is taken where the images are primary: use the other site",
            ));
        }
        if !there.is_some_and(|s| s.up() && s.state_kind() == "replaying") {
            return Err(DrError::guard(
                action,
                format!(
                    "the copy of image {image} on {peer} is {}, so no snapshot can reach it",
                    shown(*there)
                ),
                "look at mirror_status: the pair needs repair (resync) before snapshots flow",
            ));
        }
    }
    Ok(())
}

/// `demote_image`: primary here, its VM stopped, the peer replaying and idle (nothing
/// unsynced: a demote then loses nothing).
pub fn demote_image_ready(
    action: &str,
    site: &str,
    image: &str,
    local: &ImageStatus,
    vm: Option<(&str, &str)>,
    peer: Option<&ImageStatus>,
) -> Result<(), DrError> {
    if !local.is_primary() {
        return Err(DrError::guard(
            action,
            format!(
                "image {image} is {} on {site}, not primary",
                describe(local)
            ),
            "only a primary image can be demoted",
        ));
    }
    let Some((vm, state)) = vm else {
        return Err(DrError::guard(
            action,
            format!(
                "no mirrored VM on {site} uses image {image}, so drbook cannot check that nothing writes to it"
            ),
            "demote the images of a mirrored VM; for anything else use glue_raw once you are sure it is idle",
        ));
    };
    if state != "Stopped" {
        return Err(DrError::guard(
            action,
            format!("VM {vm} using image {image} is {state} on {site}"),
            format!("stop it first (stop_vm({}, {}))", lit(site), lit(vm)),
        ));
    }
    if !replica_synced(peer) {
        return Err(DrError::guard(
            action,
            format!(
                "the peer's copy of image {image} is {}: it has not received every write",
                shown(peer)
            ),
            format!(
                "take a last snapshot and let it arrive: mirror_snapshot({}, {}), then retry",
                lit(site),
                lit(vm)
            ),
        ));
    }
    Ok(())
}

/// What an image-level promote may do now.
#[derive(Debug)]
pub enum PromoteImage {
    /// Both sides re-read: the peer is demoted and this site replayed it. Clean.
    Ready,
    /// The peer is demoted but this site has not replayed the demotion yet: wait.
    NotYet(String),
}

/// `promote_image`: both sides re-read just before. Glue always promotes with `--force`, so
/// the only protection against two primaries is this check (Glue spec §5.3, §6.6).
pub fn promote_image_ready(
    action: &str,
    site: &str,
    peer_site: &str,
    image: &str,
    local: &ImageStatus,
    peer: &ImageStatus,
) -> Result<PromoteImage, DrError> {
    if local.is_primary() || local.is_force_promoting() {
        return Err(DrError::guard(
            action,
            format!("image {image} is already {} on {site}", describe(local)),
            "nothing to promote",
        ));
    }
    if peer.is_primary() || peer.is_force_promoting() {
        return Err(DrError::guard(
            action,
            format!(
                "image {image} is {} on {peer_site}: promoting it on {site} too would leave two primaries",
                describe(peer)
            ),
            format!(
                "stop its VM on {peer_site}, then demote_image({}, {}) first",
                lit(peer_site),
                lit(image)
            ),
        ));
    }
    if !local.up() || !local.shows_peer_demoted() {
        return Ok(PromoteImage::NotYet(format!(
            "{site} shows {} and has not replayed the demotion on {peer_site} yet",
            describe(local)
        )));
    }
    Ok(PromoteImage::Ready)
}

/// `resync_image`: not primary here (a resync discards this copy), the peer primary (the
/// copy comes from it), and the VM using it stopped.
pub fn resync_image_ready(
    action: &str,
    site: &str,
    image: &str,
    local: &ImageStatus,
    peer: Option<&ImageStatus>,
    vm: Option<(&str, &str)>,
) -> Result<(), DrError> {
    if local.is_primary() || local.is_force_promoting() {
        return Err(DrError::guard(
            action,
            format!(
                "image {image} is {} on {site}: a resync would throw this copy away",
                describe(local)
            ),
            "resync the other side's copy, or demote this one first if it really is the stale one",
        ));
    }
    if !acts_as_primary(peer) {
        return Err(DrError::guard(
            action,
            format!(
                "the peer's copy of image {image} is {}, so there is no primary to copy from",
                shown(peer)
            ),
            "promote the copy that holds the data first (promote_image)",
        ));
    }
    if let Some((vm, state)) = vm
        && state != "Stopped"
    {
        return Err(DrError::guard(
            action,
            format!("VM {vm} using image {image} is {state} on {site}"),
            format!("stop it first (stop_vm({}, {}))", lit(site), lit(vm)),
        ));
    }
    Ok(())
}

/// Removing the pairing on the protected site destroys the mirrored VMs on the DR site: not
/// while the DR site holds the live copy.
pub fn dr_copy_not_live(
    action: &str,
    dr: &str,
    vms: &[(&str, &str)],
    volumes: &[VolumeView<'_>],
) -> Result<(), DrError> {
    if let Some((name, state)) = vms.iter().find(|(_, s)| *s != "Stopped") {
        return Err(DrError::guard(
            action,
            format!(
                "mirrored VM {name} is {state} on {dr}, and removing the DR cluster destroys the mirrored VMs there"
            ),
            format!(
                "fail back first (stop it, resync, demote), or stop it if {dr} does not hold the live copy"
            ),
        ));
    }
    if let Some(v) = volumes.iter().find(|v| acts_as_primary(v.dr)) {
        return Err(DrError::guard(
            action,
            format!(
                "image {} of {} is {} on {dr}: the DR site holds the live copy, and removing the DR cluster destroys it",
                v.image,
                v.vm,
                shown(v.dr)
            ),
            "fail back first (resync, wait_synced, demote)",
        ));
    }
    Ok(())
}

/// The peer offering a mirrored VM gets: the one asked for, else one of the VM's own offering
/// name, else the only one there is. Offerings with kvdo are refused, as Mold's UI does.
pub fn choose_offering<'a>(
    action: &str,
    dr: &str,
    asked: Option<&str>,
    own: Option<&str>,
    offerings: &'a [PeerServiceOffering],
) -> Result<&'a PeerServiceOffering, DrError> {
    let usable: Vec<&PeerServiceOffering> = offerings
        .iter()
        .filter(|o| o.kvdoenable != Some(true))
        .collect();
    let names = || {
        usable
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if offerings.is_empty() {
        return Err(DrError::guard(
            action,
            format!(
                "the DR cluster record lists no service offering of {dr} (it did not answer when the record was read)"
            ),
            format!("check health({}) and retry", lit(dr)),
        ));
    }
    if let Some(name) = asked {
        let Some(o) = offerings.iter().find(|o| o.name == name) else {
            return Err(DrError::guard(
                action,
                format!("{dr} has no service offering {name:?}"),
                format!("use one of: {}", names()),
            ));
        };
        if o.kvdoenable == Some(true) {
            return Err(DrError::guard(
                action,
                format!(
                    "offering {name:?} has compression/deduplication (kvdo) on, which Mold's UI refuses for mirrored VMs"
                ),
                format!("use one of: {}", names()),
            ));
        }
        return Ok(o);
    }
    if let Some(o) = own.and_then(|own| usable.iter().find(|o| o.name == own)) {
        return Ok(o);
    }
    match usable.as_slice() {
        [only] => Ok(only),
        _ => Err(DrError::guard(
            action,
            format!("{dr} has several service offerings and none named like the VM's own"),
            format!("choose one with offering: one of {}", names()),
        )),
    }
}

/// The peer network a mirrored VM gets: the one asked for, else the only one there is.
pub fn choose_network<'a>(
    action: &str,
    dr: &str,
    asked: Option<&str>,
    networks: &'a [PeerNetwork],
) -> Result<&'a PeerNetwork, DrError> {
    let names = || {
        networks
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (asked, networks) {
        (_, []) => Err(DrError::guard(
            action,
            format!(
                "the DR cluster record lists no network of {dr} (it did not answer when the record was read)"
            ),
            format!("check health({}) and retry", lit(dr)),
        )),
        (Some(name), _) => networks.iter().find(|n| n.name == name).ok_or_else(|| {
            DrError::guard(
                action,
                format!("{dr} has no network {name:?}"),
                format!("use one of: {}", names()),
            )
        }),
        (None, [only]) => Ok(only),
        (None, _) => Err(DrError::guard(
            action,
            format!("{dr} has several networks"),
            format!("choose one with network: one of {}", names()),
        )),
    }
}

/// CPU and memory go with customised offerings only, and customised ones need both.
pub fn custom_sizes(
    action: &str,
    offering: &PeerServiceOffering,
    cpu: Option<u32>,
    memory_gb: Option<u32>,
) -> Result<(), DrError> {
    let custom = offering.iscustomized == Some(true);
    match (custom, cpu, memory_gb) {
        (true, Some(c), Some(m)) if c > 0 && m > 0 => Ok(()),
        (true, ..) => Err(DrError::guard(
            action,
            format!("offering {:?} is customised", offering.name),
            "give both cpu and memory_gb (positive)",
        )),
        (false, None, None) => Ok(()),
        (false, ..) => Err(DrError::guard(
            action,
            format!("offering {:?} has a fixed size", offering.name),
            "leave out cpu and memory_gb, or choose a customised offering",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IDLE: &str = r#"replaying, {"local_snapshot_timestamp":10,"remote_snapshot_timestamp":10,"replay_state":"idle"}"#;
    const SYNCING: &str = r#"replaying, {"local_snapshot_timestamp":5,"remote_snapshot_timestamp":10,"replay_state":"syncing","syncing_percent":42}"#;

    fn st(state: &str, description: &str) -> ImageStatus {
        serde_json::from_value(json!({"name": "img-1", "state": state, "description": description}))
            .unwrap()
    }

    fn primary() -> ImageStatus {
        st("up+stopped", crate::glue::types::PRIMARY)
    }

    /// `status` as a site shows it with `peer` as what it last heard from the other site.
    fn seeing(mut status: ImageStatus, state: &str, description: &str) -> ImageStatus {
        status.peer_sites = vec![
            serde_json::from_value(json!({"state": state, "description": description})).unwrap(),
        ];
        status
    }

    fn view<'a>(p: Option<&'a ImageStatus>, d: Option<&'a ImageStatus>) -> VolumeView<'a> {
        VolumeView {
            vm: "dr-centos-1",
            image: "img-1",
            protected: p,
            dr: d,
        }
    }

    #[test]
    fn a_new_pairing_needs_a_clean_name_two_sites_and_an_unused_name() {
        let a = "create DR cluster \"DR2\" (site-a → site-b)";
        assert!(new_pairing(a, "DR2", "site-a", "site-b").is_ok());
        for bad in ["", "  ", " DR2", "DR2 "] {
            let e = new_pairing(a, bad, "site-a", "site-b").unwrap_err();
            assert!(
                e.is_guard() && e.to_string().contains("not a DR cluster name"),
                "{e}"
            );
        }
        let e = new_pairing(a, "DR2", "site-a", "site-a").unwrap_err();
        assert!(e.to_string().contains("its own DR site"), "{e}");

        assert!(name_unused(a, "DR2", "site-b", None).is_ok());
        let record = |status: &str| -> DrClusterRecord {
            serde_json::from_value(json!({
                "id": "r1", "name": "DR2", "drclustertype": "primary", "drclusterstatus": status
            }))
            .unwrap()
        };
        let e = name_unused(a, "DR2", "site-b", Some(&record("Enabled")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("site-b already holds DR cluster \"DR2\" (a primary record, Enabled)")
                && e.contains("choose another name"),
            "{e}"
        );
        let e = name_unused(a, "DR2", "site-b", Some(&record("Error")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("failed pairing") && e.contains("remove_dr_cluster(\"DR2\", \"site-b\")"),
            "{e}"
        );
    }

    #[test]
    fn a_private_key_is_pem_and_short_enough_and_never_quoted() {
        for good in [
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(private_key_text(good).is_ok(), "{good}");
        }
        let e = private_key_text("ssh-rsa AAAAB3Nza-secret-looking root@scvm").unwrap_err();
        assert!(
            e.contains("not a PEM private key") && !e.contains("AAAAB3"),
            "{e}"
        );
        let long = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            "A".repeat(PRIVATE_KEY_MAX)
        );
        let e = private_key_text(&long).unwrap_err();
        assert!(e.contains("16384") && !e.contains("AAAA"), "{e}");
    }

    #[test]
    fn stopped_vms_pass_and_running_ones_are_named_with_the_stop_to_run() {
        assert!(vms_stopped("x", &[("site-b", vec![("a", "Stopped")])]).is_ok());
        let e = vms_stopped(
            "promote DR cluster \"DR\"",
            &[(
                "site-b",
                vec![("dr-centos-1", "Stopped"), ("dr-centos-2", "Running")],
            )],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot promote DR cluster \"DR\": mirrored VM dr-centos-2 is Running on site-b — stop it first (stop_vm(\"site-b\", \"dr-centos-2\"))"
        );
        let e = vms_stopped(
            "resync",
            &[
                ("site-a", vec![("a1", "Running"), ("a2", "Starting")]),
                ("site-b", vec![("b1", "Running")]),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a1 (Running), a2 (Starting) on site-a; b1 (Running) on site-b"),
            "{e}"
        );
        assert!(
            e.contains("stop_vms(\"site-a\", [\"a1\", \"a2\"]) and stop_vms(\"site-b\", [\"b1\"])"),
            "{e}"
        );
    }

    #[test]
    fn clearing_needs_the_protected_site_silent() {
        assert!(protected_site_lost("clear", "site-a", true, true).is_ok());
        let e = protected_site_lost("clear", "site-a", false, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("site-a is not lost: its Mold still answers"),
            "{e}"
        );
        let e = protected_site_lost("clear", "site-a", false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Mold and Glue"), "{e}");
    }

    #[test]
    fn interval_grammar() {
        for good in ["1m", "30m", "1h", "12h", "1d", "90m"] {
            assert!(mirror_interval("x", good).is_ok(), "{good}");
        }
        for bad in [
            "", "m", "0h", "1", "1s", "1h30m", "h1", "-1h", "1.5h", "１h", "aé", "éh",
        ] {
            assert!(mirror_interval("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_snapshot_needs_a_primary_here_and_a_replaying_copy_there() {
        let (p, r) = (primary(), st("up+replaying", SYNCING));
        assert!(
            snapshot_possible("s", "site-a", "site-b", &[("img-1", Some(&p), Some(&r))]).is_ok()
        );
        let e = snapshot_possible("s", "site-b", "site-a", &[("img-1", Some(&r), Some(&p))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("on site-b, not primary"), "{e}");
        let split = st("up+error", "split-brain");
        let e = snapshot_possible(
            "s",
            "site-a",
            "site-b",
            &[("img-1", Some(&p), Some(&split))],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no snapshot can reach it"), "{e}");
        let down = st("down+replaying", IDLE);
        assert!(
            snapshot_possible("s", "site-a", "site-b", &[("img-1", Some(&p), Some(&down))])
                .is_err()
        );
        assert!(snapshot_possible("s", "site-a", "site-b", &[("img-1", Some(&p), None)]).is_err());
    }

    #[test]
    fn a_delta_on_its_way_is_a_transient() {
        assert!(copying(Some(&st("up+replaying", SYNCING))));
        assert!(!copying(Some(&st("up+replaying", IDLE))));
        assert!(!copying(Some(&primary())));
        assert!(!copying(Some(&st("up+error", "split-brain"))));
        assert!(!copying(None));
    }

    #[test]
    fn promote_needs_a_replica_left() {
        let (p, r) = (primary(), st("up+replaying", IDLE));
        assert!(something_to_promote("x", "site-b", &[view(Some(&p), Some(&r))]).is_ok());
        let forcing = st("up+stopping_replay", "orphan (force promoting)");
        let e = something_to_promote("x", "site-b", &[view(None, Some(&forcing))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already primary on site-b"), "{e}");
    }

    #[test]
    fn resync_says_why_not() {
        let p = primary();
        let forcing = st("up+stopping_replay", "orphan (force promoting)");
        let split = st("up+error", "split-brain");
        let replica = st("up+replaying", IDLE);
        // Needed: both primary, and the DR site has heard so.
        let heard = seeing(primary(), "up+stopped", crate::glue::types::PRIMARY);
        assert!(
            resync_needed(
                "r",
                "DR",
                "site-a",
                "site-b",
                &[view(Some(&p), Some(&heard))]
            )
            .is_ok()
        );
        // Not heard yet: the DR site's view of the returned copy is the frozen one from before
        // the outage, or `status not found`; Mold's resync would skip the image.
        for (state, description) in [
            ("down+stopped", crate::glue::types::PRIMARY),
            ("down+unknown", "status not found"),
        ] {
            let stale = seeing(primary(), state, description);
            let e = resync_needed(
                "r",
                "DR",
                "site-a",
                "site-b",
                &[view(Some(&p), Some(&stale))],
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("site-b has not heard from site-a's copy") && e.contains(state),
                "{e}"
            );
        }
        // Not yet: still force promoting.
        let e = resync_needed(
            "r",
            "DR",
            "site-a",
            "site-b",
            &[view(Some(&p), Some(&forcing))],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("orphan (force promoting)") && e.contains("wait"),
            "{e}"
        );
        // Split brain: Mold would skip it.
        let e = resync_needed(
            "r",
            "DR",
            "site-a",
            "site-b",
            &[view(Some(&split), Some(&p))],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("resync_image(\"site-a\", \"img-1\")"), "{e}");
        // Already done.
        let e = resync_needed(
            "r",
            "DR",
            "site-a",
            "site-b",
            &[view(Some(&replica), Some(&p))],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("already replays from site-b"), "{e}");
        // Never promoted.
        let e = resync_needed(
            "r",
            "DR",
            "site-a",
            "site-b",
            &[view(Some(&p), Some(&replica))],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("never promoted"), "{e}");
    }

    #[test]
    fn demote_needs_dr_primary_and_protected_idle() {
        let p = primary();
        let idle = st("up+replaying", IDLE);
        let syncing = st("up+replaying", SYNCING);
        assert!(
            demote_ready(
                "d",
                "DR",
                "site-a",
                "site-b",
                &[view(Some(&idle), Some(&p))]
            )
            .is_ok()
        );
        let e = demote_ready(
            "d",
            "DR",
            "site-a",
            "site-b",
            &[view(Some(&syncing), Some(&p))],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "image img-1 of dr-centos-1 on site-a is up+replaying (replaying, copying 42%)"
            ) && e.contains("wait_synced(\"DR\", …) first"),
            "{e}"
        );
        let e = demote_ready("d", "DR", "site-a", "site-b", &[view(Some(&p), Some(&p))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("resync(\"DR\") first"), "{e}");
        let e = demote_ready(
            "d",
            "DR",
            "site-a",
            "site-b",
            &[view(Some(&p), Some(&idle))],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not primary"), "{e}");
    }

    #[test]
    fn image_promote_refuses_a_second_primary_and_waits_for_the_replay() {
        let demoted = st("up+unknown", "remote image is not primary");
        let just = st("up+unknown", "remote image demoted");
        let p = primary();
        let replica = st("up+replaying", IDLE);
        assert!(matches!(
            promote_image_ready("p", "site-b", "site-a", "img-1", &just, &demoted),
            Ok(PromoteImage::Ready)
        ));
        let e = promote_image_ready("p", "site-b", "site-a", "img-1", &replica, &p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("two primaries") && e.contains("demote_image(\"site-a\", \"img-1\")"),
            "{e}"
        );
        assert!(promote_image_ready("p", "site-b", "site-a", "img-1", &p, &demoted).is_err());
        // Demoted on the peer, not yet replayed here: wait.
        assert!(matches!(
            promote_image_ready("p", "site-b", "site-a", "img-1", &replica, &demoted),
            Ok(PromoteImage::NotYet(_))
        ));
        let down = st("down+unknown", "remote image demoted");
        assert!(matches!(
            promote_image_ready("p", "site-b", "site-a", "img-1", &down, &demoted),
            Ok(PromoteImage::NotYet(_))
        ));
    }

    #[test]
    fn image_demote_needs_vm_stopped_and_peer_idle() {
        let p = primary();
        let idle = st("up+replaying", IDLE);
        let syncing = st("up+replaying", SYNCING);
        let ok = demote_image_ready(
            "d",
            "site-a",
            "img-1",
            &p,
            Some(("vm", "Stopped")),
            Some(&idle),
        );
        assert!(ok.is_ok());
        let e = demote_image_ready(
            "d",
            "site-a",
            "img-1",
            &p,
            Some(("vm", "Running")),
            Some(&idle),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stop_vm(\"site-a\", \"vm\")"), "{e}");
        let e = demote_image_ready(
            "d",
            "site-a",
            "img-1",
            &p,
            Some(("vm", "Stopped")),
            Some(&syncing),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("mirror_snapshot(\"site-a\", \"vm\")"), "{e}");
        assert!(demote_image_ready("d", "site-a", "img-1", &p, None, Some(&idle)).is_err());
        assert!(
            demote_image_ready(
                "d",
                "site-a",
                "img-1",
                &idle,
                Some(("vm", "Stopped")),
                Some(&p)
            )
            .is_err()
        );
    }

    #[test]
    fn image_resync_keeps_primaries() {
        let p = primary();
        let split = st("up+error", "split-brain");
        assert!(
            resync_image_ready(
                "r",
                "site-a",
                "img-1",
                &split,
                Some(&p),
                Some(("vm", "Stopped"))
            )
            .is_ok()
        );
        assert!(resync_image_ready("r", "site-a", "img-1", &p, Some(&p), None).is_err());
        assert!(resync_image_ready("r", "site-a", "img-1", &split, Some(&split), None).is_err());
        assert!(
            resync_image_ready(
                "r",
                "site-a",
                "img-1",
                &split,
                Some(&p),
                Some(("vm", "Running"))
            )
            .is_err()
        );
    }

    #[test]
    fn offerings_and_networks() {
        let offerings: Vec<PeerServiceOffering> = serde_json::from_value(json!([
            {"id": "1", "name": "Small", "iscustomized": false, "kvdoenable": false},
            {"id": "2", "name": "Medium Instance", "iscustomized": false, "kvdoenable": false},
            {"id": "3", "name": "Dedup", "iscustomized": false, "kvdoenable": true},
            {"id": "4", "name": "Custom", "iscustomized": true, "kvdoenable": false}
        ]))
        .unwrap();
        assert_eq!(
            choose_offering("c", "site-b", Some("Small"), None, &offerings)
                .unwrap()
                .id,
            "1"
        );
        assert_eq!(
            choose_offering("c", "site-b", None, Some("Medium Instance"), &offerings)
                .unwrap()
                .id,
            "2"
        );
        let e = choose_offering("c", "site-b", Some("Dedup"), None, &offerings)
            .unwrap_err()
            .to_string();
        assert!(e.contains("kvdo") && !e.contains("Dedup,"), "{e}");
        assert!(choose_offering("c", "site-b", None, None, &offerings).is_err());
        assert!(choose_offering("c", "site-b", Some("Nope"), None, &offerings).is_err());
        let custom = &offerings[3];
        assert!(custom_sizes("c", custom, Some(2), Some(4)).is_ok());
        assert!(custom_sizes("c", custom, Some(2), None).is_err());
        assert!(custom_sizes("c", &offerings[0], Some(2), Some(4)).is_err());
        assert!(custom_sizes("c", &offerings[0], None, None).is_ok());

        let nets: Vec<PeerNetwork> =
            serde_json::from_value(json!([{"id": "n1", "name": "Guest Network"}])).unwrap();
        assert_eq!(choose_network("c", "site-b", None, &nets).unwrap().id, "n1");
        assert!(choose_network("c", "site-b", Some("Other"), &nets).is_err());
        assert!(choose_network("c", "site-b", None, &[]).is_err());
    }
}
