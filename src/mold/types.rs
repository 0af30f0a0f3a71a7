//! Typed views of what Mold returns, decoded leniently (unknown fields ignored, optional ones
//! optional). A DR record's `details` carry the peer's API and secret keys and the peer storage
//! VM's private key in plain text: they are skipped at decode, never even allocated, so no
//! script, log, journal or report can show them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// `listCapabilities` → `capability`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Capabilities {
    #[serde(default)]
    pub cloudstackversion: Option<String>,
    /// Whether the DR service (`cloud.dr.service.enabled`) is on; absent on builds without the
    /// DR plugin.
    #[serde(default, rename = "disasterrecoveryenabled")]
    pub dr_enabled: Option<bool>,
}

/// Which side of the pairing a DR record describes. The record describes the **peer**: the
/// record stored on the protected site has type `secondary`, the one on the DR site `primary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrClusterType {
    /// Stored on the DR site; cluster operations (promote, demote, resync, clear) run here.
    Primary,
    /// Stored on the protected site.
    Secondary,
    Other(String),
}

impl DrClusterType {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
            Self::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for DrClusterType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Mold compares these case-insensitively.
        Ok(match s.to_ascii_lowercase().as_str() {
            "primary" => Self::Primary,
            "secondary" => Self::Secondary,
            _ => Self::Other(s),
        })
    }
}

/// One `getDisasterRecoveryClusterList` item.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DrClusterRecord {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The peer Mold's base URL.
    #[serde(default, rename = "drclusterurl")]
    pub peer_url: Option<String>,
    #[serde(rename = "drclustertype")]
    pub cluster_type: DrClusterType,
    #[serde(default, rename = "drclusterstatus")]
    pub status: Option<String>,
    #[serde(default, rename = "mirroringagentstatus")]
    pub agent_status: Option<String>,
    /// The peer's Glue IP; only on `secondary`-type records.
    #[serde(default, rename = "drclusterglueipaddress")]
    pub peer_glue_ip: Option<String>,
    /// The one non-secret detail, `mirrorscheduleinterval` (`1h` by default).
    #[serde(default, rename = "details", deserialize_with = "interval_only")]
    pub mirror_schedule_interval: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default, rename = "drclustervmmap", deserialize_with = "null_as_empty")]
    pub vm_map: Vec<VmMapRow>,
    #[serde(
        default,
        rename = "serviceofferingdetails",
        deserialize_with = "null_as_empty"
    )]
    pub peer_service_offerings: Vec<PeerServiceOffering>,
    #[serde(default, rename = "network", deserialize_with = "null_as_empty")]
    pub peer_networks: Vec<PeerNetwork>,
}

/// Reads `details` keeping only `mirrorscheduleinterval`; the keys are skipped unread.
fn interval_only<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct DetailsWithoutSecrets {
        #[serde(default)]
        mirrorscheduleinterval: Option<String>,
    }
    Ok(Option::<DetailsWithoutSecrets>::deserialize(d)?.and_then(|d| d.mirrorscheduleinterval))
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::Many(v)) => v,
        Some(OneOrMany::One(t)) => vec![t],
    })
}

/// One mirrored volume of a mirrored VM (`drclustervmmap[]`): the local VM, the peer VM, the
/// shared RBD image, and each side's image status (`SYNCING`, `READY`, `ERROR`, `UNKNOWN`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct VmMapRow {
    #[serde(default, rename = "drclustername")]
    pub cluster_name: Option<String>,
    #[serde(rename = "drclustervmid")]
    pub vm_id: String,
    #[serde(default, rename = "drclustervmname")]
    pub vm_name: Option<String>,
    #[serde(default, rename = "drclustervmstatus")]
    pub vm_state: Option<String>,
    #[serde(default, rename = "drclustervmvolstatus")]
    pub volume_status: Option<String>,
    #[serde(default, rename = "drclustermirrorvmid")]
    pub mirror_vm_id: Option<String>,
    #[serde(default, rename = "drclustermirrorvmname")]
    pub mirror_vm_name: Option<String>,
    #[serde(default, rename = "drclustermirrorvmstatus")]
    pub mirror_vm_state: Option<String>,
    #[serde(default, rename = "drclustermirrorvmvoltype")]
    pub volume_type: Option<String>,
    /// The RBD image name in pool `rbd` (identical on both sites).
    #[serde(rename = "drclustermirrorvmvolpath")]
    pub volume_path: String,
    #[serde(default, rename = "drclustermirrorvmvolstatus")]
    pub mirror_volume_status: Option<String>,
}

/// A service offering of the peer site, as listed in a DR record.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PeerServiceOffering {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub iscustomized: Option<bool>,
    #[serde(default)]
    pub kvdoenable: Option<bool>,
}

/// A network of the peer site, as listed in a DR record.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct PeerNetwork {
    pub id: String,
    pub name: String,
}

/// A `listVirtualMachines` item.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct VirtualMachine {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub displayname: Option<String>,
    pub state: String,
    #[serde(default)]
    pub instancename: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub hostid: Option<String>,
    #[serde(default)]
    pub zonename: Option<String>,
    /// The VM's compute offering (a mirrored VM defaults to the peer's offering of that name).
    #[serde(default)]
    pub serviceofferingname: Option<String>,
    /// CloudStack's resource tags (`createTags`); absent, `null` or `[]` when there are none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tags: Vec<ResourceTag>,
}

impl VirtualMachine {
    /// The tags as key → value; a tag without a key is skipped, one without a value reads `""`.
    pub fn tag_map(&self) -> BTreeMap<String, String> {
        self.tags
            .iter()
            .filter_map(|t| {
                let key = t.key.clone().filter(|k| !k.is_empty())?;
                Some((key, t.value.clone().unwrap_or_default()))
            })
            .collect()
    }
}

/// One resource tag (`tags[]` of a listed resource, `listTags`' `tag[]`): key, value and the
/// resource's id; the rest (`resourcetype`, `account`, `domain`, …) is ignored.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ResourceTag {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    /// The tagged resource's id (`listTags`).
    #[serde(default)]
    pub resourceid: Option<String>,
}

/// A job as `queryAsyncJobResult` and `listAsyncJobs` show it: status 0 pending, 1
/// succeeded, 2 failed.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AsyncJob {
    pub jobid: String,
    pub jobstatus: i64,
    #[serde(default)]
    pub jobresultcode: Option<i64>,
    #[serde(default)]
    pub jobresulttype: Option<String>,
    #[serde(default)]
    pub jobresult: Option<serde_json::Value>,
    #[serde(default)]
    pub cmd: Option<String>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub completed: Option<String>,
    /// What the job works on (`VirtualMachine`, …), when Mold says.
    #[serde(default)]
    pub jobinstancetype: Option<String>,
    /// The id of what it works on (a VM's id for a start or a stop).
    #[serde(default)]
    pub jobinstanceid: Option<String>,
}

impl AsyncJob {
    pub const PENDING: i64 = 0;
    pub const SUCCEEDED: i64 = 1;
    pub const FAILED: i64 = 2;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dr_record_drops_secret_details() {
        let raw = json!({
            "id": "0b6f1b2e-1111-2222-3333-444455556666",
            "name": "DR",
            "drclusterurl": "http://10.10.13.10:8080",
            "drclustertype": "Secondary",
            "drclusterstatus": "Enabled",
            "mirroringagentstatus": "Enabled",
            "drclusterglueipaddress": "10.10.13.11",
            "details": {
                "drclusterapikey": "PEER-API-KEY",
                "drclustersecretkey": "PEER-SECRET",
                "drclusterprivatekey": "-----BEGIN OPENSSH PRIVATE KEY-----",
                "mirrorscheduleinterval": "30m"
            },
            "drclustervmmap": [{
                "drclustername": "DR",
                "drclustervmid": "vm-1",
                "drclustervmname": "dr-centos-1",
                "drclustervmstatus": "Running",
                "drclustervmvolstatus": "READY",
                "drclustermirrorvmid": "peer-vm-1",
                "drclustermirrorvmname": "dr-centos-1",
                "drclustermirrorvmstatus": "Stopped",
                "drclustermirrorvmvoltype": "ROOT",
                "drclustermirrorvmvolpath": "img-1",
                "drclustermirrorvmvolstatus": "SYNCING"
            }],
            "serviceofferingdetails": [{"id": "so1", "name": "Small", "iscustomized": false, "kvdoenable": false}],
            "network": {"id": "n1", "name": "Guest"}
        });
        let rec: DrClusterRecord = serde_json::from_value(raw).unwrap();
        assert_eq!(rec.cluster_type, DrClusterType::Secondary);
        assert_eq!(rec.mirror_schedule_interval.as_deref(), Some("30m"));
        assert_eq!(rec.vm_map.len(), 1);
        assert_eq!(rec.vm_map[0].volume_path, "img-1");
        assert_eq!(rec.peer_networks.len(), 1);
        let shown = format!("{rec:?}");
        for secret in ["PEER-API-KEY", "PEER-SECRET", "PRIVATE KEY"] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
    }

    #[test]
    fn dr_record_minimal() {
        let rec: DrClusterRecord =
            serde_json::from_value(json!({"id": "x", "name": "DR", "drclustertype": "primary"}))
                .unwrap();
        assert_eq!(rec.cluster_type, DrClusterType::Primary);
        assert!(rec.vm_map.is_empty());
        assert_eq!(rec.mirror_schedule_interval, None);
    }

    #[test]
    fn vm_tags_present_absent_empty() {
        let tagged: VirtualMachine = serde_json::from_value(json!({
            "id": "vm-1", "name": "dr-centos-1", "state": "Running",
            "tags": [
                {"key": "tier", "value": "db", "resourcetype": "UserVm", "resourceid": "vm-1",
                 "account": "admin", "domainid": "d1", "domain": "ROOT"},
                {"key": "owner", "value": "dba"},
                {"value": "no key"},
                {"key": "note"}
            ]
        }))
        .unwrap();
        assert_eq!(
            tagged.tag_map(),
            BTreeMap::from([
                ("note".to_string(), String::new()),
                ("owner".to_string(), "dba".to_string()),
                ("tier".to_string(), "db".to_string()),
            ])
        );
        for raw in [
            json!({"id": "v", "name": "n", "state": "Stopped"}),
            json!({"id": "v", "name": "n", "state": "Stopped", "tags": []}),
            json!({"id": "v", "name": "n", "state": "Stopped", "tags": null}),
        ] {
            let vm: VirtualMachine = serde_json::from_value(raw.clone()).unwrap();
            assert!(vm.tags.is_empty() && vm.tag_map().is_empty(), "{raw}");
        }
    }

    #[test]
    fn async_job_failed() {
        let job: AsyncJob = serde_json::from_value(json!({
            "jobid": "j", "jobstatus": 2, "jobresultcode": 530, "jobresulttype": "object",
            "jobresult": {"uuidList": [], "errorcode": 530, "errortext": "boom"}
        }))
        .unwrap();
        assert_eq!(job.jobstatus, AsyncJob::FAILED);
        assert_eq!(job.jobresult.unwrap()["errortext"], "boom");
    }
}
