//! CloudStack's resource tags (Mold spec §4.1): `createTags` and `deleteTags` (async jobs)
//! and `listTags`, for VMs (`resourcetype=UserVm`, the one type the simulator keeps tags on).
//! A VM's tags also show in `listVirtualMachines`' `tags`.

use serde_json::{Value, json};

use super::command::{Command, Ctx, Kind};
use super::envelope::{list, page};
use crate::sim::params::Params;
use crate::sim::world::{ApiError, ApiResult, Step, World};

pub static CREATE_TAGS: Command = Command {
    name: "createTags",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.user.tag.CreateTagsCmd",
        submit: create_tags,
    },
    event: None,
};

pub static DELETE_TAGS: Command = Command {
    name: "deleteTags",
    kind: Kind::Async {
        class: "org.apache.cloudstack.api.command.user.tag.DeleteTagsCmd",
        submit: delete_tags,
    },
    event: None,
};

pub static LIST_TAGS: Command = Command {
    name: "listTags",
    kind: Kind::Sync(|w, ctx| Ok(list_tags(w, ctx))),
    event: None,
};

pub static COMMANDS: &[&Command] = &[&CREATE_TAGS, &DELETE_TAGS, &LIST_TAGS];

/// The type name Mold's texts use for a VM.
const USER_VM: &str = "UserVm";

/// `resourcetype`, checked in the job as Mold's service does: only `UserVm` is kept here.
fn resource_type(given: &str) -> Result<(), ApiError> {
    if given.eq_ignore_ascii_case(USER_VM) {
        Ok(())
    } else {
        Err(ApiError::param(format!("Invalid resource type {given}")))
    }
}

/// `resourceids`: a comma-separated list.
fn ids(p: &Params, command: &str) -> Result<Vec<String>, ApiError> {
    Ok(p.required(command, "resourceids")?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// `tags[N].key` / `tags[N].value`, in index order; an entry without a key names nothing.
fn tag_entries(p: &Params) -> Vec<(String, Option<String>)> {
    p.entries("tags")
        .into_iter()
        .filter_map(|e| Some((e.get("key")?.clone(), e.get("value").cloned())))
        .collect()
}

fn create_tags(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let (p, c) = (ctx.params, ctx.name());
    let tags = tag_entries(p);
    if tags.is_empty() {
        return Err(ApiError::missing(c, "tags"));
    }
    let kind = p.required(c, "resourcetype")?.to_string();
    let ids = ids(p, c)?;
    let site = ctx.site.clone();
    let jobid = ctx.submit_job(
        world,
        None,
        world.config.timing.job,
        Box::new(move |w: &mut World, _| Step::Done(add(w, &site, &kind, &ids, &tags))),
    );
    Ok(json!({"jobid": jobid}))
}

/// Every tag on every resource, or none: one transaction in Mold.
fn add(
    w: &mut World,
    site: &str,
    kind: &str,
    ids: &[String],
    tags: &[(String, Option<String>)],
) -> ApiResult {
    resource_type(kind)?;
    for id in ids {
        let Some(vm) = w.site(site).vm(id) else {
            return Err(ApiError::param(format!(
                "Unable to find resource by uuid {id} and type {USER_VM}"
            )));
        };
        for (key, value) in tags {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::param(format!(
                    "Value for the key {key} is either null or empty"
                )));
            }
            // The tags table's unique key (resource, type, key) refuses a second one.
            if vm.tags.contains_key(key) {
                return Err(ApiError::internal(format!(
                    "tag {key} already on {USER_VM} with id {id}"
                )));
            }
        }
    }
    for id in ids {
        if let Some(vm) = w.site_mut(site).vm_mut(id) {
            for (key, value) in tags {
                vm.tags
                    .insert(key.clone(), value.clone().unwrap_or_default());
            }
        }
    }
    Ok(json!({"success": true}))
}

fn delete_tags(world: &mut World, ctx: &Ctx<'_>) -> ApiResult {
    let (p, c) = (ctx.params, ctx.name());
    let kind = p.required(c, "resourcetype")?.to_string();
    let ids = ids(p, c)?;
    let tags = tag_entries(p);
    let site = ctx.site.clone();
    let jobid = ctx.submit_job(
        world,
        None,
        world.config.timing.job,
        Box::new(move |w: &mut World, _| Step::Done(remove(w, &site, &kind, &ids, &tags))),
    );
    Ok(json!({"jobid": jobid}))
}

/// No `tags`: every tag of the resources; a key alone: that key; key and value: both
/// (compared ignoring case, as Mold does). Nothing removed is a failure.
fn remove(
    w: &mut World,
    site: &str,
    kind: &str,
    ids: &[String],
    tags: &[(String, Option<String>)],
) -> ApiResult {
    resource_type(kind)?;
    let mut removed = 0;
    for id in ids {
        let Some(vm) = w.site_mut(site).vm_mut(id) else {
            continue;
        };
        let before = vm.tags.len();
        vm.tags.retain(|k, v| {
            let matched = tags.is_empty()
                || tags.iter().any(|(key, value)| {
                    key.eq_ignore_ascii_case(k)
                        && value.as_deref().is_none_or(|x| x.eq_ignore_ascii_case(v))
                });
            !matched
        });
        removed += before - vm.tags.len();
    }
    if removed == 0 {
        return Err(ApiError::internal("Failed to delete tags"));
    }
    Ok(json!({"success": true}))
}

fn list_tags(world: &World, ctx: &Ctx<'_>) -> Value {
    let p = ctx.params;
    if p.get("resourcetype")
        .is_some_and(|t| !t.eq_ignore_ascii_case(USER_VM))
    {
        return list("tag", &[]);
    }
    let s = world.site(&ctx.site);
    let (id, key, value) = (p.get("resourceid"), p.get("key"), p.get("value"));
    let items: Vec<Value> = s
        .vms
        .iter()
        .filter(|v| id.is_none_or(|i| v.id == i))
        .flat_map(|v| v.tags.iter().map(move |(k, val)| (v, k, val)))
        .filter(|(_, k, val)| key.is_none_or(|x| x == *k) && value.is_none_or(|x| x == *val))
        .map(|(v, k, val)| {
            json!({"key": k, "value": val, "resourcetype": USER_VM, "resourceid": v.id,
                   "account": "admin", "domainid": s.domain_id, "domain": "ROOT"})
        })
        .collect();
    list("tag", &page(p, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::mold::command::tests::{Answer, rows};

    #[test]
    fn the_tag_commands_answer_as_mold_does() {
        assert_eq!(
            rows(COMMANDS),
            [
                ("createTags", Answer::Async, None),
                ("deleteTags", Answer::Async, None),
                ("listTags", Answer::Sync, None),
            ]
        );
    }

    #[test]
    fn only_vms_carry_tags() {
        assert!(resource_type("uservm").is_ok());
        assert_eq!(
            resource_type("Volume").unwrap_err().errortext,
            "Invalid resource type Volume"
        );
    }
}
