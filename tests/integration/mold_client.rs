//! drbook's Mold client over real HTTP: every envelope shape, async jobs, and the retry rules
//! (reads retried, mutations never re-sent when they may have arrived), proved by counting.

use std::time::Duration;

use drbook::http::{RetryPolicy, TlsTrust};
use drbook::mold::{MoldClient, MoldErrorKind, MoldSettings, SignatureAlgorithm};
use drbook::secret::Secret;
use serde_json::json;

use crate::harness::fakes::{self, Misbehaviour};
use crate::harness::{API_KEY, Canned, FakeMold, SECRET_KEY, has, lacks, refused_addr};

fn settings(url: &str, algorithm: SignatureAlgorithm) -> MoldSettings {
    MoldSettings {
        site: "site-a".into(),
        url: url.parse().unwrap(),
        api_key: Secret::new(API_KEY),
        secret_key: Secret::new(SECRET_KEY),
        algorithm,
        signature_v3_expiry: None,
        trust: TlsTrust::System,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        long_timeout: Duration::from_secs(5),
        job_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        retry: RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(5),
            cap: Duration::from_millis(20),
        },
    }
}

fn client(mold: &FakeMold) -> MoldClient {
    MoldClient::new(settings(&mold.url(), SignatureAlgorithm::Sha256)).unwrap()
}

#[tokio::test]
async fn signed_reads_go_as_get_and_mutations_as_post() {
    for algorithm in [SignatureAlgorithm::Sha256, SignatureAlgorithm::Sha1] {
        let mold = FakeMold::start(algorithm).await;
        let c = MoldClient::new(settings(&mold.url(), algorithm)).unwrap();
        assert_eq!(c.capabilities().await.unwrap().dr_enabled, Some(true));
        assert_eq!(
            c.scvm_ip_addresses().await.unwrap(),
            ["10.0.0.11", "10.0.0.12"]
        );
        mold.script(
            "stopVirtualMachine",
            [Canned::json(
                200,
                &json!({"stopvirtualmachineresponse": {"jobid": "j1"}}),
            )],
        );
        let submitted = c
            .submit("stopVirtualMachine", &[("id", "vm 1/~*")])
            .await
            .unwrap();
        assert_eq!(submitted.jobid, "j1");
        assert_eq!(mold.methods("listCapabilities"), ["GET"]);
        assert_eq!(mold.methods("stopVirtualMachine"), ["POST"]);
    }
}

#[tokio::test]
async fn signature_version_3_is_signed_and_accepted() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let mut s = settings(&mold.url(), SignatureAlgorithm::Sha256);
    s.signature_v3_expiry = Some(Duration::from_secs(300));
    let c = MoldClient::new(s).unwrap();
    assert!(c.capabilities().await.is_ok());
}

#[tokio::test]
async fn wrong_secret_is_unauthorized_and_not_retried() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let mut s = settings(&mold.url(), SignatureAlgorithm::Sha256);
    s.secret_key = Secret::new("wrong");
    let err = MoldClient::new(s)
        .unwrap()
        .capabilities()
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, MoldErrorKind::Unauthorized { .. }),
        "{err}"
    );
    assert_eq!(mold.calls("listCapabilities"), 1);
    let text = err.to_string();
    assert!(
        text.starts_with("site-a: listCapabilities: Mold refused"),
        "{text}"
    );
    lacks(&text, SECRET_KEY);
    lacks(&text, API_KEY);
}

#[tokio::test]
async fn sha1_mold_rejects_sha256_signatures() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha1).await;
    let err = client(&mold).capabilities().await.unwrap_err();
    has(&err.to_string(), "signature = \"sha256\"");
}

#[tokio::test]
async fn list_shapes_over_http() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    let key = "getdisasterrecoveryclusterlistresponse";
    mold.script(
        "getDisasterRecoveryClusterList",
        [
            Canned::json(200, &json!({ key: {} })),
            Canned::json(200, &json!({ key: {"count": 0} })),
            Canned::json(200, &json!({ key: {"count": 1, "disasterrecoverycluster":
                {"id": "r1", "name": "DR", "drclustertype": "primary"}}})),
            Canned::json(200, &json!({ key: {"count": 2, "disasterrecoverycluster": [
                {"id": "r1", "name": "DR", "drclustertype": "primary"},
                {"id": "r2", "name": "DR-2", "drclustertype": "secondary",
                 "details": {"drclustersecretkey": "PEER-SECRET", "mirrorscheduleinterval": "1h"}}]}})),
        ],
    );
    assert!(c.dr_clusters(&[]).await.unwrap().is_empty());
    assert!(c.dr_clusters(&[]).await.unwrap().is_empty());
    assert_eq!(c.dr_clusters(&[]).await.unwrap()[0].id, "r1");
    let both = c.dr_clusters(&[("name", "DR-2")]).await.unwrap();
    assert_eq!(
        both.len(),
        1,
        "the name filter is exact even if Mold matched more"
    );
    assert_eq!(both[0].mirror_schedule_interval.as_deref(), Some("1h"));
    lacks(&format!("{both:?}"), "PEER-SECRET");
}

#[tokio::test]
async fn errors_carry_site_command_and_molds_text() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    let key = "promotedisasterrecoveryclusterresponse";
    mold.script(
        "promoteDisasterRecoveryCluster",
        [
            Canned::json(
                530,
                &json!({ key: {"uuidList": [], "errorcode": 530, "cserrorcode": 9999,
                "errortext": "There are no images being mirrored."}}),
            )
            .header("X-Description", "There are no images being mirrored."),
            Canned::json(
                200,
                &json!({ key: {"errorcode": 431, "errortext": "Invalid parameter id"}}),
            ),
            Canned::json(200, &json!({"somethingelseresponse": {"success": true}})),
        ],
    );
    let e = c
        .call("promoteDisasterRecoveryCluster", &[("id", "x")])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "site-a: promoteDisasterRecoveryCluster: There are no images being mirrored. (Mold errorcode 530): check `drbook run status` before retrying"
    );
    assert_eq!(e.errortext(), Some("There are no images being mirrored."));
    let e = c
        .call("promoteDisasterRecoveryCluster", &[("id", "x")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind,
            MoldErrorKind::Api {
                errorcode: 431,
                http_status: 200,
                ..
            }
        ),
        "{e}"
    );
    let e = c
        .call("promoteDisasterRecoveryCluster", &[("id", "x")])
        .await
        .unwrap_err();
    has(&e.to_string(), "expected top-level key");
    // A definite answer from Mold is not a reason to send a mutation again.
    assert_eq!(mold.calls("promoteDisasterRecoveryCluster"), 3);
}

#[tokio::test]
async fn async_jobs_are_polled_until_done() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    mold.script(
        "resyncDisasterRecoveryCluster",
        [
            Canned::json(
                200,
                &json!({"resyncdisasterrecoveryclusterresponse": {"jobid": "job-1"}}),
            ),
            Canned::json(
                200,
                &json!({"resyncdisasterrecoveryclusterresponse": {"jobid": "job-2"}}),
            ),
        ],
    );
    let q = "queryasyncjobresultresponse";
    mold.script(
        "queryAsyncJobResult",
        [
            Canned::json(200, &json!({ q: {"jobid": "job-1", "jobstatus": 0}})),
            Canned::json(200, &json!({ q: {"jobid": "job-1", "jobstatus": 0}})),
            Canned::json(200, &json!({ q: {"jobid": "job-1", "jobstatus": 1, "jobresultcode": 0,
                "jobresult": {"success": true}}})),
            Canned::json(200, &json!({ q: {"jobid": "job-2", "jobstatus": 2, "jobresultcode": 530,
                "jobresult": {"uuidList": [], "errorcode": 530,
                    "errortext": "Resync cannot be executed because the current image is not force promoting state."}}})),
        ],
    );
    let result = c
        .call_async("resyncDisasterRecoveryCluster", &[("id", "r")])
        .await
        .unwrap();
    assert_eq!(result["success"], true);
    assert_eq!(mold.calls("queryAsyncJobResult"), 3);
    let e = c
        .call_async("resyncDisasterRecoveryCluster", &[("id", "r")])
        .await
        .unwrap_err();
    has(
        &e.to_string(),
        "async job job-2 failed: Resync cannot be executed",
    );
    assert_eq!(mold.calls("resyncDisasterRecoveryCluster"), 2);
}

#[tokio::test]
async fn a_job_that_never_finishes_times_out_clearly() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let mut s = settings(&mold.url(), SignatureAlgorithm::Sha256);
    s.job_timeout = Duration::from_millis(300);
    let c = MoldClient::new(s).unwrap();
    let pending = Canned::json(
        200,
        &json!({"queryasyncjobresultresponse": {"jobid": "j", "jobstatus": 0}}),
    );
    mold.script("queryAsyncJobResult", std::iter::repeat_n(pending, 100));
    let e = c
        .wait_for_job("promoteDisasterRecoveryCluster", "j")
        .await
        .unwrap_err();
    assert!(matches!(e.kind, MoldErrorKind::JobTimeout { .. }), "{e}");
    has(&e.to_string(), "queryAsyncJobResult jobid=j");
}

#[tokio::test]
async fn reads_are_retried_on_transient_failures() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    mold.script(
        "listCapabilities",
        [
            Canned::raw(
                503,
                "<html><head><title>503 Service Unavailable</title></head></html>",
            ),
            Canned::json(
                429,
                &json!({"listcapabilitiesresponse": {"errorcode": 429, "errortext": "too many"}}),
            ),
        ],
    );
    assert!(c.capabilities().await.is_ok());
    assert_eq!(mold.calls("listCapabilities"), 3);
}

#[tokio::test]
async fn reads_give_up_after_the_retry_budget() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    let page = Canned::raw(503, "<html><title>503 Service Unavailable</title></html>");
    mold.script("listCapabilities", std::iter::repeat_n(page, 5));
    let e = c.capabilities().await.unwrap_err();
    has(&e.to_string(), "HTML page \"503 Service Unavailable\"");
    assert_eq!(mold.calls("listCapabilities"), 3, "attempts = 3");
    assert!(
        e.to_string().ends_with(
            "a proxy or a restarting Mold answered: retry once `drbook sites` shows it up"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_mutation_answered_by_a_proxy_error_is_never_resent() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    mold.script(
        "promoteDisasterRecoveryCluster",
        [
            Canned::raw(503, "<html><title>503 Service Unavailable</title></html>"),
            Canned::raw(
                200,
                "{\"promotedisasterrecoveryclusterresponse\": {\"jobid\"",
            ),
        ],
    );
    for _ in 0..2 {
        let e = c
            .submit("promoteDisasterRecoveryCluster", &[("id", "x")])
            .await
            .unwrap_err();
        assert!(
            matches!(e.kind, MoldErrorKind::OutcomeUnknown { .. }),
            "{e}"
        );
        has(&e.to_string(), "did not send it again");
    }
    assert_eq!(
        mold.calls("promoteDisasterRecoveryCluster"),
        2,
        "one request per call"
    );
}

#[tokio::test]
async fn a_mutation_whose_connection_drops_is_sent_exactly_once() {
    let hung = fakes::raw("http", Misbehaviour::CloseAfterRequest).await;
    let c = MoldClient::new(settings(&hung.label(), SignatureAlgorithm::Sha256)).unwrap();
    let e = c
        .call("demoteDisasterRecoveryCluster", &[("id", "x")])
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, MoldErrorKind::OutcomeUnknown { .. }),
        "{e}"
    );
    assert_eq!(hung.connections(), 1);

    // The same drop on a read is retried: reads are idempotent.
    let e = c.call("listVirtualMachines", &[]).await.unwrap_err();
    assert!(matches!(e.kind, MoldErrorKind::Unreachable { .. }), "{e}");
    assert_eq!(hung.connections(), 1 + 3);
    // Once found unreachable, the same Mold is asked once per call for a while: no retry
    // waits on every read of a site in disaster.
    assert!(c.call("listVirtualMachines", &[]).await.is_err());
    assert_eq!(hung.connections(), 1 + 3 + 1);
}

#[tokio::test]
async fn a_rate_limited_mutation_is_sent_again() {
    // Mold's limiter refuses before the command runs, so this repeat is not blind.
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    mold.script(
        "startVirtualMachine",
        [
            Canned::json(429, &json!({"startvirtualmachineresponse": {"errorcode": 429, "errortext": "API rate limit"}})),
            Canned::json(200, &json!({"startvirtualmachineresponse": {"jobid": "j"}})),
        ],
    );
    assert_eq!(
        c.submit("startVirtualMachine", &[("id", "v")])
            .await
            .unwrap()
            .jobid,
        "j"
    );
    assert_eq!(mold.calls("startVirtualMachine"), 2);
}

#[tokio::test]
async fn an_unreachable_mold_says_where_and_why() {
    let addr = refused_addr();
    let c = MoldClient::new(settings(
        &format!("http://{addr}"),
        SignatureAlgorithm::Sha256,
    ))
    .unwrap();
    let e = c.capabilities().await.unwrap_err();
    let text = e.to_string();
    has(
        &text,
        &format!("cannot reach Mold at http://{addr}/client/api"),
    );
    has(&text.to_lowercase(), "refused");
    lacks(&text, API_KEY);
}

const RATE_LIMIT: &str = "You have reached the API rate limit. Please try again later.";

fn rate_limited(key: &str) -> Canned {
    Canned::json(
        429,
        &json!({ key: {"uuidList": [], "errorcode": 429, "cserrorcode": 9999, "errortext": RATE_LIMIT}}),
    )
    .header("X-Description", RATE_LIMIT)
}

#[tokio::test]
async fn a_mutation_rate_limited_on_every_try_says_it_was_not_executed() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    let key = "demotedisasterrecoveryclusterresponse";
    mold.script(
        "demoteDisasterRecoveryCluster",
        std::iter::repeat_n(rate_limited(key), 3),
    );
    let e = c
        .submit("demoteDisasterRecoveryCluster", &[("id", "x")])
        .await
        .unwrap_err();
    assert_eq!(
        mold.calls("demoteDisasterRecoveryCluster"),
        3,
        "attempts = 3"
    );
    assert!(e.is_rate_limited(), "{e}");
    assert_eq!(e.errortext(), Some(RATE_LIMIT));
    let shown = e.to_string();
    has(&shown, RATE_LIMIT);
    has(&shown, "rate limit");
    has(&shown, "not executed");
    assert!(shown.ends_with("retry later"), "{shown}");

    // Mold's pre-check that also says "Please try again later." is its answer: not a rate
    // limit, and not sent again by the client.
    let pre_check = "Forced demote functions cannot be executed because peer state is syncing in volume path : x. Please try again later.";
    mold.script(
        "demoteDisasterRecoveryCluster",
        [Canned::json(
            530,
            &json!({ key: {"uuidList": [], "errorcode": 530, "cserrorcode": 9999, "errortext": pre_check}}),
        )],
    );
    let e = c
        .submit("demoteDisasterRecoveryCluster", &[("id", "x")])
        .await
        .unwrap_err();
    assert_eq!(mold.calls("demoteDisasterRecoveryCluster"), 3 + 1);
    assert!(!e.is_rate_limited(), "{e}");
    assert!(e.errortext().unwrap().ends_with("Please try again later."));
}

#[tokio::test]
async fn a_proxys_429_on_a_mutation_is_sent_again_too() {
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    mold.script(
        "startVirtualMachine",
        [
            Canned::raw(
                429,
                "<html><head><title>429 Too Many Requests</title></head></html>",
            ),
            Canned::json(200, &json!({"startvirtualmachineresponse": {"jobid": "j"}})),
        ],
    );
    assert_eq!(
        c.submit("startVirtualMachine", &[("id", "v")])
            .await
            .unwrap()
            .jobid,
        "j"
    );
    assert_eq!(mold.calls("startVirtualMachine"), 2);
}

#[tokio::test]
async fn retry_after_is_honoured_only_up_to_the_policy_cap() {
    // An hour's Retry-After; the policy's cap is 20 ms. The guard only stops a broken client
    // from hanging the suite.
    let mold = FakeMold::start(SignatureAlgorithm::Sha256).await;
    let c = client(&mold);
    mold.script(
        "startVirtualMachine",
        [
            rate_limited("startvirtualmachineresponse").header("Retry-After", "3600"),
            Canned::json(200, &json!({"startvirtualmachineresponse": {"jobid": "j"}})),
        ],
    );
    mold.script(
        "listCapabilities",
        [rate_limited("listcapabilitiesresponse").header("Retry-After", "3600")],
    );
    let guard = Duration::from_secs(60);
    tokio::time::timeout(guard, c.submit("startVirtualMachine", &[("id", "v")]))
        .await
        .expect("the cap bounds Retry-After")
        .unwrap();
    tokio::time::timeout(guard, c.capabilities())
        .await
        .expect("the cap bounds Retry-After")
        .unwrap();
    assert_eq!(mold.calls("startVirtualMachine"), 2);
    assert_eq!(mold.calls("listCapabilities"), 2);
}

#[tokio::test]
async fn a_timeout_names_the_setting_that_governs_it() {
    let silent = fakes::raw("http", Misbehaviour::NeverAnswer).await;
    let mut s = settings(silent.url.as_str(), SignatureAlgorithm::Sha256);
    s.timeout = Duration::from_millis(200);
    let c = MoldClient::new(s).unwrap();
    let e = c.call("listVirtualMachines", &[]).await.unwrap_err();
    assert!(matches!(e.kind, MoldErrorKind::Timeout { .. }), "{e}");
    has(&e.to_string(), "raise timeout");
    assert_eq!(silent.connections(), 3, "a read is tried three times");
    let e = c
        .call("promoteDisasterRecoveryCluster", &[("id", "x")])
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind, MoldErrorKind::OutcomeUnknown { .. }),
        "{e}"
    );
    has(&e.to_string(), "timed out after timeout = 200ms");
    assert_eq!(silent.connections(), 3 + 1, "a mutation went once");
}

#[tokio::test]
async fn a_mold_dropping_tls_mid_answer_gives_no_documentation_link() {
    // rustls words this "peer closed connection without sending TLS close_notify: https://docs.rs/…".
    let dropping = fakes::tls_raw(Misbehaviour::CloseAfterRequest).await;
    let mut s = settings(dropping.url.as_str(), SignatureAlgorithm::Sha256);
    s.trust = TlsTrust::Insecure;
    let c = MoldClient::new(s).unwrap();
    let endpoint = c.endpoint().as_str().to_string();
    for e in [
        c.call("listVirtualMachines", &[]).await.unwrap_err(),
        c.call("promoteDisasterRecoveryCluster", &[("id", "x")])
            .await
            .unwrap_err(),
    ] {
        let shown = e.to_string();
        has(&shown, "close_notify");
        let links = shown.matches("http://").count() + shown.matches("https://").count();
        assert_eq!(
            links,
            shown.matches(&endpoint).count(),
            "a link other than the site's URL: {shown}"
        );
        lacks(&shown, API_KEY);
    }
    assert_eq!(dropping.connections(), 3 + 1);
}

#[tokio::test]
async fn an_untrusted_certificate_points_at_the_tls_settings() {
    let server = fakes::tls_raw(Misbehaviour::CloseAfterRequest).await;
    let c = MoldClient::new(settings(server.url.as_str(), SignatureAlgorithm::Sha256)).unwrap();
    let e = c.capabilities().await.unwrap_err();
    let shown = e.to_string();
    assert!(
        matches!(e.kind, MoldErrorKind::Unreachable { .. }),
        "{shown}"
    );
    has(&shown, "certificate");
    assert!(
        shown.ends_with("check this site's TLS trust (ca_file, or insecure) in drbook.toml"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_async_jobs_finds_a_stop_by_its_command_and_vm() {
    let sim = crate::harness::start_sim(|_| {}).await;
    let a = crate::harness::sim_mold(&sim, "site-a");
    let vms = a.virtual_machines(&[]).await.unwrap();
    let (vm, other) = (&vms[0], &vms[1]);
    // A job before the moment is not listed.
    let earlier = a
        .submit("stopVirtualMachine", &[("id", &other.id)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = chrono::Utc::now();
    assert!(a.list_async_jobs(since).await.unwrap().is_empty());

    let stop = a
        .submit("stopVirtualMachine", &[("id", &vm.id)])
        .await
        .unwrap();
    let jobs = a.list_async_jobs(since).await.unwrap();
    let found: Vec<_> = jobs
        .iter()
        .filter(|j| {
            j.cmd
                .as_deref()
                .is_some_and(|c| drbook::mold::job_runs(c, "stopVirtualMachine"))
                && j.jobinstanceid.as_deref() == Some(vm.id.as_str())
        })
        .collect();
    assert_eq!(found.len(), 1, "{jobs:?}");
    assert_eq!(found[0].jobid, stop.jobid);
    assert_eq!(found[0].jobinstancetype.as_deref(), Some("VirtualMachine"));
    assert!(jobs.iter().all(|j| j.jobid != earlier.jobid), "{jobs:?}");
    assert!(
        !jobs.iter().any(|j| j
            .cmd
            .as_deref()
            .is_some_and(|c| drbook::mold::job_runs(c, "startVirtualMachine"))),
        "{jobs:?}"
    );
    // A read: the sim counts no mutation for it, and a lost answer is asked again.
    sim.add_fault(drbook::sim::faults::FaultSpec {
        site: "site-a".into(),
        api: drbook::sim::faults::Api::Mold,
        command: Some("listAsyncJobs".into()),
        kind: drbook::sim::faults::FaultKind::LostAnswer,
        times: Some(1),
        rate: None,
        status: None,
        latency: None,
        message: None,
    })
    .unwrap();
    let calls = sim.mold_calls("site-a", "listAsyncJobs");
    assert_eq!(a.list_async_jobs(since).await.unwrap().len(), jobs.len());
    assert_eq!(sim.mold_calls("site-a", "listAsyncJobs"), calls + 2);
    assert_eq!(
        sim.mutation_count("site-a", drbook::sim::faults::Api::Mold, "listAsyncJobs"),
        0
    );
    sim.shutdown().await;
}
