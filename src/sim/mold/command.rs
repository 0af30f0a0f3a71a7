//! A Mold command as the simulator serves it: one descriptor per command, in its family's
//! table, the only place its API name, its job's Java class and its event are written.

use std::time::{Duration, Instant};

use crate::sim::params::Params;
use crate::sim::world::{ApiResult, JobCommand, JobWork, World};

/// A command's work under the world's lock, answering at once.
pub type Handler = fn(&mut World, &Ctx<'_>) -> ApiResult;

/// How a command answers.
pub enum Kind {
    /// The answer is the command's result.
    Sync(Handler),
    /// The answer is a job's id (and, for creates, the entity's); `class` is the job's
    /// `cmd` as `queryAsyncJobResult` and `listAsyncJobs` show it.
    Async {
        class: &'static str,
        submit: Handler,
    },
    /// Mold holds the request until the work is done (the VM-level DR commands, spec §3.10).
    Long(Drill),
}

/// The five long VM-level commands of the mirroring test; their work is in `drill.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drill {
    /// Stops the mirrored VM on the DR site.
    Stop,
    /// Waits until the DR side's images can run, then starts the mirrored VM there.
    Start,
    /// A mirror snapshot of the VM's images, then waits until the peer has it.
    TakeSnapshot,
    /// The DR side's images become primary, ours replicas (test step 3).
    Demote,
    /// The roles swap back (test step 7).
    Promote,
}

/// One Mold command.
pub struct Command {
    /// The API name, as sent in `command=`.
    pub name: &'static str,
    pub kind: Kind,
    /// The event type the simulator logs for it (`DR.*`, spec §3.0), if any.
    pub event: Option<&'static str>,
}

impl Command {
    /// Whether Mold holds the request for minutes (a client needs its long timeout).
    pub fn is_long(&self) -> bool {
        matches!(self.kind, Kind::Long(_))
    }

    /// The Java class of its async job; `None` for a synchronous command.
    pub fn job_class(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Async { class, .. } => Some(class),
            Kind::Sync(_) | Kind::Long(_) => None,
        }
    }

    /// Logs this command's event on `site`, as Mold's event log would; a command without one
    /// logs nothing.
    pub fn record_event(&self, w: &mut World, site: &str, state: &str, description: &str) {
        if let Some(kind) = self.event {
            w.event(site, kind, state, description);
        }
    }
}

/// One request's context.
pub struct Ctx<'a> {
    pub site: String,
    pub command: &'static Command,
    pub params: &'a Params,
    pub now: Instant,
}

impl Ctx<'_> {
    /// The API name as sent (the framework's 431 texts quote it).
    pub fn name(&self) -> &'static str {
        self.command.name
    }

    /// Submits this command's async job on this request's site; `work` runs after `delay`.
    pub fn submit_job(
        &self,
        world: &mut World,
        instance: Option<(&str, String)>,
        delay: Duration,
        work: JobWork,
    ) -> String {
        let class = self
            .command
            .job_class()
            .unwrap_or_else(|| panic!("{} is not async: it submits no job", self.command.name));
        world.submit_job(
            self.site.clone(),
            JobCommand {
                name: self.command.name,
                class,
            },
            instance,
            self.now,
            delay,
            work,
        )
    }
}

#[cfg(test)]
pub mod tests {
    use super::{Command, Kind};

    /// How a command answers, for comparing a table with the spec's rows.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Answer {
        Sync,
        Async,
        Long,
    }

    /// A family's table as (name, how it answers, event) rows.
    pub fn rows(table: &[&Command]) -> Vec<(&'static str, Answer, Option<&'static str>)> {
        table
            .iter()
            .map(|c| {
                let answer = match c.kind {
                    Kind::Sync(_) => Answer::Sync,
                    Kind::Async { .. } => Answer::Async,
                    Kind::Long(_) => Answer::Long,
                };
                (c.name, answer, c.event)
            })
            .collect()
    }

    /// The class of a DR command's job: `…admin.dr.<Name>Cmd` (spec §0).
    pub fn dr_class(name: &str) -> String {
        let mut chars = name.chars();
        let upper = chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_default();
        format!("org.apache.cloudstack.api.command.admin.dr.{upper}Cmd")
    }
}
