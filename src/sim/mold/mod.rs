//! A site's Mold API at `/client/api`, as Mold's `ApiServer` serves it: GET or POST form,
//! the signature verified with the site's admin key pair and algorithm, `response=json`
//! envelopes, errors with `X-Description`, and the commands the DR feature and the runbooks
//! use (spec `mold-api.md`).
//!
//! Every command is one [`Command`] in its family's table; the request path, the long
//! commands' hold, job submission, the event log and the job → command mapping read it.
//! The families: `standard` (CloudStack's), `volumes` (volumes and the VMs deployed for,
//! attached to and destroyed with them), `jobs`, `tags` (resource tags), and the DR plugin's — `records`
//! (records and pairing), `cluster_ops`, `mirrored_vms`, `drill` (the long VM-level test
//! commands).

mod cluster_ops;
mod command;
mod drill;
mod envelope;
mod glue_reads;
mod jobs;
mod mirrored_vms;
mod records;
mod request;
mod signature;
mod standard;
mod start_guard;
mod tags;
mod volumes;

pub use command::Drill;
pub use command::{Command, Ctx, Handler, Kind};
pub use mirrored_vms::{MirrorVmRequest, create_mirror_vm};
pub use request::{handle, is_read};

/// The families Mold always registers.
static CORE: [&[&Command]; 4] = [
    standard::COMMANDS,
    volumes::COMMANDS,
    jobs::COMMANDS,
    tags::COMMANDS,
];

/// The DR plugin's families: registered only while `cloud.dr.service.enabled` is true.
static DR_PLUGIN: [&[&Command]; 4] = [
    records::COMMANDS,
    cluster_ops::COMMANDS,
    mirrored_vms::COMMANDS,
    drill::COMMANDS,
];

/// Every command the simulator serves, the DR plugin's included.
pub fn all() -> impl Iterator<Item = &'static Command> {
    CORE.iter()
        .chain(&DR_PLUGIN)
        .flat_map(|t| t.iter().copied())
}

/// The command `name` names (as sent: case matters), if this Mold registers it.
pub fn find(name: &str, dr_enabled: bool) -> Option<&'static Command> {
    let dr: &[&[&Command]] = if dr_enabled { &DR_PLUGIN } else { &[] };
    CORE.iter()
        .chain(dr)
        .flat_map(|t| t.iter().copied())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn each_name_is_one_command() {
        let mut seen = BTreeSet::new();
        for c in all() {
            assert!(seen.insert(c.name), "{} is described twice", c.name);
        }
    }

    #[test]
    fn the_dr_plugin_registers_the_spec_s_20_commands() {
        // Spec §8.5: exactly the 20 commands of §3.0.
        let dr: Vec<&str> = DR_PLUGIN
            .iter()
            .flat_map(|t| t.iter().map(|c| c.name))
            .collect();
        assert_eq!(dr.len(), 20);
        for name in dr {
            assert!(find(name, true).is_some(), "{name}");
            assert!(find(name, false).is_none(), "{name} without the DR service");
        }
        assert!(find("listVirtualMachines", false).is_some());
        assert!(
            find("ListVirtualMachines", true).is_none(),
            "names are exact"
        );
    }

    #[test]
    fn every_async_command_has_a_job_class_and_only_those() {
        for c in all() {
            let async_ = matches!(c.kind, Kind::Async { .. });
            assert_eq!(c.job_class().is_some(), async_, "{}", c.name);
            // Admin commands, but for the tags', which CloudStack has only as user commands.
            if let Some(class) = c.job_class() {
                assert!(
                    class.starts_with("org.apache.cloudstack.api.command.admin.")
                        || class.starts_with("org.apache.cloudstack.api.command.user.tag."),
                    "{class}"
                );
            }
        }
    }

    #[test]
    fn only_dr_commands_log_dr_events_and_no_read_is_long() {
        for c in all() {
            if let Some(event) = c.event {
                assert!(event.starts_with("DR."), "{}: {event}", c.name);
                assert!(!CORE.iter().any(|t| t.iter().any(|x| x.name == c.name)));
            }
            if c.is_long() {
                assert!(!is_read(c.name), "{}", c.name);
            }
        }
    }
}
