//! Test copies on the DR site, for a DR test without an outage: the Mold side. A clone of a
//! replica's user snapshot is registered as a volume (`importVolume`), a VM is deployed for it
//! in an isolated test network (`deployVirtualMachineForVolume`), data disks are attached, and
//! everything goes again with `destroyVirtualMachine expunge=true`.
//!
//! Everything a test makes carries the run in its name — `<base>-drtest-<run>` — and these
//! primitives act only on names that do: they never import, deploy over, attach, destroy or
//! delete a production VM or volume. A step already done (found by its name or path) is
//! returned as found, which is how a resumed test goes on; a lost answer is settled by
//! reading the same way, never by sending again.

use serde::Serialize;

use super::vm::Vm;
use super::{Dr, DrError};
use crate::mold::types::VirtualMachine;

/// What every test artifact's name carries, before the run id.
pub const MARKER: &str = "-drtest-";

/// The longest run id: a VM name is a host name (63 characters) and must hold the VM's own
/// name, the marker and the run.
const MAX_RUN_LEN: usize = 24;

/// `<base>-drtest-<run>`, after checking `run`: lower-case letters, digits and `-`, not at
/// either end (a host name's rules, as Mold checks a VM name).
pub fn test_name(base: &str, run: &str) -> Result<String, DrError> {
    let ok = !run.is_empty()
        && run.len() <= MAX_RUN_LEN
        && run
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !run.starts_with('-')
        && !run.ends_with('-');
    if !ok {
        return Err(DrError::guard(
            format!("name a test copy of {base}"),
            format!(
                "{run:?} is not a run id (1 to {MAX_RUN_LEN} of a-z, 0-9 and -, not at either end)"
            ),
            "use the run's id, as test-failover does",
        ));
    }
    Ok(format!("{base}{MARKER}{run}"))
}

/// The run a test artifact's name names, if it is one.
pub fn run_of(name: &str) -> Option<&str> {
    let (base, run) = name.rsplit_once(MARKER)?;
    (!base.is_empty() && !run.is_empty()).then_some(run)
}

/// A volume as `listVolumes` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TestVolume {
    pub id: String,
    pub name: String,
    /// The RBD image (absent while Mold has none).
    #[serde(default)]
    pub path: Option<String>,
    /// `ROOT` or `DATADISK`.
    #[serde(rename(deserialize = "type"))]
    pub kind: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default, rename(deserialize = "virtualmachineid"))]
    pub vm_id: Option<String>,
    #[serde(default, rename(deserialize = "storageid"))]
    pub storage_id: Option<String>,
}

impl TestVolume {
    /// Whether this is a test artifact, by its name or its image.
    pub fn is_test(&self) -> bool {
        run_of(&self.name).is_some() || self.path.as_deref().and_then(run_of).is_some()
    }
}

/// A network as `listNetworks` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub zoneid: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Named {
    id: String,
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// How a test VM is deployed.
#[derive(Debug, Clone, Default)]
pub struct DeployTest<'a> {
    /// The test network: an isolated or L2 network no production VM uses.
    pub network: &'a str,
    /// The compute offering, by name or id.
    pub offering: &'a str,
    /// Start it as part of the deployment (Mold's `startvm`).
    pub start: bool,
}

impl Dr {
    /// Every volume of `site` (`listVolumes`, `listall`).
    pub async fn volumes(&self, site: &str) -> Result<Vec<TestVolume>, DrError> {
        let h = self.handle(site)?;
        Ok(h.mold
            .list("listVolumes", &[("listall", "true")], "volume")
            .await?)
    }

    /// The test volumes of `site`: those whose name or image names a run.
    pub async fn test_volumes(&self, site: &str) -> Result<Vec<TestVolume>, DrError> {
        Ok(self
            .volumes(site)
            .await?
            .into_iter()
            .filter(TestVolume::is_test)
            .collect())
    }

    /// The test VMs of `site`: those whose name names a run.
    pub async fn test_vms(&self, site: &str) -> Result<Vec<Vm>, DrError> {
        Ok(self
            .vms(site)
            .await?
            .into_iter()
            .filter(|v| run_of(&v.name).is_some())
            .collect())
    }

    /// Registers the RBD image `image` (a test clone: its name names a run) of the site's
    /// pool as a volume named `name`. An image Mold already has is returned as it is.
    pub async fn import_test_volume(
        &self,
        site: &str,
        image: &str,
        name: &str,
    ) -> Result<TestVolume, DrError> {
        let action = format!("import image {image} on {site} as volume {name}");
        let image = image.strip_prefix("rbd/").unwrap_or(image);
        for (what, n) in [("image", image), ("volume name", name)] {
            if run_of(n).is_none() {
                return Err(DrError::guard(
                    &action,
                    format!("the {what} {n:?} is not a test copy's (no {MARKER}<run> in it)"),
                    "drbook imports only the clones a DR test made; never a production image",
                ));
            }
        }
        let h = self.handle(site)?;
        let by_path = |vols: Vec<TestVolume>| {
            vols.into_iter()
                .find(|v| v.path.as_deref() == Some(image) && v.state.as_deref() != Some("Destroy"))
        };
        if let Some(found) = by_path(self.volumes(site).await?) {
            return Ok(found);
        }
        let pool = self.rbd_pool(site).await?;
        let params = [
            ("path", image),
            ("storageid", pool.as_str()),
            ("name", name),
        ];
        tracing::info!(site, image, name, "importVolume");
        match h.mold.call_async("importVolume", &params).await {
            Ok(result) => match result
                .get("volume")
                .and_then(|v| serde_json::from_value::<TestVolume>(v.clone()).ok())
            {
                Some(v) => Ok(v),
                None => by_path(self.volumes(site).await?).ok_or_else(|| DrError::NotApplied {
                    action,
                    found: format!("no volume with path {image}"),
                    advice: format!("check listVolumes on {site}"),
                }),
            },
            Err(e) => {
                let e = DrError::from(e);
                if !e.outcome_unknown() {
                    return Err(e);
                }
                match self.volumes(site).await {
                    Ok(vols) => by_path(vols).ok_or_else(|| DrError::OutcomeUnknown {
                        action,
                        cause: e.lost_answer(),
                        found: format!("no volume with path {image} yet"),
                        advice: "a resume settles it by reading".into(),
                    }),
                    Err(read) => Err(DrError::OutcomeUnknown {
                        action,
                        cause: e.lost_answer(),
                        found: format!("nothing (the re-read failed too: {read})"),
                        advice: format!("check health(\"{site}\"); a resume settles it"),
                    }),
                }
            }
        }
    }

    /// Makes a test volume the ROOT disk a VM can be deployed for (`updateVolume type=ROOT`):
    /// an imported volume is a data disk. A ROOT one is returned as it is.
    pub async fn make_test_root(&self, site: &str, volume: &str) -> Result<TestVolume, DrError> {
        let action = format!("make test volume {volume} on {site} a ROOT disk");
        let v = self.find_test_volume(site, volume, &action).await?;
        if v.kind == "ROOT" {
            return Ok(v);
        }
        // Mold sets the path whether or not one is sent (an update without it clears it,
        // and the VM would boot from nothing): the image goes along.
        let Some(path) = v.path.clone() else {
            return Err(DrError::guard(
                &action,
                format!("volume {} has no image path", v.name),
                "import the test clone again (import_test_volume)",
            ));
        };
        let h = self.handle(site)?;
        tracing::info!(site, volume = %v.name, "updateVolume type=ROOT");
        let sent = h
            .mold
            .call_async(
                "updateVolume",
                &[
                    ("id", v.id.as_str()),
                    ("type", "ROOT"),
                    ("path", path.as_str()),
                ],
            )
            .await;
        // Setting a type twice is the same as once: a lost answer is read back, and if the
        // volume is still a data disk, the read says so.
        let fresh = self.find_test_volume(site, &v.id, &action).await;
        match (sent, fresh) {
            (_, Ok(f)) if f.kind == "ROOT" && f.path == v.path => Ok(f),
            (Err(e), _) => Err(DrError::from(e)),
            (Ok(_), Ok(f)) => Err(DrError::NotApplied {
                action,
                found: format!("{} is {}", f.name, f.kind),
                advice: format!("check listVolumes id={} on {site}", f.id),
            }),
            (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Deploys the test VM `name` (its name names a run) for the test ROOT volume `volume`, in
    /// the test network. A VM of that name already there is returned as it is.
    pub async fn deploy_test_vm(
        &self,
        site: &str,
        volume: &str,
        name: &str,
        how: &DeployTest<'_>,
    ) -> Result<Vm, DrError> {
        let action = format!("deploy test VM {name} on {site}");
        if run_of(name).is_none() {
            return Err(DrError::guard(
                &action,
                format!("{name:?} is not a test VM's name (no {MARKER}<run> in it)"),
                "a test copy never takes a production VM's name",
            ));
        }
        let h = self.handle(site)?;
        if let Some(vm) = self.vm_named(site, name).await? {
            return Ok(Vm::from_mold(&vm, site));
        }
        let vol = self.find_test_volume(site, volume, &action).await?;
        if vol.kind != "ROOT" {
            return Err(DrError::guard(
                &action,
                format!("volume {} is a {}", vol.name, vol.kind),
                "make it the ROOT disk first (make_test_root)",
            ));
        }
        let network = self.test_network(site, how.network, &action).await?;
        let offering = self.service_offering(site, how.offering).await?;
        let zone = network.zoneid.clone().unwrap_or_default();
        let start = if how.start { "true" } else { "false" };
        let params = [
            ("volumeid", vol.id.as_str()),
            ("zoneid", zone.as_str()),
            ("serviceofferingid", offering.as_str()),
            ("networkids", network.id.as_str()),
            ("name", name),
            ("displayname", name),
            ("startvm", start),
        ];
        tracing::info!(site, vm = name, network = %network.name, "deployVirtualMachineForVolume");
        match h
            .mold
            .call_async("deployVirtualMachineForVolume", &params)
            .await
        {
            Ok(result) => match result
                .get("virtualmachine")
                .and_then(|v| serde_json::from_value::<VirtualMachine>(v.clone()).ok())
            {
                Some(vm) => Ok(Vm::from_mold(&vm, site)),
                None => self.vm(site, name).await,
            },
            Err(e) => {
                let e = DrError::from(e);
                if !e.outcome_unknown() {
                    return Err(e.about(name));
                }
                match self.vm_named(site, name).await {
                    Ok(Some(vm)) if !how.start || vm.state == "Running" => {
                        Ok(Vm::from_mold(&vm, site))
                    }
                    Ok(found) => Err(DrError::OutcomeUnknown {
                        action,
                        cause: e.lost_answer(),
                        found: found.map_or_else(
                            || format!("no VM {name} yet"),
                            |vm| format!("{name} is {}", vm.state),
                        ),
                        advice: "a resume settles it by reading".into(),
                    }),
                    Err(read) => Err(DrError::OutcomeUnknown {
                        action,
                        cause: e.lost_answer(),
                        found: format!("nothing (the re-read failed too: {read})"),
                        advice: format!("check health(\"{site}\"); a resume settles it"),
                    }),
                }
            }
        }
    }

    /// Attaches the test volume `volume` to the test VM `vm`; one already attached to it is
    /// returned as it is.
    pub async fn attach_test_volume(
        &self,
        site: &str,
        vm: &str,
        volume: &str,
    ) -> Result<TestVolume, DrError> {
        let action = format!("attach test volume {volume} to {vm} on {site}");
        let target = self.test_vm(site, vm, &action).await?;
        let vol = self.find_test_volume(site, volume, &action).await?;
        match vol.vm_id.as_deref() {
            Some(id) if id == target.id => return Ok(vol),
            Some(other) => {
                return Err(DrError::guard(
                    &action,
                    format!("{} is attached to VM id {other}", vol.name),
                    "a test volume belongs to one test VM",
                ));
            }
            None => {}
        }
        let h = self.handle(site)?;
        tracing::info!(site, vm = %target.name, volume = %vol.name, "attachVolume");
        let sent = h
            .mold
            .call_async(
                "attachVolume",
                &[
                    ("id", vol.id.as_str()),
                    ("virtualmachineid", target.id.as_str()),
                ],
            )
            .await;
        let fresh = self.find_test_volume(site, &vol.id, &action).await;
        match (sent, fresh) {
            (_, Ok(f)) if f.vm_id.as_deref() == Some(target.id.as_str()) => Ok(f),
            (Err(e), fresh) => {
                let e = DrError::from(e);
                if !e.outcome_unknown() {
                    return Err(e);
                }
                Err(DrError::OutcomeUnknown {
                    action,
                    cause: e.lost_answer(),
                    found: match fresh {
                        Ok(f) => format!("{} is not attached to {}", f.name, target.name),
                        Err(read) => format!("nothing (the re-read failed too: {read})"),
                    },
                    advice: "a resume settles it by reading".into(),
                })
            }
            (Ok(_), Ok(f)) => Err(DrError::NotApplied {
                action,
                found: format!("{} is not attached to {}", f.name, target.name),
                advice: format!("check listVolumes id={} on {site}", f.id),
            }),
            (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Destroys the test VM `vm` and expunges it with its volumes (every one a test volume).
    /// A VM already gone is done: `Ok(false)`; destroyed now: `Ok(true)`.
    pub async fn destroy_test_vm(&self, site: &str, vm: &str) -> Result<bool, DrError> {
        let action = format!("destroy test VM {vm} on {site}");
        if run_of(vm).is_none() {
            return Err(DrError::guard(
                &action,
                format!("{vm:?} is not a test VM's name (no {MARKER}<run> in it)"),
                "drbook destroys only the VMs a DR test deployed",
            ));
        }
        let Some(target) = self.vm_named(site, vm).await? else {
            return Ok(false);
        };
        let h = self.handle(site)?;
        let volumes: Vec<TestVolume> = h
            .mold
            .list(
                "listVolumes",
                &[
                    ("virtualmachineid", target.id.as_str()),
                    ("listall", "true"),
                ],
                "volume",
            )
            .await?;
        if let Some(other) = volumes.iter().find(|v| !v.is_test()) {
            return Err(DrError::guard(
                &action,
                format!(
                    "its volume {} is no test volume (no {MARKER}<run> in its name or image)",
                    other.name
                ),
                "detach it first: destroying the VM would expunge it",
            ));
        }
        let data: Vec<&str> = volumes
            .iter()
            .filter(|v| v.kind != "ROOT")
            .map(|v| v.id.as_str())
            .collect();
        let data = data.join(",");
        let mut params = vec![("id", target.id.as_str()), ("expunge", "true")];
        if !data.is_empty() {
            params.push(("volumeids", data.as_str()));
        }
        tracing::info!(site, vm, "destroyVirtualMachine expunge=true");
        let sent = h.mold.call_async("destroyVirtualMachine", &params).await;
        let left = self.vm_named(site, vm).await;
        match (sent, left) {
            (_, Ok(None)) => Ok(true),
            (Err(e), left) => {
                let e = DrError::from(e);
                if !e.outcome_unknown() {
                    return Err(e.about(vm));
                }
                Err(DrError::OutcomeUnknown {
                    action,
                    cause: e.lost_answer(),
                    found: match left {
                        Ok(Some(v)) => format!("{vm} is {}", v.state),
                        Ok(None) => unreachable!("matched above"),
                        Err(read) => format!("nothing (the re-read failed too: {read})"),
                    },
                    advice: "a resume settles it by reading".into(),
                })
            }
            (Ok(_), Ok(Some(v))) => Err(DrError::NotApplied {
                action,
                found: format!("{vm} is {}", v.state),
                advice: format!("check listVirtualMachines name={vm} on {site}"),
            }),
            (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Deletes a detached test volume (one a crashed test left); one already gone is done:
    /// `Ok(false)`.
    pub async fn delete_test_volume(&self, site: &str, volume: &str) -> Result<bool, DrError> {
        let action = format!("delete test volume {volume} on {site}");
        let vol = match self.find_test_volume(site, volume, &action).await {
            Ok(v) => v,
            Err(DrError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if let Some(vm) = &vol.vm_id {
            return Err(DrError::guard(
                &action,
                format!("{} is attached to VM id {vm}", vol.name),
                "destroy its test VM instead (destroy_test_vm takes its volumes with it)",
            ));
        }
        let h = self.handle(site)?;
        tracing::info!(site, volume = %vol.name, "deleteVolume");
        let sent = h
            .mold
            .call("deleteVolume", &[("id", vol.id.as_str())])
            .await;
        let left = self.volumes(site).await;
        match (sent, left) {
            (_, Ok(vols)) if !vols.iter().any(|v| v.id == vol.id) => Ok(true),
            (Err(e), _) => Err(DrError::from(e)),
            (Ok(_), Ok(_)) => Err(DrError::NotApplied {
                action,
                found: format!("{} is still listed", vol.name),
                advice: format!("check listVolumes id={} on {site}", vol.id),
            }),
            (Ok(_), Err(e)) => Err(e),
        }
    }

    /// The test volume `volume` (id or exact name) of `site`; anything else is refused.
    async fn find_test_volume(
        &self,
        site: &str,
        volume: &str,
        action: &str,
    ) -> Result<TestVolume, DrError> {
        let vols = self.volumes(site).await?;
        let found = vols
            .iter()
            .find(|v| v.id == volume)
            .or_else(|| vols.iter().find(|v| v.name == volume))
            .cloned();
        match found {
            Some(v) if v.is_test() => Ok(v),
            Some(v) => Err(DrError::guard(
                action,
                format!(
                    "volume {} is no test volume (no {MARKER}<run> in its name or image)",
                    v.name
                ),
                "drbook acts only on the volumes a DR test made",
            )),
            None => Err(DrError::NotFound {
                what: format!("volume on {site}"),
                name: volume.to_string(),
                suggestions: crate::suggest::closest(
                    volume,
                    vols.iter().filter(|v| v.is_test()).map(|v| &v.name),
                ),
            }),
        }
    }

    /// The test VM `vm` (id or exact name) of `site`.
    async fn test_vm(&self, site: &str, vm: &str, action: &str) -> Result<VirtualMachine, DrError> {
        let found = self.find_vm(site, vm).await?;
        if run_of(&found.name).is_none() {
            return Err(DrError::guard(
                action,
                format!(
                    "{} is not a test VM (no {MARKER}<run> in its name)",
                    found.name
                ),
                "drbook changes only the VMs a DR test deployed",
            ));
        }
        Ok(found)
    }

    /// The VM named exactly `name`, if there is one.
    async fn vm_named(&self, site: &str, name: &str) -> Result<Option<VirtualMachine>, DrError> {
        let h = self.handle(site)?;
        let vms = h.mold.virtual_machines(&[("name", name)]).await?;
        Ok(vms.into_iter().find(|v| v.name == name))
    }

    /// The test network `name_or_id`: isolated or L2 (a shared network reaches production),
    /// and no VM but test VMs on it; refused otherwise, with what it is.
    pub async fn test_network(
        &self,
        site: &str,
        name_or_id: &str,
        action: &str,
    ) -> Result<Network, DrError> {
        let h = self.handle(site)?;
        let nets: Vec<Network> = h
            .mold
            .list("listNetworks", &[("listall", "true")], "network")
            .await?;
        let Some(net) = nets
            .iter()
            .find(|n| n.id == name_or_id)
            .or_else(|| nets.iter().find(|n| n.name == name_or_id))
            .cloned()
        else {
            return Err(DrError::NotFound {
                what: format!("network on {site}"),
                name: name_or_id.to_string(),
                suggestions: crate::suggest::closest(name_or_id, nets.iter().map(|n| &n.name)),
            });
        };
        let kind = net.kind.clone().unwrap_or_default();
        if !kind.eq_ignore_ascii_case("Isolated") && !kind.eq_ignore_ascii_case("L2") {
            return Err(DrError::guard(
                action,
                format!(
                    "network {} is {} — a test copy there could reach production",
                    net.name,
                    if kind.is_empty() {
                        "of no stated type"
                    } else {
                        &kind
                    }
                ),
                "give an isolated or L2 network that only test VMs use",
            ));
        }
        let on_it = h
            .mold
            .virtual_machines(&[("networkid", net.id.as_str()), ("listall", "true")])
            .await?;
        let production: Vec<&str> = on_it
            .iter()
            .filter(|v| run_of(&v.name).is_none())
            .map(|v| v.name.as_str())
            .collect();
        if !production.is_empty() {
            return Err(DrError::guard(
                action,
                format!(
                    "network {} is used by {} VM(s) that are no test copies: {}",
                    net.name,
                    production.len(),
                    production.join(", ")
                ),
                "a test copy answers with its production twin's addresses: give a network of its own",
            ));
        }
        Ok(net)
    }

    /// A compute offering's id, by id or exact name.
    async fn service_offering(&self, site: &str, name_or_id: &str) -> Result<String, DrError> {
        let h = self.handle(site)?;
        let all: Vec<Named> = h
            .mold
            .list("listServiceOfferings", &[], "serviceoffering")
            .await?;
        all.iter()
            .find(|o| o.id == name_or_id)
            .or_else(|| all.iter().find(|o| o.name == name_or_id))
            .map(|o| o.id.clone())
            .ok_or_else(|| DrError::NotFound {
                what: format!("compute offering on {site}"),
                name: name_or_id.to_string(),
                suggestions: crate::suggest::closest(name_or_id, all.iter().map(|o| &o.name)),
            })
    }

    /// The site's RBD primary storage pool (the images' pool, `rbd`).
    async fn rbd_pool(&self, site: &str) -> Result<String, DrError> {
        let h = self.handle(site)?;
        let pools: Vec<Named> = h.mold.list("listStoragePools", &[], "storagepool").await?;
        let rbd: Vec<&Named> = pools
            .iter()
            .filter(|p| {
                p.kind
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case("RBD"))
            })
            .collect();
        match rbd.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(DrError::Config(format!(
                "site {site}: Mold lists no RBD primary storage pool to import the test copies into"
            ))),
            many => many
                .iter()
                .find(|p| p.name == "rbd")
                .map(|p| p.id.clone())
                .ok_or_else(|| {
                    DrError::Config(format!(
                        "site {site}: {} RBD pools and none named rbd: which one holds the images is not clear",
                        many.len()
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_carry_the_run_and_only_a_valid_one() {
        assert_eq!(
            test_name("dr-centos-1", "r1").unwrap(),
            "dr-centos-1-drtest-r1"
        );
        assert_eq!(run_of("dr-centos-1-drtest-r1"), Some("r1"));
        assert_eq!(run_of("ROOT-12-drtest-20261203-1"), Some("20261203-1"));
        for bad in ["", "R1", "a b", "-x", "x-", "a;b", &"x".repeat(25)] {
            assert!(test_name("vm", bad).is_err(), "{bad:?}");
        }
        for production in [
            "dr-centos-1",
            "drtest",
            "-drtest-",
            "vm-drtest-",
            "-drtest-r1",
        ] {
            assert_eq!(run_of(production), None, "{production}");
        }
    }
}
