//! Mirrored volumes as the guards see them: both sites' rows and images paired up from one
//! cluster read, the images of a record, and how a pool shows them in a few words.

use super::Dr;
use super::cluster::ClusterRead;
use super::guards::{VolumeView, shown};
use crate::glue::PoolStatus;

/// Every mirrored volume of the cluster, as guards see it: the protected site's rows first,
/// then rows only the DR site knows; each image once.
pub(crate) fn volume_views(read: &ClusterRead) -> Vec<VolumeView<'_>> {
    volume_views_of(read, |_| true)
}

/// The volumes of the VMs `keep` accepts (by the protected VM's name).
pub(crate) fn volume_views_of<'a>(
    read: &'a ClusterRead,
    keep: impl Fn(&str) -> bool,
) -> Vec<VolumeView<'a>> {
    let p_pool = read.pools.get(read.protected());
    let d_pool = read.pools.get(read.dr());
    let from_protected = read
        .records
        .get(read.protected())
        .into_iter()
        .flat_map(|r| {
            r.vm_map.iter().map(|row| {
                (
                    row.vm_name
                        .as_deref()
                        .or(row.mirror_vm_name.as_deref())
                        .unwrap_or(&row.vm_id),
                    row.volume_path.as_str(),
                )
            })
        });
    let from_dr = read.records.get(read.dr()).into_iter().flat_map(|r| {
        r.vm_map.iter().map(|row| {
            (
                row.mirror_vm_name
                    .as_deref()
                    .or(row.vm_name.as_deref())
                    .unwrap_or(&row.vm_id),
                row.volume_path.as_str(),
            )
        })
    });
    let mut out: Vec<VolumeView<'a>> = Vec::new();
    for (vm, image) in from_protected.chain(from_dr) {
        if keep(vm) && !out.iter().any(|v| v.image == image) {
            out.push(VolumeView {
                vm,
                image,
                protected: p_pool.and_then(|p| p.image(image)),
                dr: d_pool.and_then(|p| p.image(image)),
            });
        }
    }
    out
}

/// Every image a DR record maps.
pub(crate) fn record_images(record: &crate::mold::types::DrClusterRecord) -> Vec<String> {
    record
        .vm_map
        .iter()
        .map(|r| r.volume_path.clone())
        .collect()
}

/// The images of `volumes`, for messages.
pub(crate) fn images_of(volumes: &[VolumeView<'_>]) -> Vec<String> {
    volumes.iter().map(|v| v.image.to_string()).collect()
}

/// How `pool` shows `images`, in a few words: `img state` for one or two, else how many
/// show each state (`18 up+stopped (local image is primary), 2 up+replaying (…)`), so that
/// an error about twenty images stays one readable line.
fn roles(pool: &PoolStatus, images: &[String]) -> String {
    if let [one] = images {
        return format!("the image is {}", shown(pool.image(one)));
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for i in images {
        let state = shown(pool.image(i));
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    counts
        .iter()
        .map(|(state, n)| format!("{n} image(s) {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Dr {
    /// What `site`'s Glue shows for `images` now: the "found" of an unknown outcome.
    pub(crate) async fn found_images(&self, site: &str, images: &[String]) -> String {
        let glue = match self.handle(site).and_then(|h| h.glue()) {
            Ok(g) => g,
            Err(e) => return format!("nothing ({e})"),
        };
        match glue.pool_status().await {
            Ok(pool) => format!("on {site}: {}", roles(&pool, images)),
            Err(e) => format!("nothing (reading {site}'s Glue failed too: {e})"),
        }
    }
}
