//! Which way each mirrored VM is protected: its home, the site where it runs in normal
//! operation. Mold's records cannot say (a map row has the same shape both ways, and
//! `READY`/`SYNCING` only tells where an image is primary now), so drbook keeps it as a
//! resource tag on both sites' VMs (Mold spec §4.1) — `drbook.dr=home` on the VM at home,
//! `drbook.dr=mirror` on its mirrored VM — where it lives with the sites and outlasts any
//! drbook machine.

use std::collections::BTreeMap;

use futures_util::future::join_all;

use serde_json::json;

use super::outcome::Outcome;
use super::status::{Role, VmMirror};
use super::unknown::{Api, Fact, Unreadable};
use super::{Dr, DrError};

/// The tag's key.
pub const TAG: &str = "drbook.dr";
/// Its value on the VM at home.
pub const HOME: &str = "home";
/// Its value on the mirrored VM.
pub const MIRROR: &str = "mirror";

const LIST_TAGS: &str = "listTags";

/// Each site's `drbook.dr` tags: VM id → value, or why the site's tags could not be read.
pub(crate) type SiteTags = BTreeMap<String, Result<BTreeMap<String, String>, Unreadable>>;

/// A VM's home from its two copies' tags, `(site, tag value)` each: `Ok(None)` when neither
/// carries one (the direction was never recorded), an error text when they contradict each
/// other. One tag alone is enough: a protection whose second tag was never written still
/// says which copy is at home.
pub fn home_of(copies: [(&str, Option<&str>); 2]) -> Result<Option<String>, String> {
    let mut home = None;
    for (i, (site, value)) in copies.iter().enumerate() {
        let other = copies[1 - i].0;
        let says = match *value {
            None => continue,
            Some(HOME) => *site,
            Some(MIRROR) => other,
            Some(v) => {
                return Err(format!(
                    "{site}'s copy is tagged {TAG}={v}, which is neither {HOME} nor {MIRROR}"
                ));
            }
        };
        match home {
            Some(h) if h != says => {
                return Err(format!(
                    "the copies' {TAG} tags contradict each other ({}: {}, {}: {})",
                    copies[0].0,
                    copies[0].1.unwrap_or("none"),
                    copies[1].0,
                    copies[1].1.unwrap_or("none")
                ));
            }
            _ => home = Some(says),
        }
    }
    Ok(home.map(str::to_string))
}

/// A VM's home as a fact: from its copies' VM ids (`None` for a copy drbook did not see) and
/// the sites' tags; unknown when a site's tags could not be read, or when they contradict.
pub(crate) fn home_fact(
    copies: [(&str, Option<&str>); 2],
    tags: &SiteTags,
) -> Fact<Option<String>> {
    let mut values = [None, None];
    for (i, (site, id)) in copies.iter().enumerate() {
        match tags.get(*site) {
            Some(Err(u)) => return Fact::Unknown(std::sync::Arc::new(u.clone())),
            Some(Ok(by_id)) => values[i] = id.and_then(|id| by_id.get(id)).map(String::as_str),
            None => {}
        }
    }
    match home_of([(copies[0].0, values[0]), (copies[1].0, values[1])]) {
        Ok(home) => Fact::Known(home),
        Err(why) => Fact::Unknown(std::sync::Arc::new(Unreadable {
            site: copies[0].0.to_string(),
            api: Api::Mold,
            command: format!("{LIST_TAGS} {TAG}"),
            error: why,
            dark: false,
        })),
    }
}

impl Dr {
    /// Every configured site's `drbook.dr` tags, read at once (one `listTags` per site).
    pub(crate) async fn home_tags(&self, sites: &[&str]) -> SiteTags {
        let reads = sites.iter().map(|site| async move {
            let read = async {
                let h = self.handle(site)?;
                let tags: Vec<crate::mold::types::ResourceTag> = h
                    .mold
                    .list(
                        LIST_TAGS,
                        &[
                            ("resourcetype", "UserVm"),
                            ("key", TAG),
                            ("listall", "true"),
                        ],
                        "tag",
                    )
                    .await?;
                Ok::<_, DrError>(
                    tags.into_iter()
                        .filter(|t| t.key.as_deref() == Some(TAG))
                        .filter_map(|t| Some((t.resourceid?, t.value.unwrap_or_default())))
                        .collect(),
                )
            };
            let result = read
                .await
                .map_err(|e| Unreadable::new(site, Api::Mold, LIST_TAGS, &e));
            ((*site).to_string(), result)
        });
        join_all(reads).await.into_iter().collect()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_is_read_from_either_copys_tag() {
        let (a, b) = ("site-a", "site-b");
        assert_eq!(home_of([(a, None), (b, None)]), Ok(None));
        assert_eq!(
            home_of([(a, Some(HOME)), (b, Some(MIRROR))]),
            Ok(Some(a.into()))
        );
        assert_eq!(
            home_of([(a, Some(MIRROR)), (b, Some(HOME))]),
            Ok(Some(b.into()))
        );
        assert_eq!(home_of([(a, None), (b, Some(HOME))]), Ok(Some(b.into())));
        assert_eq!(home_of([(a, Some(MIRROR)), (b, None)]), Ok(Some(b.into())));
        let both = home_of([(a, Some(HOME)), (b, Some(HOME))]).unwrap_err();
        assert!(both.contains("contradict"), "{both}");
        let odd = home_of([(a, Some("yes")), (b, None)]).unwrap_err();
        assert!(odd.contains("neither home nor mirror"), "{odd}");
    }
}
