use super::*;

/// Every primitive registered into an engine of its own, as `drbook check` builds it.
fn registered() -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let engine =
        crate::script::engine::offline(std::path::Path::new("x.rhai"), rt.handle().clone())
            .unwrap();
    serde_json::from_str(&engine.gen_fn_metadata_to_json(false).unwrap()).unwrap()
}

#[test]
fn the_table_is_consistent() {
    let mut names: Vec<&str> = PRIMITIVES.iter().map(|p| p.name).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "a name appears twice");
    for p in PRIMITIVES {
        assert!(!p.section().is_empty(), "{}", p.name);
        assert!(
            !p.doc.is_empty() && p.doc.ends_with('.'),
            "{}: {}",
            p.name,
            p.doc
        );
        assert!(!p.overloads.is_empty(), "{}", p.name);
        let mut arities: Vec<usize> = p.overloads.iter().map(|o| o.params.len()).collect();
        arities.dedup();
        assert_eq!(
            arities.len(),
            p.overloads.len(),
            "{}: two overloads of one arity",
            p.name
        );
        for o in p.overloads {
            let options = o.params.iter().position(|q| matches!(q.ty, Ty::Options(_)));
            assert!(
                options.is_none_or(|i| i + 1 == o.params.len()),
                "{}: options come last",
                p.name
            );
        }
        assert_eq!(
            matches!(p.kind, Kind::Destructive | Kind::ByCommand),
            !p.question.is_empty(),
            "{}",
            p.name
        );
        // A question names only arguments the call has.
        let most = p
            .overloads
            .iter()
            .map(|o| o.params.len())
            .max()
            .unwrap_or(0);
        for i in most..4 {
            assert!(!p.question.contains(&format!("{{{i}}}")), "{}", p.name);
        }
    }
    assert_eq!(
        find("vm").and_then(|p| p.param(1)).map(|q| q.name),
        Some("name_or_id")
    );
    assert_eq!(
        find("clear_garbage")
            .and_then(|p| p.param(1))
            .map(|q| q.name),
        None
    );
    assert!(find("no_such").is_none());
}

/// The coverage check runs both ways over the table: every overload a descriptor lists is
/// registered with its parameter names, and every function registered under a primitive's
/// name is an overload its descriptor lists.
#[test]
fn every_primitive_registers_what_it_describes() {
    let meta = registered();
    let functions = meta["functions"].as_array().unwrap();
    let ours: Vec<&serde_json::Value> = functions
        .iter()
        .filter(|f| find(f["name"].as_str().unwrap_or_default()).is_some())
        .collect();
    for p in PRIMITIVES {
        for o in p.overloads {
            let names: Vec<&str> = o.params.iter().map(|q| q.name).collect();
            let found = ours.iter().any(|f| {
                f["name"] == p.name
                    && f["params"].as_array().map_or_else(Vec::new, |ps| {
                        ps.iter()
                            .map(|q| q["name"].as_str().unwrap_or(""))
                            .collect::<Vec<_>>()
                    }) == names
            });
            assert!(
                found,
                "{}({}) is described but not registered",
                p.name,
                names.join(", ")
            );
        }
        let docs = ours.iter().filter(|f| f["name"] == p.name).all(|f| {
            f["docComments"]
                .to_string()
                .contains(&p.doc.replace('"', "\\\""))
        });
        assert!(docs, "{}: a registration without its doc", p.name);
    }
    for f in ours {
        let p = find(f["name"].as_str().unwrap()).unwrap();
        let n = f["numParams"].as_u64().unwrap();
        assert!(
            p.overloads.iter().any(|o| o.params.len() as u64 == n),
            "{} is registered with {n} parameters, which its descriptor does not list",
            p.name
        );
    }
}

#[test]
fn signatures_are_written_from_the_parameters() {
    let sig = |name: &str| find(name).unwrap().signatures();
    assert_eq!(sig("clear_garbage"), ["clear_garbage(cluster) -> map"]);
    assert_eq!(
        sig("promote"),
        [
            "promote(cluster) -> map",
            "promote(cluster, #{home}) -> map"
        ]
    );
    assert_eq!(
        sig("stop_vms"),
        [
            "stop_vms(site, vms) -> [map]",
            "stop_vms(site, vms, #{concurrency, timeout, force}) -> [map]"
        ]
    );
    assert_eq!(sig("info"), ["info(message)"]);
    assert_eq!(sig("wait_until")[0], "wait_until(|| cond)");
}

#[test]
fn an_options_map_is_checked_against_the_descriptor() {
    let p = find("stop_vm").unwrap();
    let mut opts = rhai::Map::new();
    opts.insert("force".into(), true.into());
    assert!(p.options(&opts).is_ok());
    opts.insert("forse".into(), true.into());
    let err = crate::script::diagnostic::message_of(&p.options(&opts).err().unwrap());
    assert!(err.contains("forse"), "{err}");
}
