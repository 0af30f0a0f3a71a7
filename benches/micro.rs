//! Micro benchmarks (`cargo bench --bench micro`), with criterion: what each Mold request
//! costs drbook before and after the network (signing, decoding a 1,000-VM page), what a
//! `mirror_status` of 1,000 mirrored VMs costs end to end against the in-process simulator
//! (simulator included),
//! and the start-up of the binary as a whole process (`drbook --version`, `drbook check` of a
//! small script).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use drbook::mold::envelope::{self, Answer};
use drbook::mold::sign::{self, SignatureAlgorithm};
use drbook::mold::types::VirtualMachine;

fn signing(c: &mut Criterion) {
    let params = [
        ("command", "startVirtualMachine"),
        ("id", "51570000-001f-401f-80d9-0000001328a9"),
        ("considerlasthost", "true"),
        ("response", "json"),
        ("apiKey", "AKtest-visible-in-no-output-7f3a"),
        ("signatureVersion", "3"),
        ("expires", "2026-12-01T12:00:00+0000"),
    ];
    for algorithm in [SignatureAlgorithm::Sha256, SignatureAlgorithm::Sha1] {
        c.bench_function(
            &format!("sign a startVirtualMachine ({algorithm:?})"),
            |b| {
                b.iter(|| {
                    sign::signature(black_box(&params), "SKtest-never-print-me-91b2", algorithm)
                });
            },
        );
    }
}

/// A `listVirtualMachines` answer of `n` VMs, shaped as Mold's (and the simulator's).
fn vm_page(n: usize) -> Vec<u8> {
    let vms: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": format!("51570000-{i:04x}-4000-8000-{i:012x}"),
                "name": format!("dr-centos-{i}"),
                "displayname": format!("dr-centos-{i}"),
                "instancename": format!("i-2-{}-VM", 100 + i),
                "state": "Running",
                "hostid": "host-1",
                "lastknownhostid": "host-1",
                "serviceofferingid": "so-1",
                "zoneid": "zone-1",
                "created": "2026-12-01T12:00:00+0900",
                "tags": [{"key": "tier", "value": "app", "resourcetype": "UserVm"}],
                "nic": [{"networkid": "net-1", "ipaddress": "10.0.0.1", "isdefault": true}],
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "listvirtualmachinesresponse": {"count": n, "virtualmachine": vms}
    }))
    .unwrap()
}

fn decoding(c: &mut Criterion) {
    let body = vm_page(1000);
    c.bench_function("decode a 1,000-VM listVirtualMachines page", |b| {
        b.iter(|| {
            let decoded = envelope::decode(
                "listVirtualMachines",
                Answer {
                    status: 200,
                    x_description: None,
                    body: black_box(&body),
                },
                SignatureAlgorithm::Sha256,
            )
            .unwrap();
            let vms: Vec<VirtualMachine> = envelope::list(&decoded, "virtualmachine").unwrap();
            assert_eq!(vms.len(), 1000);
        });
    });
}

fn mirror_status(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (sim, dr) = rt.block_on(async {
        // As seeded: a root disk each, and a data disk on a few. (Three volumes per VM, as
        // the issue asks, is out of reach until the simulator's per-request cost at this
        // size comes down: their first full copies do not finish in ten minutes.)
        let mut config = drbook::sim::SimConfig::default().with_vms(1000);
        // Glue's scheduler every 30 s, as in the failover benchmark: with the tests' 0.5 s it
        // would snapshot all 1,000 VMs twice a second, under the figures.
        config.timing = drbook::sim::config::SimTiming {
            snapshot_interval: Duration::from_secs(30),
            ..drbook::sim::config::SimTiming::fast()
        };
        let sim = drbook::sim::Sim::start(config).await.unwrap();
        let path = dir.path().join("drbook.toml");
        sim.write_config(&path).unwrap();
        let dr =
            drbook::dr::Dr::new(&drbook::config::Config::discover(Some(&path)).unwrap()).unwrap();
        dr.wait_synced(
            "DR",
            Duration::from_secs(600),
            Duration::from_millis(200),
            &|_| {},
        )
        .await
        .unwrap();
        (sim, dr)
    });
    let mut group = c.benchmark_group("in-process simulator");
    group.sample_size(10);
    group.bench_function("mirror_status of 1,000 mirrored VMs", |b| {
        b.iter(|| {
            let s = rt.block_on(dr.mirror_status("DR")).unwrap();
            assert_eq!(s.vms.len(), 1000);
        });
    });
    // What the simulator adds to every request at this size: a trivial one, signing and
    // loopback HTTP included.
    group.bench_function(
        "a trivial Mold request (listZones) at 1,000 mirrored VMs",
        |b| {
            b.iter(|| {
                rt.block_on(dr.mold_raw("site-b", "listZones", &[]))
                    .unwrap()
            });
        },
    );
    group.finish();
    rt.block_on(sim.shutdown());
}

fn drbook() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drbook"))
}

fn start_up(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("small.rhai");
    std::fs::write(&script, "let c = dr_clusters();\nprint(c.len());\n").unwrap();
    let mut group = c.benchmark_group("whole process");
    group.sample_size(20);
    group.bench_function("drbook --version", |b| {
        b.iter(|| {
            let out = Command::new(drbook()).arg("--version").output().unwrap();
            assert!(out.status.success());
        });
    });
    group.bench_function("drbook check of a small script", |b| {
        b.iter(|| {
            let out = Command::new(drbook())
                .arg("check")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
    });
    group.finish();
}

criterion_group!(benches, signing, decoding, mirror_status, start_up);
criterion_main!(benches);
