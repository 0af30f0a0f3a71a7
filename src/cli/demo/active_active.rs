//! `drbook demo --active-active`: production on both sites, each protected to the other over
//! one pairing. site-a is lost: drbook refuses Mold's cluster-level promote (it would need
//! site-b's own VMs stopped), fails over only site-a's VMs, refuses the cluster-level demote
//! of the failback (it would demote site-b's own VMs), fails back only site-a's VMs — then the
//! ledger and the request counts show that site-b's VMs never stopped and lost nothing.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use super::{DemoArgs, chapter_of, held, runbook, say, write_each};
use crate::config::Config;
use crate::duration::Human;
use crate::error::Error;
use crate::sim::config::SimTiming;
use crate::sim::faults::Api;
use crate::sim::{Sim, SimConfig};
use crate::term;

const CHAPTERS: usize = 9;

/// Mold's cluster-level commands, which reach both directions: the demo sends none.
const CLUSTER_ACTS: [&str; 3] = [
    "promoteDisasterRecoveryCluster",
    "demoteDisasterRecoveryCluster",
    "resyncDisasterRecoveryCluster",
];

/// Half the VMs (rounded up) at home on site-a, the rest on site-b.
fn topology(n: usize) -> Result<SimConfig, Error> {
    let template = SimConfig::default().vms;
    let (centos, win): (Vec<_>, Vec<_>) = template
        .into_iter()
        .partition(|v| v.name.starts_with("dr-centos-"));
    let (at_a, at_b) = (n.div_ceil(2), n / 2);
    if at_a > centos.len() || at_b > win.len() {
        return Err(Error::Usage(format!(
            "--vms: at most {} with --active-active",
            centos.len() + win.len()
        )));
    }
    let config = SimConfig {
        vms: centos
            .into_iter()
            .take(at_a)
            .chain(win.into_iter().take(at_b))
            .collect(),
        ..SimConfig::default()
    };
    Ok(config.active_active())
}

fn names_at(sim: &Sim, prefix: &str) -> Vec<String> {
    super::vm_names(sim)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

pub(super) async fn tell(args: &DemoArgs, dir: &Path, started: Instant) -> Result<ExitCode, Error> {
    chapter_of(
        1,
        CHAPTERS,
        "two sites, each running production, each protected to the other",
    );
    let mut config = topology(args.vms)?;
    config.timing = if args.timing == "fast" {
        SimTiming::fast()
    } else {
        SimTiming::demo()
    };
    let sim = Sim::start(config)
        .await
        .map_err(|e| Error::Failed(format!("the simulator did not start: {e}")))?;
    let config_path = dir.join("drbook.toml");
    sim.write_config(&config_path)
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", config_path.display())))?;
    let config = Config::discover(Some(&config_path))?;
    let (at_a, at_b) = (names_at(&sim, "dr-centos-"), names_at(&sim, "dr-win-"));
    let dr = crate::dr::Dr::new(&config)?;
    dr.wait_synced(
        "DR",
        std::time::Duration::from_secs(120),
        config.defaults.poll_interval,
        &|_| {},
    )
    .await
    .map_err(|e| Error::Failed(format!("the simulated sites did not sync: {e}")))?;
    say(&format!(
        "{} run at home on site-a, mirrored to site-b; {} run at home on site-b, mirrored to site-a — one pairing (DR cluster \"DR\"), as Mold's API allows from either site's record",
        at_a.join(", "),
        at_b.join(", ")
    ));
    let recorded = dr
        .record_homes("DR", None)
        .await
        .map_err(|e| Error::Failed(format!("record_homes: {e}")))?;
    say(&format!(
        "record_homes(\"DR\"): {} — Mold's records cannot say which way a VM is protected, so drbook keeps it as a tag on both copies",
        recorded.message
    ));

    chapter_of(2, CHAPTERS, "writes on both sites");
    let at_risk = write_each(&sim, &at_a, "site-a", 3)?;
    let mut own_b = write_each(&sim, &at_b, "site-b", 3)?;
    say("3 writes to each VM where it runs: site-a's are not yet carried by a snapshot");

    chapter_of(3, CHAPTERS, "disaster: site-a goes dark");
    sim.disaster("site-a").await.map_err(Error::Failed)?;
    say("site-a's Mold and Glue stop answering; site-b's own VMs run on");

    chapter_of(
        4,
        CHAPTERS,
        "Mold's cluster-level promote acts on every mirrored VM of the pairing",
    );
    refused(&sim, "promote(\"DR\")", dr.promote("DR").await.err())?;

    let state_dir = dir.join(".drbook");
    chapter_of(5, CHAPTERS, "drbook run failover --yes");
    runbook(&config, "failover", &[], &state_dir).await?;

    chapter_of(6, CHAPTERS, "work goes on at site-b, for both directions");
    let on_dr = write_each(&sim, &at_a, "site-b", 5)?;
    for (held, more) in own_b.iter_mut().zip(write_each(&sim, &at_b, "site-b", 2)?) {
        held.extend(more);
    }
    say("5 writes to each of site-a's VMs, now running on site-b; 2 more to each of site-b's own");

    chapter_of(
        7,
        CHAPTERS,
        "site-a returns: the failback's cluster-level demote",
    );
    sim.recover("site-a").await.map_err(Error::Failed)?;
    say("site-a's VMs power on again, on their old data");
    refused(&sim, "demote(\"DR\")", dr.demote("DR").await.err())?;

    chapter_of(8, CHAPTERS, "drbook run failback --yes");
    runbook(&config, "failback", &[], &state_dir).await?;

    chapter_of(9, CHAPTERS, "the ledger, and what reached site-b");
    let proved = proof(&sim, &at_a, &at_b, &at_risk, &on_dr, &own_b)?;
    sim.shutdown().await;
    term::line("");
    if proved {
        term::line(&format!(
            "Done in {}: site-a's VMs failed over and came home with every write made on site-b; site-b's own VMs ran throughout and kept every write. Next: drbook sim --active-active --write-config /tmp/dr.toml",
            Human(started.elapsed())
        ));
        Ok(ExitCode::SUCCESS)
    } else {
        term::eline("drbook demo: the ledger does not match the story above (see the table)");
        Ok(ExitCode::from(crate::error::exit::FAILURE))
    }
}

/// Says why drbook refused `call`, and that nothing reached the sites; a call that was not
/// refused ends the demo (the story would be false).
fn refused(sim: &Sim, call: &str, error: Option<crate::dr::DrError>) -> Result<(), Error> {
    let Some(e) = error else {
        return Err(Error::Failed(format!(
            "{call} was not refused: the demo stops here"
        )));
    };
    say(&format!("{call} is refused: {e}"));
    let sent: u64 = CLUSTER_ACTS
        .iter()
        .flat_map(|c| ["site-a", "site-b"].map(|s| sim.mutation_count(s, Api::Mold, c)))
        .sum();
    say(&format!("Mold cluster-level commands sent so far: {sent}"));
    Ok(())
}

/// The table, and whether the story holds: site-a's VMs are home with every write made on
/// site-b; site-b's own VMs run there on every write made there; no cluster-level act sent.
fn proof(
    sim: &Sim,
    at_a: &[String],
    at_b: &[String],
    at_risk: &[BTreeSet<u64>],
    on_dr: &[BTreeSet<u64>],
    own_b: &[BTreeSet<u64>],
) -> Result<bool, Error> {
    let states = |site: &str| -> std::collections::BTreeMap<String, String> {
        sim.state()["sites"][site]["vms"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?.into(), v["state"].as_str()?.into())))
            .collect()
    };
    let (a, b) = (states("site-a"), states("site-b"));
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(vec!["VM", "home", "runs on", "writes kept", "lost"]);
    let mut ok = true;
    for ((vm, risk), dr) in at_a.iter().zip(at_risk).zip(on_dr) {
        let home = held(sim, vm, "site-a")?;
        let back = dr.iter().filter(|w| home.contains(w)).count();
        let lost = risk.iter().filter(|w| !home.contains(w)).count();
        let running = a.get(vm).is_some_and(|s| s == "Running");
        ok &= back == dr.len() && running;
        table.add_row(vec![
            vm.clone(),
            "site-a".into(),
            if running { "site-a".into() } else { "-".into() },
            format!("{back} of {} made on site-b", dr.len()),
            if lost == 0 {
                "none".into()
            } else {
                format!("{lost}, all at risk at the disaster")
            },
        ]);
    }
    for (vm, writes) in at_b.iter().zip(own_b) {
        let there = held(sim, vm, "site-b")?;
        let kept = writes.iter().filter(|w| there.contains(w)).count();
        let running = b.get(vm).is_some_and(|s| s == "Running");
        ok &= kept == writes.len() && running;
        table.add_row(vec![
            vm.clone(),
            "site-b".into(),
            if running {
                "site-b, throughout".into()
            } else {
                "-".into()
            },
            format!("{kept} of {}", writes.len()),
            "none".into(),
        ]);
    }
    for line in table.to_string().lines() {
        say(line.trim_end());
    }
    let stops = sim.mutation_count("site-b", Api::Mold, "stopVirtualMachine");
    let cluster: u64 = CLUSTER_ACTS
        .iter()
        .flat_map(|c| ["site-a", "site-b"].map(|s| sim.mutation_count(s, Api::Mold, c)))
        .sum();
    ok &= cluster == 0 && stops == at_a.len() as u64;
    say(&format!(
        "site-b received {stops} VM stop(s) — one per VM of site-a, for the failback — and no Mold cluster-level promote, demote or resync ({cluster} sent): its own VMs were never stopped, demoted or resynced"
    ));
    Ok(ok)
}
