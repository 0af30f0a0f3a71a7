//! `drbook sites` end to end: the binary, a config file, and loopback servers.

use drbook::mold::SignatureAlgorithm;

use crate::harness::{API_KEY, FakeMold, SECRET_KEY, Test, fakes, has, refused_addr, site_toml};

/// A Glue stand-in whose Ceph status (`GET /api/v1/glue`, the one call `drbook sites` makes)
/// is `health`; its URL.
async fn fake_glue(health: &str) -> String {
    let status = serde_json::json!({"fsid": "f", "health": {"status": health, "checks": {}}});
    fakes::glue(&[(200, &status.to_string())]).await.label()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_sites_pass() {
    let a = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let b = FakeMold::start(SignatureAlgorithm::Sha1).await;
    let glue_ok = fake_glue("HEALTH_OK").await;
    let glue_warn = fake_glue("HEALTH_WARN").await;
    // (String + &String is ambiguous once rhai's string types are in scope.)
    let config = [
        site_toml(
            "site-a",
            &a.url(),
            SECRET_KEY,
            &format!("glue_urls = [\"{glue_ok}\", \"{glue_warn}\"]"),
        ),
        site_toml("site-b", &b.url(), SECRET_KEY, "signature = \"sha1\""),
    ]
    .concat();
    let ran = Test::new()
        .config(&config)
        .args(["sites", "-vvv"])
        .run_async()
        .await
        .expect_code(0)
        .expect_no_secret();
    ran.stdout_has("DR service enabled");
    ran.stdout_has("HEALTH_OK").stdout_has("HEALTH_WARN");
    ran.stdout_has("checked on Mold alone");
    assert_eq!(a.calls("listCapabilities"), 1);
    assert_eq!(a.calls("listScvmIpAddress"), 1);

    // Even with every module's trace output asked for, no key reaches the log.
    Test::new()
        .config(&config)
        .args(["sites"])
        .env("DRBOOK_LOG", "trace")
        .run_async()
        .await
        .expect_code(0)
        .expect_no_secret();

    let ran = Test::new()
        .config(&config)
        .args(["--output", "json", "sites"])
        .run_async()
        .await
        .expect_code(0);
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["sites"][0]["mold"]["storage_vms"][1], "10.0.0.12");
    assert_eq!(doc["sites"][0]["glue"][1]["health"], "HEALTH_WARN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_mold_is_one_actionable_line() {
    let addr = refused_addr();
    let config = site_toml("site-a", &format!("http://{addr}"), SECRET_KEY, "");
    let ran = Test::new()
        .config(&config)
        .args(["sites"])
        .run_async()
        .await
        .expect_code(1)
        .expect_no_secret();
    let errors = ran.error_lines();
    assert_eq!(errors.len(), 1, "{}", ran.stderr);
    has(errors[0], "site-a");
    has(errors[0], "cannot reach Mold");
    has(errors[0], "check mold_url");
    ran.stdout_has("FAIL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_one_actionable_line() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let wrong = "SKwrong-but-still-secret-55";
    let config = site_toml("site-a", &mold.url(), wrong, "");
    let ran = Test::new()
        .config(&config)
        .args(["sites", "-vv"])
        .run_async()
        .await
        .expect_code(1)
        .expect_no_secret();
    ran.stdout_lacks(wrong).stderr_lacks(wrong);
    let errors = ran.error_lines();
    assert_eq!(errors.len(), 1, "{}", ran.stderr);
    has(errors[0], "unable to verify user credentials");
    has(errors[0], "check api_key and secret_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_glue_endpoint_fails_the_check() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let glue = fake_glue("HEALTH_ERR").await;
    let down = refused_addr();
    let config = site_toml(
        "site-a",
        &mold.url(),
        SECRET_KEY,
        &format!("glue_urls = [\"{glue}\", \"http://{down}\"]"),
    );
    let ran = Test::new()
        .config(&config)
        .args(["sites"])
        .run_async()
        .await
        .expect_code(1);
    let errors = ran.error_lines();
    assert_eq!(errors.len(), 2, "{}", ran.stderr);
    has(errors[0], "HEALTH_ERR");
    has(errors[1], &down.to_string());
}

#[test]
fn a_garbage_config_is_one_positioned_line() {
    let ran = Test::new()
        .config(&format!("[sites.site-a]\nmold_url = \"http://x\"\napi_key = \"{API_KEY}\"\nsecret_key = {SECRET_KEY}\n"))
        .args(["sites"])
        .run()
        .expect_code(2)
        .expect_no_secret();
    let errors = ran.error_lines();
    assert_eq!(errors.len(), 1, "{}", ran.stderr);
    assert!(
        errors[0].starts_with("error: drbook.toml:4:"),
        "{}",
        errors[0]
    );
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
}

#[test]
fn a_typo_in_a_key_names_it() {
    let ran = Test::new()
        .config("[sites.site-a]\nmold_url = \"http://x\"\napi_key = \"k\"\nsecret_kye = \"s\"\n")
        .args(["sites"])
        .run()
        .expect_code(2);
    ran.stderr_has("drbook.toml:4:1:").stderr_has("secret_kye");
}

#[test]
fn no_config_says_where_it_looked() {
    let ran = Test::new().args(["sites"]).run().expect_code(2);
    ran.stderr_has("no configuration file found");
    ran.stderr_has("drbook.toml");
}

#[test]
fn an_explicit_config_that_is_missing_is_named() {
    let ran = Test::new()
        .args(["-c", "nope.toml", "sites"])
        .run()
        .expect_code(2);
    ran.stderr_has("cannot read nope.toml");
}

#[test]
fn an_unknown_site_is_a_usage_error() {
    let ran = Test::new()
        .config(&site_toml("site-a", "http://127.0.0.1:9", SECRET_KEY, ""))
        .args(["sites", "site-z"])
        .run()
        .expect_code(2);
    ran.stderr_has("no site \"site-z\"").stderr_has("site-a");
}

#[test]
fn help_and_version() {
    let ran = Test::new().args(["--help"]).run().expect_code(0);
    ran.stdout_has("sites").stdout_has("--config");
    let ran = Test::new().args(["--version"]).run().expect_code(0);
    assert!(ran.stdout.starts_with("drbook "), "{}", ran.stdout);
}

#[test]
fn the_example_config_stays_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/drbook.toml");
    let config = drbook::config::Config::load(&path).unwrap();
    assert_eq!(config.sites.len(), 2);
    assert!(config.warnings.iter().any(|w| w.contains("glue_insecure")));
}
