//! One site's Mold API: signing, transport, retries for reads, typed commands.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use url::Url;

use super::envelope::{self, Answer, AsyncSubmit, Body};
use super::error::{MoldError, MoldErrorKind};
use super::sign::{self, SignatureAlgorithm, java_url_encode};
use super::types::{Capabilities, DrClusterRecord, VirtualMachine};
use crate::duration::Human;
use crate::http::{self, RetryPolicy, TlsTrust};
use crate::secret::Secret;

/// Everything needed to talk to one site's Mold.
#[derive(Debug, Clone)]
pub struct MoldSettings {
    /// The site's name, used in every error.
    pub site: String,
    /// Mold's base URL (`http://10.10.22.10:8080`); `/client/api` is added unless present.
    pub url: Url,
    pub api_key: Secret,
    pub secret_key: Secret,
    pub algorithm: SignatureAlgorithm,
    /// Sign with `signatureversion=3` and an `expires` this far ahead.
    pub signature_v3_expiry: Option<Duration>,
    pub trust: TlsTrust,
    pub connect_timeout: Duration,
    /// Per request, for ordinary commands (the DR list does peer and Glue I/O: be generous).
    pub timeout: Duration,
    /// Per request, for the synchronous VM-level DR commands that hold a request for minutes.
    pub long_timeout: Duration,
    /// How long an async job may run before drbook stops waiting for it.
    pub job_timeout: Duration,
    /// The longest pause between two polls of an async job.
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
}

/// Whether a command only reads. Mold's own rule (`enforce.post.requests.and.timestamps`):
/// commands named `get…`, `list…`, `query…` or `find…` do not change state.
pub fn is_read_command(command: &str) -> bool {
    ["get", "list", "query", "find"].iter().any(|verb| {
        command.len() > verb.len()
            && command[..verb.len()].eq_ignore_ascii_case(verb)
            && command.as_bytes()[verb.len()].is_ascii_uppercase()
    })
}

/// The synchronous DR commands that block for minutes while Mold waits on Ceph.
pub fn is_long_command(command: &str) -> bool {
    matches!(
        command,
        "startDisasterRecoveryClusterVm"
            | "stopDisasterRecoveryClusterVm"
            | "promoteDisasterRecoveryClusterVm"
            | "demoteDisasterRecoveryClusterVm"
            | "takeSnapshotDisasterRecoveryClusterVm"
    )
}

/// A signed Mold API client for one site. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct MoldClient {
    settings: MoldSettings,
    endpoint: Url,
    http: reqwest::Client,
    /// Whether this site was recently unreachable (shared by clones, and with the site's
    /// Glue client when [`MoldClient::sharing_unreachable`] set it): then it is asked once
    /// per call, without retry waits.
    unreachable: Arc<http::Unreachable>,
    /// How long this site's recent jobs took, per command (shared by clones): a job is
    /// first polled when the ones before it finished (`jobs.rs`).
    pub(crate) job_times: Arc<super::job_times::JobTimes>,
}

impl MoldClient {
    pub fn new(settings: MoldSettings) -> Result<Self, MoldError> {
        let endpoint = api_endpoint(&settings.url);
        let http =
            http::client(&settings.trust, settings.connect_timeout).map_err(|e| MoldError {
                site: settings.site.clone(),
                command: "(set-up)".into(),
                kind: MoldErrorKind::Setup {
                    detail: e.to_string(),
                },
            })?;
        Ok(Self {
            settings,
            endpoint,
            http,
            unreachable: Arc::new(http::Unreachable::default()),
            job_times: Arc::default(),
        })
    }

    /// This client with `memory` as its memory of the site being unreachable: a site's
    /// Mold and Glue share one, so a site found dark through either is asked once after.
    #[must_use]
    pub fn sharing_unreachable(mut self, memory: Arc<http::Unreachable>) -> Self {
        self.unreachable = memory;
        self
    }

    pub fn site(&self) -> &str {
        &self.settings.site
    }

    /// The `/client/api` URL requests go to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub fn settings(&self) -> &MoldSettings {
        &self.settings
    }

    fn error(&self, command: &str, kind: MoldErrorKind) -> MoldError {
        MoldError {
            site: self.settings.site.clone(),
            command: command.to_string(),
            kind,
        }
    }

    /// Calls a command and returns the inside of its envelope. Reads go as GET and are
    /// retried on transient failures; anything else goes as a POST form and is sent again only
    /// when it provably did not run (refused connection, rate limited). A `Retry-After` is
    /// honoured up to the retry policy's cap.
    pub async fn call(&self, command: &str, params: &[(&str, &str)]) -> Result<Body, MoldError> {
        let read = is_read_command(command);
        let timeout = if is_long_command(command) {
            (self.settings.long_timeout, "long_timeout")
        } else {
            (self.settings.timeout, "timeout")
        };
        let recently_down = self.unreachable.recently();
        let policy = if recently_down {
            RetryPolicy::NEVER
        } else {
            self.settings.retry
        };
        let mut retry = 0;
        loop {
            if !read && let Err(reason) = crate::fence::check() {
                return Err(self.error(command, MoldErrorKind::Fenced { reason }));
            }
            let (outcome, retry_after) = self.exchange(command, params, read, timeout).await;
            if !matches!(outcome, Err(MoldErrorKind::Unreachable { .. })) {
                self.unreachable.mark(false);
            }
            let Err(kind) = outcome else {
                return outcome.map_err(|k| self.error(command, k));
            };
            // A connection not accepted is final for this call: the site looks dark, and
            // waiting through retries on every probe of a site in disaster costs seconds.
            let dark = matches!(kind, MoldErrorKind::Unreachable { connect: true, .. });
            let may_retry = !dark
                && if read {
                    kind.is_transient_for_read()
                } else {
                    kind.proves_not_executed()
                };
            if !may_retry || retry + 1 >= policy.attempts {
                if matches!(kind, MoldErrorKind::Unreachable { .. }) {
                    self.unreachable.mark(true);
                }
                return Err(self.error(command, kind));
            }
            let delay = policy.delay_after(retry, retry_after);
            tracing::debug!(
                site = %self.settings.site, command, error = %kind,
                "retrying in {}", Human(delay)
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// One signed HTTP exchange, no retry; with the answer's `Retry-After`, if it had one.
    /// `timeout` is the deadline and the drbook.toml key that sets it.
    async fn exchange(
        &self,
        command: &str,
        params: &[(&str, &str)],
        read: bool,
        timeout: (Duration, &'static str),
    ) -> (Result<Body, MoldErrorKind>, Option<Duration>) {
        let encoded = self.signed_query(command, params);
        let request = if read {
            let mut url = self.endpoint.clone();
            url.set_query(Some(&encoded));
            self.http.get(url)
        } else {
            self.http
                .post(self.endpoint.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(encoded)
        };
        tracing::trace!(site = %self.settings.site, command, read, "mold request");
        let response = match request.timeout(timeout.0).send().await {
            Ok(r) => r,
            Err(e) => return (Err(self.transport_error(&e, read, timeout)), None),
        };
        let status = response.status().as_u16();
        let retry_after = http::retry_after(response.headers());
        let x_description = response
            .headers()
            .get("X-Description")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return (Err(self.transport_error(&e, read, timeout)), retry_after),
        };
        let decoded = envelope::decode(
            command,
            Answer {
                status,
                x_description: x_description.as_deref(),
                body: &body,
            },
            self.settings.algorithm,
        );
        let decoded = match decoded {
            // A mutation answered by something that is not Mold's API (a proxy's 502 page, a
            // truncated body) may still have run; a 429 was turned away before it did.
            Err(
                MoldErrorKind::Http {
                    http_status,
                    excerpt,
                }
                | MoldErrorKind::Decode {
                    http_status,
                    detail: excerpt,
                },
            ) if !read && http_status != 429 => Err(MoldErrorKind::OutcomeUnknown {
                reason: format!("HTTP {http_status}: {excerpt}"),
            }),
            other => other,
        };
        (decoded, retry_after)
    }

    fn transport_error(
        &self,
        e: &reqwest::Error,
        read: bool,
        (timeout, key): (Duration, &'static str),
    ) -> MoldErrorKind {
        // A deadline names the drbook.toml key that sets it.
        let reason = match (e.is_timeout(), e.is_connect()) {
            (true, true) => format!(
                "no connection within connect_timeout = {}",
                Human(self.settings.connect_timeout)
            ),
            (true, false) => format!("timed out after {key} = {}", Human(timeout)),
            (false, _) => http::describe_transport_error(e),
        };
        if http::never_sent(e) {
            MoldErrorKind::Unreachable {
                url: self.endpoint.to_string(),
                reason,
                connect: true,
            }
        } else if !read {
            MoldErrorKind::OutcomeUnknown { reason }
        } else if e.is_timeout() {
            MoldErrorKind::Timeout {
                timeout: Human(timeout).to_string(),
            }
        } else {
            MoldErrorKind::Unreachable {
                url: self.endpoint.to_string(),
                reason,
                connect: false,
            }
        }
    }

    /// `name=value&…&signature=…`, values Java-encoded, ready for a query string or form body.
    fn signed_query(&self, command: &str, params: &[(&str, &str)]) -> String {
        let mut all: Vec<(String, String)> = Vec::with_capacity(params.len() + 5);
        all.push(("command".into(), command.into()));
        all.push(("response".into(), "json".into()));
        all.push(("apikey".into(), self.settings.api_key.expose().into()));
        if let Some(window) = self.settings.signature_v3_expiry {
            let expires = chrono::Utc::now()
                + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(5));
            all.push(("signatureversion".into(), "3".into()));
            all.push((
                "expires".into(),
                expires.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
            ));
        }
        all.extend(
            params
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        let signature = sign::signature(
            &all,
            self.settings.secret_key.expose(),
            self.settings.algorithm,
        );
        let mut out = all
            .iter()
            .map(|(k, v)| format!("{}={}", java_url_encode(k), java_url_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        out.push_str("&signature=");
        out.push_str(&java_url_encode(&signature));
        out
    }

    /// Submits an async command and returns its job id (and the new entity's id, if any).
    pub async fn submit(
        &self,
        command: &str,
        params: &[(&str, &str)],
    ) -> Result<AsyncSubmit, MoldError> {
        let body = self.call(command, params).await?;
        envelope::async_submit(&body).map_err(|detail| self.decode_error(command, detail))
    }

    /// Submits an async command and waits for its job; returns the job's `jobresult`.
    pub async fn call_async(
        &self,
        command: &str,
        params: &[(&str, &str)],
    ) -> Result<serde_json::Value, MoldError> {
        let submitted = self.submit(command, params).await?;
        self.wait_for_job(command, &submitted.jobid).await
    }

    pub(crate) fn decode_error(&self, command: &str, detail: String) -> MoldError {
        self.error(
            command,
            MoldErrorKind::Decode {
                http_status: 200,
                detail,
            },
        )
    }

    /// Every item of a list command, page by page (`count` is a page's size, not a total).
    pub async fn list<T: DeserializeOwned>(
        &self,
        command: &str,
        params: &[(&str, &str)],
        object: &str,
    ) -> Result<Vec<T>, MoldError> {
        const PAGE_SIZE: usize = 500;
        let page_size = PAGE_SIZE.to_string();
        let mut items = Vec::new();
        for page in 1.. {
            let page = page.to_string();
            let mut p = params.to_vec();
            p.push(("page", &page));
            p.push(("pagesize", &page_size));
            let body = self.call(command, &p).await?;
            let batch: Vec<T> =
                envelope::list(&body, object).map_err(|d| self.decode_error(command, d))?;
            let n = batch.len();
            items.extend(batch);
            if n < PAGE_SIZE {
                break;
            }
        }
        Ok(items)
    }

    /// `listCapabilities`: the version and whether the DR service is on.
    pub async fn capabilities(&self) -> Result<Capabilities, MoldError> {
        const COMMAND: &str = "listCapabilities";
        let body = self.call(COMMAND, &[]).await?;
        envelope::single(&body, "capability").map_err(|d| self.decode_error(COMMAND, d))
    }

    /// `listScvmIpAddress`: this site's storage-VM (Glue) addresses.
    pub async fn scvm_ip_addresses(&self) -> Result<Vec<String>, MoldError> {
        #[derive(serde::Deserialize)]
        struct Row {
            #[serde(default)]
            ipaddress: String,
        }
        const COMMAND: &str = "listScvmIpAddress";
        let body = self.call(COMMAND, &[]).await?;
        let rows: Vec<Row> =
            envelope::list(&body, "scvmipaddress").map_err(|d| self.decode_error(COMMAND, d))?;
        Ok(rows
            .iter()
            .flat_map(|r| r.ipaddress.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// `getDisasterRecoveryClusterList`, optionally filtered (`id`, `name`, `drclustertype`).
    /// The name filter is applied again here: some builds match substrings.
    pub async fn dr_clusters(
        &self,
        filter: &[(&str, &str)],
    ) -> Result<Vec<DrClusterRecord>, MoldError> {
        let records: Vec<DrClusterRecord> = self
            .list(
                "getDisasterRecoveryClusterList",
                filter,
                "disasterrecoverycluster",
            )
            .await?;
        let name = filter.iter().find(|(k, _)| *k == "name").map(|(_, v)| *v);
        Ok(records
            .into_iter()
            .filter(|r| name.is_none_or(|n| r.name == n))
            .collect())
    }

    /// `listVirtualMachines`; `keyword` matches substrings, so callers filter names exactly.
    pub async fn virtual_machines(
        &self,
        params: &[(&str, &str)],
    ) -> Result<Vec<VirtualMachine>, MoldError> {
        self.list("listVirtualMachines", params, "virtualmachine")
            .await
    }
}

/// `http://host:8080` → `http://host:8080/client/api`; an URL already ending there is kept.
fn api_endpoint(base: &Url) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    let path = url.path().trim_end_matches('/').to_string();
    if path.ends_with("/client/api") {
        url.set_path(&path);
    } else {
        url.set_path(&format!("{path}/client/api"));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_commands_follow_molds_rule() {
        for read in [
            "listVirtualMachines",
            "getDisasterRecoveryClusterList",
            "queryAsyncJobResult",
            "listCapabilities",
            "findHostsForMigration",
        ] {
            assert!(is_read_command(read), "{read}");
        }
        for write in [
            "promoteDisasterRecoveryCluster",
            "startVirtualMachine",
            "updateDisasterRecoveryCluster",
            "getter",
            "listen",
            "list",
        ] {
            assert!(!is_read_command(write), "{write}");
        }
    }

    #[test]
    fn endpoint_gets_client_api_once() {
        let u = |s: &str| api_endpoint(&Url::parse(s).unwrap()).to_string();
        assert_eq!(u("http://10.0.0.1:8080"), "http://10.0.0.1:8080/client/api");
        assert_eq!(
            u("http://10.0.0.1:8080/"),
            "http://10.0.0.1:8080/client/api"
        );
        assert_eq!(
            u("http://10.0.0.1:8080/client/api/"),
            "http://10.0.0.1:8080/client/api"
        );
        assert_eq!(
            u("https://mold.example/x"),
            "https://mold.example/x/client/api"
        );
    }
}
