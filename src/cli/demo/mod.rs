//! `drbook demo`: the newcomer's first command. Two simulated sites, writes on the protected
//! one, a disaster, the shipped `failover` runbook, work on the DR site, the repair, the
//! shipped `failback` runbook — then the data ledger proves which writes survived.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::Value;

use super::OutputFormat;
use super::run::RunArgs;
use crate::config::Config;
use crate::duration::Human;
use crate::error::Error;
use crate::sim::config::SimTiming;
use crate::sim::{Sim, SimConfig};
use crate::term;

mod active_active;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
What it does, on two sites simulated in-process (nothing outside this machine is touched):

  1. site-a (protected) and site-b (DR) start, every VM mirrored and synced
  2. writes land on site-a after its last mirror snapshot: they are the writes at risk
  3. site-a goes dark: a disaster
  4. drbook run failover --yes --var groups=tier=db,tier=app,tier=web
  5. work goes on at site-b: more writes
  6. site-a is repaired and comes back (its VMs running again, as after a power cut)
  7. drbook run failback --yes --var groups=tier=db,tier=app,tier=web
  8. the ledger: every write made on site-b is on site-a again; the writes failover
     reported at risk are the only ones lost

With --active-active, half the VMs run at home on site-b, protected to site-a over the same
pairing: drbook refuses Mold's cluster-level promote and demote (they would reach site-b's own
VMs), fails over and back only site-a's VMs, and the ledger and the request counts show that
site-b's VMs were never stopped, demoted or resynced.

Then try it yourself: drbook sim --write-config /tmp/dr.toml, and drbook -c /tmp/dr.toml run …")]
pub struct DemoArgs {
    /// How many mirrored VMs the protected site runs
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub vms: usize,

    /// Durations: demo (Mold jobs take seconds) or fast (as the tests run)
    #[arg(long, value_name = "PRESET", value_parser = ["demo", "fast"], default_value = "demo")]
    pub timing: String,

    /// Keep the demo's drbook.toml, journals and reports in this directory (default: a
    /// temporary directory, removed at the end)
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,

    /// Tell the Active-Active story instead: production on both sites, each protected to the
    /// other over one pairing; site-a is lost and only its VMs move, site-b's own keep running
    #[arg(long)]
    pub active_active: bool,
}

/// The start order the demo's runbooks use: the simulator tags its VMs by tier.
const GROUPS: &str = "groups=tier=db,tier=app,tier=web";

pub async fn run(args: &DemoArgs) -> Result<ExitCode, Error> {
    let started = Instant::now();
    if args.vms == 0 {
        return Err(Error::Usage("--vms: the demo needs at least one VM".into()));
    }
    let dir = args.keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "drbook-demo-{}-{:04x}",
            std::process::id(),
            fastrand::u16(..)
        ))
    });
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Usage(format!("cannot create {}: {e}", dir.display())))?;
    let result = if args.active_active {
        active_active::tell(args, &dir, started).await
    } else {
        tell(args, &dir, started).await
    };
    if args.keep.is_none() {
        // Only the demo's own files live there (its keys included): nothing to keep.
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn tell(args: &DemoArgs, dir: &std::path::Path, started: Instant) -> Result<ExitCode, Error> {
    chapter(1, "two sites: site-a (protected) and site-b (DR)");
    let mut config = SimConfig::default().with_vms(args.vms);
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
    let vms = vm_names(&sim);
    // The mirrored VMs were just created: their first full copy is on its way.
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
        "{} VMs run on site-a, each mirrored to site-b by RBD snapshot mirroring (DR cluster \"DR\") and synced; drbook talks to both over their real APIs (config: {})",
        vms.len(),
        config_path.display()
    ));

    chapter(2, "writes on site-a since its last mirror snapshot");
    let at_risk = write_each(&sim, &vms, "site-a", 3)?;
    say("3 writes to each VM: the next scheduled snapshot has not carried them yet");

    chapter(3, "disaster: site-a goes dark");
    sim.disaster("site-a").await.map_err(Error::Failed)?;
    say("site-a's Mold and Glue stop answering; mirroring from it stops");

    let state_dir = dir.join(".drbook");
    chapter(4, &format!("drbook run failover --yes --var {GROUPS}"));
    runbook(&config, "failover", &[GROUPS], &state_dir).await?;

    chapter(5, "work goes on at site-b");
    let on_dr = write_each(&sim, &vms, "site-b", 5)?;
    say("5 writes to each VM, now running on site-b");

    chapter(6, "site-a is repaired and comes back");
    sim.recover("site-a").await.map_err(Error::Failed)?;
    say("its VMs power on again, on their old data: both sites now hold primary images");

    chapter(7, &format!("drbook run failback --yes --var {GROUPS}"));
    runbook(&config, "failback", &[GROUPS], &state_dir).await?;

    chapter(8, "the ledger: which writes survived");
    let proved = ledger_proof(&sim, &vms, &at_risk, &on_dr)?;
    sim.shutdown().await;
    term::line("");
    if proved {
        term::line(&format!(
            "Done in {}: no write made on the DR site was lost, and only the writes failover reported at risk were. Next: drbook sim --write-config /tmp/dr.toml, then drbook -c /tmp/dr.toml run status",
            Human(started.elapsed())
        ));
        Ok(ExitCode::SUCCESS)
    } else {
        term::eline("drbook demo: the ledger does not match the story above (see the table)");
        Ok(ExitCode::from(crate::error::exit::FAILURE))
    }
}

fn chapter(n: usize, title: &str) {
    chapter_of(n, 8, title);
}

fn chapter_of(n: usize, of: usize, title: &str) {
    term::line("");
    term::line(&format!("==> {n}/{of} {title}"));
}

fn say(text: &str) {
    term::line(&format!("    {text}"));
}

/// Runs a shipped runbook with `--yes` and `vars`; a failure ends the demo.
async fn runbook(
    config: &Config,
    name: &str,
    vars: &[&str],
    state_dir: &std::path::Path,
) -> Result<(), Error> {
    let args = RunArgs {
        script: PathBuf::from(name),
        vars: vars.iter().map(ToString::to_string).collect(),
        yes: true,
        plan: false,
        resume: None,
        stdlib: super::StdlibDir { stdlib: None },
        state: super::StateDir {
            state_dir: Some(state_dir.to_path_buf()),
        },
    };
    let code = super::run::run(config, &args, OutputFormat::Text, None).await?;
    if code == ExitCode::SUCCESS {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "the {name} runbook did not finish (its journal is under {}); the demo stops here",
            state_dir.display()
        )))
    }
}

fn vm_names(sim: &Sim) -> Vec<String> {
    sim.state()["sites"]["site-a"]["vms"]
        .as_array()
        .map(|vms| {
            vms.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `count` writes to each VM on `site`; the sequence numbers written, per VM.
fn write_each(
    sim: &Sim,
    vms: &[String],
    site: &str,
    count: u64,
) -> Result<Vec<BTreeSet<u64>>, Error> {
    vms.iter()
        .map(|vm| {
            Ok(writes_of(
                &sim.write(vm, site, count).map_err(Error::Failed)?,
            ))
        })
        .collect()
}

/// Every write sequence number a `/write` answer reports, over all of the VM's images.
fn writes_of(answer: &Value) -> BTreeSet<u64> {
    answer["writes"]
        .as_object()
        .into_iter()
        .flat_map(|images| images.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_u64)
        .collect()
}

/// What each site's images of a VM hold.
fn held(sim: &Sim, vm: &str, site: &str) -> Result<BTreeSet<u64>, Error> {
    let ledger = sim.ledger(vm).map_err(Error::Failed)?;
    Ok(ledger["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["sites"][site].as_array())
        .flatten()
        .filter_map(Value::as_u64)
        .collect())
}

/// Prints the table and says whether the story holds: every DR-site write is on site-a, and
/// the at-risk writes are gone from both sites.
fn ledger_proof(
    sim: &Sim,
    vms: &[String],
    at_risk: &[BTreeSet<u64>],
    on_dr: &[BTreeSet<u64>],
) -> Result<bool, Error> {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(vec![
        "VM",
        "written on site-b",
        "on site-a now",
        "at risk at the disaster",
        "lost",
    ]);
    let mut ok = true;
    for ((vm, risk), dr) in vms.iter().zip(at_risk).zip(on_dr) {
        let home = held(sim, vm, "site-a")?;
        let back = dr.iter().filter(|w| home.contains(w)).count();
        let lost = risk.iter().filter(|w| !home.contains(w)).count();
        ok &= back == dr.len();
        table.add_row(vec![
            vm.clone(),
            format!("{} writes", dr.len()),
            format!("{back} of {}", dr.len()),
            format!("{} writes", risk.len()),
            if lost == 0 {
                "none".to_string()
            } else {
                format!("{lost}, all at risk")
            },
        ]);
    }
    for line in table.to_string().lines() {
        say(line.trim_end());
    }
    say(
        "writes made after site-a's last replicated snapshot never left it; the failback's resync replaced site-a's copies with site-b's",
    );
    Ok(ok)
}
