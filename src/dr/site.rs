//! The configured sites: their clients, their DR role as Mold records it, and their health.
//! A site that does not answer is a value here (`Unknown`, `mold: false`), never an error:
//! during a disaster one site is expected to be dark.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use url::Url;

use super::storage_read::{self, Via};
use super::{Dr, DrError};
use crate::config::SiteConfig;
use crate::glue::{GlueClient, GlueSettings};
use crate::http::RetryPolicy;
use crate::mold::MoldClient;
use crate::mold::types::DrClusterType;

/// One configured site's clients.
#[derive(Debug)]
pub(crate) struct SiteHandle {
    pub name: String,
    pub mold: MoldClient,
    /// `None` when drbook.toml lists no `glue_urls` for the site.
    pub glue: Option<GlueClient>,
    /// SSH to the storage VMs (the hosts of `glue_urls`).
    pub ssh: crate::ssh::SshTarget,
    /// How long a health probe of the Glue may take: every endpoint's connect attempts.
    pub glue_probe_budget: Duration,
}

impl SiteHandle {
    pub fn new(site: &SiteConfig) -> Result<Self, DrError> {
        // One memory of the site being dark for its Mold and its Glue: found so through
        // either, both are asked once, without retry waits.
        let dark = std::sync::Arc::new(crate::http::Unreachable::default());
        let mold = MoldClient::new(site.mold.clone())?.sharing_unreachable(dark.clone());
        let glue = if site.glue.urls.is_empty() {
            None
        } else {
            Some(
                GlueClient::new(GlueSettings {
                    site: site.name.clone(),
                    endpoints: site.glue.urls.clone(),
                    trust: site.glue.trust.clone(),
                    connect_timeout: site.glue.connect_timeout,
                    timeout: site.glue.timeout,
                    retry: RetryPolicy::default(),
                })?
                .sharing_unreachable(dark),
            )
        };
        let ssh = crate::ssh::SshTarget {
            site: site.name.clone(),
            hosts: site
                .glue
                .urls
                .iter()
                .filter_map(|u| u.host_str().map(str::to_string))
                .collect(),
            port: site.ssh.port,
            user: site.ssh.user.clone(),
            key_file: site.ssh.key_file.clone(),
            known_hosts: site.ssh.known_hosts.clone(),
            timeout: site.ssh.timeout,
        };
        let attempts = RetryPolicy::default().attempts;
        let endpoints = u32::try_from(site.glue.urls.len()).unwrap_or(u32::MAX);
        Ok(Self {
            name: site.name.clone(),
            mold,
            glue,
            ssh,
            glue_probe_budget: probe_budget(
                site.glue.connect_timeout,
                attempts.saturating_mul(endpoints),
            ),
        })
    }

    /// The site's Glue, or why drbook cannot ask it.
    pub fn glue(&self) -> Result<&GlueClient, DrError> {
        self.glue.as_ref().ok_or_else(|| {
            DrError::Config(format!(
                "site {} has no glue_urls in drbook.toml: add its storage VMs' Glue addresses (e.g. glue_urls = [\"https://10.10.22.11:8080\"]) so drbook can read and change image mirroring there",
                self.name
            ))
        })
    }

    /// This site's Mold as a DR record names it (`drclusterurl`): `scheme://host:port`, any
    /// path prefix kept, without `/client/api` (Mold adds that itself).
    pub fn mold_base_url(&self) -> String {
        mold_base_url(&self.mold.settings().url)
    }

    /// Whether `url` (a DR record's `drclusterurl`) points at this site's Mold: same scheme,
    /// host and port; the path does not matter (`/client/api` or not).
    pub fn is_mold_at(&self, url: &str) -> bool {
        let Ok(url) = Url::parse(url.trim()) else {
            return false;
        };
        let mine = &self.mold.settings().url;
        url.scheme() == mine.scheme()
            && url.host_str() == mine.host_str()
            && url.port_or_known_default() == mine.port_or_known_default()
    }
}

/// `http://10.0.0.1:8080/client/api/` → `http://10.0.0.1:8080`; the port is always written
/// (Mold's own URLs carry it).
pub(crate) fn mold_base_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url
        .port_or_known_default()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/client/api").unwrap_or(path);
    format!(
        "{}://{host}{port}{}",
        url.scheme(),
        path.trim_end_matches('/')
    )
}

/// A configured site, as scripts see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SiteInfo {
    pub name: String,
    pub mold_url: String,
}

impl fmt::Display for SiteInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (Mold {})", self.name, self.mold_url)
    }
}

/// A site's part in its DR pairings, as its own Mold records it. This is the configured
/// pairing, not which side's images are primary right now: a failover does not change it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SiteRole {
    /// The protected site: it holds `secondary`-type records (describing its DR site).
    Primary,
    /// The disaster-recovery site: it holds `primary`-type records.
    Dr,
    /// Unreachable, no DR record, or records of both types (pairings in both directions).
    Unknown,
}

impl SiteRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Dr => "dr",
            Self::Unknown => "unknown",
        }
    }

    /// The role the record types held by one site give it.
    pub(crate) fn from_record_types<'a>(
        types: impl IntoIterator<Item = &'a DrClusterType>,
    ) -> Self {
        let (mut secondary, mut primary) = (false, false);
        for t in types {
            match t {
                DrClusterType::Secondary => secondary = true,
                DrClusterType::Primary => primary = true,
                DrClusterType::Other(_) => {}
            }
        }
        match (secondary, primary) {
            (true, false) => Self::Primary,
            (false, true) => Self::Dr,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for SiteRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an API of a site answered a probe.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// It answered usably.
    Up,
    /// No endpoint accepted a connection: the site looks dark.
    Down,
    /// It accepted the connection but gave no usable answer (an error page, a garbled or
    /// missing answer, a rejected key): alive, in a state drbook cannot tell.
    Unknown,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }

    fn of_error(e: &DrError) -> Self {
        if e.is_unreachable() {
            Self::Down
        } else {
            Self::Unknown
        }
    }
}

/// What a quick check of a site found. Never an error: an unreachable site is `false` with
/// the reason in `problem`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Health {
    pub site: String,
    /// Mold answered a signed call.
    pub mold: bool,
    /// Glue answered and Ceph serves I/O (`HEALTH_OK` or `HEALTH_WARN`, Mold's own test).
    pub glue: bool,
    /// Whether Mold answered, accepted no connection, or answered unusably.
    pub mold_reach: Reach,
    /// Whether Glue answered (whatever Ceph's health), accepted no connection, or answered
    /// unusably; `unknown` also when drbook.toml lists no Glue for the site.
    pub glue_reach: Reach,
    /// Ceph's health status as Glue reports it (`HEALTH_OK`, `HEALTH_WARN`, `HEALTH_ERR`).
    pub glue_health: Option<String>,
    pub mold_ms: Option<u64>,
    pub glue_ms: Option<u64>,
    /// Where Ceph's health (`glue_health`) was read from: `glue`, or `ssh` (`ceph -s` on a
    /// storage VM) when no Glue endpoint accepted a connection; `None` when it was not read.
    pub storage_read_via: Option<Via>,
    /// `site-b: Glue unreachable, read over SSH from 127.0.2.1` when it was read over SSH.
    pub note: Option<String>,
    /// The first thing wrong, with what to do.
    pub problem: Option<String>,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |ok: bool, ms: Option<u64>| match (ok, ms) {
            (true, Some(ms)) => format!("ok ({ms} ms)"),
            (true, None) => "ok".to_string(),
            (false, _) => "DOWN".to_string(),
        };
        write!(
            f,
            "{}: Mold {}, Glue {}",
            self.site,
            part(self.mold, self.mold_ms),
            part(self.glue, self.glue_ms)
        )?;
        if let Some(h) = &self.glue_health {
            write!(f, " [{h}]")?;
        }
        if let Some(p) = &self.problem {
            write!(f, " — {p}")?;
        }
        if let Some(n) = &self.note {
            write!(f, " — {n}")?;
        }
        Ok(())
    }
}

/// How long one health probe may take at least, retries included: a blackholed site must not
/// hold a health check for the client's full request timeout, yet its connect attempts must
/// fit, so that it reads as down rather than unknown.
const PROBE_BUDGET: Duration = Duration::from_secs(30);

/// The probe budget for a client: every connect attempt and the pauses between them fit.
fn probe_budget(connect_timeout: Duration, attempts: u32) -> Duration {
    (connect_timeout * attempts.max(1) + Duration::from_secs(10)).max(PROBE_BUDGET)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Dr {
    /// The configured sites' names, in configuration order.
    pub fn site_names(&self) -> Vec<String> {
        self.inner.sites.iter().map(|s| s.name.clone()).collect()
    }

    /// A configured site; an unknown name lists the configured ones.
    pub fn site(&self, name: &str) -> Result<SiteInfo, DrError> {
        let h = self.handle(name)?;
        Ok(SiteInfo {
            name: h.name.clone(),
            mold_url: h.mold.settings().url.to_string(),
        })
    }

    /// A configured site's Mold as a DR record names it (`scheme://host:port`): what two
    /// configurations of the same site agree on.
    pub fn mold_base(&self, site: &str) -> Option<String> {
        self.handle(site).ok().map(SiteHandle::mold_base_url)
    }

    pub(crate) fn handle(&self, name: &str) -> Result<&SiteHandle, DrError> {
        self.inner
            .sites
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| DrError::NotFound {
                what: "site in drbook.toml".into(),
                name: name.into(),
                suggestions: crate::suggest::all_closest_first(
                    name,
                    self.inner.sites.iter().map(|s| &s.name),
                ),
            })
    }

    /// The site's DR role, read live from its Mold's DR records; `Unknown` when it does not
    /// answer.
    pub async fn site_role(&self, site: &str) -> SiteRole {
        let Ok(h) = self.handle(site) else {
            return SiteRole::Unknown;
        };
        match h.mold.dr_clusters(&[]).await {
            Ok(records) => SiteRole::from_record_types(records.iter().map(|r| &r.cluster_type)),
            Err(_) => SiteRole::Unknown,
        }
    }

    /// Mold (`listCapabilities`) and Glue (`GET /glue`) probed at once, with latencies.
    pub async fn health(&self, site: &str) -> Health {
        let mut health = Health {
            site: site.to_string(),
            mold: false,
            glue: false,
            mold_reach: Reach::Unknown,
            glue_reach: Reach::Unknown,
            glue_health: None,
            mold_ms: None,
            glue_ms: None,
            storage_read_via: None,
            note: None,
            problem: None,
        };
        let h = match self.handle(site) {
            Ok(h) => h,
            Err(e) => {
                health.problem = Some(e.to_string());
                return health;
            }
        };
        let mold_budget = probe_budget(
            h.mold.settings().connect_timeout,
            h.mold.settings().retry.attempts,
        );
        let mold_probe = async {
            let started = Instant::now();
            let r = tokio::time::timeout(mold_budget, h.mold.capabilities()).await;
            (r, started.elapsed())
        };
        let glue_budget = h.glue_probe_budget;
        let glue_probe = async {
            let glue = h.glue.as_ref()?;
            let started = Instant::now();
            let r = tokio::time::timeout(glue_budget, glue.health()).await;
            Some((r, started.elapsed()))
        };
        let ((mold, mold_took), glue) = tokio::join!(mold_probe, glue_probe);
        let mut problems = Vec::new();
        match mold {
            Ok(Ok(caps)) => {
                health.mold = true;
                health.mold_reach = Reach::Up;
                health.mold_ms = Some(millis(mold_took));
                if caps.dr_enabled == Some(false) {
                    problems.push(format!(
                        "the DR service is off on {site}'s Mold: set cloud.dr.service.enabled = true (updateConfiguration) and restart the management server"
                    ));
                }
            }
            Ok(Err(e)) => {
                let e = DrError::from(e);
                health.mold_reach = Reach::of_error(&e);
                problems.push(e.to_string());
            }
            Err(_) => problems.push(format!(
                "{site}: Mold gave no answer within {}: check it with drbook sites",
                crate::duration::Human(mold_budget)
            )),
        }
        match glue {
            None => problems.push(h.glue().err().map(|e| e.to_string()).unwrap_or_default()),
            Some((Ok(Ok(ceph)), took)) => {
                health.glue = ceph.is_usable();
                health.glue_reach = Reach::Up;
                health.glue_ms = Some(millis(took));
                if !health.glue {
                    problems.push(format!(
                        "{site}: Ceph reports {} — storage does not serve I/O; check `ceph -s` on a storage VM",
                        ceph.status
                    ));
                }
                health.glue_health = Some(ceph.status);
                health.storage_read_via = Some(Via::Glue);
            }
            Some((Ok(Err(e)), _)) => {
                let glue_error = DrError::from(e.clone());
                health.glue_reach = Reach::of_error(&glue_error);
                if e.is_unreachable() && h.ssh.key_file.is_some() {
                    // The same `ceph -s` over SSH: Ceph's health, with Glue still down.
                    let command = Some(storage_read::CLUSTER_STATUS_COMMAND.to_string());
                    let read = self.glue_or_ssh(
                        site,
                        Err(e),
                        command,
                        storage_read::decode_cluster_health,
                    );
                    match tokio::time::timeout(glue_budget, read).await {
                        Ok(Ok((ceph, read))) => {
                            problems.push(glue_error.to_string());
                            if !ceph.is_usable() {
                                problems.push(format!(
                                    "{site}: Ceph reports {} — storage does not serve I/O; check `ceph -s` on a storage VM",
                                    ceph.status
                                ));
                            }
                            health.glue_health = Some(ceph.status);
                            health.storage_read_via = Some(read.via);
                            health.note = read.note();
                        }
                        // Both named: Glue's error and SSH's.
                        Ok(Err(both)) => problems.push(both.to_string()),
                        Err(_) => problems.push(format!(
                            "{glue_error}; over SSH (`{}`): no answer within {}",
                            storage_read::CLUSTER_STATUS_COMMAND,
                            crate::duration::Human(glue_budget)
                        )),
                    }
                } else {
                    problems.push(glue_error.to_string());
                }
            }
            Some((Err(_), _)) => problems.push(format!(
                "{site}: Glue gave no answer within {}: check it with drbook sites",
                crate::duration::Human(glue_budget)
            )),
        }
        health.problem = problems.into_iter().find(|p| !p.is_empty());
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mold_base_url_has_its_port_and_no_api_path() {
        let base = |s: &str| mold_base_url(&Url::parse(s).unwrap());
        assert_eq!(base("http://10.0.0.1:8080"), "http://10.0.0.1:8080");
        assert_eq!(base("http://10.0.0.1:8080/"), "http://10.0.0.1:8080");
        assert_eq!(
            base("http://10.0.0.1:8080/client/api/"),
            "http://10.0.0.1:8080"
        );
        assert_eq!(base("https://mold.example"), "https://mold.example:443");
        assert_eq!(
            base("https://mold.example/x/client/api"),
            "https://mold.example:443/x"
        );
        assert_eq!(base("http://[::1]:8080"), "http://[::1]:8080");
    }

    #[test]
    fn roles_follow_the_record_types() {
        use DrClusterType::{Other, Primary, Secondary};
        assert_eq!(SiteRole::from_record_types(&[Secondary]), SiteRole::Primary);
        assert_eq!(SiteRole::from_record_types(&[Primary]), SiteRole::Dr);
        assert_eq!(SiteRole::from_record_types(&[]), SiteRole::Unknown);
        assert_eq!(
            SiteRole::from_record_types(&[Primary, Secondary]),
            SiteRole::Unknown
        );
        assert_eq!(
            SiteRole::from_record_types(&[Other("x".into()), Primary]),
            SiteRole::Dr
        );
        assert_eq!(SiteRole::Dr.to_string(), "dr");
    }
}
