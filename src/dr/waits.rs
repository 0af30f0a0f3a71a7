//! The domain's waits: for a cluster whose copies are mid-delta to settle, for images to
//! reach a state, and for a snapshot to arrive on the replica (Ceph's one-second timestamps
//! told apart).

use super::cluster::ClusterRead;
use super::guards::{self, shown};
use super::volumes::volume_views;
use super::{Dr, DrError};
use crate::glue::{ImageStatus, MirrorSide, PoolStatus};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long drbook waits for its own clock to pass the newest snapshot's second, so that the
/// next snapshot is told apart from it (Ceph's timestamps have one-second resolution).
const SECOND_BOUNDARY_WAIT: Duration = Duration::from_secs(2);

/// For each image, the newest snapshot timestamp its replica knows of (0 when none): a
/// snapshot taken after this point shows a newer `remote_snapshot_timestamp`.
pub(crate) fn baseline(replicas: &[(&str, Option<&ImageStatus>)]) -> BTreeMap<String, i64> {
    replicas
        .iter()
        .map(|(image, st)| {
            let newest = st.and_then(MirrorSide::replay_detail).map_or(0, |d| {
                d.remote_snapshot_timestamp
                    .into_iter()
                    .chain(d.local_snapshot_timestamp)
                    .max()
                    .unwrap_or(0)
            });
            ((*image).to_string(), newest)
        })
        .collect()
}

/// Waits (briefly) until the wall clock is past the baseline's newest second, so the snapshot
/// about to be taken carries a strictly newer timestamp.
pub(crate) async fn after_second_of(baseline: &BTreeMap<String, i64>) {
    let newest = baseline.values().copied().max().unwrap_or(0);
    let started = Instant::now();
    while Utc::now().timestamp() <= newest && started.elapsed() < SECOND_BOUNDARY_WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a replica holds a snapshot newer than `baseline` and has nothing left to copy.
pub(crate) fn reached(st: Option<&ImageStatus>, baseline: i64) -> Option<DateTime<Utc>> {
    let detail = st?.replay_detail()?;
    let newer = detail
        .remote_snapshot_timestamp
        .is_some_and(|r| r > baseline)
        || detail
            .local_snapshot_timestamp
            .is_some_and(|l| l > baseline);
    (st?.is_replaying_idle() && super::status::caught_up(&detail) && newer)
        .then(|| detail.local_snapshot_time())
        .flatten()
}

impl Dr {
    /// Reads the cluster with pools. A replica in the middle of copying a snapshot delta is a
    /// transient the guards would refuse (Glue's schedule can start one at any moment), so
    /// drbook waits up to `waits.settle` for such copies to finish and reads again; the
    /// guards then judge the fresh read.
    pub(crate) async fn read_settled(&self, cluster: &str) -> Result<ClusterRead, DrError> {
        let read = self.read_cluster(cluster, true).await?;
        let views = volume_views(&read);
        let copying_on = |protected_side: bool| {
            views
                .iter()
                .filter(|v| guards::copying(if protected_side { v.protected } else { v.dr }))
                .map(|v| v.image.to_string())
                .collect::<Vec<_>>()
        };
        let copying = [
            (read.protected(), copying_on(true)),
            (read.dr(), copying_on(false)),
        ];
        if copying.iter().all(|(_, images)| images.is_empty()) {
            return Ok(read);
        }
        for (site, images) in copying.iter().filter(|(_, i)| !i.is_empty()) {
            // A copy still running afterwards is the guards' to report.
            let _ = self
                .wait_images(
                    site,
                    images,
                    &format!("the copies on {site} to finish"),
                    self.waits.settle,
                    |_, st| !guards::copying(st),
                )
                .await;
        }
        self.read_cluster(cluster, true).await
    }

    /// Polls `site`'s Glue pool status until `ok(image, status)` holds for every image, for
    /// at most `limit`; returns the pool status that satisfied it. The timeout names each
    /// image still pending with its status.
    pub(crate) async fn wait_images(
        &self,
        site: &str,
        images: &[String],
        what: &str,
        limit: Duration,
        ok: impl Fn(&str, Option<&crate::glue::ImageStatus>) -> bool,
    ) -> Result<PoolStatus, DrError> {
        let glue = self.handle(site)?.glue()?;
        let started = Instant::now();
        loop {
            let pending: Vec<String> = match glue.pool_status().await {
                Ok(pool) => {
                    let pending: Vec<String> = images
                        .iter()
                        .filter(|i| !ok(i, pool.image(i)))
                        .map(|i| format!("{i} on {site} is {}", shown(pool.image(i))))
                        .collect();
                    if pending.is_empty() {
                        return Ok(pool);
                    }
                    pending
                }
                Err(e) => vec![format!("{site}'s Glue: {e}")],
            };
            if started.elapsed() >= limit {
                return Err(DrError::Timeout {
                    what: what.to_string(),
                    waited: started.elapsed(),
                    pending,
                });
            }
            self.report_wait(what, &pending, started, limit);
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    /// Polls `replica_site` until every image's replica holds a snapshot newer than its
    /// baseline and is idle; returns when each snapshot was taken.
    pub(crate) async fn wait_reached(
        &self,
        replica_site: &str,
        images: &[String],
        baseline: &BTreeMap<String, i64>,
        action: &str,
        limit: Duration,
    ) -> Result<BTreeMap<String, DateTime<Utc>>, DrError> {
        let base = |image: &str| baseline.get(image).copied().unwrap_or(0);
        let pool = self
            .wait_images(
                replica_site,
                images,
                &format!(
                    "the snapshot ({action}) to reach {replica_site} — it was requested and acknowledged, but until it arrives treat the replica as older than it"
                ),
                limit,
                |image, st| reached(st, base(image)).is_some(),
            )
            .await?;
        Ok(images
            .iter()
            .filter_map(|i| Some((i.clone(), reached(pool.image(i), base(i))?)))
            .collect())
    }
}
