//! Simulator helpers: an in-process simulation with test timings (with real SSH on its
//! storage VMs if asked), drbook's clients for its sites, waiting on its world, and reading
//! its data ledger and VM states.

/// A simulation with test timings and plain-HTTP Glue; `adjust` may change anything.
pub async fn start_sim(adjust: impl FnOnce(&mut drbook::sim::SimConfig)) -> drbook::sim::Sim {
    let mut config = drbook::sim::SimConfig::default().with_vms(3);
    config.timing = drbook::sim::config::SimTiming::fast();
    config.glue_tls = false;
    adjust(&mut config);
    drbook::sim::Sim::start(config)
        .await
        .expect("simulator starts")
}

/// [`start_sim`] with each site's storage VMs serving real SSH (an sshd per site running this
/// build's drbook for each command). Needs openssh-server, as `.ci/run` installs it.
pub async fn start_sim_ssh(adjust: impl FnOnce(&mut drbook::sim::SimConfig)) -> drbook::sim::Sim {
    assert!(
        std::path::Path::new(drbook::sim::config::SshServe::SSHD).exists(),
        "this test needs a real OpenSSH server: apt-get install openssh-server (.ci/run does)"
    );
    start_sim(|config| {
        config.ssh = Some(drbook::sim::config::SshServe::new(env!(
            "CARGO_BIN_EXE_drbook"
        )));
        adjust(config);
    })
    .await
}

/// drbook's SSH client for one site's storage VMs of a simulation serving SSH, as a
/// `drbook.toml` written into `dir` configures it (its key file, its `known_hosts`).
pub fn sim_ssh(
    sim: &drbook::sim::Sim,
    site: &str,
    dir: &std::path::Path,
) -> drbook::ssh::SshTarget {
    let config = dir.join("drbook.toml");
    sim.write_config(&config).expect("write sim config");
    let e = &sim.endpoints().sites[site];
    let ssh = e.ssh.as_ref().expect("the simulation serves SSH");
    drbook::ssh::SshTarget {
        site: site.into(),
        hosts: e
            .glue
            .iter()
            .map(|u| url::Url::parse(u).unwrap().host_str().unwrap().to_string())
            .collect(),
        port: ssh.port,
        user: ssh.user.clone(),
        key_file: Some(drbook::sim::key_path(&config, site)),
        known_hosts: Some(drbook::sim::known_hosts_path(&config)),
        timeout: std::time::Duration::from_secs(20),
    }
}

/// drbook's Mold client for one simulated site, with test timings.
pub fn sim_mold(sim: &drbook::sim::Sim, site: &str) -> drbook::mold::MoldClient {
    use std::time::Duration;
    let e = &sim.endpoints().sites[site];
    drbook::mold::MoldClient::new(drbook::mold::MoldSettings {
        site: site.into(),
        url: e.mold.parse().unwrap(),
        api_key: drbook::secret::Secret::new(e.api_key.clone()),
        secret_key: drbook::secret::Secret::new(e.secret_key.clone()),
        algorithm: e.signature.parse().unwrap(),
        signature_v3_expiry: None,
        trust: drbook::http::TlsTrust::System,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(20),
        long_timeout: Duration::from_secs(60),
        job_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(50),
        retry: drbook::http::RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        },
    })
    .unwrap()
}

/// drbook's Glue client for one simulated site (plain HTTP).
pub fn sim_glue(sim: &drbook::sim::Sim, site: &str) -> drbook::glue::GlueClient {
    use std::time::Duration;
    let e = &sim.endpoints().sites[site];
    drbook::glue::GlueClient::new(drbook::glue::GlueSettings {
        site: site.into(),
        endpoints: e.glue.iter().map(|u| u.parse().unwrap()).collect(),
        trust: drbook::http::TlsTrust::System,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(20),
        retry: drbook::http::RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        },
    })
    .unwrap()
}

/// Polls `check` until it returns `Some`, or panics with `what` after a generous bound (the
/// bound only stops a broken test; nothing asserts how long it took).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..600 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for: {what}");
}

/// The write sequence numbers a `sim.write` call reported (its first image's).
pub fn written(w: &serde_json::Value) -> Vec<u64> {
    w["writes"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default()
}

/// Waits until `site` holds every one of `writes` in `vm`'s images and its status names the
/// snapshot that brought them (a replica's first report after a copy does not yet, as on
/// real Ceph): only then does a failover know what reached it.
pub async fn delivered(sim: &drbook::sim::Sim, vm: &str, site: &str, writes: &[u64]) {
    eventually(
        "the DR site to hold the writes and name their snapshot",
        || async {
            let ledger = sim.ledger(vm).unwrap();
            let images = ledger["images"].as_array().unwrap();
            let ready = images.iter().all(|image| {
                let path = image["image"].as_str().unwrap();
                sim.with_world(|w, now| w.storage.image_status(now, site, path))
                    .is_ok_and(|s| {
                        s["description"]
                            .as_str()
                            .is_some_and(|d| d.contains("local_snapshot_timestamp"))
                    })
            }) && writes.iter().all(|w| {
                images.iter().any(|image| {
                    image["sites"][site]
                        .as_array()
                        .is_some_and(|held| held.iter().any(|h| h.as_u64() == Some(*w)))
                })
            });
            ready.then_some(())
        },
    )
    .await;
}

/// The writes every image of `vm` holds on `site`, from the simulator's ledger.
pub fn held(sim: &drbook::sim::Sim, vm: &str, site: &str) -> Vec<u64> {
    sim.ledger(vm).unwrap()["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| {
            i["sites"][site]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_u64())
        })
        .collect()
}

/// `name → state` of the VMs on a simulated site.
pub fn vm_states(sim: &drbook::sim::Sim, site: &str) -> std::collections::BTreeMap<String, String> {
    sim.state()["sites"][site]["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every credential of a simulation: both sites' API and secret keys, and each body line of
/// their storage-VM private keys (a key leaks if any part of it shows).
pub fn sim_credentials(sim: &drbook::sim::Sim) -> Vec<String> {
    let mut out = Vec::new();
    for site in sim.endpoints().sites.values() {
        out.push(site.api_key.clone());
        out.push(site.secret_key.clone());
        out.extend(
            site.glue_private_key
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
                .map(str::to_string),
        );
    }
    assert!(out.len() > 4, "the keys have bodies: {out:?}");
    out
}
