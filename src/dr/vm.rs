//! VMs: lookup by exact name or id (an unknown or ambiguous name lists close matches), start
//! and stop through Mold's async jobs, bounded concurrent batches, and waiting for `Running`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use super::reconcile::{self, JobFound};
use super::site::SiteHandle;
use super::{Dr, DrError};
use crate::mold::types::VirtualMachine;

/// When one VM's start or stop in a batch was sent and how long it took to its end state
/// (or to its failure): a run report draws each VM's job from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub started: chrono::DateTime<chrono::Utc>,
    pub took: Duration,
}

/// One batch item's result with its span.
type Timed = (Result<Vm, DrError>, Span);

/// A VM on one site.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Vm {
    pub id: String,
    pub name: String,
    /// Mold's state: `Running`, `Stopped`, `Starting`, `Stopping`, … (`unknown` when its site
    /// does not answer).
    pub state: String,
    pub site: String,
    pub host: Option<String>,
    /// Mold's resource tags, key → value (empty when none, or when the VM is known only from a
    /// DR record's map, which carries no tags).
    pub tags: BTreeMap<String, String>,
    /// Its compute offering's name (unknown for a VM known only from a DR record's map).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offering: Option<String>,
}

impl Vm {
    pub(crate) fn from_mold(vm: &VirtualMachine, site: &str) -> Self {
        Self {
            id: vm.id.clone(),
            name: vm.name.clone(),
            state: vm.state.clone(),
            site: site.to_string(),
            host: vm.hostname.clone(),
            tags: vm.tag_map(),
            offering: vm.serviceofferingname.clone(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.state == "Running"
    }

    pub fn is_stopped(&self) -> bool {
        self.state == "Stopped"
    }
}

impl fmt::Display for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} on {}", self.name, self.state, self.site)?;
        if let Some(h) = &self.host {
            write!(f, ", host {h}")?;
        }
        f.write_str(")")
    }
}

/// The VM named `name_or_id` (exact id, else exact name) among `vms` listed on `site`.
pub(crate) fn pick<'a>(
    site: &str,
    name_or_id: &str,
    vms: &'a [VirtualMachine],
) -> Result<&'a VirtualMachine, DrError> {
    if let Some(vm) = vms.iter().find(|v| v.id == name_or_id) {
        return Ok(vm);
    }
    let named: Vec<&VirtualMachine> = vms.iter().filter(|v| v.name == name_or_id).collect();
    match named.as_slice() {
        [one] => Ok(one),
        [] => Err(DrError::NotFound {
            what: format!("VM on {site}"),
            name: name_or_id.to_string(),
            suggestions: crate::suggest::closest(name_or_id, vms.iter().map(|v| &v.name)),
        }),
        many => Err(DrError::Ambiguous {
            what: format!("{} VMs on {site}", many.len()),
            name: name_or_id.to_string(),
            candidates: many
                .iter()
                .map(|v| format!("{} id {} {}", v.name, v.id, v.state))
                .collect(),
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    Start,
    Stop { force: bool },
}

impl Power {
    fn command(self) -> &'static str {
        match self {
            Self::Start => "startVirtualMachine",
            Self::Stop { .. } => "stopVirtualMachine",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop { .. } => "stop",
        }
    }

    fn target_state(self) -> &'static str {
        match self {
            Self::Start => "Running",
            Self::Stop { .. } => "Stopped",
        }
    }
}

/// States in which Mold is already changing the VM: a second start or stop is not sent.
const TRANSITIONAL: [&str; 4] = ["Starting", "Stopping", "Migrating", "Expunging"];

impl Dr {
    pub(crate) async fn list_vms(&self, h: &SiteHandle) -> Result<Vec<VirtualMachine>, DrError> {
        Ok(h.mold.virtual_machines(&[]).await?)
    }

    /// Every VM of a site.
    pub async fn vms(&self, site: &str) -> Result<Vec<Vm>, DrError> {
        let h = self.handle(site)?;
        Ok(self
            .list_vms(h)
            .await?
            .iter()
            .map(|v| Vm::from_mold(v, site))
            .collect())
    }

    /// One VM by exact name or id.
    pub async fn vm(&self, site: &str, name_or_id: &str) -> Result<Vm, DrError> {
        Ok(Vm::from_mold(&self.find_vm(site, name_or_id).await?, site))
    }

    pub(crate) async fn find_vm(
        &self,
        site: &str,
        name_or_id: &str,
    ) -> Result<VirtualMachine, DrError> {
        let h = self.handle(site)?;
        let vms = self.list_vms(h).await?;
        pick(site, name_or_id, &vms).cloned()
    }

    /// Starts a VM and waits for its job; a running VM is returned as it is. Mold's refusal
    /// (e.g. the DR start guards) comes back with its text.
    pub async fn start_vm(&self, site: &str, vm: &str) -> Result<Vm, DrError> {
        let target = self.find_vm(site, vm).await?;
        self.power(site, &target, Power::Start).await
    }

    /// Stops a VM (`force`: Mold's `forced=true`, as the mirroring test does) and waits.
    pub async fn stop_vm(&self, site: &str, vm: &str, force: bool) -> Result<Vm, DrError> {
        let target = self.find_vm(site, vm).await?;
        self.power(site, &target, Power::Stop { force }).await
    }

    pub(crate) async fn start_vm_considering_last_host(
        &self,
        site: &str,
        vm: &VirtualMachine,
    ) -> Result<Vm, DrError> {
        self.power_with(site, vm, Power::Start, true).await
    }

    async fn power(&self, site: &str, vm: &VirtualMachine, power: Power) -> Result<Vm, DrError> {
        self.power_with(site, vm, power, false).await
    }

    async fn power_with(
        &self,
        site: &str,
        vm: &VirtualMachine,
        power: Power,
        consider_last_host: bool,
    ) -> Result<Vm, DrError> {
        let h = self.handle(site)?;
        if vm.state == power.target_state() {
            return Ok(Vm::from_mold(vm, site));
        }
        let fresh;
        let mut vm = vm;
        if reconcile::earlier_attempt().is_some() {
            // Settling an earlier attempt: its job (waited for while it runs) decides; a
            // failed one, or none at all, leaves the VM to be started (stopped) now.
            let action = format!("{} VM {} on {site}", power.verb(), vm.name);
            match self.earlier_job(site, power.command(), Some(&vm.id)).await {
                Ok(None) => {}
                Ok(Some(_)) => {
                    fresh = self.reread_mold_vm(h, &vm.id).await?;
                    if fresh.state == power.target_state() {
                        return Ok(Vm::from_mold(&fresh, site));
                    }
                    vm = &fresh;
                }
                Err(e) => {
                    return Err(reconcile::unsettled(
                        &action,
                        &e,
                        &format!(
                            "check vm(\"{site}\", \"{}\") and {site}'s jobs (listAsyncJobs)",
                            vm.name
                        ),
                    ));
                }
            }
        }
        if TRANSITIONAL.contains(&vm.state.as_str()) {
            return Err(DrError::guard(
                format!("{} VM {} on {site}", power.verb(), vm.name),
                format!("it is {} (Mold is already changing it)", vm.state),
                format!(
                    "wait until it settles, then check it with vm(\"{site}\", \"{}\")",
                    vm.name
                ),
            ));
        }
        let mut params = vec![("id", vm.id.as_str())];
        match power {
            Power::Stop { force } => params.push(("forced", if force { "true" } else { "false" })),
            Power::Start if consider_last_host => params.push(("considerlasthost", "true")),
            Power::Start => {}
        }
        tracing::info!(site, vm = %vm.name, "{}", power.command());
        let sent = chrono::Utc::now();
        match h.mold.call_async(power.command(), &params).await {
            Ok(result) => match result
                .get("virtualmachine")
                .and_then(|v| serde_json::from_value::<VirtualMachine>(v.clone()).ok())
            {
                Some(fresh) => Ok(Vm::from_mold(&fresh, site)),
                None => self.reread_vm(h, &vm.id).await,
            },
            Err(e) => {
                let e = DrError::from(e);
                if !e.outcome_unknown() {
                    return Err(e.about(&vm.name));
                }
                // The job may have run: look for it, then at the VM, instead of sending again.
                if let Ok(Some(JobFound::Failed(failed))) = self
                    .job_of_lost_answer(site, power.command(), Some(&vm.id), sent, &e)
                    .await
                {
                    return Err(failed.about(&vm.name));
                }
                let found = self.reread_vm(h, &vm.id).await;
                match found {
                    Ok(fresh) if fresh.state == power.target_state() => Ok(fresh),
                    Ok(fresh) => Err(DrError::OutcomeUnknown {
                        action: format!("{} VM {} on {site}", power.verb(), vm.name),
                        cause: e.lost_answer(),
                        found: format!("{} is {}", fresh.name, fresh.state),
                        advice: "a resume settles it by reading".to_string(),
                    }),
                    Err(read) => Err(DrError::OutcomeUnknown {
                        action: format!("{} VM {} on {site}", power.verb(), vm.name),
                        cause: e.lost_answer(),
                        found: format!("nothing (the re-read failed too: {read})"),
                        advice: format!("check health(\"{site}\"); a resume settles it"),
                    }),
                }
            }
        }
    }

    /// One VM as Mold lists it now.
    async fn reread_mold_vm(&self, h: &SiteHandle, id: &str) -> Result<VirtualMachine, DrError> {
        let found = h.mold.virtual_machines(&[("id", id)]).await?;
        found
            .into_iter()
            .find(|v| v.id == id)
            .ok_or_else(|| DrError::NotFound {
                what: format!("VM id on {}", h.name),
                name: id.to_string(),
                suggestions: Vec::new(),
            })
    }

    async fn reread_vm(&self, h: &SiteHandle, id: &str) -> Result<Vm, DrError> {
        let found = h.mold.virtual_machines(&[("id", id)]).await?;
        found
            .iter()
            .find(|v| v.id == id)
            .map(|v| Vm::from_mold(v, &h.name))
            .ok_or_else(|| DrError::NotFound {
                what: format!("VM id on {}", h.name),
                name: id.to_string(),
                suggestions: Vec::new(),
            })
    }

    /// Starts many VMs, `concurrency` at a time, within `timeout` overall. Every VM gets its
    /// own result, in input order; a failure never stops the others.
    pub async fn start_vms(
        &self,
        site: &str,
        vms: &[String],
        concurrency: usize,
        timeout: Duration,
    ) -> Vec<(String, Result<Vm, DrError>, Span)> {
        self.batch(site, vms, Power::Start, concurrency, timeout)
            .await
    }

    /// Stops many VMs; see [`Dr::start_vms`].
    pub async fn stop_vms(
        &self,
        site: &str,
        vms: &[String],
        force: bool,
        concurrency: usize,
        timeout: Duration,
    ) -> Vec<(String, Result<Vm, DrError>, Span)> {
        self.batch(site, vms, Power::Stop { force }, concurrency, timeout)
            .await
    }

    async fn batch(
        &self,
        site: &str,
        names: &[String],
        power: Power,
        concurrency: usize,
        timeout: Duration,
    ) -> Vec<(String, Result<Vm, DrError>, Span)> {
        let deadline = Instant::now() + timeout;
        // One list resolves every name.
        let listed = match self.handle(site) {
            Ok(h) => self.list_vms(h).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        // Collected first: a closure inside the stream would make the future not `Send`.
        let work: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let one = self.batch_one(site, name, &listed, power, deadline, timeout);
                async move { (i, one.await) }
            })
            .collect();
        // Unordered: a slot freed by any VM takes the next one at once, instead of waiting
        // for the earlier VMs of the window to finish; the results are put back in order.
        let mut results: Vec<(usize, Timed)> = stream::iter(work)
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        results.sort_by_key(|(i, _)| *i);
        names
            .iter()
            .cloned()
            .zip(results.into_iter().map(|(_, r)| r))
            .map(|(name, (r, span))| (name, r, span))
            .collect()
    }

    /// One VM of a batch, resolved against the batch's one VM list, with when its command
    /// was sent (after it got a slot) and how long it took to its end state.
    async fn batch_one(
        &self,
        site: &str,
        name: &str,
        listed: &Result<Vec<VirtualMachine>, String>,
        power: Power,
        deadline: Instant,
        timeout: Duration,
    ) -> (Result<Vm, DrError>, Span) {
        let started = chrono::Utc::now();
        let clock = Instant::now();
        let result = self
            .batch_send(site, name, listed, power, deadline, timeout)
            .await;
        (
            result,
            Span {
                started,
                took: clock.elapsed(),
            },
        )
    }

    async fn batch_send(
        &self,
        site: &str,
        name: &str,
        listed: &Result<Vec<VirtualMachine>, String>,
        power: Power,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vm, DrError> {
        let vms = match listed {
            Ok(vms) => vms,
            Err(why) => {
                return Err(DrError::guard(
                    format!("{} VM {name} on {site}", power.verb()),
                    format!("the VM list could not be read: {why}"),
                    format!("check health(\"{site}\")"),
                ));
            }
        };
        let vm = pick(site, name, vms)?;
        match tokio::time::timeout_at(deadline, self.power(site, vm, power)).await {
            Ok(result) => result,
            Err(_) => Err(DrError::Timeout {
                what: format!("{} of VM {name} on {site}", power.verb()),
                waited: timeout,
                pending: vec![format!(
                    "its job may still finish: check vm(\"{site}\", \"{name}\") before retrying"
                )],
            }),
        }
    }

    /// Waits until every named VM is `Running` on `site`; one VM list per poll.
    pub async fn wait_running(
        &self,
        site: &str,
        vms: &[String],
        timeout: Duration,
    ) -> Result<Vec<Vm>, DrError> {
        let h = self.handle(site)?;
        let started = Instant::now();
        loop {
            let listed = self.list_vms(h).await;
            let mut pending = Vec::new();
            if let Ok(listed) = &listed {
                let mut found = Vec::with_capacity(vms.len());
                for name in vms {
                    let vm = Vm::from_mold(pick(site, name, listed)?, site);
                    if !vm.is_running() {
                        pending.push(format!("{} is {}", vm.name, vm.state));
                    }
                    found.push(vm);
                }
                if pending.is_empty() {
                    return Ok(found);
                }
            }
            if let Err(e) = &listed {
                pending.push(format!("the last VM list failed: {e}"));
            }
            let what = format!("VMs to be Running on {site}");
            if started.elapsed() >= timeout {
                return Err(DrError::Timeout {
                    what,
                    waited: started.elapsed(),
                    pending,
                });
            }
            self.report_wait(&what, &pending, started, timeout);
            tokio::time::sleep(
                self.waits
                    .poll
                    .min(timeout.saturating_sub(started.elapsed())),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(id: &str, name: &str) -> VirtualMachine {
        serde_json::from_value(serde_json::json!({"id": id, "name": name, "state": "Running"}))
            .unwrap()
    }

    #[test]
    fn pick_by_id_or_exact_name() {
        let vms = vec![vm("id-1", "web"), vm("id-2", "web"), vm("id-3", "db")];
        assert_eq!(pick("site-a", "id-2", &vms).unwrap().id, "id-2");
        assert_eq!(pick("site-a", "db", &vms).unwrap().id, "id-3");
        let e = pick("site-a", "web", &vms).unwrap_err().to_string();
        assert_eq!(
            e,
            "\"web\" is ambiguous (2 VMs on site-a): web id id-1 Running, web id id-2 Running — give the id instead"
        );
        let e = pick("site-a", "dbx", &vms).unwrap_err().to_string();
        assert_eq!(e, "no VM on site-a \"dbx\"; closest: db");
    }
}
