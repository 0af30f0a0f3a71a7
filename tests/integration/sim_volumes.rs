//! The simulator's volume commands and the VMs made for volumes — what a test failover
//! without an outage sends the DR site: `importVolume`, `updateVolume`,
//! `deployVirtualMachineForVolume`, `attachVolume`, `deleteVolume`, `destroyVirtualMachine`
//! with `expunge` and `volumeids`, `listVolumes`, `listNetworks type=`. Real HTTP through
//! drbook's client; each refusal is checked against what reached the world.

use drbook::mold::{MoldClient, MoldError, MoldErrorKind};
use drbook::sim::Sim;
use serde_json::{Map, Value};

use crate::harness::{sim_mold, start_sim};

const B: &str = "site-b";
const GIB: u64 = 1 << 30;

/// (errorcode, errortext) of a refused request or a failed job.
fn refusal(e: &MoldError) -> (i64, String) {
    match &e.kind {
        MoldErrorKind::Api {
            errorcode,
            errortext,
            ..
        }
        | MoldErrorKind::JobFailed {
            errorcode,
            errortext,
            ..
        } => (*errorcode, errortext.clone()),
        other => panic!("not a Mold refusal: {other:?}"),
    }
}

/// A plain RBD image on `site`, as a clone of a replica's snapshot would be.
fn make_image(sim: &Sim, site: &str, name: &str) {
    sim.with_world(|w, _| w.storage.create_image(site, name, 2 * GIB))
        .unwrap();
}

/// Whether `/state` shows the image on `site`.
fn image_present(sim: &Sim, site: &str, name: &str) -> bool {
    sim.state()["storage"]["images"][name]["sites"][site]["present"] == true
}

fn volume_count(sim: &Sim, site: &str) -> usize {
    sim.with_world(|w, _| w.site(site).volumes.len())
}

fn vm_count(sim: &Sim, site: &str) -> usize {
    sim.with_world(|w, _| w.site(site).vms.len())
}

fn list(body: &Map<String, Value>, key: &str) -> Vec<Value> {
    body[key].as_array().cloned().unwrap_or_default()
}

struct Ids {
    pool: String,
    zone: String,
    offering: String,
    test_network: String,
    guest_network: String,
}

async fn ids(b: &MoldClient) -> Ids {
    let pools = b.call("listStoragePoolsMetrics", &[]).await.unwrap();
    let zones = b.call("listZones", &[]).await.unwrap();
    let offerings = b.call("listServiceOfferings", &[]).await.unwrap();
    let networks = b.call("listNetworks", &[]).await.unwrap();
    let net = |name: &str| {
        list(&networks, "network")
            .iter()
            .find(|n| n["name"] == name)
            .map(|n| n["id"].as_str().unwrap().to_string())
            .unwrap()
    };
    Ids {
        pool: pools["storagepool"][0]["id"].as_str().unwrap().into(),
        zone: zones["zone"][0]["id"].as_str().unwrap().into(),
        offering: list(&offerings, "serviceoffering")
            .iter()
            .find(|o| o["name"] == "Medium Instance")
            .map(|o| o["id"].as_str().unwrap().to_string())
            .unwrap(),
        test_network: net("DR Test Network"),
        guest_network: net("Guest Network"),
    }
}

async fn import(
    b: &MoldClient,
    ids: &Ids,
    path: &str,
    name: Option<&str>,
) -> Result<Value, MoldError> {
    let mut params = vec![("path", path), ("storageid", ids.pool.as_str())];
    if let Some(n) = name {
        params.push(("name", n));
    }
    b.call_async("importVolume", &params)
        .await
        .map(|r| r["volume"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_show_their_type_and_the_test_network_is_unused() {
    let sim = start_sim(|_| {}).await;
    let b = sim_mold(&sim, B);
    let all = list(&b.call("listNetworks", &[]).await.unwrap(), "network");
    let names: Vec<(&str, &str)> = all
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("Guest Network", "Isolated"),
            ("Service Network", "L2"),
            ("DR Test Network", "Isolated")
        ]
    );
    let isolated = list(
        &b.call("listNetworks", &[("type", "isolated")])
            .await
            .unwrap(),
        "network",
    );
    assert_eq!(isolated.len(), 2);
    let l2 = list(
        &b.call("listNetworks", &[("type", "L2")]).await.unwrap(),
        "network",
    );
    assert_eq!(l2.len(), 1);
    assert_eq!(
        list(
            &b.call("listNetworks", &[("type", "all")]).await.unwrap(),
            "network"
        )
        .len(),
        3
    );
    // No seeded VM is on the test network; the seeded mirrored VMs are on the guest one.
    let ids = ids(&b).await;
    let on_test = b
        .call("listVirtualMachines", &[("networkid", &ids.test_network)])
        .await
        .unwrap();
    assert!(on_test.is_empty(), "{on_test:?}");
    let vms = list(
        &b.call("listVirtualMachines", &[]).await.unwrap(),
        "virtualmachine",
    );
    assert!(!vms.is_empty());
    for vm in &vms {
        assert_eq!(
            vm["nic"][0]["networkid"],
            ids.guest_network.as_str(),
            "{vm}"
        );
        assert_eq!(vm["nic"][0]["isdefault"], true);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_volume_registers_an_existing_image_once() {
    let sim = start_sim(|_| {}).await;
    let b = sim_mold(&sim, B);
    let ids = ids(&b).await;
    make_image(&sim, B, "test-clone-1");
    let before = volume_count(&sim, B);

    let v = import(&b, &ids, "test-clone-1", None).await.unwrap();
    assert_eq!(v["path"], "test-clone-1");
    assert_eq!(v["name"], "test-clone-1", "the name defaults to the path");
    assert_eq!(v["type"], "DATADISK");
    assert_eq!(v["state"], "Ready");
    assert_eq!(v["size"], 2 * GIB);
    assert_eq!(v["storageid"], ids.pool.as_str());
    assert!(v.get("virtualmachineid").is_none(), "detached: {v}");
    assert_eq!(
        v["diskofferingname"],
        "Default Custom Offering for Volume Import"
    );
    assert_eq!(volume_count(&sim, B), before + 1);
    let listed = list(
        &b.call("listVolumes", &[("id", v["id"].as_str().unwrap())])
            .await
            .unwrap(),
        "volume",
    );
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["path"], "test-clone-1");

    // The same image again: Mold's own text, as a failed job.
    let e = import(&b, &ids, "test-clone-1", Some("again"))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&e),
        (
            530,
            "Volume is already managed by CloudStack: test-clone-1".into()
        )
    );
    // A seeded VM's image is managed too.
    let seeded = list(
        &b.call("listVolumes", &[("type", "ROOT")]).await.unwrap(),
        "volume",
    );
    let seeded_path = seeded[0]["path"].as_str().unwrap().to_string();
    let e = import(&b, &ids, &seeded_path, None).await.unwrap_err();
    assert_eq!(
        refusal(&e).1,
        format!("Volume is already managed by CloudStack: {seeded_path}")
    );
    // No such image in the site's pool: the KVM agent's lookup fails.
    let e = import(&b, &ids, "no-such-image", None).await.unwrap_err();
    assert_eq!(
        refusal(&e),
        (
            530,
            "Cannot get volumes on storage pool via host site-b-kvm1".into()
        )
    );
    // The framework's checks, before any job.
    let e = b
        .call("importVolume", &[("storageid", ids.pool.as_str())])
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&e),
        (
            431,
            "Unable to execute API command importvolume due to missing parameter path".into()
        )
    );
    let e = b
        .call(
            "importVolume",
            &[("path", "test-clone-1"), ("storageid", &ids.zone)],
        )
        .await
        .unwrap_err();
    assert_eq!(refusal(&e).0, 431);
    assert!(
        refusal(&e)
            .1
            .starts_with("Invalid parameter storageid value=")
    );
    // A given offering is used; the name is the one given.
    make_image(&sim, B, "test-clone-2");
    let offerings = b.call("listDiskOfferings", &[]).await.unwrap();
    let custom = list(&offerings, "diskoffering")
        .into_iter()
        .find(|d| d["name"] == "Custom")
        .unwrap();
    let v = b
        .call_async(
            "importVolume",
            &[
                ("path", "test-clone-2"),
                ("storageid", &ids.pool),
                ("diskofferingid", custom["id"].as_str().unwrap()),
                ("name", "TEST-DATA"),
                // Not an ImportVolumeCmd parameter: ignored, as the API server does.
                ("zoneid", &ids.zone),
            ],
        )
        .await
        .unwrap();
    assert_eq!(v["volume"]["name"], "TEST-DATA");
    assert_eq!(v["volume"]["diskofferingid"], custom["id"]);
    // Only the two imports reached the world.
    assert_eq!(volume_count(&sim, B), before + 2);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_volume_sets_type_state_and_path_and_refuses_bad_names() {
    let sim = start_sim(|_| {}).await;
    let b = sim_mold(&sim, B);
    let ids = ids(&b).await;
    make_image(&sim, B, "test-root");
    let v = import(&b, &ids, "test-root", None).await.unwrap();
    let id = v["id"].as_str().unwrap();

    let u = b
        .call_async(
            "updateVolume",
            &[
                ("id", id),
                ("path", "test-root"),
                ("storageid", &ids.pool),
                ("state", "Ready"),
                ("type", "ROOT"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(u["volume"]["type"], "ROOT");
    assert_eq!(u["volume"]["path"], "test-root");
    let roots = list(
        &b.call("listVolumes", &[("type", "ROOT"), ("name", "test-root")])
            .await
            .unwrap(),
        "volume",
    );
    assert_eq!(roots.len(), 1);

    // Enum names are exact; a refused update changes nothing.
    for (param, value, text) in [
        ("state", "ready", "Invalid volume state specified"),
        ("type", "root", "Invalid volume type specified"),
    ] {
        let e = b
            .call_async("updateVolume", &[("id", id), ("path", "x"), (param, value)])
            .await
            .unwrap_err();
        assert_eq!(refusal(&e), (530, text.into()));
    }
    let now = list(
        &b.call("listVolumes", &[("id", id)]).await.unwrap(),
        "volume",
    );
    assert_eq!(now[0]["path"], "test-root");
    assert_eq!(now[0]["type"], "ROOT");

    let e = b
        .call("updateVolume", &[("state", "Ready")])
        .await
        .unwrap_err();
    assert_eq!(refusal(&e), (431, "Invalid volume id was provided".into()));
    let e = b
        .call("updateVolume", &[("id", &ids.zone)])
        .await
        .unwrap_err();
    assert_eq!(refusal(&e).0, 431);

    // Mold's quirk: an update without `path` clears it.
    let u = b
        .call_async("updateVolume", &[("id", id), ("name", "renamed")])
        .await
        .unwrap();
    assert_eq!(u["volume"]["name"], "renamed");
    assert!(u["volume"].get("path").is_none(), "{u}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_for_volume_makes_a_vm_on_the_volume_in_the_network_asked() {
    let sim = start_sim(|_| {}).await;
    let b = sim_mold(&sim, B);
    let ids = ids(&b).await;
    make_image(&sim, B, "test-root");
    let root = import(&b, &ids, "test-root", None).await.unwrap();
    let root_id = root["id"].as_str().unwrap().to_string();
    b.call_async(
        "updateVolume",
        &[("id", &root_id), ("path", "test-root"), ("type", "ROOT")],
    )
    .await
    .unwrap();
    let vms_before = vm_count(&sim, B);

    let base = |extra: &[(&'static str, String)]| {
        let mut p: Vec<(&'static str, String)> = vec![
            ("zoneid", ids.zone.clone()),
            ("serviceofferingid", ids.offering.clone()),
            ("volumeid", root_id.clone()),
        ];
        p.extend(extra.iter().cloned());
        p
    };
    let call = |p: Vec<(&'static str, String)>| {
        let b = b.clone();
        async move {
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.call("deployVirtualMachineForVolume", &p).await
        }
    };

    // Refusals, each before any job: nothing reaches the world.
    let e = call(vec![
        ("zoneid", ids.zone.clone()),
        ("serviceofferingid", ids.offering.clone()),
        ("networkids", ids.test_network.clone()),
    ])
    .await
    .unwrap_err();
    // Mold's text ends in a space ("Unable to use volume "), which the header loses.
    assert_eq!(refusal(&e), (431, "Unable to use volume".into()));
    let e = call(base(&[
        ("networkids", ids.test_network.clone()),
        ("iptonetworklist[0].networkid", ids.test_network.clone()),
    ]))
    .await
    .unwrap_err();
    assert_eq!(
        refusal(&e),
        (
            431,
            "ipToNetworkMap can't be specified along with networkIds or ipAddress".into()
        )
    );
    let e = call(base(&[("iptonetworklist[0].networkid", ids.zone.clone())]))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&e).1,
        format!(
            "Unable to translate and find entity with networkId: {}",
            ids.zone
        )
    );
    let e = call(base(&[])).await.unwrap_err();
    assert_eq!(refusal(&e).0, 431);
    assert!(
        refusal(&e)
            .1
            .starts_with("More than 1 default Isolated networks are found for account"),
        "{e:?}"
    );
    let e = call(base(&[
        ("networkids", ids.test_network.clone()),
        ("name", "1-bad_name".into()),
    ]))
    .await
    .unwrap_err();
    assert!(
        refusal(&e)
            .1
            .starts_with("Invalid name. Vm name can contain")
    );
    let e = call(base(&[
        ("networkids", ids.guest_network.clone()),
        ("name", "dr-centos-1".into()),
    ]))
    .await
    .unwrap_err();
    assert_eq!(
        refusal(&e).1,
        "The vm with hostName dr-centos-1 already exists in the network domain: cs2cloud.internal; network=Guest Network"
    );
    assert_eq!(vm_count(&sim, B), vms_before, "no refusal made a VM");

    // The same name is free in the test network; startvm=false leaves it Stopped.
    let submitted = b
        .submit(
            "deployVirtualMachineForVolume",
            &[
                ("zoneid", &ids.zone),
                ("serviceofferingid", &ids.offering),
                ("volumeid", &root_id),
                ("iptonetworklist[0].networkid", &ids.test_network),
                ("name", "dr-centos-1"),
                ("displayname", "dr-centos-1"),
                ("startvm", "false"),
            ],
        )
        .await
        .unwrap();
    let vm_id = submitted
        .id
        .clone()
        .expect("a create answers with the VM's id");
    let done = b
        .wait_for_job("deployVirtualMachineForVolume", &submitted.jobid)
        .await
        .unwrap();
    let vm = &done["virtualmachine"];
    assert_eq!(vm["id"], vm_id.as_str());
    assert_eq!(vm["state"], "Stopped");
    assert_eq!(vm["nic"][0]["networkid"], ids.test_network.as_str());
    assert_eq!(vm["nic"][0]["networkname"], "DR Test Network");
    let on_test = list(
        &b.call("listVirtualMachines", &[("networkid", &ids.test_network)])
            .await
            .unwrap(),
        "virtualmachine",
    );
    assert_eq!(on_test.len(), 1);
    assert_eq!(on_test[0]["id"], vm_id.as_str());
    let vols = list(
        &b.call("listVolumes", &[("virtualmachineid", &vm_id)])
            .await
            .unwrap(),
        "volume",
    );
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0]["id"], root_id.as_str());
    assert_eq!(vols[0]["type"], "ROOT");
    assert_eq!(vm_count(&sim, B), vms_before + 1);

    // startvm left out: the VM runs.
    make_image(&sim, B, "test-root-2");
    let root2 = import(&b, &ids, "test-root-2", None).await.unwrap();
    let running = b
        .call_async(
            "deployVirtualMachineForVolume",
            &[
                ("zoneid", &ids.zone),
                ("serviceofferingid", &ids.offering),
                ("volumeid", root2["id"].as_str().unwrap()),
                ("networkids", &ids.test_network),
                ("name", "test-vm-2"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(running["virtualmachine"]["state"], "Running");
    assert!(running["virtualmachine"]["hostid"].is_string());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_delete_and_destroy_and_their_refusals() {
    let sim = start_sim(|_| {}).await;
    let b = sim_mold(&sim, B);
    let ids = ids(&b).await;
    for image in ["t-root", "t-data", "t-spare"] {
        make_image(&sim, B, image);
    }
    let root = import(&b, &ids, "t-root", None).await.unwrap();
    let data = import(&b, &ids, "t-data", None).await.unwrap();
    let spare = import(&b, &ids, "t-spare", None).await.unwrap();
    let (root_id, data_id, spare_id) = (
        root["id"].as_str().unwrap(),
        data["id"].as_str().unwrap(),
        spare["id"].as_str().unwrap(),
    );
    b.call_async(
        "updateVolume",
        &[("id", root_id), ("path", "t-root"), ("type", "ROOT")],
    )
    .await
    .unwrap();
    let vm = b
        .call_async(
            "deployVirtualMachineForVolume",
            &[
                ("zoneid", &ids.zone),
                ("serviceofferingid", &ids.offering),
                ("volumeid", root_id),
                ("networkids", &ids.test_network),
                ("name", "t-vm"),
                ("startvm", "false"),
            ],
        )
        .await
        .unwrap();
    let vm_id = vm["virtualmachine"]["id"].as_str().unwrap().to_string();

    // attachVolume, then the same again.
    let a = b
        .call_async(
            "attachVolume",
            &[("id", data_id), ("virtualmachineid", &vm_id)],
        )
        .await
        .unwrap();
    assert_eq!(a["volume"]["virtualmachineid"], vm_id.as_str());
    assert_eq!(a["volume"]["vmstate"], "Stopped");
    let e = b
        .call_async(
            "attachVolume",
            &[("id", data_id), ("virtualmachineid", &vm_id)],
        )
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&e),
        (
            530,
            "Please specify a volume that is not attached to any VM.".into()
        )
    );
    let e = b
        .call("attachVolume", &[("id", data_id)])
        .await
        .unwrap_err();
    assert_eq!(refusal(&e).0, 431);

    // deleteVolume: refused while attached, the image kept; a detached one goes with it.
    let e = b
        .call("deleteVolume", &[("id", data_id)])
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&e),
        (
            431,
            "Please specify a volume that is not attached to any VM.".into()
        )
    );
    assert!(image_present(&sim, B, "t-data"));
    let ok = b.call("deleteVolume", &[("id", spare_id)]).await.unwrap();
    assert_eq!(ok["success"], true);
    assert!(!image_present(&sim, B, "t-spare"), "the image went with it");
    // Its id still resolves (Mold keeps removed rows), to nothing.
    assert!(
        b.call("listVolumes", &[("id", spare_id)])
            .await
            .unwrap()
            .is_empty()
    );

    // destroyVirtualMachine: volumeids must be this VM's data disks.
    let e = b
        .call_async(
            "destroyVirtualMachine",
            &[("id", &vm_id), ("expunge", "true"), ("volumeids", root_id)],
        )
        .await
        .unwrap_err();
    let (code, text) = refusal(&e);
    assert_eq!(code, 530);
    assert!(
        text.starts_with(
            "The following supplied volumes are not DATADISK attached to the VM: Vol["
        ) && text.contains("|name=t-root|vm=")
            && text.ends_with("|ROOT]; "),
        "{text}"
    );
    // A mirrored VM cannot be destroyed (the DR guard), and nothing changed.
    let mirrored = list(
        &b.call("listVirtualMachines", &[("name", "dr-centos-1")])
            .await
            .unwrap(),
        "virtualmachine",
    );
    let e = b
        .call(
            "destroyVirtualMachine",
            &[
                ("id", mirrored[0]["id"].as_str().unwrap()),
                ("expunge", "true"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(
        refusal(&e),
        (
            530,
            "If a mirroring virtual machine exists, the virtual machine cannot be destroyed or expunged.".into()
        )
    );

    // Without expunge: Destroyed and still listed, with its ROOT volume; the data disk
    // named is destroyed, not expunged, and its image stays.
    let d = b
        .call_async(
            "destroyVirtualMachine",
            &[("id", &vm_id), ("volumeids", data_id)],
        )
        .await
        .unwrap();
    assert_eq!(d["virtualmachine"]["state"], "Destroyed");
    let listed = list(
        &b.call("listVirtualMachines", &[("id", &vm_id)])
            .await
            .unwrap(),
        "virtualmachine",
    );
    assert_eq!(listed[0]["state"], "Destroyed");
    let present = b
        .call(
            "listVirtualMachines",
            &[("id", &vm_id), ("state", "present")],
        )
        .await
        .unwrap();
    assert!(present.is_empty());
    let vols = list(
        &b.call("listVolumes", &[("virtualmachineid", &vm_id)])
            .await
            .unwrap(),
        "volume",
    );
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0]["type"], "ROOT");
    let destroyed = list(
        &b.call("listVolumes", &[("id", data_id)]).await.unwrap(),
        "volume",
    );
    assert_eq!(destroyed[0]["state"], "Destroy");
    assert_eq!(destroyed[0]["destroyed"], true);
    assert!(image_present(&sim, B, "t-root") && image_present(&sim, B, "t-data"));
    sim.shutdown().await;
}

/// The whole test-failover path on the DR site: an existing image imported as the ROOT disk,
/// a VM deployed for it in the test network, a second imported volume attached, then the
/// VM destroyed with expunge and its data volume: nothing is left, in Mold or in the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_copy_made_from_images_and_removed_without_a_trace() {
    let sim = start_sim(|_| {}).await;
    let b = sim_mold(&sim, B);
    let ids = ids(&b).await;
    let vms_before = vm_count(&sim, B);
    let volumes_before = volume_count(&sim, B);
    make_image(&sim, B, "drtest-root");
    make_image(&sim, B, "drtest-data");

    let root = import(&b, &ids, "drtest-root", Some("drtest-root"))
        .await
        .unwrap();
    let root_id = root["id"].as_str().unwrap();
    b.call_async(
        "updateVolume",
        &[
            ("id", root_id),
            ("path", "drtest-root"),
            ("storageid", &ids.pool),
            ("state", "Ready"),
            ("type", "ROOT"),
        ],
    )
    .await
    .unwrap();
    let vm = b
        .call_async(
            "deployVirtualMachineForVolume",
            &[
                ("zoneid", &ids.zone),
                ("serviceofferingid", &ids.offering),
                ("volumeid", root_id),
                ("iptonetworklist[0].networkid", &ids.test_network),
                ("name", "drtest-vm"),
                ("displayname", "drtest-vm"),
            ],
        )
        .await
        .unwrap();
    let vm_id = vm["virtualmachine"]["id"].as_str().unwrap().to_string();
    assert_eq!(vm["virtualmachine"]["state"], "Running");
    let data = import(&b, &ids, "drtest-data", None).await.unwrap();
    let data_id = data["id"].as_str().unwrap();
    b.call_async(
        "attachVolume",
        &[("id", data_id), ("virtualmachineid", &vm_id)],
    )
    .await
    .unwrap();
    let attached = list(
        &b.call("listVolumes", &[("virtualmachineid", &vm_id)])
            .await
            .unwrap(),
        "volume",
    );
    assert_eq!(attached.len(), 2);
    assert_eq!(vm_count(&sim, B), vms_before + 1);
    assert_eq!(volume_count(&sim, B), volumes_before + 2);

    b.call_async(
        "destroyVirtualMachine",
        &[("id", &vm_id), ("expunge", "true"), ("volumeids", data_id)],
    )
    .await
    .unwrap();

    let gone = b
        .call("listVirtualMachines", &[("id", &vm_id)])
        .await
        .unwrap();
    assert!(gone.is_empty(), "{gone:?}");
    let on_test = b
        .call("listVirtualMachines", &[("networkid", &ids.test_network)])
        .await
        .unwrap();
    assert!(on_test.is_empty(), "{on_test:?}");
    for name in ["drtest-root", "drtest-data"] {
        let left = b.call("listVolumes", &[("keyword", name)]).await.unwrap();
        assert!(left.is_empty(), "{name}: {left:?}");
        assert!(
            !image_present(&sim, B, name),
            "{name} is gone from the pool"
        );
    }
    assert_eq!(vm_count(&sim, B), vms_before);
    assert_eq!(volume_count(&sim, B), volumes_before);
    sim.shutdown().await;
}

/// One `rbd` command line on a site, through the storage seam (what drbook will run over SSH).
fn rbd(sim: &Sim, site: &str, line: &str) -> Result<String, String> {
    let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    sim.with_world(|w, now| w.storage.rbd_command(now, site, &args))
        .map_err(|e| e.to_string())
}

/// Mold imports a clone (an image with a parent) like any image: its KVM agent checks only
/// `qemu-img info`'s backing file, which an RBD clone does not have. The clone here is made
/// on the DR site from a user snapshot of a mirrored VM's ROOT image, carried there by a
/// mirror snapshot; expunging the test VM removes the clone and leaves the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_of_a_replica_s_snapshot_imports_and_goes_with_its_vm() {
    let sim = start_sim(|_| {}).await;
    let b = sim_mold(&sim, B);
    let ids = ids(&b).await;
    let a = sim_mold(&sim, "site-a");
    let vm = list(
        &a.call("listVirtualMachines", &[("name", "dr-centos-1")])
            .await
            .unwrap(),
        "virtualmachine",
    );
    let roots = list(
        &a.call(
            "listVolumes",
            &[
                ("virtualmachineid", vm[0]["id"].as_str().unwrap()),
                ("type", "ROOT"),
            ],
        )
        .await
        .unwrap(),
        "volume",
    );
    let replica = roots[0]["path"].as_str().unwrap().to_string();
    rbd(&sim, "site-a", &format!("snap create rbd/{replica}@drtest")).unwrap();
    rbd(
        &sim,
        "site-a",
        &format!("mirror image snapshot rbd/{replica}"),
    )
    .unwrap();
    let clone = "drtest-clone";
    crate::harness::eventually("the snapshot to reach site-b and be cloned", || async {
        rbd(
            &sim,
            B,
            &format!("clone --rbd-default-clone-format 2 rbd/{replica}@drtest rbd/{clone}"),
        )
        .ok()
    })
    .await;
    let info = sim
        .with_world(|w, _| w.storage.image_info(B, clone))
        .unwrap();
    assert_eq!(info["parent"]["image"], replica.as_str(), "{info}");

    let v = import(&b, &ids, clone, None).await.unwrap();
    assert_eq!(v["path"], clone);
    let root_id = v["id"].as_str().unwrap();
    b.call_async(
        "updateVolume",
        &[("id", root_id), ("path", clone), ("type", "ROOT")],
    )
    .await
    .unwrap();
    let test_vm = b
        .call_async(
            "deployVirtualMachineForVolume",
            &[
                ("zoneid", &ids.zone),
                ("serviceofferingid", &ids.offering),
                ("volumeid", root_id),
                ("networkids", &ids.test_network),
                ("name", "dr-centos-1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        test_vm["virtualmachine"]["state"], "Running",
        "a clone is writable"
    );
    let id = test_vm["virtualmachine"]["id"].as_str().unwrap();
    b.call_async("destroyVirtualMachine", &[("id", id), ("expunge", "true")])
        .await
        .unwrap();
    assert!(!image_present(&sim, B, clone));
    assert!(image_present(&sim, B, &replica), "the replica stays");
    sim.shutdown().await;
}
