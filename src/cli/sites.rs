//! `drbook sites`: every configured site, checked — Mold (signed call, DR service, storage
//! VMs) and each Glue endpoint (Ceph health) — with latencies. A site that does not answer is
//! a row saying why, never a crash.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use super::output::{OutputFormat, table};
use crate::config::{Config, SiteConfig};
use crate::error::{Error, exit};
use crate::glue::{GlueClient, GlueSettings};
use crate::http::RetryPolicy;
use crate::mold::MoldClient;

#[derive(Debug, clap::Args)]
pub struct SitesArgs {
    /// Check only these sites (default: all)
    #[arg(value_name = "SITE")]
    pub only: Vec<String>,
}

/// What one site's check found.
#[derive(Debug, Serialize)]
struct SiteReport {
    name: String,
    mold: MoldCheck,
    /// One entry per configured Glue endpoint; empty when the site lists none.
    glue: Vec<GlueCheck>,
}

#[derive(Debug, Serialize)]
struct MoldCheck {
    url: String,
    ok: bool,
    latency_ms: Option<u64>,
    version: Option<String>,
    dr_service_enabled: Option<bool>,
    /// The storage VMs Mold itself knows (`listScvmIpAddress`).
    storage_vms: Vec<String>,
    problem: Option<String>,
}

#[derive(Debug, Serialize)]
struct GlueCheck {
    url: String,
    ok: bool,
    latency_ms: Option<u64>,
    health: Option<String>,
    problem: Option<String>,
}

pub async fn run(
    config: &Config,
    args: &SitesArgs,
    output: OutputFormat,
) -> Result<ExitCode, Error> {
    for name in &args.only {
        config.site(name).map_err(Error::Usage)?;
    }
    let mut tasks = JoinSet::new();
    for (index, site) in config.sites.iter().enumerate() {
        if args.only.is_empty() || args.only.contains(&site.name) {
            let site = site.clone();
            tasks.spawn(async move { (index, check_site(&site).await) });
        }
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            Err(e) => return Err(Error::Failed(format!("a site check crashed: {e}"))),
        }
    }
    reports.sort_by_key(|(i, _)| *i);
    let reports: Vec<SiteReport> = reports.into_iter().map(|(_, r)| r).collect();
    let problems = problems(&reports);

    match output {
        OutputFormat::Json => {
            let doc = serde_json::json!({ "ok": problems.is_empty(), "sites": reports });
            crate::term::line(&serde_json::to_string_pretty(&doc).expect("serialisable"));
        }
        OutputFormat::Text => crate::term::line(&render(&reports)),
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    Ok(ExitCode::from(if problems.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    }))
}

/// One line per problem, each naming the site and what to do.
fn problems(reports: &[SiteReport]) -> Vec<String> {
    let mut out = Vec::new();
    for r in reports {
        if let Some(p) = &r.mold.problem {
            out.push(format!("{}: {p}", r.name));
        }
        for g in &r.glue {
            if let Some(p) = &g.problem {
                out.push(format!("{}: Glue {}: {p}", r.name, g.url));
            }
        }
    }
    out
}

fn render(reports: &[SiteReport]) -> String {
    let mut t = table(&["SITE", "API", "ENDPOINT", "STATUS", "LATENCY", "DETAIL"]);
    for r in reports {
        let m = &r.mold;
        let detail = if m.ok {
            let mut d = vec!["DR service enabled".to_string()];
            d.extend(m.version.as_ref().map(|v| format!("Mold {v}")));
            if !m.storage_vms.is_empty() {
                d.push(format!("storage VMs {}", m.storage_vms.join(" ")));
            }
            d.join(", ")
        } else {
            m.problem.clone().unwrap_or_default()
        };
        t.add_row([
            r.name.as_str(),
            "mold",
            m.url.as_str(),
            status(m.ok),
            &latency(m.latency_ms),
            &detail,
        ]);
        if r.glue.is_empty() {
            t.add_row([
                r.name.as_str(),
                "glue",
                "-",
                "-",
                "-",
                "no glue_urls configured: checked on Mold alone",
            ]);
        }
        for g in &r.glue {
            let detail = g
                .problem
                .clone()
                .or_else(|| g.health.clone())
                .unwrap_or_default();
            t.add_row([
                r.name.as_str(),
                "glue",
                g.url.as_str(),
                status(g.ok),
                &latency(g.latency_ms),
                &detail,
            ]);
        }
    }
    t.to_string()
}

fn status(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAIL" }
}

fn latency(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn check_site(site: &SiteConfig) -> SiteReport {
    let (mold, glue) = tokio::join!(check_mold(site), check_glue(site));
    SiteReport {
        name: site.name.clone(),
        mold,
        glue,
    }
}

/// A health check answers now or says why not: no retries, so the latency is one call's.
fn no_retry(site: &SiteConfig) -> crate::mold::MoldSettings {
    let mut settings = site.mold.clone();
    settings.retry = RetryPolicy::NEVER;
    settings.timeout = settings.timeout.min(Duration::from_secs(30));
    settings
}

async fn check_mold(site: &SiteConfig) -> MoldCheck {
    let mut check = MoldCheck {
        url: site.mold.url.as_str().trim_end_matches('/').to_string(),
        ok: false,
        latency_ms: None,
        version: None,
        dr_service_enabled: None,
        storage_vms: Vec::new(),
        problem: None,
    };
    let client = match MoldClient::new(no_retry(site)) {
        Ok(c) => c,
        Err(e) => {
            check.problem = Some(e.kind.to_string());
            return check;
        }
    };
    check.url = client.endpoint().to_string();
    let started = Instant::now();
    let caps = match client.capabilities().await {
        Ok(c) => c,
        Err(e) => {
            check.problem = Some(format!("listCapabilities: {}", e.kind));
            return check;
        }
    };
    check.latency_ms = Some(millis(started.elapsed()));
    check.version = caps.cloudstackversion;
    check.dr_service_enabled = caps.dr_enabled;
    match caps.dr_enabled {
        Some(true) => {}
        Some(false) => {
            check.problem = Some(
                "Mold answers, but its DR service is disabled: set the global setting cloud.dr.service.enabled = true and restart the Mold management server".into(),
            );
            return check;
        }
        None => {
            check.problem = Some(
                "Mold answers, but reports no DR service (no disasterrecoveryenabled capability): is this an ABLESTACK Mold with the DR plugin?".into(),
            );
            return check;
        }
    }
    match client.scvm_ip_addresses().await {
        Ok(ips) => {
            check.storage_vms = ips;
            check.ok = true;
        }
        Err(e) => check.problem = Some(format!("listScvmIpAddress: {}", e.kind)),
    }
    check
}

async fn check_glue(site: &SiteConfig) -> Vec<GlueCheck> {
    let mut checks = Vec::new();
    let mut tasks = JoinSet::new();
    for (index, url) in site.glue.urls.iter().enumerate() {
        // One client per endpoint: this check is about each storage VM, not about failover.
        let settings = GlueSettings {
            site: site.name.clone(),
            endpoints: vec![url.clone()],
            trust: site.glue.trust.clone(),
            connect_timeout: site.glue.connect_timeout,
            timeout: site.glue.timeout.min(Duration::from_secs(30)),
            retry: RetryPolicy::NEVER,
        };
        tasks.spawn(async move { (index, check_glue_endpoint(settings).await) });
    }
    while let Some(Ok(result)) = tasks.join_next().await {
        checks.push(result);
    }
    checks.sort_by_key(|(i, _)| *i);
    checks.into_iter().map(|(_, c)| c).collect()
}

async fn check_glue_endpoint(settings: GlueSettings) -> GlueCheck {
    let mut check = GlueCheck {
        url: settings.endpoints[0]
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        ok: false,
        latency_ms: None,
        health: None,
        problem: None,
    };
    let client = match GlueClient::new(settings) {
        Ok(c) => c,
        Err(e) => {
            check.problem = Some(e.kind.to_string());
            return check;
        }
    };
    let started = Instant::now();
    match client.health().await {
        Ok(health) => {
            check.latency_ms = Some(millis(started.elapsed()));
            check.ok = health.is_usable();
            if !check.ok {
                check.problem = Some(format!(
                    "Ceph reports {}: the storage cluster cannot be trusted for DR until it is HEALTH_OK or HEALTH_WARN",
                    health.status
                ));
            }
            check.health = Some(health.status);
        }
        Err(e) => check.problem = Some(e.kind.to_string()),
    }
    check
}
