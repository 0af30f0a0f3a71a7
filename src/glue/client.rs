//! The Glue REST client of one site: endpoint failover across the site's storage VMs.
//!
//! Every storage VM (SCVM) of a site runs Glue, and any of them can answer for the whole
//! cluster. The client remembers the endpoint that answered last and starts there, so one dead
//! SCVM costs one failed connection, not one per call.
//!
//! Reads and mutations fail over differently:
//!
//! - A **read** moves on to the next endpoint when a connection cannot be made. An HTTP answer
//!   from a live endpoint is an answer: Glue's HTTP 500 carries `rbd`'s own error and is
//!   final. When no endpoint accepts a connection, or an endpoint answers 429/502/503/504, or
//!   the answer is lost after the request went out, the whole round is tried again with the
//!   site's [`RetryPolicy`]; after a lost answer the next round starts at the next endpoint,
//!   so one hung SCVM does not hold every try.
//! - A **mutation** is sent once. It moves on to the next endpoint only when the connection was
//!   never established, which proves the first endpoint never saw it, and it is sent again
//!   (with the same backoff as reads, as Mold's client does) only on HTTP 429: a rate limiter
//!   turned it away before it ran. Any other failure after the request may have arrived is
//!   [`GlueErrorKind::OutcomeUnknown`] (a 5xx included): the caller re-reads the image status
//!   and decides. Re-sending a promote blindly can leave two primaries.
//!
//! Every retry honours the answer's `Retry-After` (seconds), up to the policy's cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use super::error::{ErrorBody, GlueError, GlueErrorKind, excerpt};
use super::types::{
    ClusterHealth, ImageInfo, ImageStatus, PoolStatus, PoolSummary, decode_message,
};
use crate::duration::Human;
use crate::http::{self, RetryPolicy, TlsTrust};

/// The only pool Mold mirrors.
pub const POOL: &str = "rbd";

/// Glue expects this media type in both `Accept` and `Authorization` (a constant Mold sends,
/// not a credential: Glue has no authentication).
const CEPH_API_V1: &str = "application/vnd.ceph.api.v1.0+json";

/// How to reach one site's Glue.
#[derive(Debug, Clone)]
pub struct GlueSettings {
    /// The site's name, for error messages.
    pub site: String,
    /// The storage VMs' Glue base URLs, e.g. `https://10.10.22.11:8080`, in order of
    /// preference; the client appends `/api/v1`.
    pub endpoints: Vec<Url>,
    pub trust: TlsTrust,
    pub connect_timeout: Duration,
    /// Per request, answer included. Glue runs `rbd` synchronously, so keep it generous.
    pub timeout: Duration,
    /// For reads, and for mutations a rate limiter turned away (HTTP 429); other mutations
    /// are never re-sent.
    pub retry: RetryPolicy,
}

/// A site's Glue API. Cheap to share: calls take `&self` and may run concurrently.
#[derive(Debug)]
pub struct GlueClient {
    site: String,
    endpoints: Vec<Endpoint>,
    http: reqwest::Client,
    connect_timeout: Duration,
    timeout: Duration,
    retry: RetryPolicy,
    /// Index + 1 of the endpoint that answered last; 0 before any answered.
    last_good: AtomicUsize,
    /// Whether no storage VM could be reached recently (shared with the site's Mold client
    /// when [`GlueClient::sharing_unreachable`] set it): then reads try each endpoint once,
    /// without retry waits.
    unreachable: std::sync::Arc<crate::http::Unreachable>,
}

#[derive(Debug)]
struct Endpoint {
    /// The base URL as configured, without credentials: what messages show.
    label: String,
    /// The base URL with `/api/v1`.
    api: Url,
}

/// One Glue call.
struct Call {
    method: Method,
    /// Path segments under `/api/v1`, not yet encoded.
    segments: Vec<String>,
    /// `application/x-www-form-urlencoded` body; `None` for reads.
    form: Option<Vec<(String, String)>>,
}

impl Call {
    fn read(segments: &[&str]) -> Self {
        Self {
            method: Method::GET,
            segments: segments.iter().map(ToString::to_string).collect(),
            form: None,
        }
    }

    fn mutation(method: Method, segments: &[&str], form: &[(&str, &str)]) -> Self {
        Self {
            method,
            segments: segments.iter().map(ToString::to_string).collect(),
            form: Some(
                form.iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            ),
        }
    }

    /// The URL of this call on one endpoint; every segment percent-encoded (`/` included).
    fn url(&self, api: &Url) -> Url {
        let mut url = api.clone();
        url.path_segments_mut()
            .expect("endpoint URLs are checked to be base URLs")
            .pop_if_empty()
            .extend(&self.segments);
        url
    }

    /// `GET /mirror/image/status/rbd/<img>`: the call as error messages name it.
    fn operation(&self) -> String {
        let root = Url::parse("http://glue.invalid/").expect("a valid URL");
        format!("{} {}", self.method, self.url(&root).path())
    }
}

/// What one round over the endpoints ended with.
enum Outcome {
    /// An endpoint answered with an HTTP status.
    Answered {
        endpoint: usize,
        status: StatusCode,
        body: Vec<u8>,
        /// The answer's `Retry-After`, if it had one.
        retry_after: Option<Duration>,
    },
    /// The request may have reached `endpoint`, and then no answer came (timeout, reset).
    Lost {
        endpoint: usize,
        reason: String,
        timed_out: bool,
    },
    /// No endpoint accepted a connection.
    Unreachable { tried: Vec<(String, String)> },
}

/// A transport failure of one request.
struct Failure {
    /// The connection was never established: the request cannot have arrived.
    never_sent: bool,
    /// No answer came within the timeout.
    timed_out: bool,
    reason: String,
}

/// One HTTP answer, body read in full.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

impl GlueClient {
    /// Builds the client and its one connection pool. Nothing is sent yet.
    pub fn new(settings: GlueSettings) -> Result<Self, GlueError> {
        let setup_error = |kind| GlueError {
            site: settings.site.clone(),
            operation: "client set-up".to_string(),
            endpoint: None,
            kind: Box::new(kind),
        };
        if settings.endpoints.is_empty() {
            return Err(setup_error(GlueErrorKind::NoEndpoints));
        }
        let endpoints = settings
            .endpoints
            .iter()
            .map(Endpoint::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|detail| setup_error(GlueErrorKind::Setup { detail }))?;
        let http = http::client(&settings.trust, settings.connect_timeout).map_err(|e| {
            setup_error(GlueErrorKind::Setup {
                detail: e.to_string(),
            })
        })?;
        Ok(Self {
            site: settings.site,
            endpoints,
            http,
            connect_timeout: settings.connect_timeout,
            timeout: settings.timeout,
            retry: settings.retry,
            last_good: AtomicUsize::new(0),
            unreachable: std::sync::Arc::default(),
        })
    }

    /// This client with `memory` as its memory of the site being unreachable (see
    /// `MoldClient::sharing_unreachable`).
    #[must_use]
    pub fn sharing_unreachable(mut self, memory: std::sync::Arc<crate::http::Unreachable>) -> Self {
        self.unreachable = memory;
        self
    }

    /// The site this client speaks for.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The configured endpoints, in order, as messages show them.
    pub fn endpoints(&self) -> Vec<&str> {
        self.endpoints.iter().map(|e| e.label.as_str()).collect()
    }

    /// The endpoint that answered last, if any has yet; calls start there.
    pub fn last_good_endpoint(&self) -> Option<&str> {
        let index = self.last_good.load(Ordering::Relaxed).checked_sub(1)?;
        self.endpoints.get(index).map(|e| e.label.as_str())
    }

    // ---- reads -------------------------------------------------------------------------

    /// `GET /glue`: the cluster's `ceph -s` health.
    pub async fn health(&self) -> Result<ClusterHealth, GlueError> {
        self.read(&Call::read(&["glue"])).await
    }

    /// `GET /mirror`: the pool's mirroring health. A pool without mirroring is an
    /// [`GlueErrorKind::Rbd`] error (`rbd: mirroring not enabled on the pool`).
    pub async fn pool_summary(&self) -> Result<PoolSummary, GlueError> {
        self.read(&Call::read(&["mirror"])).await
    }

    /// `GET /mirror/image/rbd`: every mirrored image's status, in one call.
    pub async fn pool_status(&self) -> Result<PoolStatus, GlueError> {
        self.read(&Call::read(&["mirror", "image", POOL])).await
    }

    /// `GET /mirror/image/rbd/<img>`: the image's entry of the pool status; `None` when the
    /// pool status does not list it (Glue then answers with empty fields).
    pub async fn image(&self, image: &str) -> Result<Option<ImageStatus>, GlueError> {
        let call = self.image_read(&["mirror", "image", POOL], image)?;
        let status: ImageStatus = self.read(&call).await?;
        Ok(Some(status).filter(|s| !s.name.is_empty()))
    }

    /// `GET /mirror/image/status/rbd/<img>`: the image's full mirroring status. An image that
    /// is absent or not mirrored is an [`GlueErrorKind::Rbd`] error.
    pub async fn image_status(&self, image: &str) -> Result<ImageStatus, GlueError> {
        let call = self.image_read(&["mirror", "image", "status", POOL], image)?;
        self.read(&call).await
    }

    /// `GET /mirror/image/info/rbd/<img>`: `rbd info`, for the image's id and parent.
    pub async fn image_info(&self, image: &str) -> Result<ImageInfo, GlueError> {
        let call = self.image_read(&["mirror", "image", "info", POOL], image)?;
        self.read(&call).await
    }

    // ---- mutations ---------------------------------------------------------------------

    /// `POST /mirror/image/promote/rbd/<img>`: promote the image on this site. Glue always
    /// adds `--force`: only call this once the peer's demotion has been replayed here.
    pub async fn promote(&self, image: &str) -> Result<String, GlueError> {
        let call =
            self.image_mutation(Method::POST, &["mirror", "image", "promote", POOL], image)?;
        self.mutate(&call).await
    }

    /// `POST /mirror/image/promote/peer/rbd/<img>`: promote the image on the peer site,
    /// through this site's Glue.
    pub async fn promote_peer(&self, image: &str) -> Result<String, GlueError> {
        let path = ["mirror", "image", "promote", "peer", POOL];
        let call = self.image_mutation(Method::POST, &path, image)?;
        self.mutate(&call).await
    }

    /// `DELETE /mirror/image/demote/rbd/<img>`: demote the image on this site.
    pub async fn demote(&self, image: &str) -> Result<String, GlueError> {
        let call =
            self.image_mutation(Method::DELETE, &["mirror", "image", "demote", POOL], image)?;
        self.mutate(&call).await
    }

    /// `DELETE /mirror/image/demote/peer/rbd/<img>`: demote the image on the peer site.
    pub async fn demote_peer(&self, image: &str) -> Result<String, GlueError> {
        let path = ["mirror", "image", "demote", "peer", POOL];
        let call = self.image_mutation(Method::DELETE, &path, image)?;
        self.mutate(&call).await
    }

    /// `PUT /mirror/image/resync/rbd/<img>`: flag this site's non-primary copy for a full
    /// re-copy from the primary. Its unreplicated writes are lost.
    pub async fn resync(&self, image: &str) -> Result<String, GlueError> {
        let path = ["mirror", "image", "resync", POOL];
        let call = self.image_mutation(Method::PUT, &path, image)?;
        self.mutate(&call).await
    }

    /// `PUT /mirror/image/resync/peer/rbd/<img>`: flag the peer site's copy for resync.
    pub async fn resync_peer(&self, image: &str) -> Result<String, GlueError> {
        let path = ["mirror", "image", "resync", "peer", POOL];
        let call = self.image_mutation(Method::PUT, &path, image)?;
        self.mutate(&call).await
    }

    /// `POST /mirror/image/snapshot/rbd/<vm>`: one consistent round of mirror snapshots of
    /// the VM's images now. Glue ignores the command's errors and always answers 200: check
    /// the peer's status afterwards.
    pub async fn mirror_snapshot(
        &self,
        vm_instance_name: &str,
        images: &[&str],
    ) -> Result<String, GlueError> {
        let segments = ["mirror", "image", "snapshot", POOL, vm_instance_name];
        let invalid = |detail: String| self.invalid(&Method::POST, &segments, detail);
        check_segment("VM instance name", vm_instance_name).map_err(invalid)?;
        if images.is_empty() {
            return Err(invalid("no image to snapshot".to_string()));
        }
        if let Some(bad) = images.iter().find(|i| i.is_empty() || i.contains(',')) {
            return Err(invalid(format!(
                "image name {bad:?} cannot be sent in a comma-separated image list"
            )));
        }
        let image_list = images.join(",");
        let form = [
            ("mirrorPool", POOL),
            ("imageList", image_list.as_str()),
            ("vmName", vm_instance_name),
        ];
        self.mutate(&Call::mutation(Method::POST, &segments, &form))
            .await
    }

    /// Any Glue call, for the scripts' escape hatch: `GET` is a read (fail-over and retries),
    /// any other method a mutation (sent once). The answer is returned as JSON.
    pub async fn raw(
        &self,
        method: Method,
        segments: &[&str],
        form: &[(&str, &str)],
    ) -> Result<serde_json::Value, GlueError> {
        for segment in segments {
            check_segment("path segment", segment)
                .map_err(|detail| self.invalid(&method, segments, detail))?;
        }
        if method == Method::GET {
            return self.read(&Call::read(segments)).await;
        }
        let call = Call::mutation(method, segments, form);
        let (endpoint, body) = self.mutate_body(&call).await?;
        serde_json::from_slice(&body).map_err(|e| {
            self.error(
                &call,
                Some(endpoint),
                GlueErrorKind::OutcomeUnknown {
                    reason: format!("Glue's success answer is not JSON ({e})"),
                },
            )
        })
    }

    // ---- plumbing ----------------------------------------------------------------------

    /// A read of `<path>/<image>`.
    fn image_read(&self, path: &[&str], image: &str) -> Result<Call, GlueError> {
        Ok(Call::read(&self.image_path(&Method::GET, path, image)?))
    }

    /// A mutation of `<path>/<image>`. It also sends `mirrorPool` and `imageName` as form
    /// fields, as Mold does (Glue reads the path).
    fn image_mutation(
        &self,
        method: Method,
        path: &[&str],
        image: &str,
    ) -> Result<Call, GlueError> {
        let segments = self.image_path(&method, path, image)?;
        let form = [("mirrorPool", POOL), ("imageName", image)];
        Ok(Call::mutation(method, &segments, &form))
    }

    fn image_path<'a>(
        &self,
        method: &Method,
        path: &[&'a str],
        image: &'a str,
    ) -> Result<Vec<&'a str>, GlueError> {
        let mut segments = path.to_vec();
        segments.push(image);
        check_segment("image name", image)
            .map_err(|detail| self.invalid(method, &segments, detail))?;
        Ok(segments)
    }

    async fn read<T: DeserializeOwned>(&self, call: &Call) -> Result<T, GlueError> {
        let (endpoint, body) = self.read_body(call).await?;
        serde_json::from_slice(&body).map_err(|e| {
            // A login or proxy page is named, never quoted; serde's text loses the values it
            // would quote (a Glue answer may hold cephx keys).
            let detail = match http::markup_summary(&body) {
                Some(page) => format!("{page} instead of JSON"),
                None => http::unquote(&e.to_string()),
            };
            self.error(call, Some(endpoint), GlueErrorKind::Decode { detail })
        })
    }

    /// A read's successful body, with fail-over and retries.
    async fn read_body(&self, call: &Call) -> Result<(usize, Vec<u8>), GlueError> {
        let attempts = if self.unreachable.recently() {
            1
        } else {
            self.retry.attempts.max(1)
        };
        let mut start = self.start_index();
        let mut attempt = 1;
        loop {
            let last = attempt >= attempts;
            let mut asked_to_wait = None;
            match self.round(call, start).await {
                Outcome::Answered {
                    endpoint,
                    status,
                    body,
                    retry_after,
                } => {
                    self.unreachable.mark(false);
                    if status.is_success() {
                        return Ok((endpoint, body));
                    }
                    if last || !is_busy(status) {
                        return Err(self.error(call, Some(endpoint), read_failure(status, &body)));
                    }
                    tracing::debug!(site = %self.site, status = status.as_u16(), "Glue busy; retrying the read");
                    start = endpoint;
                    asked_to_wait = retry_after;
                }
                Outcome::Lost {
                    endpoint,
                    reason,
                    timed_out,
                } => {
                    if last {
                        let kind = if timed_out {
                            GlueErrorKind::Timeout {
                                timeout: Human(self.timeout).to_string(),
                            }
                        } else {
                            GlueErrorKind::Transport { reason }
                        };
                        return Err(self.error(call, Some(endpoint), kind));
                    }
                    tracing::debug!(site = %self.site, %reason, "no answer from Glue; retrying the read on the next endpoint");
                    start = (endpoint + 1) % self.endpoints.len();
                }
                // No storage VM accepted a connection: final for this read (the site looks
                // dark; asking again at once would only wait).
                Outcome::Unreachable { tried } => {
                    self.unreachable.mark(true);
                    return Err(self.error(call, None, GlueErrorKind::Unreachable { tried }));
                }
            }
            tokio::time::sleep(self.retry.delay_after(attempt - 1, asked_to_wait)).await;
            attempt += 1;
        }
    }

    /// Sends a mutation once (to the next endpoint only if the connection was never made)
    /// and returns its success text.
    async fn mutate(&self, call: &Call) -> Result<String, GlueError> {
        let (endpoint, body) = self.mutate_body(call).await?;
        decode_message(&body).map_err(|detail| {
            self.error(
                call,
                Some(endpoint),
                GlueErrorKind::OutcomeUnknown {
                    reason: format!("Glue's success answer could not be read ({detail})"),
                },
            )
        })
    }

    /// A mutation's successful body. Sent again only after a 429 (see the module docs).
    async fn mutate_body(&self, call: &Call) -> Result<(usize, Vec<u8>), GlueError> {
        let attempts = self.retry.attempts.max(1);
        let mut start = self.start_index();
        let mut attempt = 1;
        loop {
            if let Err(reason) = crate::fence::check() {
                return Err(self.error(call, None, GlueErrorKind::Fenced { reason }));
            }
            match self.round(call, start).await {
                Outcome::Answered {
                    endpoint,
                    status,
                    body,
                    retry_after,
                } => {
                    if status.is_success() {
                        return Ok((endpoint, body));
                    }
                    if status != StatusCode::TOO_MANY_REQUESTS || attempt >= attempts {
                        return Err(self.error(
                            call,
                            Some(endpoint),
                            mutation_failure(status, &body),
                        ));
                    }
                    tracing::debug!(site = %self.site, "Glue rate-limited the mutation before it ran; sending it again");
                    start = endpoint;
                    tokio::time::sleep(self.retry.delay_after(attempt - 1, retry_after)).await;
                    attempt += 1;
                }
                Outcome::Lost {
                    endpoint, reason, ..
                } => {
                    return Err(self.error(
                        call,
                        Some(endpoint),
                        GlueErrorKind::OutcomeUnknown {
                            reason: format!("no answer ({reason})"),
                        },
                    ));
                }
                Outcome::Unreachable { tried } => {
                    return Err(self.error(call, None, GlueErrorKind::Unreachable { tried }));
                }
            }
        }
    }

    /// One pass over the endpoints from `start`: stops at the first that accepts the
    /// connection.
    async fn round(&self, call: &Call, start: usize) -> Outcome {
        let count = self.endpoints.len();
        let mut tried = Vec::new();
        for index in (0..count).map(|k| (start + k) % count) {
            let endpoint = &self.endpoints[index];
            match self.send(endpoint, call).await {
                Ok(Reply {
                    status,
                    body,
                    retry_after,
                }) => {
                    self.last_good.store(index + 1, Ordering::Relaxed);
                    // Worth a warning only when another storage VM answered in its place; when
                    // none does, the error itself says it all (and a dark site would otherwise
                    // log one line per endpoint per call).
                    for (label, reason) in &tried {
                        tracing::warn!(site = %self.site, endpoint = %label, %reason, "Glue endpoint unreachable; another storage VM answered");
                    }
                    return Outcome::Answered {
                        endpoint: index,
                        status,
                        body,
                        retry_after,
                    };
                }
                Err(Failure {
                    never_sent: true,
                    reason,
                    ..
                }) => {
                    tracing::debug!(site = %self.site, endpoint = %endpoint.label, %reason, "Glue endpoint unreachable");
                    tried.push((endpoint.label.clone(), reason));
                }
                Err(Failure {
                    never_sent: false,
                    timed_out,
                    reason,
                }) => {
                    return Outcome::Lost {
                        endpoint: index,
                        reason,
                        timed_out,
                    };
                }
            }
        }
        Outcome::Unreachable { tried }
    }

    /// One request to one endpoint, body read in full.
    async fn send(&self, endpoint: &Endpoint, call: &Call) -> Result<Reply, Failure> {
        let mut request = self
            .http
            .request(call.method.clone(), call.url(&endpoint.api))
            .header(ACCEPT, CEPH_API_V1)
            .header(AUTHORIZATION, CEPH_API_V1)
            .timeout(self.timeout);
        if let Some(form) = &call.form {
            request = request.form(form);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.failure(&e, http::never_sent(&e)))?;
        let status = response.status();
        let retry_after = http::retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| self.failure(&e, false))?;
        Ok(Reply {
            status,
            body: body.to_vec(),
            retry_after,
        })
    }

    /// A transport error in words; a deadline names the drbook.toml key that sets it.
    fn failure(&self, e: &reqwest::Error, never_sent: bool) -> Failure {
        let timed_out = e.is_timeout() && !never_sent;
        let reason = match (e.is_timeout(), never_sent) {
            (true, true) => format!(
                "no connection within connect_timeout = {}",
                Human(self.connect_timeout)
            ),
            (true, false) => format!("timed out after glue_timeout = {}", Human(self.timeout)),
            (false, _) => http::describe_transport_error(e),
        };
        Failure {
            never_sent,
            timed_out,
            reason,
        }
    }

    /// Where the next round starts: the endpoint that answered last.
    fn start_index(&self) -> usize {
        self.last_good.load(Ordering::Relaxed).saturating_sub(1)
    }

    fn error(&self, call: &Call, endpoint: Option<usize>, kind: GlueErrorKind) -> GlueError {
        GlueError {
            site: self.site.clone(),
            operation: call.operation(),
            endpoint: endpoint.map(|i| self.endpoints[i].label.clone()),
            kind: Box::new(kind),
        }
    }

    /// An argument that cannot be sent; names the call with its raw segments.
    fn invalid(&self, method: &Method, segments: &[&str], detail: String) -> GlueError {
        GlueError {
            site: self.site.clone(),
            operation: format!("{method} /{}", segments.join("/")),
            endpoint: None,
            kind: Box::new(GlueErrorKind::InvalidArgument { detail }),
        }
    }
}

impl Endpoint {
    fn new(base: &Url) -> Result<Self, String> {
        if !matches!(base.scheme(), "https" | "http") || base.host_str().is_none() {
            return Err(format!(
                "Glue endpoint {} is not an http(s) URL with a host",
                redact(base)
            ));
        }
        let mut api = base.clone();
        api.set_query(None);
        api.set_fragment(None);
        if !api.path().trim_end_matches('/').ends_with("/api/v1") {
            api.path_segments_mut()
                .map_err(|()| format!("Glue endpoint {} cannot be a base URL", redact(base)))?
                .pop_if_empty()
                .extend(["api", "v1"]);
        }
        Ok(Self {
            label: redact(base),
            api,
        })
    }
}

/// A URL as messages may show it: no user name, password, query or fragment.
fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.as_str().trim_end_matches('/').to_string()
}

/// Refuses what cannot be one path segment: `.` and `..` would change the route, and an
/// empty name matches no route.
fn check_segment(what: &str, segment: &str) -> Result<(), String> {
    if matches!(segment, "" | "." | "..") {
        Err(format!("{what} {segment:?} cannot be used in a Glue URL"))
    } else {
        Ok(())
    }
}

/// Statuses that mean "busy or a proxy in trouble, ask again" for a read. Not 500: that is
/// Glue's answer (rbd failed), and asking again gives the same.
fn is_busy(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// A read's non-success answer. Glue's HTTP 500 carries rbd's error as JSON, as plain text
/// (`GET /mirror`) or, when a handler crashed, nothing.
fn read_failure(status: StatusCode, body: &[u8]) -> GlueErrorKind {
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        match ErrorBody::parse(body) {
            ErrorBody::Json {
                code,
                exit_status,
                message,
            } => return rbd(code, exit_status, message),
            ErrorBody::Text {
                exit_status,
                message,
            } => return rbd(None, exit_status, message),
            ErrorBody::Empty => return rbd(None, None, String::new()),
            ErrorBody::Other => {}
        }
    }
    http_error(status, body)
}

/// A mutation's non-success answer. Only Glue's JSON error body proves the command ran and
/// failed, and a 4xx that the request was refused; anything else may hide a command that
/// ran.
fn mutation_failure(status: StatusCode, body: &[u8]) -> GlueErrorKind {
    if status == StatusCode::INTERNAL_SERVER_ERROR
        && let ErrorBody::Json {
            code,
            exit_status,
            message,
        } = ErrorBody::parse(body)
    {
        return rbd(code, exit_status, message);
    }
    if status.is_client_error() {
        return http_error(status, body);
    }
    let body = excerpt(body);
    let reason = if body.is_empty() {
        format!("Glue answered HTTP {} with an empty body", status.as_u16())
    } else {
        format!("Glue answered HTTP {}: {body}", status.as_u16())
    };
    GlueErrorKind::OutcomeUnknown { reason }
}

fn rbd(code: Option<i64>, exit_status: Option<i32>, message: String) -> GlueErrorKind {
    GlueErrorKind::Rbd {
        http_status: StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
        code,
        exit_status,
        message,
    }
}

fn http_error(status: StatusCode, body: &[u8]) -> GlueErrorKind {
    GlueErrorKind::Http {
        status: status.as_u16(),
        body_excerpt: excerpt(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn endpoints_get_api_v1_appended_once() {
        let plain = Endpoint::new(&url("https://10.10.22.11:8080")).unwrap();
        assert_eq!(plain.label, "https://10.10.22.11:8080");
        assert_eq!(plain.api.as_str(), "https://10.10.22.11:8080/api/v1");
        let given = Endpoint::new(&url("https://10.10.22.11:8080/api/v1/")).unwrap();
        assert_eq!(given.api.as_str(), "https://10.10.22.11:8080/api/v1/");
        let prefixed = Endpoint::new(&url("https://proxy.example/glue1/")).unwrap();
        assert_eq!(prefixed.api.as_str(), "https://proxy.example/glue1/api/v1");
        let call = Call::read(&["mirror"]);
        for e in [&plain, &given, &prefixed] {
            assert!(
                call.url(&e.api).path().ends_with("/api/v1/mirror"),
                "{}",
                e.api
            );
        }
    }

    #[test]
    fn endpoint_labels_never_show_credentials() {
        let e = Endpoint::new(&url("https://admin:hunter2@10.0.0.1:8080/?token=abc#x")).unwrap();
        assert_eq!(e.label, "https://10.0.0.1:8080");
        assert!(!e.api.as_str().contains("token"));
        let bad = Endpoint::new(&url("ftp://admin:hunter2@10.0.0.1/")).unwrap_err();
        assert!(!bad.contains("hunter2"), "{bad}");
        assert!(Endpoint::new(&url("mailto:ops@example.com")).is_err());
    }

    #[test]
    fn image_names_are_one_percent_encoded_segment() {
        let call = Call::read(&["mirror", "image", "status", POOL, "a/b c?d#e%"]);
        assert_eq!(
            call.operation(),
            "GET /mirror/image/status/rbd/a%2Fb%20c%3Fd%23e%25"
        );
        let api = Endpoint::new(&url("https://10.0.0.1:8080")).unwrap().api;
        assert_eq!(
            call.url(&api).as_str(),
            "https://10.0.0.1:8080/api/v1/mirror/image/status/rbd/a%2Fb%20c%3Fd%23e%25"
        );
        for bad in ["", ".", ".."] {
            assert!(check_segment("image name", bad).is_err());
        }
        assert!(check_segment("image name", "...").is_ok());
    }

    #[test]
    fn a_read_takes_glue_500_as_rbd_answer() {
        let json = br#"{"code":500,"message":"exit status 2\nrbd: error opening image x: (2) No such file or directory"}"#;
        assert_eq!(
            read_failure(StatusCode::INTERNAL_SERVER_ERROR, json),
            rbd(
                Some(500),
                Some(2),
                "rbd: error opening image x: (2) No such file or directory".into()
            )
        );
        assert_eq!(
            read_failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                b"rbd: mirroring not enabled on the pool"
            ),
            rbd(None, None, "rbd: mirroring not enabled on the pool".into())
        );
        assert_eq!(
            read_failure(StatusCode::INTERNAL_SERVER_ERROR, b""),
            rbd(None, None, String::new())
        );
        assert!(matches!(
            read_failure(StatusCode::INTERNAL_SERVER_ERROR, b"<html>proxy</html>"),
            GlueErrorKind::Http { status: 500, .. }
        ));
        assert!(matches!(
            read_failure(StatusCode::NOT_FOUND, b"404 page not found"),
            GlueErrorKind::Http { status: 404, .. }
        ));
    }

    #[test]
    fn a_mutation_is_definitive_only_on_glue_json_errors_and_4xx() {
        let json = br#"{"code":500,"message":"exit status 22\nrbd: error flagging image resync"}"#;
        assert!(matches!(
            mutation_failure(StatusCode::INTERNAL_SERVER_ERROR, json),
            GlueErrorKind::Rbd {
                exit_status: Some(22),
                ..
            }
        ));
        assert!(matches!(
            mutation_failure(StatusCode::NOT_FOUND, b""),
            GlueErrorKind::Http { status: 404, .. }
        ));
        for (status, body) in [
            (StatusCode::INTERNAL_SERVER_ERROR, &b""[..]),
            (StatusCode::INTERNAL_SERVER_ERROR, b"rbd: something"),
            (StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            (StatusCode::SERVICE_UNAVAILABLE, b""),
            (StatusCode::PERMANENT_REDIRECT, b""),
        ] {
            let kind = mutation_failure(status, body);
            let GlueErrorKind::OutcomeUnknown { reason } = &kind else {
                panic!("{status}: {kind:?}");
            };
            assert!(reason.contains(status.as_str()), "{reason}");
        }
    }

    #[test]
    fn only_busy_statuses_are_retried() {
        for s in [429, 502, 503, 504] {
            assert!(is_busy(StatusCode::from_u16(s).unwrap()));
        }
        for s in [200, 400, 404, 500, 501] {
            assert!(!is_busy(StatusCode::from_u16(s).unwrap()));
        }
    }
}
