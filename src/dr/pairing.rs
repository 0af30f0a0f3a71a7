//! Pairing two sites into a DR cluster: Mold's connection test, then
//! `createDisasterRecoveryCluster` on the protected site with the DR site's keys and storage-VM
//! key, read back until both records are `Enabled`.

use super::guards::{self, lit};
use super::outcome::Outcome;
use super::reconcile::{self, JobFound};
use super::site::SiteHandle;
use super::unknown::{Api, Unreadable};
use super::{Dr, DrError};
use crate::mold::MoldErrorKind;
use crate::secret::Secret;
use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use tokio::time::Instant;

/// How a new DR cluster is made; anything left out comes from drbook.toml and the DR site.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DrClusterSpec {
    /// The records' description (default [`DEFAULT_DESCRIPTION`]).
    pub description: Option<String>,
    /// A file holding the DR site's storage-VM private key (its `/root/.ssh/id_rsa`, PEM),
    /// which Mold hands to Glue to set mirroring up; default the DR site's `ssh_key_file`.
    /// A relative path is relative to the current directory.
    pub private_key_file: Option<PathBuf>,
    /// The DR site's storage VM Mold pairs with (`drclusterglueipaddress`); default the
    /// first address of its `listScvmIpAddress`, else the host of its first `glue_urls`.
    pub glue_ip: Option<String>,
}

/// The description a DR cluster drbook creates gets unless told otherwise.
pub const DEFAULT_DESCRIPTION: &str = "created by drbook";

/// The DR site's storage-VM private key for `drclusterprivatekey`: the file of the
/// `private_key_file` option, else the DR site's `ssh_key_file`. Errors name the site, the
/// setting and the file, never the content.
async fn read_private_key(
    action: &str,
    dr: &str,
    options: &DrClusterSpec,
    d: &SiteHandle,
) -> Result<(PathBuf, Secret), DrError> {
    let (path, from) = match (&options.private_key_file, &d.ssh.key_file) {
        (Some(p), _) => (p.clone(), "the private_key_file option".to_string()),
        (None, Some(p)) => (p.clone(), format!("sites.{dr}.ssh_key_file")),
        (None, None) => {
            return Err(DrError::Config(format!(
                "{action}: Mold needs {dr}'s storage-VM private key (its /root/.ssh/id_rsa) to pair the sites, and neither the private_key_file option nor sites.{dr}.ssh_key_file in drbook.toml names one: set ssh_key_file for {dr}, or pass #{{private_key_file: \"…\"}}"
            )));
        }
    };
    let unreadable = |e: &dyn fmt::Display| {
        DrError::Config(format!(
            "{action}: cannot read {dr}'s storage-VM private key {} (from {from}): {e}",
            path.display()
        ))
    };
    // A key is a few kilobytes: anything far bigger is the wrong file, and is not read.
    let size = tokio::fs::metadata(&path)
        .await
        .map_err(|e| unreadable(&e))?
        .len();
    if size > 4 * guards::PRIVATE_KEY_MAX as u64 {
        return Err(unreadable(&format!(
            "it is {size} bytes, far more than a private key"
        )));
    }
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| unreadable(&e))?;
    guards::private_key_text(&text).map_err(|why| {
        DrError::Config(format!(
            "{action}: {dr}'s storage-VM private key {} (from {from}): {why}",
            path.display()
        ))
    })?;
    Ok((path, Secret::new(text)))
}

/// Mold's pairing command.
const CREATE_PAIRING: &str = "createDisasterRecoveryCluster";

/// A pairing made (or found made by an earlier attempt): both records, `Enabled`. `extra`
/// adds to the detail what this attempt knows (description, URL, storage VM, Mold's answer).
fn paired(
    action: String,
    name: &str,
    protected: &str,
    dr: &str,
    records: &BTreeMap<String, crate::mold::types::DrClusterRecord>,
    extra: Value,
) -> Outcome {
    let interval = records
        .get(protected)
        .and_then(|r| r.mirror_schedule_interval.clone());
    let mut detail = json!({
        "command": CREATE_PAIRING,
        "name": name,
        "protected": protected,
        "dr": dr,
        "interval": interval,
        "record_ids": records.iter().map(|(s, r)| (s.clone(), r.id.clone())).collect::<BTreeMap<_, _>>(),
    });
    if let (Some(d), Value::Object(more)) = (detail.as_object_mut(), extra) {
        d.extend(more);
    }
    Outcome {
        action,
        site: protected.to_string(),
        message: format!(
            "{protected} (protected) and {dr} (DR) are paired as {name:?}, Enabled on both; next: protect each VM with create_mirror_vm({}, <vm>)",
            lit(name)
        ),
        detail,
    }
}

impl Dr {
    /// Mold's own connection test, run on the protected site against the DR site, as the UI
    /// does before pairing. Mold needs the DR site's admin keys for it; DR records never show
    /// them to drbook, so drbook sends the keys its own configuration holds for the DR site.
    /// `(false, Mold's reason)` when the test ran and failed.
    pub async fn connectivity_test(&self, cluster: &str) -> Result<(bool, String), DrError> {
        let action = format!("test the connection of DR cluster {cluster:?}");
        let read = self.read_cluster(cluster, false).await?;
        let (protected, dr) = (read.protected(), read.dr());
        let p_record = read.record(protected, &action)?;
        let d = self.handle(dr).map_err(|_| {
            DrError::Config(format!(
                "{action}: Mold on {protected} needs {dr}'s admin API and secret keys, and drbook.toml has no site {dr}: add it with its mold_url, api_key and secret_key"
            ))
        })?;
        let url = p_record
            .peer_url
            .clone()
            .unwrap_or_else(|| d.mold_base_url());
        let glue_ip = match &p_record.peer_glue_ip {
            Some(ip) => ip.clone(),
            None => d.mold.scvm_ip_addresses().await?.into_iter().next().ok_or_else(|| {
                DrError::guard(
                    &action,
                    format!("neither the record on {protected} nor {dr}'s Mold names a storage VM address"),
                    format!("check listScvmIpAddress on {dr}"),
                )
            })?,
        };
        tracing::info!(site = protected, peer = dr, "{action}");
        Ok(
            match self
                .mold_connection_test(protected, dr, &url, &glue_ip)
                .await?
            {
                None => (
                    true,
                    format!(
                        "{protected}'s Mold reached {dr}'s Mold at {url} and its Glue at {glue_ip}"
                    ),
                ),
                Some(text) => (
                    false,
                    format!(
                        "{text} ({protected} → {dr} at {url}, Glue {glue_ip}; the keys sent are drbook's for {dr})"
                    ),
                ),
            },
        )
    }

    /// Mold's `connectivityTestsDisasterRecovery` on `protected` toward `dr`'s Mold at `url`
    /// and its storage VM `glue_ip`, with drbook's admin keys for `dr`. `Ok(None)`: it
    /// passed; `Ok(Some(text))`: it ran and failed, with Mold's text.
    async fn mold_connection_test(
        &self,
        protected: &str,
        dr: &str,
        url: &str,
        glue_ip: &str,
    ) -> Result<Option<String>, DrError> {
        let p = self.handle(protected)?;
        let settings = self.handle(dr)?.mold.settings();
        let answer = p
            .mold
            .call(
                "connectivityTestsDisasterRecovery",
                &[
                    ("drclusterurl", url),
                    ("drclusterapikey", settings.api_key.expose()),
                    ("drclustersecretkey", settings.secret_key.expose()),
                    ("drclusterglueipaddress", glue_ip),
                ],
            )
            .await;
        match answer {
            Ok(_) => Ok(None),
            Err(e) => match e.errortext() {
                // Mold's answer is the test's verdict; its rate limiter's is not.
                Some(text)
                    if matches!(e.kind, MoldErrorKind::Api { .. }) && !e.is_rate_limited() =>
                {
                    Ok(Some(text.to_string()))
                }
                _ => Err(e.into()),
            },
        }
    }

    /// Pairs two sites: `createDisasterRecoveryCluster` on the protected site makes its
    /// record of the DR site and, through the DR site's Mold, that site's record of it, then
    /// sets up pool mirroring on both Glues (the operator guide's "setup", §7).
    ///
    /// Mold needs what its own records never show drbook: the DR site's admin keys (drbook
    /// sends its own for that site) and the DR site's storage-VM private key (the file
    /// `options.private_key_file`, else the DR site's `ssh_key_file`). None of them reaches a
    /// log line, an error, the journal or the outcome.
    ///
    /// Guards, before anything is sent: two different configured sites; the key file reads
    /// as a PEM private key; both sites answer and neither holds a DR cluster of that name;
    /// Mold's own connection test from the protected site to the DR site passes. Afterwards
    /// both sites are read again until the pairing shows `Enabled` on both (the DR site's
    /// record turns `Enabled` only through the protected site's update), for at most
    /// `waits.settle`.
    pub async fn create_dr_cluster(
        &self,
        name: &str,
        protected: &str,
        dr: &str,
        options: &DrClusterSpec,
    ) -> Result<Outcome, DrError> {
        let action = format!("create DR cluster {name:?} ({protected} → {dr})");
        guards::new_pairing(&action, name, protected, dr)?;
        let p = self.handle(protected)?;
        let d = self.handle(dr)?;
        let (key_file, private_key) = read_private_key(&action, dr, options, d).await?;
        let description = options
            .description
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_DESCRIPTION.to_string());
        let glue_ip_given = match options.glue_ip.as_deref().map(str::trim) {
            Some("") => {
                return Err(DrError::Config(format!(
                    "{action}: the glue_ip option is empty: give one of {dr}'s storage VM addresses, or leave it out"
                )));
            }
            other => other.map(str::to_string),
        };

        // Both sites' records of that name, and the DR site's storage VMs, read at once.
        let by_name = [("name", name)];
        let (p_read, d_read, scvms) = tokio::join!(
            p.mold.dr_clusters(&by_name),
            d.mold.dr_clusters(&by_name),
            async {
                match glue_ip_given {
                    Some(_) => None,
                    None => Some(d.mold.scvm_ip_addresses().await),
                }
            }
        );
        // Settling an earlier attempt: a record of this name on the protected site may be
        // its doing; its job, or the record, says.
        if reconcile::earlier_attempt().is_some()
            && let Some(record_id) = p_read
                .as_ref()
                .ok()
                .and_then(|r| r.first())
                .map(|r| r.id.clone())
        {
            let result = match self
                .earlier_job(protected, CREATE_PAIRING, Some(&record_id))
                .await
            {
                Ok(Some(JobFound::Succeeded(result))) => result,
                Ok(Some(JobFound::Failed(e))) => {
                    return Err(DrError::PartlyDone {
                        action,
                        found: self.pairing_found(name, protected, dr).await,
                        advice: "remove what is left (remove_dr_cluster, or Mold's UI) before pairing under this name again".into(),
                        error: Box::new(e),
                    });
                }
                Ok(None) => json!({"settled": "the record exists"}),
                Err(e) => {
                    return Err(reconcile::unsettled(
                        &action,
                        &e,
                        &format!("check dr_clusters() and {protected}'s jobs (listAsyncJobs)"),
                    ));
                }
            };
            let records = self.wait_paired(&action, name, protected, dr).await?;
            return Ok(paired(
                action,
                name,
                protected,
                dr,
                &records,
                json!({"description": description, "settled": result}),
            ));
        }
        for (site, read) in [(protected, p_read), (dr, d_read)] {
            // Pairing needs both sites' records read: one that cannot be is an unknown.
            let records = read.map_err(|e| {
                let u = Unreadable::new(
                    site,
                    Api::Mold,
                    "getDisasterRecoveryClusterList",
                    &DrError::from(e),
                );
                DrError::unknown(&action, &format!("{site}'s DR clusters"), &u)
            })?;
            guards::name_unused(&action, name, site, records.first())?;
        }
        // The DR site's storage VM: as given, else its Mold's first, else drbook's first.
        let listed = match scvms {
            Some(Ok(ips)) => ips.into_iter().next(),
            Some(Err(e)) => {
                tracing::debug!(site = dr, error = %e, "listScvmIpAddress failed; using glue_urls");
                None
            }
            None => None,
        };
        let glue_ip = glue_ip_given
            .or(listed)
            .or_else(|| d.ssh.hosts.first().cloned())
            .ok_or_else(|| {
                DrError::Config(format!(
                    "{action}: Mold needs the address of one of {dr}'s storage VMs, and neither {dr}'s listScvmIpAddress nor its glue_urls in drbook.toml name one: pass #{{glue_ip: \"…\"}} or add glue_urls for {dr}"
                ))
            })?;
        let url = d.mold_base_url();

        // Mold's own connection test, as its UI runs it before pairing.
        tracing::info!(site = protected, peer = dr, "{action}: connection test");
        if let Some(text) = self
            .mold_connection_test(protected, dr, &url, &glue_ip)
            .await?
        {
            return Err(DrError::guard(
                &action,
                format!(
                    "Mold's connection test from {protected} to {dr} failed: {text} ({dr}'s Mold at {url}, storage VM {glue_ip}, with drbook's keys for {dr})"
                ),
                format!(
                    "check sites.{dr}'s mold_url, api_key and secret_key in drbook.toml (Mold is given these), that {glue_ip} is one of {dr}'s storage VMs, and health({})",
                    lit(dr)
                ),
            ));
        }

        let keys = d.mold.settings();
        tracing::info!(site = protected, peer = dr, "{action}");
        let sent_at = Utc::now();
        let sent = p
            .mold
            .call_async(
                CREATE_PAIRING,
                &[
                    ("name", name),
                    ("description", description.as_str()),
                    ("drclustertype", "secondary"),
                    ("drclusterurl", url.as_str()),
                    ("drclusterapikey", keys.api_key.expose()),
                    ("drclustersecretkey", keys.secret_key.expose()),
                    ("drclusterprivatekey", private_key.expose()),
                    ("drclusterglueipaddress", glue_ip.as_str()),
                ],
            )
            .await;
        let result = match sent {
            Ok(result) => super::raw::redacted(result),
            Err(e) => {
                let mut e = DrError::from(e);
                if e.outcome_unknown() {
                    // Its job, once found, is the answer.
                    match self
                        .job_of_lost_answer(protected, CREATE_PAIRING, None, sent_at, &e)
                        .await
                    {
                        Ok(Some(JobFound::Succeeded(result))) => {
                            let records = self.wait_paired(&action, name, protected, dr).await?;
                            return Ok(paired(
                                action,
                                name,
                                protected,
                                dr,
                                &records,
                                json!({"description": description, "drclusterurl": url, "glue_ip": glue_ip, "private_key_file": key_file, "result": result}),
                            ));
                        }
                        Ok(Some(JobFound::Failed(failed))) => e = failed,
                        Ok(None) | Err(_) => {
                            // No job to read: both records Enabled is the pairing's end.
                            if let Ok(records) =
                                self.wait_paired(&action, name, protected, dr).await
                            {
                                return Ok(paired(
                                    action,
                                    name,
                                    protected,
                                    dr,
                                    &records,
                                    json!({"description": description, "drclusterurl": url, "glue_ip": glue_ip, "private_key_file": key_file, "answer": "lost; both records found Enabled"}),
                                ));
                            }
                        }
                    }
                }
                if e.outcome_unknown() {
                    return Err(DrError::OutcomeUnknown {
                        action: format!("{action} ({CREATE_PAIRING} on {protected})"),
                        cause: e.lost_answer(),
                        found: self.pairing_found(name, protected, dr).await,
                        advice: "it may be half made: check dr_clusters(); a resume settles it"
                            .into(),
                    });
                }
                if let DrError::Mold(m) = &e
                    && matches!(m.kind, MoldErrorKind::JobFailed { .. })
                {
                    // The job ran part-way: say what it left.
                    let found = self.pairing_found(name, protected, dr).await;
                    return Err(DrError::PartlyDone {
                        action,
                        found,
                        advice: "remove what is left (remove_dr_cluster, or Mold's UI) before pairing under this name again".into(),
                        error: Box::new(e),
                    });
                }
                // Refused in Mold's synchronous phase: nothing was stored.
                return Err(e.about(name));
            }
        };

        let records = self.wait_paired(&action, name, protected, dr).await?;
        Ok(paired(
            action,
            name,
            protected,
            dr,
            &records,
            json!({"description": description, "drclusterurl": url, "glue_ip": glue_ip, "private_key_file": key_file, "result": result}),
        ))
    }

    /// Reads both sites until each holds its record of the new pairing, `Enabled` (the DR
    /// site's turns so through the protected site's update), for at most `waits.settle`.
    async fn wait_paired(
        &self,
        action: &str,
        name: &str,
        protected: &str,
        dr: &str,
    ) -> Result<BTreeMap<String, crate::mold::types::DrClusterRecord>, DrError> {
        let started = Instant::now();
        loop {
            let (found, records) = self.pairing_read(name, protected, dr).await;
            let enabled = |site: &str, kind: &crate::mold::types::DrClusterType| {
                records.get(site).is_some_and(|r| {
                    &r.cluster_type == kind
                        && r.status
                            .as_deref()
                            .is_some_and(|s| s.eq_ignore_ascii_case("enabled"))
                })
            };
            if enabled(protected, &crate::mold::types::DrClusterType::Secondary)
                && enabled(dr, &crate::mold::types::DrClusterType::Primary)
            {
                return Ok(records);
            }
            if started.elapsed() >= self.waits.settle {
                return Err(DrError::NotApplied {
                    action: action.to_string(),
                    found,
                    advice: format!(
                        "Mold's job succeeded but the pairing is not Enabled on both sites: check dr_clusters() and the DR.CREATE events on {protected}; a half-made pairing is removed with remove_dr_cluster({}, {})",
                        lit(name),
                        lit(protected)
                    ),
                });
            }
            tokio::time::sleep(self.waits.poll).await;
        }
    }

    /// Both sites' records of `name`, and a phrase for messages: `site-a holds it
    /// (secondary, Enabled/Enabled); site-b holds none`.
    async fn pairing_read(
        &self,
        name: &str,
        protected: &str,
        dr: &str,
    ) -> (
        String,
        BTreeMap<String, crate::mold::types::DrClusterRecord>,
    ) {
        let read = |site: &str| {
            let h = self.handle(site);
            async move {
                match h {
                    Ok(h) => h
                        .mold
                        .dr_clusters(&[("name", name)])
                        .await
                        .map_err(DrError::from),
                    Err(e) => Err(e),
                }
            }
        };
        let (p, d) = tokio::join!(read(protected), read(dr));
        let mut records = BTreeMap::new();
        let mut phrases = Vec::new();
        for (site, r) in [(protected, p), (dr, d)] {
            match r.map(|rs| rs.into_iter().next()) {
                Ok(Some(r)) => {
                    phrases.push(format!(
                        "{site} holds it ({}, {}/{})",
                        r.cluster_type.as_str(),
                        r.status.as_deref().unwrap_or("no status"),
                        r.agent_status.as_deref().unwrap_or("no agent status")
                    ));
                    records.insert(site.to_string(), r);
                }
                Ok(None) => phrases.push(format!("{site} holds none")),
                Err(e) => phrases.push(format!("{site} cannot be read ({e})")),
            }
        }
        (phrases.join("; "), records)
    }

    /// What both sites show of a pairing now: the "found" of an unknown or failed outcome.
    async fn pairing_found(&self, name: &str, protected: &str, dr: &str) -> String {
        self.pairing_read(name, protected, dr).await.0
    }
}
