//! What the watcher's one probe loop learns each round: every site's Mold and Glue (probed
//! separately), every DR cluster's mirroring, and the streaks that decide when a site counts
//! as down.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::dr::{Dr, Health, MirrorStatus};

/// One probe round.
#[derive(Debug, Clone)]
pub struct Round {
    pub at: DateTime<Utc>,
    pub health: BTreeMap<String, Health>,
    /// Each DR cluster's status; a cluster that could not be read is absent, with why in
    /// `status_errors`.
    pub status: BTreeMap<String, MirrorStatus>,
    pub status_errors: BTreeMap<String, String>,
}

/// Probes every configured site and reads every DR cluster's mirroring, concurrently.
pub async fn probe(dr: &Dr) -> Round {
    let at = Utc::now();
    let sites = dr.site_names();
    let health = futures_util::future::join_all(sites.iter().map(|s| dr.health(s))).await;
    let health: BTreeMap<String, Health> = sites.into_iter().zip(health).collect();
    let mut status = BTreeMap::new();
    let mut status_errors = BTreeMap::new();
    match dr.dr_clusters().await {
        Ok(clusters) => {
            let names: Vec<String> = clusters.into_iter().map(|c| c.name).collect();
            let read =
                futures_util::future::join_all(names.iter().map(|n| dr.mirror_status(n))).await;
            for (name, r) in names.into_iter().zip(read) {
                match r {
                    Ok(s) => {
                        status.insert(name, s);
                    }
                    Err(e) => {
                        status_errors.insert(name, e.to_string());
                    }
                }
            }
        }
        Err(e) => {
            status_errors.insert("*".into(), e.to_string());
        }
    }
    Round {
        at,
        health,
        status,
        status_errors,
    }
}

/// Consecutive probes in which a site answered on neither Mold nor Glue.
#[derive(Debug, Default, Clone)]
pub struct Streaks {
    failed: BTreeMap<String, u32>,
}

impl Streaks {
    /// Counts this round; returns each site's current streak.
    pub fn record(&mut self, round: &Round) -> BTreeMap<String, u32> {
        for (site, h) in &round.health {
            let n = self.failed.entry(site.clone()).or_default();
            if !h.mold && !h.glue {
                *n += 1;
            } else {
                *n = 0;
            }
        }
        self.failed.clone()
    }
}

/// The worst lag (seconds) of each mirrored VM of a cluster; `None` for a VM nothing of
/// which has reached the peer yet, or whose lag could not be read (unknown is not a lag).
pub fn vm_lags(status: &MirrorStatus) -> Vec<(String, Option<i64>)> {
    status
        .vms
        .iter()
        .map(|vm| {
            let lags: Vec<Option<i64>> = vm
                .volumes
                .iter()
                .map(|v| v.lag.known().copied().flatten().map(|l| l.num_seconds()))
                .collect();
            let worst = if lags.iter().any(Option::is_none) {
                None
            } else {
                lags.into_iter().flatten().max()
            };
            (vm.name.clone(), worst)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dr::Reach;

    fn health(site: &str, mold: bool, glue: bool) -> Health {
        Health {
            site: site.into(),
            mold,
            glue,
            mold_reach: if mold { Reach::Up } else { Reach::Down },
            glue_reach: if glue { Reach::Up } else { Reach::Down },
            glue_health: None,
            storage_read_via: None,
            note: None,
            mold_ms: None,
            glue_ms: None,
            problem: None,
        }
    }

    fn round(states: &[(&str, bool, bool)]) -> Round {
        Round {
            at: Utc::now(),
            health: states
                .iter()
                .map(|(s, m, g)| ((*s).to_string(), health(s, *m, *g)))
                .collect(),
            status: BTreeMap::new(),
            status_errors: BTreeMap::new(),
        }
    }

    #[test]
    fn a_streak_counts_only_rounds_where_both_mold_and_glue_failed() {
        let mut s = Streaks::default();
        assert_eq!(s.record(&round(&[("a", false, false)]))["a"], 1);
        assert_eq!(s.record(&round(&[("a", false, false)]))["a"], 2);
        // Glue still answers: the site is not down, the streak starts over.
        assert_eq!(s.record(&round(&[("a", false, true)]))["a"], 0);
        assert_eq!(s.record(&round(&[("a", false, false)]))["a"], 1);
        assert_eq!(s.record(&round(&[("a", true, true)]))["a"], 0);
    }
}
