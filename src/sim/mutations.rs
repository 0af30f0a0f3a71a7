//! What reached the simulated sites that could change them: every mutating request, per site,
//! per API, per command, counted on arrival — before the signature check, before an injected
//! fault spoils it (a 5xx, a reset, a timeout, a malformed answer, a failed job, or a lost
//! answer, which spoils only the answer of a request handled in full). A request
//! refused at connect time because its site is dark never arrived and is not counted; reads
//! are not counted here (Mold's `list…`/`get…`/`query…`/`find…` commands and its connection
//! test, Glue's `GET`s, rbd's listings, infos and statuses and `ceph` status over SSH).
//!
//! The keys: a Mold command's name exactly as it was sent (the simulator serves Mold's own
//! camelCase names, so a differently-cased name is a key of its own, and Mold refuses it; a
//! request with no `command` names nothing and is not counted);
//! Glue's method and route with the pool, image, host and VM names left out
//! ([`glue_api::mutation_key`](super::glue_api::mutation_key)); a command line sent over SSH
//! to a storage VM that is not a read, by its rbd command words without options and names
//! (`rbd snap create`), or as received when it is not one of rbd's commands
//! ([`ssh::shell::mutation_key`](super::ssh::shell::mutation_key)). Only requests that arrive at
//! a site's API count: what Mold does to its peer and to its own Glue is modelled inside the
//! world, not sent, and shows in no count.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::faults::Api;

/// Mutating requests received, per (site, API, command).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutations {
    counts: BTreeMap<(String, Api, String), u64>,
}

impl Mutations {
    /// One more `command` arrived at `site`'s `api`.
    pub fn record(&mut self, site: &str, api: Api, command: &str) {
        *self
            .counts
            .entry((site.to_string(), api, command.to_string()))
            .or_default() += 1;
    }

    /// How many `command`s reached `site`'s `api` (exact key: a Mold command as sent, a
    /// Glue `METHOD /route` such as `POST /mirror/image/promote`).
    pub fn count(&self, site: &str, api: Api, command: &str) -> u64 {
        self.counts
            .get(&(site.to_string(), api, command.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Only what reached `site`: `sim.mutations().on("site-b").is_empty()` is "nothing
    /// reached site-b that could change it", and its `Debug` says what did.
    #[must_use]
    pub fn on(&self, site: &str) -> Mutations {
        Mutations {
            counts: self
                .counts
                .iter()
                .filter(|((s, _, _), _)| s == site)
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
        }
    }

    /// What arrived after `earlier` was taken (counts of the same simulation): only the keys
    /// that grew, by how much.
    #[must_use]
    pub fn since(&self, earlier: &Mutations) -> Mutations {
        Mutations {
            counts: self
                .counts
                .iter()
                .filter_map(|(k, n)| {
                    let grown = n.saturating_sub(earlier.counts.get(k).copied().unwrap_or(0));
                    (grown > 0).then(|| (k.clone(), grown))
                })
                .collect(),
        }
    }

    /// These counts less `refused` (the same keys' requests that were refused outright):
    /// what was received and accepted.
    #[must_use]
    pub fn less(&self, refused: &Mutations) -> Mutations {
        Mutations {
            counts: self
                .counts
                .iter()
                .filter_map(|(k, n)| {
                    let left = n.saturating_sub(refused.counts.get(k).copied().unwrap_or(0));
                    (left > 0).then(|| (k.clone(), left))
                })
                .collect(),
        }
    }

    /// Every request counted.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// (site, API, command, count), sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Api, &str, u64)> + '_ {
        self.counts
            .iter()
            .map(|((site, api, command), n)| (site.as_str(), *api, command.as_str(), *n))
    }

    pub fn as_map(&self) -> &BTreeMap<(String, Api, String), u64> {
        &self.counts
    }

    /// `/state`'s `mutations`: `{"<site>": {"mold": {"<command>": n}, "glue": {"<METHOD>
    /// <route>": n}, "ssh": {"rbd <command>": n}}}`, every one of `sites` present with every
    /// API, empty when nothing came.
    pub fn to_json<'a>(&self, sites: impl IntoIterator<Item = &'a str>) -> Value {
        let mut out = serde_json::Map::new();
        for site in sites {
            let per_api = |api: Api| -> serde_json::Map<String, Value> {
                self.counts
                    .iter()
                    .filter(|((s, a, _), _)| s == site && *a == api)
                    .map(|((_, _, command), n)| (command.clone(), json!(n)))
                    .collect()
            };
            out.insert(
                site.to_string(),
                json!({"mold": per_api(Api::Mold), "glue": per_api(Api::Glue),
                       "ssh": per_api(Api::Ssh)}),
            );
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_site_api_and_command() {
        let mut m = Mutations::default();
        m.record("site-a", Api::Mold, "startVirtualMachine");
        m.record("site-a", Api::Mold, "startVirtualMachine");
        m.record("site-a", Api::Glue, "POST /mirror/image/promote");
        m.record("site-a", Api::Ssh, "rbd snap create");
        let before = m.clone();
        m.record("site-b", Api::Mold, "promoteDisasterRecoveryCluster");
        m.record("site-a", Api::Mold, "startVirtualMachine");

        assert_eq!(m.count("site-a", Api::Mold, "startVirtualMachine"), 3);
        assert_eq!(m.count("site-a", Api::Glue, "startVirtualMachine"), 0);
        assert_eq!(m.count("site-b", Api::Mold, "startVirtualMachine"), 0);
        assert_eq!(m.total(), 6);
        assert_eq!(m.on("site-a").total(), 5);
        assert!(m.on("site-c").is_empty());
        let since = m.since(&before);
        let grown: Vec<_> = since.iter().map(|(s, _, c, n)| (s, c, n)).collect();
        assert_eq!(
            grown,
            [
                ("site-a", "startVirtualMachine", 1),
                ("site-b", "promoteDisasterRecoveryCluster", 1)
            ]
        );
        assert_eq!(
            m.to_json(["site-a", "site-b", "site-c"]),
            json!({
                "site-a": {"mold": {"startVirtualMachine": 3},
                           "glue": {"POST /mirror/image/promote": 1},
                           "ssh": {"rbd snap create": 1}},
                "site-b": {"mold": {"promoteDisasterRecoveryCluster": 1}, "glue": {}, "ssh": {}},
                "site-c": {"mold": {}, "glue": {}, "ssh": {}}
            })
        );
    }
}
