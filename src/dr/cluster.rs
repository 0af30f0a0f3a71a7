//! DR clusters, resolved from both sites' `getDisasterRecoveryClusterList`.
//!
//! A DR cluster is one record on each site, joined by name: the protected site holds a
//! `secondary`-type record (describing its DR site), the DR site a `primary`-type one. Each
//! record also names its peer's Mold URL, so one answering site is enough to name both sides
//! while the other is dark.

use std::collections::BTreeMap;
use std::fmt;

use futures_util::future::join_all;
use serde::Serialize;

use super::site::SiteHandle;
use super::storage_read::StorageRead;
use super::unknown::{Api, Unreadable};
use super::{Dr, DrError};
use crate::glue::PoolStatus;
use crate::mold::types::{DrClusterRecord, DrClusterType};

/// A DR cluster as both sites see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DrCluster {
    pub name: String,
    /// The protected site (its record has type `secondary`).
    pub primary_site: String,
    /// The disaster-recovery site (its record has type `primary`); cluster operations run
    /// there.
    pub dr_site: String,
    /// `mirrorscheduleinterval` (`1h` by default).
    pub interval: Option<String>,
    /// `drclusterstatus` (`Enabled`, `Disabled`, `Error`, …).
    pub status: Option<String>,
    /// `mirroringagentstatus` (`Enabled`, `Warning`, `Error`, …).
    pub agent_status: Option<String>,
    /// Site → the id of that site's record.
    pub record_ids: BTreeMap<String, String>,
    /// What could not be read (a site's Mold, its Glue), and why: the part above that site
    /// would have told is inferred from the other site's record.
    pub unknown: Vec<Unreadable>,
}

impl fmt::Display for DrCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DR cluster {}: protected {} → DR {}",
            self.name, self.primary_site, self.dr_site
        )?;
        if let Some(i) = &self.interval {
            write!(f, ", snapshots every {i}")?;
        }
        if let (Some(s), Some(a)) = (&self.status, &self.agent_status) {
            write!(f, ", {s}/{a}")?;
        }
        for u in &self.unknown {
            write!(f, " [{u}]")?;
        }
        Ok(())
    }
}

/// The site a pairing's side could not be told for.
pub(crate) const UNKNOWN_SITE: &str = "unknown";

/// Which configured site is protected and which is the DR site, from the records read.
/// Holders decide first (the type a site's own record has); a record's peer URL fills in a
/// side whose site did not answer.
pub(crate) fn pair<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a DrClusterRecord)> + Clone,
    peer_of: impl Fn(&str, &DrClusterRecord) -> Option<String>,
) -> (Option<String>, Option<String>) {
    let (mut protected, mut dr) = (None, None);
    for (site, r) in records.clone() {
        match r.cluster_type {
            DrClusterType::Secondary => protected = protected.or(Some(site.to_string())),
            DrClusterType::Primary => dr = dr.or(Some(site.to_string())),
            DrClusterType::Other(_) => {}
        }
    }
    for (site, r) in records {
        match r.cluster_type {
            DrClusterType::Secondary if dr.is_none() => dr = peer_of(site, r),
            DrClusterType::Primary if protected.is_none() => protected = peer_of(site, r),
            _ => {}
        }
    }
    (protected, dr)
}

/// One DR cluster read from every configured site at once: the records, optionally each
/// site's Glue pool status, and what could not be read.
#[derive(Debug)]
pub(crate) struct ClusterRead {
    pub cluster: DrCluster,
    /// Site → its record of this cluster (only sites that answered).
    pub records: BTreeMap<String, DrClusterRecord>,
    /// Site → `GET /mirror/image/rbd` (only when asked for, and only sites that answered).
    pub pools: BTreeMap<String, PoolStatus>,
    /// Site → why its Mold's record could not be read.
    pub mold_down: BTreeMap<String, Unreadable>,
    /// Site → why its Glue's pool status could not be read (only when asked for).
    pub glue_down: BTreeMap<String, Unreadable>,
    /// Site → where its pool status was read from (only sites in `pools`).
    pub storage_read: BTreeMap<String, StorageRead>,
}

/// Which pool statuses a cluster read takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pools {
    /// None: the records alone.
    No,
    /// Each site's, through Glue: what the guards of a mutation decide on.
    Glue,
    /// Each site's, through Glue, or over SSH where no Glue endpoint answers
    /// (`storage_read.rs`): for the status reads only.
    GlueOrSsh,
}

impl ClusterRead {
    pub fn protected(&self) -> &str {
        &self.cluster.primary_site
    }

    pub fn dr(&self) -> &str {
        &self.cluster.dr_site
    }

    /// The record `site` holds; an unknown when that site could not be read.
    pub fn record(&self, site: &str, action: &str) -> Result<&DrClusterRecord, DrError> {
        self.records
            .get(site)
            .ok_or_else(|| match self.mold_down.get(site) {
                Some(why) => DrError::unknown(
                    action,
                    &format!("{site}'s record of DR cluster {:?}", self.cluster.name),
                    why,
                ),
                None => DrError::guard(
                    action,
                    format!(
                        "{site} holds no record of DR cluster {:?}",
                        self.cluster.name
                    ),
                    "check the pairing with dr_clusters()".to_string(),
                ),
            })
    }

    /// `site`'s Glue pool status; an unknown when it could not be read.
    pub fn pool(&self, site: &str, action: &str) -> Result<&PoolStatus, DrError> {
        self.pools.get(site).ok_or_else(|| {
            let what = format!("the mirroring of the images on {site}");
            match self.glue_down.get(site) {
                Some(why) => DrError::unknown(action, &what, why),
                // A caller that needs pools reads them: this is drbook's own slip.
                None => DrError::Config(format!("{action}: {what} was not read")),
            }
        })
    }
}

impl Dr {
    /// The site a record's peer URL names, else (with exactly two sites configured) the other
    /// one: Mold may store an address drbook reaches under another name.
    pub(crate) fn peer_site(&self, holder: &str, record: &DrClusterRecord) -> Option<String> {
        let sites = &self.inner.sites;
        if let Some(url) = &record.peer_url
            && let Some(h) = sites.iter().find(|h| h.name != holder && h.is_mold_at(url))
        {
            return Some(h.name.clone());
        }
        match sites.as_slice() {
            [a, b] if a.name == holder => Some(b.name.clone()),
            [a, b] if b.name == holder => Some(a.name.clone()),
            _ => None,
        }
    }

    fn cluster_from(
        &self,
        name: &str,
        records: &BTreeMap<String, DrClusterRecord>,
        unknown: Vec<Unreadable>,
    ) -> DrCluster {
        let (protected, dr) = pair(records.iter().map(|(s, r)| (s.as_str(), r)), |holder, r| {
            self.peer_site(holder, r)
        });
        let protected = protected.unwrap_or_else(|| UNKNOWN_SITE.to_string());
        let dr = dr.unwrap_or_else(|| UNKNOWN_SITE.to_string());
        // The protected site's record is the one the operator edits; the DR site's otherwise.
        let main = records.get(&protected).or_else(|| records.get(&dr));
        DrCluster {
            name: name.to_string(),
            interval: main.and_then(|r| r.mirror_schedule_interval.clone()),
            status: main.and_then(|r| r.status.clone()),
            agent_status: main.and_then(|r| r.agent_status.clone()),
            record_ids: records
                .iter()
                .map(|(s, r)| (s.clone(), r.id.clone()))
                .collect(),
            unknown,
            primary_site: protected,
            dr_site: dr,
        }
    }

    /// Every DR cluster the configured sites know, by name. Works with a site down.
    pub async fn dr_clusters(&self) -> Result<Vec<DrCluster>, DrError> {
        let reads = join_all(
            self.inner
                .sites
                .iter()
                .map(|h| async move { (h.name.clone(), h.mold.dr_clusters(&[]).await) }),
        )
        .await;
        let mut by_name: BTreeMap<String, BTreeMap<String, DrClusterRecord>> = BTreeMap::new();
        let mut down = Vec::new();
        for (site, read) in reads {
            match read {
                Ok(records) => {
                    for r in records {
                        by_name
                            .entry(r.name.clone())
                            .or_default()
                            .insert(site.clone(), r);
                    }
                }
                Err(e) => {
                    down.push(Unreadable::new(
                        &site,
                        Api::Mold,
                        LIST_COMMAND,
                        &DrError::from(e),
                    ));
                }
            }
        }
        if down.len() == self.inner.sites.len() {
            return Err(no_site_answered("list the DR clusters", &down));
        }
        Ok(by_name
            .iter()
            .map(|(name, records)| self.cluster_from(name, records, down.clone()))
            .collect())
    }

    /// One DR cluster; an unknown name lists the known ones.
    pub async fn dr_cluster(&self, name: &str) -> Result<DrCluster, DrError> {
        Ok(self.read_cluster(name, false).await?.cluster)
    }

    /// The cluster's mirror snapshot interval (`mirrorscheduleinterval`).
    pub async fn mirror_interval(&self, cluster: &str) -> Result<String, DrError> {
        let c = self.dr_cluster(cluster).await?;
        c.interval.ok_or_else(|| {
            DrError::Config(format!(
                "DR cluster {cluster:?} has no mirrorscheduleinterval detail on {}: set one with set_mirror_interval({cluster:?}, \"1h\")",
                c.record_ids.keys().cloned().collect::<Vec<_>>().join(" or ")
            ))
        })
    }

    /// Reads the cluster's record on every site (and each site's Glue pool status when
    /// `with_pools`), all at once: one list call and at most one Glue call per site.
    pub(crate) async fn read_cluster(
        &self,
        name: &str,
        with_pools: bool,
    ) -> Result<ClusterRead, DrError> {
        let pools = if with_pools { Pools::Glue } else { Pools::No };
        self.read_cluster_with(name, pools).await
    }

    /// [`Dr::read_cluster`] with the pool statuses `pools` says.
    pub(crate) async fn read_cluster_with(
        &self,
        name: &str,
        pools: Pools,
    ) -> Result<ClusterRead, DrError> {
        let reads = join_all(
            self.inner
                .sites
                .iter()
                .map(|h| self.read_site(h, name, pools)),
        )
        .await;
        let mut records = BTreeMap::new();
        let mut pools = BTreeMap::new();
        let mut mold_down = BTreeMap::new();
        let mut glue_down = BTreeMap::new();
        let mut storage_read = BTreeMap::new();
        for (site, record, pool) in reads {
            match record {
                Ok(Some(r)) => {
                    records.insert(site.clone(), r);
                }
                Ok(None) => {}
                Err(e) => {
                    let u = Unreadable::new(&site, Api::Mold, LIST_COMMAND, &e);
                    mold_down.insert(site.clone(), u);
                }
            }
            match pool {
                Some(Ok((p, from))) => {
                    pools.insert(site.clone(), p);
                    storage_read.insert(site, from);
                }
                Some(Err(e)) => {
                    let u = Unreadable::new(&site, Api::Glue, POOL_STATUS_ROUTE, &e);
                    glue_down.insert(site, u);
                }
                None => {}
            }
        }
        if records.is_empty() {
            let action = format!("read DR cluster {name:?}");
            if mold_down.len() == self.inner.sites.len() {
                let down: Vec<Unreadable> = mold_down.into_values().collect();
                return Err(no_site_answered(&action, &down));
            }
            if !mold_down.is_empty() {
                // It may exist only on the site that does not answer.
                let names = self.known_cluster_names(name).await;
                return Err(DrError::guard(
                    action,
                    format!(
                        "the sites that answered know no such DR cluster (they know: {}), and the others did not answer: {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        },
                        mold_down
                            .values()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    "check the name with dr_clusters() and the sites with health()",
                ));
            }
            return Err(DrError::NotFound {
                what: "DR cluster".into(),
                name: name.to_string(),
                suggestions: self.known_cluster_names(name).await,
            });
        }
        let unknown: Vec<Unreadable> = mold_down
            .values()
            .chain(glue_down.values())
            .cloned()
            .collect();
        let cluster = self.cluster_from(name, &records, unknown);
        if cluster.primary_site == UNKNOWN_SITE || cluster.dr_site == UNKNOWN_SITE {
            let holders: Vec<String> = records
                .iter()
                .map(|(s, r)| {
                    format!(
                        "{s} holds a {} record pointing at {}",
                        r.cluster_type.as_str(),
                        r.peer_url.as_deref().unwrap_or("no URL")
                    )
                })
                .collect();
            return Err(DrError::Config(format!(
                "DR cluster {name:?}: cannot tell which configured site is its other side ({}): add that site to drbook.toml with the same mold_url",
                holders.join("; ")
            )));
        }
        Ok(ClusterRead {
            cluster,
            records,
            pools,
            mold_down,
            glue_down,
            storage_read,
        })
    }

    /// Every DR cluster name the answering sites know, closest to `name` first.
    async fn known_cluster_names(&self, name: &str) -> Vec<String> {
        let names: Vec<String> = self
            .dr_clusters()
            .await
            .map(|cs| cs.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        crate::suggest::all_closest_first(name, &names)
    }
}

impl Dr {
    /// One site's part of a cluster read: the record (by exact name) and the pool status.
    async fn read_site(
        &self,
        h: &SiteHandle,
        name: &str,
        pools: Pools,
    ) -> (
        String,
        Result<Option<DrClusterRecord>, DrError>,
        Option<Result<(PoolStatus, StorageRead), DrError>>,
    ) {
        let record = async {
            h.mold
                .dr_clusters(&[("name", name)])
                .await
                .map(|rs| rs.into_iter().next())
                .map_err(DrError::from)
        };
        let pool = async {
            match pools {
                Pools::No => None,
                Pools::Glue => Some(match h.glue() {
                    Ok(g) => g
                        .pool_status()
                        .await
                        .map(|p| (p, StorageRead::glue(&h.name)))
                        .map_err(DrError::from),
                    Err(e) => Err(e),
                }),
                Pools::GlueOrSsh => Some(self.pool_status_read(&h.name).await),
            }
        };
        let (record, pool) = tokio::join!(record, pool);
        (h.name.clone(), record, pool)
    }
}

/// The Mold command that lists DR cluster records.
const LIST_COMMAND: &str = "getDisasterRecoveryClusterList";
/// The Glue route of every mirrored image's status.
pub(crate) const POOL_STATUS_ROUTE: &str = "GET /mirror/image/rbd";

/// No configured site's Mold answered: what each said, and to check the network.
fn no_site_answered(action: &str, down: &[Unreadable]) -> DrError {
    let first = down.first().cloned().unwrap_or(Unreadable {
        site: "every site".into(),
        api: Api::Mold,
        command: LIST_COMMAND.into(),
        error: "no site is configured".into(),
        dark: false,
    });
    DrError::Unknown {
        action: format!("{action}: no configured site answered, and"),
        what: "every configured site's DR records".to_string(),
        advice: format!(
            "no site answered ({}): check the network and drbook sites",
            down.iter()
                .map(|u| format!(
                    "{}: {}",
                    u.site,
                    if u.dark { "dark" } else { "answered badly" }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        unreadable: Box::new(first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, peer: &str) -> DrClusterRecord {
        serde_json::from_value(serde_json::json!({
            "id": format!("id-{kind}"), "name": "DR", "drclustertype": kind, "drclusterurl": peer
        }))
        .unwrap()
    }

    #[test]
    fn pairing_from_both_records() {
        let a = record("secondary", "http://b:8080");
        let b = record("primary", "http://a:8080");
        let (p, d) = pair([("site-a", &a), ("site-b", &b)], |_, _| None);
        assert_eq!(
            (p.as_deref(), d.as_deref()),
            (Some("site-a"), Some("site-b"))
        );
    }

    #[test]
    fn pairing_with_one_site_dark_uses_the_peer_url() {
        let b = record("primary", "http://a:8080");
        let (p, d) = pair([("site-b", &b)], |holder, r| {
            assert_eq!(holder, "site-b");
            (r.peer_url.as_deref() == Some("http://a:8080")).then(|| "site-a".to_string())
        });
        assert_eq!(
            (p.as_deref(), d.as_deref()),
            (Some("site-a"), Some("site-b"))
        );
        let a = record("secondary", "http://b:8080");
        let (p, d) = pair([("site-a", &a)], |_, _| None);
        assert_eq!((p.as_deref(), d), (Some("site-a"), None));
    }
}
