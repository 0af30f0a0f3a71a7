//! `drbook demo`: the whole story on in-process simulated sites, judged by its ledger table.

use crate::harness::Test;

#[test]
fn the_demo_tells_the_story_and_proves_it_with_the_ledger() {
    let t = Test::new();
    let keep = t.dir().join("kept");
    let ran = t
        .run_with([
            "demo",
            "--timing",
            "fast",
            "--vms",
            "3",
            "--keep",
            keep.to_str().unwrap(),
        ])
        .expect_code(0);
    for chapter in 1..=8 {
        ran.stdout_has(&format!("==> {chapter}/8 "));
    }
    ran.stdout_has("== failover of DR to site-b ==");
    ran.stdout_has("== failback of DR to site-a ==");
    // The ledger rows: every DR-site write is home (dr-centos-1 has two disks).
    ran.stdout_has("10 of 10");
    ran.stdout_has("5 of 5");
    ran.stdout_has("no write made on the DR site was lost");
    // --keep leaves the configuration and both runs' journals for a look afterwards.
    assert!(keep.join("drbook.toml").exists());
    let runs = std::fs::read_dir(keep.join(".drbook/runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 2, "one journal per runbook");
}

#[test]
fn the_active_active_demo_moves_only_site_as_vms_and_proves_site_bs_ran_throughout() {
    let t = Test::new();
    let ran = t
        .run_with(["demo", "--active-active", "--timing", "fast", "--vms", "4"])
        .expect_code(0);
    for chapter in 1..=9 {
        ran.stdout_has(&format!("==> {chapter}/9 "));
    }
    ran.stdout_has("promote(\"DR\") is refused");
    ran.stdout_has("demote(\"DR\") is refused");
    ran.stdout_has(
        "it would need these VMs stopped on site-b, where they run production: dr-win-1, dr-win-2",
    );
    ran.stdout_has("Mold cluster-level commands sent so far: 0");
    ran.stdout_has("site-b, throughout");
    ran.stdout_has("site-b received 2 VM stop(s)");
    ran.stdout_has("site-b's own VMs ran throughout and kept every write");
}
