//! A site's Glue API at `/api/v1` on each storage VM: the mirroring routes of the spec
//! (`glue-and-rbd.md` §2.1) over the storage model, with Glue's own answer shapes — the
//! capital-M `Message` success body, the bare JSON string of the garbage route, and 500
//! `{"code":500,"message":"exit status N\n<rbd output>"}` errors.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::faults::{Api, FaultAction, lose_answer, reset_response};
use super::params::Params;
use super::server::SiteRoute;
use super::storage::RbdError;
use super::world::World;

pub async fn handle(
    State(route): State<SiteRoute>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let shared = route.shared.clone();
    let site = route.site.clone();
    if !shared.site_up(&site) {
        return reset_response();
    }
    let path = uri.path().to_string();
    // A mutation counts on arrival, before a fault can spoil it.
    if let Some(key) = mutation_key(&method, &path) {
        shared.world().mutations.record(&site, Api::Glue, &key);
    }
    let label = format!("{method} {path}");
    let mut lose = None;
    match shared.take_fault(&site, Api::Glue, &label, "") {
        FaultAction::None | FaultAction::FailJob(_) => {}
        FaultAction::Respond(r) => return r,
        FaultAction::Delay(d) => tokio::time::sleep(d).await,
        FaultAction::LoseAnswer(hold) => lose = Some(hold),
    }
    let mut form = Params::parse(uri.query().unwrap_or(""));
    if !body.is_empty() && !body.starts_with(b"--") {
        form.0
            .extend(Params::parse(&String::from_utf8_lossy(&body)).0);
    }
    let answer = {
        let now = shared.now();
        let mut world = shared.world();
        world.advance(now);
        *world.glue_calls.entry((site.clone(), label)).or_default() += 1;
        let segments = segments(&path);
        match segments
            .as_deref()
            .and_then(|seg| Route::parse(method.as_str(), seg))
        {
            Some(route) => route_request(&mut world, &site, route, &form, now),
            None => not_found(),
        }
    };
    match lose {
        Some(hold) => lose_answer(answer, hold).await,
        None => answer,
    }
}

/// The path's segments under `/api/v1/`; `None` outside it.
fn segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix("/api/v1/")?;
    Some(rest.split('/').filter(|s| !s.is_empty()).collect())
}

/// The key a mutating request is counted under (see [`super::mutations`]): `None` for a
/// read (a `GET`); for one of Glue's routes, the method and the route without its pool,
/// image, host and VM names (`POST /mirror/image/promote`); for a path Glue has no route for
/// (it answers 404), the method and the path as received, `/api/v1` and all, so it stands
/// out.
pub fn mutation_key(method: &Method, path: &str) -> Option<String> {
    if *method == Method::GET {
        return None;
    }
    let route = segments(path)
        .as_deref()
        .and_then(|seg| Route::parse(method.as_str(), seg));
    Some(route.map_or_else(|| format!("{method} {path}"), |r| r.key()))
}

/// Glue's routes (spec §2.1): what a request's method and path mean. The names a request
/// carries in its path (pool, image, host, VM) are left out of its [`Route::key`], so one
/// command has one key whatever it names. A new route is a new variant: the compiler then
/// asks for its key and its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    /// `GET /glue`: `ceph -s`.
    ClusterStatus,
    /// `GET /glue/version`.
    Version,
    /// `POST /service/{name}`, `control=start|stop|restart`.
    Service { name: &'a str },
    /// `GET /mirror`: the pool's mirroring summary.
    PoolSummary,
    /// `POST /mirror` or `POST /mirror/{pool}`: set mirroring up with the peer.
    MirrorSetup,
    /// `PUT /mirror`: the Mold settings Glue keeps.
    MirrorUpdate,
    /// `DELETE /mirror`: tear mirroring down.
    MirrorTeardown,
    /// `DELETE /mirror/{pool}`: tear one pool's mirroring down.
    PoolMirrorTeardown,
    /// `DELETE /mirror/garbage`: remove what a cleared DR cluster left.
    Garbage,
    /// `GET /mirror/image/info/{pool}/{image}`: `rbd info`.
    ImageInfo { image: &'a str },
    /// `GET /mirror/image/status/{pool}/{image}`: `rbd mirror image status`.
    ImageStatus { image: &'a str },
    /// `POST /mirror/image/promote/peer/{pool}/{image}`.
    PromotePeer { image: &'a str },
    /// `POST /mirror/image/promote/{pool}/{image}` (always `--force`).
    Promote { image: &'a str },
    /// `DELETE /mirror/image/demote/peer/{pool}/{image}`.
    DemotePeer { image: &'a str },
    /// `DELETE /mirror/image/demote/{pool}/{image}`.
    Demote { image: &'a str },
    /// `PUT /mirror/image/resync/peer/{pool}/{image}`.
    ResyncPeer { image: &'a str },
    /// `PUT /mirror/image/resync/{pool}/{image}`.
    Resync { image: &'a str },
    /// `POST /mirror/image/snapshot/{pool}/{vm}`, the images in `imageList`.
    Snapshot,
    /// `GET /mirror/image/{pool}`: every image's status.
    PoolStatus,
    /// `GET /mirror/image/{pool}/{image}`: one image's row of the pool status.
    PoolImage { image: &'a str },
    /// `POST /mirror/image/{pool}/{image}/{host}/{vm}`: enable mirroring of an image.
    EnableImage { image: &'a str },
    /// `DELETE /mirror/image/{pool}/{image}`: disable mirroring of an image.
    DisableImage { image: &'a str },
}

impl<'a> Route<'a> {
    /// The route of a method and the path's segments under `/api/v1/`, as Glue's router
    /// matches them (literal segments before names).
    fn parse(method: &str, seg: &[&'a str]) -> Option<Self> {
        Some(match (method, seg) {
            ("GET", ["glue"]) => Self::ClusterStatus,
            ("GET", ["glue", "version"]) => Self::Version,
            ("POST", ["service", name]) => Self::Service { name },
            ("GET", ["mirror"]) => Self::PoolSummary,
            ("POST", ["mirror"] | ["mirror", _]) => Self::MirrorSetup,
            ("PUT", ["mirror"]) => Self::MirrorUpdate,
            ("DELETE", ["mirror"]) => Self::MirrorTeardown,
            ("DELETE", ["mirror", "garbage"]) => Self::Garbage,
            ("DELETE", ["mirror", _pool]) => Self::PoolMirrorTeardown,
            ("GET", ["mirror", "image", "info", _pool, image]) => Self::ImageInfo { image },
            ("GET", ["mirror", "image", "status", _pool, image]) => Self::ImageStatus { image },
            ("POST", ["mirror", "image", "promote", "peer", _pool, image]) => {
                Self::PromotePeer { image }
            }
            ("POST", ["mirror", "image", "promote", _pool, image]) => Self::Promote { image },
            ("DELETE", ["mirror", "image", "demote", "peer", _pool, image]) => {
                Self::DemotePeer { image }
            }
            ("DELETE", ["mirror", "image", "demote", _pool, image]) => Self::Demote { image },
            ("PUT", ["mirror", "image", "resync", "peer", _pool, image]) => {
                Self::ResyncPeer { image }
            }
            ("PUT", ["mirror", "image", "resync", _pool, image]) => Self::Resync { image },
            ("POST", ["mirror", "image", "snapshot", _pool, _vm]) => Self::Snapshot,
            ("GET", ["mirror", "image", _pool]) => Self::PoolStatus,
            ("GET", ["mirror", "image", _pool, image]) => Self::PoolImage { image },
            ("POST", ["mirror", "image", _pool, image, _host, _vm]) => Self::EnableImage { image },
            ("DELETE", ["mirror", "image", _pool, image]) => Self::DisableImage { image },
            _ => return None,
        })
    }

    /// The method, and the route's literal segments without its names.
    fn shape(&self) -> (&'static str, std::borrow::Cow<'a, str>) {
        let (method, path) = match *self {
            Self::ClusterStatus => ("GET", "/glue"),
            Self::Version => ("GET", "/glue/version"),
            // The service's name says which command it is: it stays.
            Self::Service { name } => return ("POST", format!("/service/{name}").into()),
            Self::PoolSummary => ("GET", "/mirror"),
            Self::MirrorSetup => ("POST", "/mirror"),
            Self::MirrorUpdate => ("PUT", "/mirror"),
            Self::MirrorTeardown | Self::PoolMirrorTeardown => ("DELETE", "/mirror"),
            Self::Garbage => ("DELETE", "/mirror/garbage"),
            Self::ImageInfo { .. } => ("GET", "/mirror/image/info"),
            Self::ImageStatus { .. } => ("GET", "/mirror/image/status"),
            Self::PromotePeer { .. } => ("POST", "/mirror/image/promote/peer"),
            Self::Promote { .. } => ("POST", "/mirror/image/promote"),
            Self::DemotePeer { .. } => ("DELETE", "/mirror/image/demote/peer"),
            Self::Demote { .. } => ("DELETE", "/mirror/image/demote"),
            Self::ResyncPeer { .. } => ("PUT", "/mirror/image/resync/peer"),
            Self::Resync { .. } => ("PUT", "/mirror/image/resync"),
            Self::Snapshot => ("POST", "/mirror/image/snapshot"),
            Self::PoolStatus | Self::PoolImage { .. } => ("GET", "/mirror/image"),
            Self::EnableImage { .. } => ("POST", "/mirror/image"),
            Self::DisableImage { .. } => ("DELETE", "/mirror/image"),
        };
        (method, path.into())
    }

    /// `METHOD /route`, names left out: `POST /mirror/image/promote`.
    fn key(&self) -> String {
        let (method, path) = self.shape();
        format!("{method} {path}")
    }
}

fn route_request(
    w: &mut World,
    site: &str,
    route: Route<'_>,
    form: &Params,
    now: std::time::Instant,
) -> Response {
    let peer = w.peer_of(site);
    match route {
        Route::ClusterStatus => json_ok(&ceph_status(w, site)),
        Route::Version => json_ok(&json!({
            "mon": {"ceph version 16.2.15 pacific (stable)": 1},
            "rbd-mirror": {"ceph version 16.2.15 pacific (stable)": 1},
            "overall": {"ceph version 16.2.15 pacific (stable)": 3}
        })),
        Route::Service { name } => {
            let control = form.get("control").unwrap_or("");
            if name == "rbd-mirror" {
                let done = match control {
                    "stop" => w.storage.set_daemon_up(now, site, false),
                    "start" | "restart" => w.storage.set_daemon_up(now, site, true),
                    _ => Ok(()),
                };
                if let Err(e) = done {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"code": 500, "message": e}).to_string(),
                    )
                        .into_response();
                }
            }
            json_ok(&json!(format!("Scheduled to {control} {name}")))
        }
        Route::PoolSummary => match w.storage.pool_summary(now, site) {
            Ok(v) => json_ok(&v),
            // This route passes rbd's text through raw, without `exit status`.
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"code": 500, "message": e.output.trim_end()}).to_string(),
            )
                .into_response(),
        },
        Route::MirrorSetup => {
            w.glue_mirror_setup(now);
            json_ok(&json!({
                "localClusterName": "local", "remoteClusterName": "remote",
                "host": form.get("host").unwrap_or(""), "privateKeyFile": null, "mirrorPool": "rbd",
                "localToken": token(site), "remoteToken": token(&peer)
            }))
        }
        Route::MirrorUpdate => {
            json_ok(&json!({"mold_url": "", "mold_api_key": "", "mold_secret_key": ""}))
        }
        Route::MirrorTeardown => {
            w.glue_mirror_teardown(now);
            json_ok(&json!({"Message": "Mirroring disabled"}))
        }
        Route::Garbage => match w.glue_garbage(now, site) {
            Ok(()) => json_ok(&json!("")),
            Err(e) => rbd_error(&e),
        },
        Route::PoolMirrorTeardown => {
            w.glue_mirror_teardown(now);
            json_ok(&json!({
                "localClusterName": "", "remoteClusterName": "", "host": "",
                "privateKeyFile": null, "mirrorPool": "rbd", "localToken": "", "remoteToken": ""
            }))
        }
        Route::ImageInfo { image } => rbd_json(w.storage.image_info(site, image)),
        Route::ImageStatus { image } => rbd_json(w.storage.image_status(now, site, image)),
        Route::PromotePeer { image } => {
            peer_op(w, site, |w, p| w.storage.promote(now, p, image, true))
        }
        Route::Promote { image } => {
            match w.storage.promote(now, site, image, true) {
                Ok(out) => message(&out),
                // Glue runs the forced promote and reports its output twice (spec §6.5),
                // each copy ending in rbd's newline.
                Err(e) => {
                    let once = format!("{}\n", e.output.trim_end());
                    rbd_error(&RbdError {
                        exit_status: e.exit_status,
                        output: format!("{once}{once}"),
                    })
                }
            }
        }
        Route::DemotePeer { image } => peer_op(w, site, |w, p| w.storage.demote(now, p, image)),
        Route::Demote { image } => {
            // Stock rbd refuses `demote --force` (unrecognised option); Glue then demotes.
            rbd_message(w.storage.demote(now, site, image))
        }
        Route::ResyncPeer { image } => peer_op(w, site, |w, p| w.storage.resync(now, p, image)),
        Route::Resync { image } => rbd_message(w.storage.resync(now, site, image)),
        Route::Snapshot => {
            // The manual round ignores rbd's errors and always answers 200 (spec §6.5).
            let list = form
                .get("imageList")
                .or_else(|| form.get("imageName"))
                .unwrap_or("");
            let mut out = String::new();
            for img in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if let Ok(o) = w.storage.mirror_snapshot(now, site, img) {
                    out.push_str(&o);
                }
            }
            message(&out)
        }
        Route::PoolStatus => json_ok(&w.storage.pool_status(now, site)),
        Route::PoolImage { image } => {
            let pool = w.storage.pool_status(now, site);
            let found = pool
                .get("images")
                .and_then(Value::as_array)
                .and_then(|imgs| {
                    imgs.iter()
                        .find(|i| i.get("name").and_then(Value::as_str) == Some(image))
                })
                .cloned();
            json_ok(&found.unwrap_or_else(|| {
                json!({
                    "name": "", "global_id": "", "state": "", "description": "",
                    "daemon_service": null, "last_update": "", "peer_sites": null
                })
            }))
        }
        Route::EnableImage { image } => rbd_message(w.storage.enable_mirroring(now, site, image)),
        Route::DisableImage { image } => match w.storage.disable_mirroring(now, site, image) {
            Ok(out) => json_ok(&json!({"message": out})),
            Err(e) => rbd_error(&e),
        },
    }
}

/// A `/peer` variant: run against the other cluster, which must be reachable.
fn peer_op(
    w: &mut World,
    site: &str,
    op: impl FnOnce(&mut World, &str) -> Result<String, RbdError>,
) -> Response {
    if !w.storage.peer_reachable(site) {
        return rbd_error(&RbdError {
            exit_status: 110,
            output: "rbd: couldn't connect to the cluster!\n".into(),
        });
    }
    let peer = w.peer_of(site);
    rbd_message(op(w, &peer))
}

/// `ceph -s -f json`: the real cluster's where there is one, else reduced to what callers
/// read (also what a storage VM answers over SSH, [`super::ssh::shell`]).
pub(crate) fn ceph_status(w: &mut World, site: &str) -> Value {
    if let Some(status) = w.storage.cluster_status(site) {
        return status;
    }
    let index = w.site_index(site).unwrap_or(0);
    json!({
        "fsid": format!("5157{index:04x}-0000-4000-8000-00000000{index:04x}"),
        "health": {"status": "HEALTH_OK", "checks": {}, "mutes": []},
        "election_epoch": 3,
        "quorum_names": [format!("{site}-scvm1")],
    })
}

/// A bootstrap token's shape (base64 of fsid, client, key, mon_host); the simulated key is
/// not a credential.
fn token(site: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(
        json!({"fsid": site, "client_id": "rbd-mirror-peer", "key": "simulated", "mon_host": "[v2:127.0.0.1:3300]"}).to_string(),
    )
}

fn json_ok(v: &Value) -> Response {
    let mut r = (
        StatusCode::OK,
        serde_json::to_string_pretty(v).unwrap_or_default(),
    )
        .into_response();
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Glue's promote/demote/resync/snapshot success body: `{"Message": "<stdout>"}`.
fn message(out: &str) -> Response {
    json_ok(&json!({"Message": out}))
}

fn rbd_message(result: Result<String, RbdError>) -> Response {
    match result {
        Ok(out) => message(&out),
        Err(e) => rbd_error(&e),
    }
}

fn rbd_json(result: Result<Value, RbdError>) -> Response {
    match result {
        Ok(v) => json_ok(&v),
        Err(e) => rbd_error(&e),
    }
}

/// `{"code":500,"message":"exit status N\n<output>"}`, compact, as Glue sends it.
fn rbd_error(e: &RbdError) -> Response {
    let body =
        json!({"code": 500, "message": format!("exit status {}\n{}", e.exit_status, e.output)});
    let mut r = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Gin's answer for an unknown route.
fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request per route, its names distinctive, and the key it must count under
    /// (`None`: a read).
    const EXAMPLES: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/glue", None),
        ("GET", "/glue/version", None),
        (
            "POST",
            "/service/rbd-mirror",
            Some("POST /service/rbd-mirror"),
        ),
        ("GET", "/mirror", None),
        ("POST", "/mirror", Some("POST /mirror")),
        ("POST", "/mirror/POOLNAME", Some("POST /mirror")),
        ("PUT", "/mirror", Some("PUT /mirror")),
        ("DELETE", "/mirror", Some("DELETE /mirror")),
        ("DELETE", "/mirror/POOLNAME", Some("DELETE /mirror")),
        ("DELETE", "/mirror/garbage", Some("DELETE /mirror/garbage")),
        ("GET", "/mirror/image/info/POOLNAME/IMAGENAME", None),
        ("GET", "/mirror/image/status/POOLNAME/IMAGENAME", None),
        (
            "POST",
            "/mirror/image/promote/peer/POOLNAME/IMAGENAME",
            Some("POST /mirror/image/promote/peer"),
        ),
        (
            "POST",
            "/mirror/image/promote/POOLNAME/IMAGENAME",
            Some("POST /mirror/image/promote"),
        ),
        (
            "DELETE",
            "/mirror/image/demote/peer/POOLNAME/IMAGENAME",
            Some("DELETE /mirror/image/demote/peer"),
        ),
        (
            "DELETE",
            "/mirror/image/demote/POOLNAME/IMAGENAME",
            Some("DELETE /mirror/image/demote"),
        ),
        (
            "PUT",
            "/mirror/image/resync/peer/POOLNAME/IMAGENAME",
            Some("PUT /mirror/image/resync/peer"),
        ),
        (
            "PUT",
            "/mirror/image/resync/POOLNAME/IMAGENAME",
            Some("PUT /mirror/image/resync"),
        ),
        (
            "POST",
            "/mirror/image/snapshot/POOLNAME/VMNAME",
            Some("POST /mirror/image/snapshot"),
        ),
        ("GET", "/mirror/image/POOLNAME", None),
        ("GET", "/mirror/image/POOLNAME/IMAGENAME", None),
        (
            "POST",
            "/mirror/image/POOLNAME/IMAGENAME/HOSTNAME/VMNAME",
            Some("POST /mirror/image"),
        ),
        (
            "DELETE",
            "/mirror/image/POOLNAME/IMAGENAME",
            Some("DELETE /mirror/image"),
        ),
    ];

    /// Every variant, numbered: a new route does not compile here until it is numbered, and
    /// then fails the test below until it has an example.
    fn ordinal(route: Route<'_>) -> usize {
        match route {
            Route::ClusterStatus => 0,
            Route::Version => 1,
            Route::Service { .. } => 2,
            Route::PoolSummary => 3,
            Route::MirrorSetup => 4,
            Route::MirrorUpdate => 5,
            Route::MirrorTeardown => 6,
            Route::PoolMirrorTeardown => 7,
            Route::Garbage => 8,
            Route::ImageInfo { .. } => 9,
            Route::ImageStatus { .. } => 10,
            Route::PromotePeer { .. } => 11,
            Route::Promote { .. } => 12,
            Route::DemotePeer { .. } => 13,
            Route::Demote { .. } => 14,
            Route::ResyncPeer { .. } => 15,
            Route::Resync { .. } => 16,
            Route::Snapshot => 17,
            Route::PoolStatus => 18,
            Route::PoolImage { .. } => 19,
            Route::EnableImage { .. } => 20,
            Route::DisableImage { .. } => 21,
        }
    }
    const ROUTES: usize = 22;

    #[test]
    fn every_route_has_one_key_without_names() {
        let mut seen = [false; ROUTES];
        for (method, path, expected) in EXAMPLES {
            let full = format!("/api/v1{path}");
            let seg = segments(&full).unwrap();
            let route =
                Route::parse(method, &seg).unwrap_or_else(|| panic!("{method} {path} is no route"));
            seen[ordinal(route)] = true;
            let method: Method = method.parse().unwrap();
            let key = mutation_key(&method, &full);
            assert_eq!(key.as_deref(), *expected, "{method} {path}");
            // Reads have a shape too; neither it nor a key carries a name.
            let shape = route.key();
            for name in ["POOLNAME", "IMAGENAME", "HOSTNAME", "VMNAME", "/api/v1"] {
                assert!(!shape.contains(name), "{method} {path} → {shape}");
            }
            assert!(shape.starts_with(&format!("{method} /")), "{shape}");
        }
        let missing: Vec<usize> = (0..ROUTES).filter(|&i| !seen[i]).collect();
        assert!(missing.is_empty(), "routes without an example: {missing:?}");
    }

    #[test]
    fn same_command_same_key_whatever_it_names() {
        let promote = |pool: &str, image: &str| {
            mutation_key(
                &Method::POST,
                &format!("/api/v1/mirror/image/promote/{pool}/{image}"),
            )
        };
        assert_eq!(promote("rbd", "a"), promote("other", "b"));
        // Literal segments win over names, as in Glue's router.
        assert_eq!(
            mutation_key(&Method::DELETE, "/api/v1/mirror/garbage").as_deref(),
            Some("DELETE /mirror/garbage")
        );
        assert_eq!(
            mutation_key(&Method::POST, "/api/v1/mirror/image/promote/peer/rbd/x").as_deref(),
            Some("POST /mirror/image/promote/peer")
        );
    }

    #[test]
    fn reads_are_not_counted_and_unknown_mutations_stand_out() {
        assert_eq!(
            mutation_key(&Method::GET, "/api/v1/mirror/image/rbd/x"),
            None
        );
        assert_eq!(mutation_key(&Method::GET, "/api/v1/nowhere"), None);
        assert_eq!(
            mutation_key(&Method::POST, "/api/v1/mirror/image/promote/rbd").as_deref(),
            Some("POST /api/v1/mirror/image/promote/rbd")
        );
        assert_eq!(
            mutation_key(&Method::PATCH, "/elsewhere").as_deref(),
            Some("PATCH /elsewhere")
        );
    }
}
