//! The Glue client against real HTTP on 127.0.0.1: which endpoint each call reaches, and how
//! many times.

use std::time::Duration;

use drbook::glue::{GlueClient, GlueErrorKind, GlueSettings, MirrorSide};
use drbook::http::{RetryPolicy, TlsTrust};
use url::Url;

use crate::harness::fakes::{self, Misbehaviour, refused_addr};

use crate::harness::{has, lacks};

const IMAGE: &str = "6f1c1d8e-1b0e-4c1e-9d1b-3a3d4d7b2f10";
const MEDIA: &str = "application/vnd.ceph.api.v1.0+json";

const PRIMARY_STATUS: &str = r#"{"name":"6f1c1d8e-1b0e-4c1e-9d1b-3a3d4d7b2f10","global_id":"0d5b","state":"up+stopped","description":"local image is primary","daemon_service":{"service_id":"4161","instance_id":"4163","daemon_id":"scvm1","hostname":"scvm1"},"last_update":"2024-06-24 16:09:31","peer_sites":[{"site_name":"remote","mirror_uuids":"c3a1","state":"up+replaying","description":"replaying, {\"bytes_per_second\":0.0,\"local_snapshot_timestamp\":1719214141,\"remote_snapshot_timestamp\":1719214141,\"replay_state\":\"idle\"}","last_update":"2024-06-24 16:09:20"}],"snapshots":null}"#;
const NOT_MIRRORED: &str =
    r#"{"code":500,"message":"exit status 22\nrbd: mirroring not enabled on the image"}"#;
const PROMOTED: &str = "{\n    \"Message\": \"Image promoted to primary\\n\"\n}";
const SUMMARY: &str =
    r#"{"health":"OK","daemon_health":"OK","image_health":"OK","states":{"replaying":1}}"#;

/// Fast retries, so tests take milliseconds; three tries per read.
fn settings(endpoints: Vec<Url>) -> GlueSettings {
    GlueSettings {
        site: "site-b".to_string(),
        endpoints,
        trust: TlsTrust::Insecure,
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        },
    }
}

fn client(endpoints: Vec<Url>) -> GlueClient {
    GlueClient::new(settings(endpoints)).unwrap()
}

#[tokio::test]
async fn a_read_fails_over_past_a_dead_storage_vm_and_then_stays_on_the_live_one() {
    let dead = fakes::raw("https", Misbehaviour::CloseAtOnce).await;
    let live = fakes::glue(&[(200, PRIMARY_STATUS)]).await;
    let glue = client(vec![dead.url.clone(), live.url.clone()]);
    assert_eq!(glue.last_good_endpoint(), None);

    let status = glue.image_status(IMAGE).await.unwrap();
    assert!(status.is_healthy_in_sync());
    assert_eq!(dead.connections(), 1);
    assert_eq!(live.count(), 1);
    assert_eq!(glue.last_good_endpoint(), Some(live.label().as_str()));

    glue.image_status(IMAGE).await.unwrap();
    assert_eq!(dead.connections(), 1, "the dead endpoint was tried again");
    assert_eq!(live.count(), 2);

    let sent = &live.requests()[0];
    assert_eq!(sent.method, "GET");
    assert_eq!(
        sent.path,
        format!("/api/v1/mirror/image/status/rbd/{IMAGE}")
    );
    assert_eq!(sent.accept.as_deref(), Some(MEDIA));
    assert_eq!(sent.authorization.as_deref(), Some(MEDIA));
    assert_eq!(sent.body, "");
}

#[tokio::test]
async fn glue_500_from_a_live_endpoint_is_the_answer_and_is_not_retried() {
    let first = fakes::glue(&[(500, NOT_MIRRORED)]).await;
    let second = fakes::glue(&[(200, PRIMARY_STATUS)]).await;
    let glue = client(vec![first.url.clone(), second.url.clone()]);

    let err = glue.image_status(IMAGE).await.unwrap_err();
    assert_eq!(first.count(), 1);
    assert_eq!(second.count(), 0);
    assert_eq!(
        *err.kind,
        GlueErrorKind::Rbd {
            http_status: 500,
            code: Some(500),
            exit_status: Some(22),
            message: "rbd: mirroring not enabled on the image".to_string(),
        }
    );
    assert!(err.is_not_mirrored());
    assert_eq!(
        err.to_string(),
        format!(
            "site-b: Glue GET /mirror/image/status/rbd/{IMAGE} ({}): \
             rbd: mirroring not enabled on the image (exit status 22): this image is not \
             mirrored: check the VM's DR mirroring (`drbook run status`)",
            first.label()
        )
    );
}

#[tokio::test]
async fn raw_text_and_empty_500s_are_rbd_answers_too() {
    let unmirrored_pool = fakes::glue(&[(500, "rbd: mirroring not enabled on the pool")]).await;
    let err = client(vec![unmirrored_pool.url.clone()])
        .pool_summary()
        .await
        .unwrap_err();
    assert_eq!(
        err.rbd_message(),
        Some("rbd: mirroring not enabled on the pool")
    );
    assert_eq!(err.exit_status(), None);
    assert!(err.is_not_mirrored());
    assert_eq!(unmirrored_pool.count(), 1);

    let crashed = fakes::glue(&[(500, "")]).await;
    let err = client(vec![crashed.url.clone()])
        .image_status(IMAGE)
        .await
        .unwrap_err();
    assert_eq!(err.rbd_message(), Some(""));
    has(&err.to_string(), "handler crashed");
    assert_eq!(crashed.count(), 1);
}

#[tokio::test]
async fn a_busy_endpoint_is_asked_again_up_to_the_retry_limit() {
    let busy_once = fakes::glue(&[(503, ""), (200, SUMMARY)]).await;
    let other = fakes::glue(&[(200, SUMMARY)]).await;
    let glue = client(vec![busy_once.url.clone(), other.url.clone()]);
    let summary = glue.pool_summary().await.unwrap();
    assert_eq!(summary.health, "OK");
    assert_eq!(busy_once.count(), 2);
    assert_eq!(
        other.count(),
        0,
        "a live endpoint's 503 is no reason to fail over"
    );

    let always_busy = fakes::glue(&[(429, "slow down")]).await;
    let err = client(vec![always_busy.url.clone()])
        .pool_summary()
        .await
        .unwrap_err();
    assert_eq!(always_busy.count(), 3);
    assert_eq!(
        *err.kind,
        GlueErrorKind::Http {
            status: 429,
            body_excerpt: "slow down".to_string()
        }
    );
}

#[tokio::test]
async fn a_read_without_answer_is_tried_again_on_the_next_endpoint() {
    let hung = fakes::raw("http", Misbehaviour::CloseAfterRequest).await;
    let live = fakes::glue(&[(200, SUMMARY)]).await;
    let glue = client(vec![hung.url.clone(), live.url.clone()]);
    glue.pool_summary().await.unwrap();
    assert_eq!(hung.connections(), 1);
    assert_eq!(live.count(), 1);

    let lone = fakes::raw("http", Misbehaviour::CloseAfterRequest).await;
    let err = client(vec![lone.url.clone()])
        .pool_summary()
        .await
        .unwrap_err();
    assert!(
        matches!(*err.kind, GlueErrorKind::Transport { .. }),
        "{err}"
    );
    assert_eq!(lone.connections(), 3);
}

#[tokio::test]
async fn every_endpoint_down_is_unreachable_and_lists_each() {
    let a: Url = format!("http://{}", refused_addr()).parse().unwrap();
    let b: Url = format!("http://{}", refused_addr()).parse().unwrap();
    let glue = client(vec![a.clone(), b.clone()]);
    let labels: Vec<String> = [&a, &b]
        .iter()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .collect();

    for err in [
        glue.image_status(IMAGE).await.unwrap_err(),
        glue.promote(IMAGE).await.unwrap_err(),
    ] {
        assert!(err.is_unreachable(), "{err}");
        assert_eq!(err.endpoint, None);
        let GlueErrorKind::Unreachable { tried } = err.kind.as_ref() else {
            unreachable!()
        };
        let tried_labels: Vec<&str> = tried.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(tried_labels, labels);
        let shown = err.to_string();
        has(&shown, &labels[0]);
        has(&shown, &labels[1]);
        lacks(&shown, "\n");
    }
    assert_eq!(glue.last_good_endpoint(), None);
}

#[tokio::test]
async fn a_mutation_whose_answer_is_unusable_is_sent_once_and_outcome_unknown() {
    for (status, body) in [
        (503, ""),
        (502, "<html>bad gateway</html>"),
        (500, ""),
        (200, "not json"),
    ] {
        let first = fakes::glue(&[(status, body)]).await;
        let second = fakes::glue(&[(200, PROMOTED)]).await;
        let glue = client(vec![first.url.clone(), second.url.clone()]);
        let err = glue.promote(IMAGE).await.unwrap_err();
        assert!(err.is_outcome_unknown(), "{status}: {err}");
        assert_eq!(first.count(), 1, "{status}: re-sent");
        assert_eq!(second.count(), 0, "{status}: sent elsewhere too");
        assert_eq!(err.endpoint.as_deref(), Some(first.label().as_str()));
        let shown = err.to_string();
        has(&shown, "did not re-send");
        has(&shown, "check the image status");
    }
}

#[tokio::test]
async fn a_mutation_whose_connection_drops_is_sent_once() {
    let dropping = fakes::raw("http", Misbehaviour::CloseAfterRequest).await;
    let second = fakes::glue(&[(200, PROMOTED)]).await;
    let glue = client(vec![dropping.url.clone(), second.url.clone()]);
    let err = glue.demote(IMAGE).await.unwrap_err();
    assert!(err.is_outcome_unknown(), "{err}");
    assert_eq!(err.endpoint.as_deref(), Some(dropping.label().as_str()));
    assert_eq!(dropping.connections(), 1);
    assert_eq!(second.count(), 0);
}

#[tokio::test]
async fn a_mutation_without_answer_in_time_is_outcome_unknown() {
    let silent = fakes::raw("http", Misbehaviour::NeverAnswer).await;
    let second = fakes::glue(&[(200, PROMOTED)]).await;
    let mut s = settings(vec![silent.url.clone(), second.url.clone()]);
    s.timeout = Duration::from_millis(300);
    let glue = GlueClient::new(s).unwrap();
    let err = glue.resync(IMAGE).await.unwrap_err();
    assert!(err.is_outcome_unknown(), "{err}");
    has(&err.to_string(), "timed out");
    assert_eq!(silent.connections(), 1);
    assert_eq!(second.count(), 0);
}

#[tokio::test]
async fn a_mutation_moves_on_only_when_the_connection_was_never_made() {
    let dead = fakes::raw("https", Misbehaviour::CloseAtOnce).await;
    let live = fakes::glue(&[(200, PROMOTED)]).await;
    let glue = client(vec![dead.url.clone(), live.url.clone()]);

    assert_eq!(
        glue.promote(IMAGE).await.unwrap(),
        "Image promoted to primary"
    );
    assert_eq!(dead.connections(), 1);
    assert_eq!(live.count(), 1);
    let sent = &live.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.path,
        format!("/api/v1/mirror/image/promote/rbd/{IMAGE}")
    );
    assert_eq!(sent.accept.as_deref(), Some(MEDIA));
    assert_eq!(sent.authorization.as_deref(), Some(MEDIA));
    assert_eq!(
        sent.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        sent.form(),
        [
            ("mirrorPool".to_string(), "rbd".to_string()),
            ("imageName".to_string(), IMAGE.to_string())
        ]
    );
}

#[tokio::test]
async fn glue_json_error_on_a_mutation_is_definitive() {
    let body = r#"{"code":500,"message":"exit status 16\nrbd: error promoting image to primary\n2024-06-24T10:00:00.000+0900 7f handle_get_info: image is primary within a remote cluster or demotion is not propagated yet\nrbd: error promoting image to primary"}"#;
    let first = fakes::glue(&[(500, body)]).await;
    let second = fakes::glue(&[(200, PROMOTED)]).await;
    let glue = client(vec![first.url.clone(), second.url.clone()]);
    let err = glue.promote(IMAGE).await.unwrap_err();
    assert_eq!(err.exit_status(), Some(16));
    has(err.rbd_message().unwrap(), "handle_get_info:");
    assert!(!err.is_outcome_unknown());
    assert_eq!((first.count(), second.count()), (1, 0));
}

#[tokio::test]
async fn every_mutation_uses_glue_route_method_and_form() {
    let glue_server = fakes::glue(&[(200, PROMOTED)]).await;
    let glue = client(vec![glue_server.url.clone()]);
    glue.promote(IMAGE).await.unwrap();
    glue.promote_peer(IMAGE).await.unwrap();
    glue.demote(IMAGE).await.unwrap();
    glue.demote_peer(IMAGE).await.unwrap();
    glue.resync(IMAGE).await.unwrap();
    glue.resync_peer(IMAGE).await.unwrap();
    glue.mirror_snapshot("i-2-34-VM", &["vol-a", "vol-b"])
        .await
        .unwrap();

    let sent: Vec<(String, String)> = glue_server
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let expected = [
        ("POST", "promote"),
        ("POST", "promote/peer"),
        ("DELETE", "demote"),
        ("DELETE", "demote/peer"),
        ("PUT", "resync"),
        ("PUT", "resync/peer"),
    ]
    .iter()
    .map(|(m, op)| {
        (
            (*m).to_string(),
            format!("/api/v1/mirror/image/{op}/rbd/{IMAGE}"),
        )
    })
    .chain([(
        "POST".to_string(),
        "/api/v1/mirror/image/snapshot/rbd/i-2-34-VM".to_string(),
    )])
    .collect::<Vec<_>>();
    assert_eq!(sent, expected);

    let requests = glue_server.requests();
    for r in &requests[..6] {
        assert_eq!(
            r.form(),
            [
                ("mirrorPool".to_string(), "rbd".to_string()),
                ("imageName".to_string(), IMAGE.to_string())
            ],
            "{} {}",
            r.method,
            r.path
        );
    }
    assert_eq!(
        requests[6].form(),
        [
            ("mirrorPool".to_string(), "rbd".to_string()),
            ("imageList".to_string(), "vol-a,vol-b".to_string()),
            ("vmName".to_string(), "i-2-34-VM".to_string())
        ]
    );
}

#[tokio::test]
async fn every_read_uses_its_route() {
    let health = r#"{"fsid":"9980ffe8","health":{"status":"HEALTH_WARN","checks":{},"mutes":[]}}"#;
    let pool = r#"{"summary":{"health":"","daemon_health":"","image_health":"","states":null},"daemons":null,"images":null}"#;
    let missing = r#"{"name":"","global_id":"","state":"","description":"","daemon_service":null,"last_update":"","peer_sites":null}"#;
    let info = r#"{"name":"vol","id":"77aa","size":1073741824,"snapshot_count":0,"features":["layering"],"parent":{"pool":"","image":"","snapshot":""}}"#;
    let server = fakes::glue(&[
        (200, health),
        (200, SUMMARY),
        (200, pool),
        (200, missing),
        (200, PRIMARY_STATUS),
        (200, info),
    ])
    .await;
    let glue = client(vec![server.url.clone()]);
    assert!(glue.health().await.unwrap().is_usable());
    assert_eq!(glue.pool_summary().await.unwrap().states["replaying"], 1);
    assert!(glue.pool_status().await.unwrap().is_mirroring_disabled());
    assert_eq!(glue.image(IMAGE).await.unwrap(), None);
    assert!(glue.image(IMAGE).await.unwrap().unwrap().is_primary());
    assert_eq!(glue.image_info(IMAGE).await.unwrap().parent, None);

    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/glue".to_string(),
            "/api/v1/mirror".to_string(),
            "/api/v1/mirror/image/rbd".to_string(),
            format!("/api/v1/mirror/image/rbd/{IMAGE}"),
            format!("/api/v1/mirror/image/rbd/{IMAGE}"),
            format!("/api/v1/mirror/image/info/rbd/{IMAGE}"),
        ]
    );
}

#[tokio::test]
async fn a_read_answered_with_garbage_is_a_decode_error_not_a_retry() {
    let server = fakes::glue(&[(200, "<html>login</html>")]).await;
    let err = client(vec![server.url.clone()])
        .image_status(IMAGE)
        .await
        .unwrap_err();
    assert!(matches!(*err.kind, GlueErrorKind::Decode { .. }), "{err}");
    assert_eq!(server.count(), 1);
    let shown = err.to_string();
    // No markup is quoted.
    lacks(&shown, "<");
    has(&shown, "an HTML page without a title instead of JSON");
    assert!(shown.ends_with("not at a proxy or a login page"), "{shown}");
}

#[tokio::test]
async fn image_names_are_encoded_and_route_changing_names_are_refused() {
    let server = fakes::glue(&[(200, PRIMARY_STATUS)]).await;
    let glue = client(vec![server.url.clone()]);
    glue.image_status("a/b c").await.unwrap();
    assert_eq!(
        server.requests()[0].path,
        "/api/v1/mirror/image/status/rbd/a%2Fb%20c"
    );

    for bad in ["..", ".", ""] {
        let err = glue.promote(bad).await.unwrap_err();
        assert!(
            matches!(*err.kind, GlueErrorKind::InvalidArgument { .. }),
            "{err}"
        );
        has(&err.to_string(), "nothing was sent");
    }
    for images in [&[][..], &["a,b"][..]] {
        let err = glue.mirror_snapshot("i-2-34-VM", images).await.unwrap_err();
        assert!(matches!(*err.kind, GlueErrorKind::InvalidArgument { .. }));
    }
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_client_without_endpoints_is_refused() {
    let err = GlueClient::new(settings(Vec::new())).unwrap_err();
    assert_eq!(*err.kind, GlueErrorKind::NoEndpoints);
    assert!(err.to_string().starts_with("site-b: "), "{err}");
}

fn pinned(glue: &fakes::TlsGlue, pem: &str) -> (GlueClient, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pem).unwrap();
    let mut s = settings(vec![glue.url.clone()]);
    s.trust = TlsTrust::Pinned(file.path().to_path_buf());
    (GlueClient::new(s).unwrap(), file)
}

#[tokio::test]
async fn a_pinned_self_signed_certificate_is_trusted_whatever_address_it_names() {
    let health = r#"{"fsid":"f","health":{"status":"HEALTH_OK","checks":null}}"#;
    let glue = fakes::tls_glue(health).await;
    let (client, _pem) = pinned(&glue, &glue.cert_pem);
    assert!(client.health().await.unwrap().is_usable());
    assert_eq!(glue.count(), 1);
}

#[tokio::test]
async fn a_certificate_other_than_the_pinned_one_is_refused_before_anything_is_sent() {
    let health = r#"{"fsid":"f","health":{"status":"HEALTH_OK","checks":null}}"#;
    let glue = fakes::tls_glue(health).await;
    let impostor = fakes::tls_glue(health).await;
    let (client, _pem) = pinned(&glue, &impostor.cert_pem);
    let err = client.promote(IMAGE).await.unwrap_err();
    let GlueErrorKind::Unreachable { tried } = err.kind.as_ref() else {
        panic!("{err}");
    };
    assert!(tried[0].1.to_lowercase().contains("certificate"), "{err}");
    has(&err.to_string(), "glue_ca_file");
    assert_links_only_to(&err.to_string(), &glue.url);
    assert_eq!(glue.count(), 0);
}

#[tokio::test]
async fn raw_calls_follow_the_same_rules() {
    let server = fakes::glue(&[(200, SUMMARY), (200, r#""Snapshot ID: 17\n""#), (503, "")]).await;
    let glue = client(vec![server.url.clone()]);
    let summary = glue
        .raw(reqwest::Method::GET, &["mirror"], &[])
        .await
        .unwrap();
    assert_eq!(summary["health"], "OK");
    let garbage = glue
        .raw(
            reqwest::Method::DELETE,
            &["mirror", "garbage"],
            &[("mirrorPool", "rbd")],
        )
        .await
        .unwrap();
    assert_eq!(garbage, "Snapshot ID: 17\n");
    let err = glue
        .raw(reqwest::Method::PUT, &["mirror"], &[("interval", "5m")])
        .await
        .unwrap_err();
    assert!(err.is_outcome_unknown(), "{err}");
    assert_eq!(server.count(), 3, "the mutation was re-sent");

    let requests = server.requests();
    assert_eq!(requests[1].method, "DELETE");
    assert_eq!(requests[1].path, "/api/v1/mirror/garbage");
    assert_eq!(
        requests[1].form(),
        [("mirrorPool".to_string(), "rbd".to_string())]
    );
    assert_eq!(
        requests[2].form(),
        [("interval".to_string(), "5m".to_string())]
    );
}

/// Panics if `shown` holds an `http://`/`https://` link other than `endpoint` (a library's
/// documentation link, say).
fn assert_links_only_to(shown: &str, endpoint: &Url) {
    let label = endpoint.as_str().trim_end_matches('/');
    let links = shown.matches("http://").count() + shown.matches("https://").count();
    assert_eq!(
        links,
        shown.matches(label).count(),
        "a link other than {label}: {shown}"
    );
}

#[tokio::test]
async fn a_storage_vm_dropping_tls_mid_answer_gives_no_documentation_link() {
    // rustls words this "peer closed connection without sending TLS close_notify: https://docs.rs/…".
    let dropping = fakes::tls_raw(Misbehaviour::CloseAfterRequest).await;
    let glue = client(vec![dropping.url.clone()]);

    let read = glue.pool_summary().await.unwrap_err();
    assert!(
        matches!(*read.kind, GlueErrorKind::Transport { .. }),
        "{read}"
    );
    assert_eq!(dropping.connections(), 3, "a read is tried three times");
    let shown = read.to_string();
    has(&shown, "close_notify");
    lacks(&shown, "docs.rs");
    assert_links_only_to(&shown, &dropping.url);
    assert!(
        shown.ends_with("check it with `drbook sites`, then retry"),
        "{shown}"
    );

    let mutation = glue.promote(IMAGE).await.unwrap_err();
    assert!(mutation.is_outcome_unknown(), "{mutation}");
    assert_eq!(dropping.connections(), 4, "the mutation went once");
    let shown = mutation.to_string();
    has(&shown, "close_notify");
    lacks(&shown, "docs.rs");
    assert_links_only_to(&shown, &dropping.url);
}

#[tokio::test]
async fn a_read_without_answer_in_time_names_glue_timeout() {
    let silent = fakes::raw("http", Misbehaviour::NeverAnswer).await;
    let mut s = settings(vec![silent.url.clone()]);
    s.timeout = Duration::from_millis(200);
    let err = GlueClient::new(s)
        .unwrap()
        .pool_summary()
        .await
        .unwrap_err();
    assert!(matches!(*err.kind, GlueErrorKind::Timeout { .. }), "{err}");
    assert_eq!(silent.connections(), 3);
    let shown = err.to_string();
    has(&shown, "glue_timeout = 200ms");
    has(&shown, "raise glue_timeout");
}

#[tokio::test]
async fn a_rate_limited_mutation_is_sent_again_as_it_never_ran() {
    let limited_twice = fakes::glue(&[(429, ""), (429, ""), (200, PROMOTED)]).await;
    let glue = client(vec![limited_twice.url.clone()]);
    assert_eq!(
        glue.promote(IMAGE).await.unwrap(),
        "Image promoted to primary"
    );
    assert_eq!(limited_twice.count(), 3);

    let always = fakes::glue(&[(429, "Too Many Requests")]).await;
    let other = fakes::glue(&[(200, PROMOTED)]).await;
    let glue = client(vec![always.url.clone(), other.url.clone()]);
    let err = glue.demote(IMAGE).await.unwrap_err();
    assert_eq!(always.count(), 3, "attempts = 3");
    assert_eq!(other.count(), 0, "a 429 is an answer: no fail-over");
    assert!(err.is_rate_limited(), "{err}");
    assert!(!err.is_outcome_unknown(), "{err}");
    let shown = err.to_string();
    has(&shown, "HTTP 429");
    has(&shown, "not executed");
    assert!(shown.ends_with("retry later"), "{shown}");
}

#[tokio::test]
async fn a_5xx_on_a_mutation_is_never_resent_even_with_retry_after() {
    let busy =
        fakes::glue_with_headers(&[(503, "", &[("retry-after", "1")]), (200, PROMOTED, &[])]).await;
    let err = client(vec![busy.url.clone()])
        .promote(IMAGE)
        .await
        .unwrap_err();
    assert!(err.is_outcome_unknown(), "{err}");
    assert!(!err.is_rate_limited(), "{err}");
    assert_eq!(busy.count(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_only_up_to_the_policy_cap() {
    // An hour's Retry-After; the policy's cap is 2 ms. The calls finish, and the guard below
    // only stops a broken client from hanging the suite.
    let hour: &[(&str, &str)] = &[("retry-after", "3600")];
    let server = fakes::glue_with_headers(&[
        (429, "", hour),
        (200, PROMOTED, &[]),
        (429, "", hour),
        (200, SUMMARY, &[]),
    ])
    .await;
    let glue = client(vec![server.url.clone()]);
    let guard = Duration::from_secs(60);
    tokio::time::timeout(guard, glue.promote(IMAGE))
        .await
        .expect("the cap bounds Retry-After")
        .unwrap();
    tokio::time::timeout(guard, glue.pool_summary())
        .await
        .expect("the cap bounds Retry-After")
        .unwrap();
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn a_proxy_page_is_named_by_its_title_never_quoted() {
    let page = "<html><head><title>503 Service Unavailable</title></head><body><hr><center>nginx</center></body></html>";
    let proxy = fakes::glue(&[(503, page)]).await;
    let glue = client(vec![proxy.url.clone()]);
    for err in [
        glue.pool_summary().await.unwrap_err(),
        glue.promote(IMAGE).await.unwrap_err(),
    ] {
        let shown = err.to_string();
        // No markup is quoted.
        lacks(&shown, "<");
        has(&shown, "HTML page \"503 Service Unavailable\"");
    }
    let read = glue.pool_summary().await.unwrap_err();
    assert!(
        read.to_string()
            .ends_with("check the storage VM with `drbook sites` and retry when it answers"),
        "{read}"
    );
    // Three tries per read, one send per mutation.
    assert_eq!(proxy.count(), 3 + 1 + 3);
}
