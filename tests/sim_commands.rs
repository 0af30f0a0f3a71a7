//! The simulator's Mold command table against drbook's client, and the job → command path
//! that reads it. Neither module imports the other: this test holds both.

use std::time::Duration;

use drbook::sim::faults::Api;
use drbook::sim::world::{ApiError, JobCommand, Step};
use drbook::sim::{Sim, SimConfig, config::SimTiming, mold};

/// Whether Mold holds a command's request (the simulator's descriptor) and whether drbook
/// gives it its long timeout (the client) must agree, command by command.
#[test]
fn the_simulator_and_the_client_agree_on_which_commands_are_long() {
    let mut long = Vec::new();
    for command in mold::all() {
        assert_eq!(
            command.is_long(),
            drbook::mold::client::is_long_command(command.name),
            "{}: the simulator says {}, the client the opposite",
            command.name,
            if command.is_long() { "long" } else { "short" },
        );
        if command.is_long() {
            long.push(command.name);
        }
    }
    // Spec §3.10: the five VM-level test commands, and only they.
    long.sort_unstable();
    assert_eq!(
        long,
        [
            "demoteDisasterRecoveryClusterVm",
            "promoteDisasterRecoveryClusterVm",
            "startDisasterRecoveryClusterVm",
            "stopDisasterRecoveryClusterVm",
            "takeSnapshotDisasterRecoveryClusterVm",
        ]
    );
}

/// A job its pre-check turns away ("Please try again later.") changed nothing: it is counted
/// as refused under the command that submitted it, read from the job's descriptor.
#[tokio::test]
async fn a_job_turned_away_is_refused_under_its_own_command() {
    let mut config = SimConfig::default().with_vms(1);
    config.timing = SimTiming::fast();
    config.glue_tls = false;
    let sim = Sim::start(config).await.expect("simulator starts");
    for name in [
        "demoteDisasterRecoveryCluster",
        "createDisasterRecoveryClusterVm",
        "startVirtualMachine",
    ] {
        let command = mold::find(name, true).expect("a simulated command");
        sim.with_world(|w, now| {
            w.submit_job(
                "site-b".into(),
                JobCommand {
                    name: command.name,
                    class: command.job_class().expect("an async command"),
                },
                None,
                now,
                Duration::ZERO,
                Box::new(|_, _| {
                    Step::Done(Err(ApiError::internal(
                        "peer state is syncing in volume path : x. Please try again later.",
                    )))
                }),
            );
        });
        // The next look at the world runs the due job.
        sim.with_world(|_, _| ());
        assert_eq!(sim.refused().count("site-b", Api::Mold, name), 1, "{name}");
    }
    assert_eq!(sim.refused().total(), 3);
    sim.shutdown().await;
}
