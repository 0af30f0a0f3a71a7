//! Recording which way each mirrored VM is protected: its home, kept as a resource tag on
//! both sites' copies (`home_tags.rs` reads them), written when drbook protects a VM, and
//! inferred at steady state for protections made elsewhere (`record_homes`).

use serde_json::json;

use super::home_tags::SiteTags;
pub use super::home_tags::{HOME, MIRROR, TAG};
use super::outcome::Outcome;
use super::status::{Role, VmMirror};
use super::unknown::Fact;
use super::{Dr, DrError};

/// One copy of a mirrored VM, and the tag value it should carry.
struct Copy<'a> {
    site: &'a str,
    vm_id: &'a str,
    value: &'static str,
}

/// Where a VM is at home at steady state, as its copies show it: running on one site, on
/// images primary there, stopped on the other over replicas. `Err` says why it cannot be told.
fn steady_home(vm: &VmMirror, protected: &str, dr: &str) -> Result<String, String> {
    let (Some(p), Some(d)) = (&vm.primary_vm, &vm.dr_vm) else {
        return Err("one of its copies is missing".into());
    };
    let roles = |side: fn(&super::status::VolumeMirror) -> &Fact<Role>| -> Option<Vec<Role>> {
        vm.volumes
            .iter()
            .map(|v| side(v).known().copied())
            .collect()
    };
    let (Some(p_roles), Some(d_roles)) = (roles(|v| &v.primary_role), roles(|v| &v.dr_role)) else {
        return Err("its images' roles could not be read on both sites".into());
    };
    let all = |roles: &[Role], role: Role| !roles.is_empty() && roles.iter().all(|r| *r == role);
    if p.is_running()
        && d.is_stopped()
        && all(&p_roles, Role::Primary)
        && all(&d_roles, Role::Replica)
    {
        return Ok(protected.to_string());
    }
    if d.is_running()
        && p.is_stopped()
        && all(&d_roles, Role::Primary)
        && all(&p_roles, Role::Replica)
    {
        return Ok(dr.to_string());
    }
    Err(format!(
        "it is {} on {protected} and {} on {dr}, and its images are not all primary where it runs",
        p.state, d.state
    ))
}

impl Dr {
    /// Writes the two tags that record a VM's home, reading first: a tag already there with
    /// the right value is left alone, one with the other value is refused. A `createTags`
    /// whose answer was lost is settled by reading the tags again, never by sending again.
    async fn write_home(
        &self,
        action: &str,
        vm: &str,
        copies: [Copy<'_>; 2],
    ) -> Result<u32, DrError> {
        let mut written = 0;
        for copy in copies {
            let has = self.home_tags(&[copy.site]).await;
            let value = |tags: &SiteTags| -> Result<Option<String>, DrError> {
                match tags.get(copy.site) {
                    Some(Ok(by_id)) => Ok(by_id.get(copy.vm_id).cloned()),
                    Some(Err(u)) => Err(DrError::unknown(
                        action,
                        &format!("the {TAG} tags of {}", copy.site),
                        u,
                    )),
                    None => Ok(None),
                }
            };
            match value(&has)? {
                Some(v) if v == copy.value => continue,
                Some(v) => {
                    return Err(DrError::guard(
                        action,
                        format!(
                            "{vm}'s copy on {} is tagged {TAG}={v}, not {}",
                            copy.site, copy.value
                        ),
                        format!(
                            "check where {vm} runs in normal operation; if the tag is wrong, delete it (deleteTags) and run this again"
                        ),
                    ));
                }
                None => {}
            }
            let h = self.handle(copy.site)?;
            let sent_at = chrono::Utc::now();
            let sent = h
                .mold
                .call_async(
                    "createTags",
                    &[
                        ("resourcetype", "UserVm"),
                        ("resourceids", copy.vm_id),
                        ("tags[0].key", TAG),
                        ("tags[0].value", copy.value),
                    ],
                )
                .await;
            if let Err(e) = sent {
                let e = DrError::from(e);
                if e.outcome_unknown() {
                    // A lost answer's job may not have run yet: found, it is waited for.
                    let _ = self
                        .job_of_lost_answer(copy.site, "createTags", None, sent_at, &e)
                        .await;
                }
                // Whatever the error said, the tags say whether it took effect.
                let again = self.home_tags(&[copy.site]).await;
                if value(&again)?.as_deref() != Some(copy.value) {
                    return Err(e.about(vm));
                }
            }
            written += 1;
        }
        Ok(written)
    }

    /// Records the home of `vm_name`, whose copies are `home_copy` (at home) and
    /// `mirror_copy` (its mirrored VM), each `(site, VM id)`.
    pub(crate) async fn record_home(
        &self,
        action: &str,
        vm_name: &str,
        home_copy: (&str, &str),
        mirror_copy: (&str, &str),
    ) -> Result<u32, DrError> {
        self.write_home(
            action,
            vm_name,
            [
                Copy {
                    site: home_copy.0,
                    vm_id: home_copy.1,
                    value: HOME,
                },
                Copy {
                    site: mirror_copy.0,
                    vm_id: mirror_copy.1,
                    value: MIRROR,
                },
            ],
        )
        .await
    }

    /// Records the home of every mirrored VM of `cluster` that has none: inferred at steady
    /// state (running on one site over primary images, stopped on the other over replicas).
    /// Every VM is checked before any tag is written: one whose home cannot be inferred, or
    /// whose recorded home is unknown, refuses the whole act, naming it.
    /// With `only`, just those mirrored VMs (by name).
    pub async fn record_homes(
        &self,
        cluster: &str,
        only: Option<&[String]>,
    ) -> Result<Outcome, DrError> {
        let action = format!("record the home of each mirrored VM of DR cluster {cluster:?}");
        let status = self.mirror_status(cluster).await?;
        let (protected, dr) = (status.primary_site.clone(), status.dr_site.clone());
        if let Some(names) = only {
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !status.vms.iter().any(|v| &v.name == *n))
                .collect();
            if !missing.is_empty() {
                return Err(DrError::guard(
                    &action,
                    format!("not mirrored in DR cluster {cluster:?}: {missing:?}"),
                    "name mirrored VMs (mirror_status lists them)",
                ));
            }
        }
        let chosen: Vec<&VmMirror> = status
            .vms
            .iter()
            .filter(|v| only.is_none_or(|names| names.contains(&v.name)))
            .collect();
        let mut plan = Vec::new();
        let mut refused = Vec::new();
        for vm in chosen.iter().copied() {
            match &vm.home {
                Fact::Known(Some(_)) => {}
                Fact::Unknown(u) => {
                    refused.push(format!("{}: its recorded home is unknown ({u})", vm.name));
                }
                Fact::Known(None) => match steady_home(vm, &protected, &dr) {
                    Ok(home) => plan.push((vm, home)),
                    Err(why) => refused.push(format!("{}: {why}", vm.name)),
                },
            }
        }
        if !refused.is_empty() {
            return Err(DrError::guard(
                &action,
                format!(
                    "the home of {} VM(s) cannot be told: {}",
                    refused.len(),
                    refused.join("; ")
                ),
                "bring each to steady state (running at home, its mirrored VM stopped, mirroring synced) and run this again; nothing was recorded",
            ));
        }
        let mut recorded = Vec::new();
        let mut tags = 0;
        for (vm, home) in plan {
            let (Some(p), Some(d)) = (&vm.primary_vm, &vm.dr_vm) else {
                continue;
            };
            let (at_home, away) = if home == protected {
                (
                    (protected.as_str(), p.id.as_str()),
                    (dr.as_str(), d.id.as_str()),
                )
            } else {
                (
                    (dr.as_str(), d.id.as_str()),
                    (protected.as_str(), p.id.as_str()),
                )
            };
            tags += self.record_home(&action, &vm.name, at_home, away).await?;
            recorded.push(json!({"vm": vm.name, "home": home}));
        }
        let already = chosen.len() - recorded.len();
        Ok(Outcome {
            action,
            site: protected.clone(),
            message: format!(
                "recorded the home of {} mirrored VM(s) ({already} already recorded; {tags} tag(s) written)",
                recorded.len()
            ),
            detail: json!({"recorded": recorded, "already": already, "tags_written": tags}),
        })
    }
}
