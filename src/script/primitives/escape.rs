//! Escape hatches: raw Mold and Glue calls and commands on a storage VM, for what no
//! primitive covers yet. Whether a call reads or mutates is decided per call.

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map};
use serde_json::{Value, json};

use super::{Kind, Overload, Param, Primitive, SITE, Ty, planned};
use crate::script::convert::{self, to_dynamic};
use crate::script::host::{Host, RhaiResult, Target};

const COMMAND: Param = Param::new("command", Ty::Text);

pub static PRIMITIVES: &[Primitive] = &[
    Primitive {
        name: "mold",
        kind: Kind::ByVerb,
        doc: "A raw signed Mold call; list*/get*/query* read, anything else mutates (journaled); async commands are waited for.",
        question: "",
        overloads: &[
            Overload {
                params: &[SITE, COMMAND],
                returns: "map",
            },
            Overload {
                params: &[
                    SITE,
                    COMMAND,
                    Param::new("params", Ty::Map).shown("#{params}"),
                ],
                returns: "map",
            },
        ],
        register: mold,
    },
    Primitive {
        name: "glue",
        kind: Kind::ByVerb,
        doc: "A raw Glue call under /api/v1; GET reads, anything else mutates (journaled).",
        question: "",
        overloads: &[
            Overload {
                params: &[SITE, METHOD, PATH],
                returns: "map",
            },
            Overload {
                params: &[
                    SITE,
                    METHOD,
                    PATH,
                    Param::new("form", Ty::Map).shown("#{form}"),
                ],
                returns: "map",
            },
        ],
        register: glue,
    },
    Primitive {
        name: "ssh",
        kind: Kind::ByCommand,
        doc: "Run a command on one of the site's storage VMs with the site's SSH key; destructive (asks first) unless it is a known read (ceph -s, rbd … status/info/ls).",
        question: "Run {1}",
        overloads: &[Overload {
            params: &[SITE, COMMAND],
            returns: "#{host, status, stdout, stderr}",
        }],
        register: ssh,
    },
];

const METHOD: Param = Param::new("method", Ty::Text);
const PATH: Param = Param::new("path", Ty::Text);

fn params_of(m: &Map) -> Vec<(String, String)> {
    m.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn call_mold(
    p: &'static Primitive,
    h: &Arc<Host>,
    site: &Dynamic,
    command: &str,
    params: &Map,
) -> RhaiResult<Dynamic> {
    let site = convert::site(site)?;
    let params = params_of(params);
    let dr = h.dr.clone();
    let (on, cmd) = (site.clone(), command.to_string());
    if crate::mold::is_read_command(command) {
        let v = h.read(p.name, async move { dr.mold_raw(&on, &cmd, &params).await })?;
        return to_dynamic(&v);
    }
    let args = json!([
        site,
        command,
        params.iter().cloned().collect::<BTreeMap<_, _>>()
    ]);
    h.mutate(
        p,
        args.clone(),
        Target::Site(&site),
        || to_dynamic(&planned(p.name, &args)),
        async move { dr.mold_raw(&on, &cmd, &params).await },
        |v: Value| to_dynamic(&v),
    )
}

fn mold(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, call_mold, (site: Dynamic, command: &str));
}

fn call_glue(
    p: &'static Primitive,
    h: &Arc<Host>,
    site: &Dynamic,
    method: &str,
    path: &str,
    form: &Map,
) -> RhaiResult<Dynamic> {
    let site = convert::site(site)?;
    let form = params_of(form);
    let dr = h.dr.clone();
    let (on, verb, route) = (site.clone(), method.to_uppercase(), path.to_string());
    if verb == "GET" {
        let v = h.read(p.name, async move {
            dr.glue_raw(&on, &verb, &route, &form).await
        })?;
        return to_dynamic(&v);
    }
    let args = json!([
        site,
        verb,
        path,
        form.iter().cloned().collect::<BTreeMap<_, _>>()
    ]);
    h.mutate(
        p,
        args.clone(),
        Target::Site(&site),
        || to_dynamic(&planned(p.name, &args)),
        async move { dr.glue_raw(&on, &verb, &route, &form).await },
        |v: Value| to_dynamic(&v),
    )
}

fn glue(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    with_options!(p, engine, h, call_glue, (site: Dynamic, method: &str, path: &str));
}

fn ssh(p: &'static Primitive, engine: &mut Engine, h: &Arc<Host>) {
    let h = h.clone();
    p.register_fn(
        engine,
        move |site: Dynamic, command: &str| -> RhaiResult<Dynamic> {
            let site = convert::site(&site)?;
            let dr = h.dr.clone();
            let (s, c) = (site.clone(), command.to_string());
            if crate::ssh::is_known_read(command) {
                let out = h.read(p.name, async move { dr.ssh(&s, &c).await })?;
                return to_dynamic(&out);
            }
            let args = json!([site, command]);
            h.mutate(
                p,
                args.clone(),
                Target::Site(&site),
                || to_dynamic(&planned(p.name, &args)),
                async move { dr.ssh(&s, &c).await },
                |out: crate::ssh::SshOutput| to_dynamic(&out),
            )
        },
    );
}
