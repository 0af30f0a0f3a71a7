//! `drbook.toml`: the configured sites and their credentials, validated, with every error
//! pointing at the file, line, column and key.
//!
//! Looked up as `--config PATH`, then `./drbook.toml`, then
//! `$XDG_CONFIG_HOME/drbook/config.toml` (`~/.config/drbook/config.toml`). Relative paths
//! inside the file (`ca_file`, `secret_key_file`, …) are relative to the file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

use crate::duration;
use crate::etcd::EtcdSettings;
use crate::http::{RetryPolicy, TlsTrust};
use crate::mold::{MoldSettings, SignatureAlgorithm};
use crate::secret::Secret;

/// A configuration that could not be used. One line, naming where to look.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no configuration file found (looked for {}): write one (see README.md), or run `drbook sim --write-config drbook.toml`",
        .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound { tried: Vec<PathBuf> },

    #[error("cannot read {}: {reason}", .path.display())]
    Read { path: PathBuf, reason: String },

    #[error("{}:{line}:{column}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Sites by name, in name order.
    pub sites: Vec<SiteConfig>,
    pub defaults: Defaults,
    pub notify: NotifyConfig,
    /// `[coordination]`: the run lock in etcd, shared by every operator. Without it, the
    /// machine-wide lock files.
    pub coordination: Option<EtcdSettings>,
    /// Things that work but deserve the operator's attention (world-readable secrets, TLS
    /// verification off). The command line prints each once per run.
    pub warnings: Vec<String>,
}

impl Config {
    /// A configuration with no sites: for what needs the runtime's registrations but talks
    /// to no site (`drbook check`, `drbook doc`).
    pub fn empty() -> Self {
        Self {
            path: PathBuf::new(),
            sites: Vec::new(),
            defaults: Defaults::default(),
            notify: NotifyConfig::default(),
            coordination: None,
            warnings: Vec::new(),
        }
    }
}

/// `[defaults]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// How many VMs a batch primitive acts on at once.
    pub concurrency: usize,
    /// The longest pause between two polls of an async job or a wait.
    pub poll_interval: Duration,
    /// Where journals and reports live (`state_dir`; relative to drbook.toml), when set.
    pub state_dir: Option<PathBuf>,
    /// Where the DR cluster locks live (`lock_dir`; relative to drbook.toml), when set: a
    /// directory every operator of the machine can write, to share one between Unix users.
    pub lock_dir: Option<PathBuf>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll_interval: Duration::from_secs(3),
            state_dir: None,
            lock_dir: None,
        }
    }
}

/// `[notify]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Where `notify()` posts (Slack/Mattermost/Teams-style JSON). It may embed a token, so it
    /// is kept as a secret.
    pub webhook_url: Option<Secret>,
}

/// One site: its Mold, its Glue storage VMs, and how to reach them over SSH.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    pub name: String,
    pub mold: MoldSettings,
    pub glue: GlueEndpoints,
    pub ssh: SshSettings,
}

/// Where a site's Glue API answers (one entry per storage VM, tried in order) and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlueEndpoints {
    pub urls: Vec<Url>,
    pub trust: TlsTrust,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

/// SSH to the site's storage VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSettings {
    pub user: String,
    pub key_file: Option<PathBuf>,
    pub port: u16,
    /// An OpenSSH known_hosts file the storage VMs' host keys are checked against.
    pub known_hosts: Option<PathBuf>,
    /// How long one command may take, connection included.
    pub timeout: Duration,
}

impl Config {
    /// Finds the file (see the module docs) and loads it.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let path = if let Some(p) = explicit {
            p.to_path_buf()
        } else {
            let tried = candidate_paths();
            tried
                .iter()
                .find(|p| p.is_file())
                .cloned()
                .ok_or(ConfigError::NotFound { tried })?
        };
        Self::load(&path)
    }

    /// Reads and validates one file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut config = Self::parse(&text, path)?;
        if let Some(warning) = permission_warning(path, &text) {
            config.warnings.insert(0, warning);
        }
        Ok(config)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let ctx = Ctx { text, path };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            ctx.error(
                e.span().unwrap_or(0..0),
                e.message().trim_end().replace('\n', " "),
            )
        })?;
        let mut warnings = Vec::new();
        let defaults = raw.defaults.resolve(&ctx)?;
        let notify = NotifyConfig {
            webhook_url: match raw.notify.webhook_url {
                Some(u) => {
                    parse_url(&ctx, &u, "notify.webhook_url")?;
                    Some(Secret::new(u.into_inner()))
                }
                None => None,
            },
        };
        let coordination = raw
            .coordination
            .map(|c| {
                let span = c.span();
                c.into_inner().resolve(&ctx, span, &mut warnings)
            })
            .transpose()?;
        if raw.sites.is_empty() {
            return Err(ctx.error(
                0..0,
                "no sites configured: add a [sites.<name>] table with mold_url, api_key and secret_key".into(),
            ));
        }
        let mut sites = Vec::with_capacity(raw.sites.len());
        for (name, site) in raw.sites {
            let span = site.span();
            sites.push(
                site.into_inner()
                    .resolve(&ctx, name, span, &defaults, &mut warnings)?,
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            sites,
            defaults,
            notify,
            coordination,
            warnings,
        })
    }

    /// The site called `name`; the error lists the configured ones.
    pub fn site(&self, name: &str) -> Result<&SiteConfig, String> {
        self.sites.iter().find(|s| s.name == name).ok_or_else(|| {
            format!(
                "no site {name:?} in {} (configured: {})",
                self.path.display(),
                self.sites
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

fn candidate_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("drbook.toml")];
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = xdg {
        paths.push(dir.join("drbook").join("config.toml"));
    }
    paths
}

/// Where errors point.
struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn error(&self, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    /// A path from the file, relative to the file's directory.
    fn relative(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sites: BTreeMap<String, Spanned<RawSite>>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    notify: RawNotify,
    coordination: Option<Spanned<RawCoordination>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCoordination {
    etcd_endpoints: Option<Vec<Spanned<String>>>,
    prefix: Option<Spanned<String>>,
    lease_ttl: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
}

impl RawCoordination {
    fn resolve(
        self,
        ctx: &Ctx<'_>,
        span: Range<usize>,
        warnings: &mut Vec<String>,
    ) -> Result<EtcdSettings, ConfigError> {
        let key = |k: &str| format!("coordination.{k}");
        let entries = self.etcd_endpoints.unwrap_or_default();
        if entries.is_empty() {
            return Err(ctx.error(
                span,
                "coordination: etcd_endpoints is missing or empty: list the client URLs of the etcd members, e.g. [\"http://10.10.0.5:2379\", \"http://10.10.1.5:2379\", \"http://10.10.2.5:2379\"]".into(),
            ));
        }
        let mut endpoints = Vec::with_capacity(entries.len());
        for e in &entries {
            let url = parse_url(ctx, e, &key("etcd_endpoints"))?;
            if let Some(part) = extra_part(&url, false) {
                return Err(ctx.error(
                    e.span(),
                    format!(
                        "{}: {} has {part}: give an etcd member's client URL, scheme, address and port, e.g. \"http://10.10.0.5:2379\" (user and password go in user and password_file)",
                        key("etcd_endpoints"),
                        shown(&url)
                    ),
                ));
            }
            endpoints.push(url);
        }
        let prefix = match self.prefix {
            None => "/drbook/".to_string(),
            Some(p) => {
                let text = p.get_ref().trim();
                if !text.starts_with('/') || text.chars().any(char::is_whitespace) {
                    return Err(ctx.error(
                        p.span(),
                        format!(
                            "{}: a key prefix starting with '/', without spaces, e.g. \"/drbook/\"",
                            key("prefix")
                        ),
                    ));
                }
                if text.ends_with('/') {
                    text.to_string()
                } else {
                    format!("{text}/")
                }
            }
        };
        let lease_ttl = match &self.lease_ttl {
            None => Duration::from_secs(15),
            Some(t) => {
                let d = parse_duration(ctx, t, &key("lease_ttl"))?;
                if d.subsec_nanos() != 0
                    || d < Duration::from_secs(1)
                    || d > Duration::from_secs(3600)
                {
                    return Err(ctx.error(
                        t.span(),
                        format!(
                            "{}: whole seconds between 1s and 1h (etcd counts leases in seconds)",
                            key("lease_ttl")
                        ),
                    ));
                }
                d
            }
        };
        let request_timeout = match &self.request_timeout {
            None => lease_ttl / 5,
            Some(t) => {
                let d = parse_duration(ctx, t, &key("request_timeout"))?;
                // A renewal that can take longer than the lease lets a holder believe in a
                // lock etcd has given away.
                if d.is_zero() || d > lease_ttl / 4 {
                    return Err(ctx.error(
                        t.span(),
                        format!(
                            "{}: {} is not well under lease_ttl ({}): at most a quarter of it, so a renewal that hangs ends long before the lease does",
                            key("request_timeout"),
                            duration::Human(d),
                            duration::Human(lease_ttl)
                        ),
                    ));
                }
                d
            }
        };
        let trust = match &self.ca_file {
            None => TlsTrust::System,
            Some(f) => {
                let path = ctx.relative(f.get_ref());
                crate::http::tls::read_pem_certs(&path)
                    .map_err(|e| ctx.error(f.span(), format!("{}: {e}", key("ca_file"))))?;
                TlsTrust::Pinned(path)
            }
        };
        let identity = match (self.cert_file, self.key_file) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                let cert = ctx.relative(c.get_ref());
                let key_path = ctx.relative(k.get_ref());
                crate::http::tls::read_pem_certs(&cert)
                    .map_err(|e| ctx.error(c.span(), format!("{}: {e}", key("cert_file"))))?;
                crate::http::tls::read_pem_key(&key_path)
                    .map_err(|e| ctx.error(k.span(), format!("{}: {e}", key("key_file"))))?;
                Some(crate::http::tls::ClientIdentity {
                    cert,
                    key: key_path,
                })
            }
            (Some(c), None) => {
                return Err(ctx.error(c.span(), format!("{}: give key_file too", key("cert_file"))));
            }
            (None, Some(k)) => {
                return Err(ctx.error(k.span(), format!("{}: give cert_file too", key("key_file"))));
            }
        };
        let auth = match (self.user, self.password_file) {
            (None, None) => None,
            (Some(u), Some(f)) => {
                let user = u.get_ref().trim().to_string();
                if user.is_empty() {
                    return Err(ctx.error(u.span(), format!("{} is empty", key("user"))));
                }
                let path = ctx.relative(f.get_ref());
                let password = std::fs::read_to_string(&path)
                    .map_err(|e| {
                        ctx.error(
                            f.span(),
                            format!(
                                "{}: cannot read {}: {e}",
                                key("password_file"),
                                path.display()
                            ),
                        )
                    })?
                    .trim()
                    .to_string();
                if password.is_empty() {
                    return Err(ctx.error(
                        f.span(),
                        format!("{}: {} is empty", key("password_file"), path.display()),
                    ));
                }
                if endpoints.iter().any(|u| u.scheme() == "http") {
                    warnings.push(format!(
                        "coordination: etcd user {user}'s password goes to http:// endpoints unencrypted: use https:// endpoints (ca_file) where the network is not trusted"
                    ));
                }
                Some((user, Secret::new(password)))
            }
            (Some(u), None) => {
                return Err(ctx.error(
                    u.span(),
                    format!(
                        "{}: give password_file too (a file holding the etcd user's password)",
                        key("user")
                    ),
                ));
            }
            (None, Some(f)) => {
                return Err(ctx.error(f.span(), format!("{}: give user too", key("password_file"))));
            }
        };
        Ok(EtcdSettings {
            endpoints,
            prefix,
            lease_ttl,
            request_timeout,
            trust,
            identity,
            auth,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    concurrency: Option<Spanned<i64>>,
    poll_interval: Option<Spanned<String>>,
    state_dir: Option<Spanned<String>>,
    lock_dir: Option<Spanned<String>>,
}

impl RawDefaults {
    fn resolve(self, ctx: &Ctx<'_>) -> Result<Defaults, ConfigError> {
        let mut d = Defaults::default();
        if let Some(c) = self.concurrency {
            d.concurrency = usize::try_from(*c.get_ref())
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| {
                    ctx.error(
                        c.span(),
                        "defaults.concurrency must be between 1 and 256".into(),
                    )
                })?;
        }
        if let Some(p) = self.poll_interval {
            d.poll_interval = parse_duration(ctx, &p, "defaults.poll_interval")?;
        }
        for (value, slot, key) in [
            (self.state_dir, &mut d.state_dir, "defaults.state_dir"),
            (self.lock_dir, &mut d.lock_dir, "defaults.lock_dir"),
        ] {
            if let Some(v) = value {
                if v.get_ref().trim().is_empty() {
                    return Err(ctx.error(v.span(), format!("{key} is empty: name a directory")));
                }
                *slot = Some(ctx.relative(v.get_ref()));
            }
        }
        Ok(d)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    webhook_url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    mold_url: Spanned<String>,
    api_key: Option<Spanned<String>>,
    api_key_env: Option<Spanned<String>>,
    api_key_file: Option<Spanned<String>>,
    secret_key: Option<Spanned<String>>,
    secret_key_env: Option<Spanned<String>>,
    secret_key_file: Option<Spanned<String>>,
    signature: Option<Spanned<String>>,
    signature_version: Option<Spanned<i64>>,
    signature_expiry: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    insecure: Option<Spanned<bool>>,
    connect_timeout: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    long_timeout: Option<Spanned<String>>,
    job_timeout: Option<Spanned<String>>,
    glue_urls: Option<Vec<Spanned<String>>>,
    glue_ca_file: Option<Spanned<String>>,
    glue_insecure: Option<Spanned<bool>>,
    glue_timeout: Option<Spanned<String>>,
    ssh_user: Option<Spanned<String>>,
    ssh_key_file: Option<Spanned<String>>,
    ssh_port: Option<Spanned<i64>>,
    ssh_known_hosts: Option<Spanned<String>>,
    ssh_timeout: Option<Spanned<String>>,
}

/// A credential given inline, through an environment variable, or in a file: exactly one.
struct SecretSources {
    key: &'static str,
    inline: Option<Spanned<String>>,
    env: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
}

impl SecretSources {
    fn resolve(
        self,
        ctx: &Ctx<'_>,
        site: &str,
        site_span: Range<usize>,
    ) -> Result<Secret, ConfigError> {
        let key = self.key;
        let given = [&self.inline, &self.env, &self.file]
            .iter()
            .filter_map(|s| s.as_ref().map(Spanned::span))
            .collect::<Vec<_>>();
        if given.len() > 1 {
            return Err(ctx.error(
                given[1].clone(),
                format!("sites.{site}: give only one of {key}, {key}_env and {key}_file"),
            ));
        }
        let value = if let Some(v) = self.inline {
            v.into_inner()
        } else if let Some(var) = self.env {
            std::env::var(var.get_ref()).map_err(|_| {
                ctx.error(
                    var.span(),
                    format!(
                        "sites.{site}.{key}_env: environment variable {} is not set",
                        var.get_ref()
                    ),
                )
            })?
        } else if let Some(file) = self.file {
            let path = ctx.relative(file.get_ref());
            std::fs::read_to_string(&path)
                .map_err(|e| {
                    ctx.error(
                        file.span(),
                        format!(
                            "sites.{site}.{key}_file: cannot read {}: {e}",
                            path.display()
                        ),
                    )
                })?
                .trim()
                .to_string()
        } else {
            return Err(ctx.error(
                site_span,
                format!(
                    "sites.{site}: missing {key} (or {key}_env = \"VAR\", or {key}_file = \"path\")"
                ),
            ));
        };
        if value.trim().is_empty() {
            return Err(ctx.error(given[0].clone(), format!("sites.{site}.{key} is empty")));
        }
        Ok(Secret::new(value))
    }
}

impl RawSite {
    fn resolve(
        self,
        ctx: &Ctx<'_>,
        name: String,
        span: Range<usize>,
        defaults: &Defaults,
        warnings: &mut Vec<String>,
    ) -> Result<SiteConfig, ConfigError> {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ctx.error(
                span,
                format!("site name {name:?} must be non-empty and without spaces"),
            ));
        }
        let key = |k: &str| format!("sites.{name}.{k}");
        let url = parse_mold_url(ctx, &self.mold_url, &key("mold_url"))?;
        let api_key = SecretSources {
            key: "api_key",
            inline: self.api_key,
            env: self.api_key_env,
            file: self.api_key_file,
        }
        .resolve(ctx, &name, span.clone())?;
        let secret_key = SecretSources {
            key: "secret_key",
            inline: self.secret_key,
            env: self.secret_key_env,
            file: self.secret_key_file,
        }
        .resolve(ctx, &name, span.clone())?;
        let algorithm = match &self.signature {
            Some(s) => s
                .get_ref()
                .parse::<SignatureAlgorithm>()
                .map_err(|e| ctx.error(s.span(), format!("{}: {e}", key("signature"))))?,
            None => SignatureAlgorithm::default(),
        };
        let v3 = match &self.signature_version {
            None => false,
            Some(v) => match v.get_ref() {
                2 => false,
                3 => true,
                _ => {
                    return Err(ctx.error(
                        v.span(),
                        format!(
                            "{}: use 3 (signed expiry) or 2 (plain)",
                            key("signature_version")
                        ),
                    ));
                }
            },
        };
        let expiry = opt_duration(
            ctx,
            self.signature_expiry.as_ref(),
            &key("signature_expiry"),
        )?
        .unwrap_or(Duration::from_secs(300));
        let mold_trust = trust(
            ctx,
            &name,
            self.ca_file.as_ref(),
            self.insecure.as_ref(),
            "",
            warnings,
        )?;
        let d = |v: Option<&Spanned<String>>, k: &str, default: u64| {
            opt_duration(ctx, v, &key(k)).map(|o| o.unwrap_or(Duration::from_secs(default)))
        };
        let connect_timeout = d(self.connect_timeout.as_ref(), "connect_timeout", 10)?;
        let mold = MoldSettings {
            site: name.clone(),
            url,
            api_key,
            secret_key,
            algorithm,
            signature_v3_expiry: v3.then_some(expiry),
            trust: mold_trust,
            connect_timeout,
            timeout: d(self.timeout.as_ref(), "timeout", 120)?,
            long_timeout: d(self.long_timeout.as_ref(), "long_timeout", 45 * 60)?,
            job_timeout: d(self.job_timeout.as_ref(), "job_timeout", 2 * 3600)?,
            poll_interval: defaults.poll_interval,
            retry: RetryPolicy::default(),
        };
        let mut urls = Vec::new();
        for u in self.glue_urls.iter().flatten() {
            urls.push(parse_glue_url(ctx, u, &key("glue_urls"))?);
        }
        let glue_trust = trust(
            ctx,
            &name,
            self.glue_ca_file.as_ref(),
            self.glue_insecure.as_ref(),
            "glue_",
            warnings,
        )?;
        if !urls.is_empty()
            && glue_trust == TlsTrust::System
            && urls.iter().any(|u| u.scheme() == "https")
        {
            warnings.push(format!(
                "site {name}: Glue's certificate is self-signed, so checking it against the system's CAs will fail: set glue_ca_file = \"<glue cert.pem>\" (or glue_insecure = true)"
            ));
        }
        let glue = GlueEndpoints {
            urls,
            trust: glue_trust,
            connect_timeout,
            timeout: d(self.glue_timeout.as_ref(), "glue_timeout", 180)?,
        };
        let ssh = SshSettings {
            user: self
                .ssh_user
                .map_or_else(|| "root".to_string(), Spanned::into_inner),
            key_file: self.ssh_key_file.map(|f| ctx.relative(f.get_ref())),
            port: match self.ssh_port {
                None => 22,
                Some(p) => u16::try_from(*p.get_ref())
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        ctx.error(
                            p.span(),
                            format!("{}: a TCP port (1-65535)", key("ssh_port")),
                        )
                    })?,
            },
            known_hosts: self.ssh_known_hosts.map(|f| ctx.relative(f.get_ref())),
            timeout: d(self.ssh_timeout.as_ref(), "ssh_timeout", 180)?,
        };
        Ok(SiteConfig {
            name,
            mold,
            glue,
            ssh,
        })
    }
}

fn trust(
    ctx: &Ctx<'_>,
    site: &str,
    ca_file: Option<&Spanned<String>>,
    insecure: Option<&Spanned<bool>>,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Result<TlsTrust, ConfigError> {
    let insecure_on = insecure.is_some_and(|i| *i.get_ref());
    match (ca_file, insecure_on) {
        (Some(_), true) => Err(ctx.error(
            insecure.expect("set").span(),
            format!("sites.{site}: give {prefix}ca_file or {prefix}insecure = true, not both"),
        )),
        (Some(f), false) => {
            let path = ctx.relative(f.get_ref());
            crate::http::tls::read_pem_certs(&path)
                .map_err(|e| ctx.error(f.span(), format!("sites.{site}.{prefix}ca_file: {e}")))?;
            Ok(TlsTrust::Pinned(path))
        }
        (None, true) => {
            let what = if prefix.is_empty() { "Mold" } else { "Glue" };
            warnings.push(format!(
                "site {site}: {prefix}insecure = true: {what}'s TLS certificate is not verified, so anyone on the network path can impersonate it; pin it with {prefix}ca_file instead"
            ));
            Ok(TlsTrust::Insecure)
        }
        (None, false) => Ok(TlsTrust::System),
    }
}

fn parse_url(ctx: &Ctx<'_>, value: &Spanned<String>, key: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value.get_ref().trim()).map_err(|e| {
        ctx.error(
            value.span(),
            format!("{key}: not a URL ({e}): expected e.g. \"http://10.10.22.10:8080\""),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ctx.error(
            value.span(),
            format!("{key}: expected an http:// or https:// URL with a host"),
        ));
    }
    Ok(url)
}

/// Mold's base URL. A path is fine (Mold behind a prefix, or `…/client/api` given whole),
/// but user info would be sent as a password and printed with every "cannot reach Mold"
/// line, and a query or fragment would be dropped without a word: all three are refused.
fn parse_mold_url(ctx: &Ctx<'_>, value: &Spanned<String>, key: &str) -> Result<Url, ConfigError> {
    let url = parse_url(ctx, value, key)?;
    if let Some(part) = extra_part(&url, true) {
        return Err(ctx.error(
            value.span(),
            format!(
                "{key}: {} has {part}, which Mold's API does not take: give the scheme, host, port and at most a path, e.g. \"http://10.10.22.10:8080\"",
                shown(&url)
            ),
        ));
    }
    Ok(url)
}

/// Glue endpoints: a full URL, or a bare storage-VM address (as Mold's own "Glue IP" field
/// takes), which means `https://<address>:8080`. Glue answers at `/api/v1` of the storage VM
/// and drbook adds that itself, so a path (other than `/api/v1`), a query, a fragment or user
/// info can only lead to a 404 or a leaked password later: they are refused here.
fn parse_glue_url(ctx: &Ctx<'_>, value: &Spanned<String>, key: &str) -> Result<Url, ConfigError> {
    let raw = value.get_ref().trim();
    let url = if raw.contains("://") {
        parse_url(ctx, value, key)?
    } else {
        let with_port = if raw.contains(':') && !raw.starts_with('[') {
            raw.to_string()
        } else {
            format!("{raw}:8080")
        };
        Url::parse(&format!("https://{with_port}"))
            .ok()
            .filter(|u| u.host().is_some())
            .ok_or_else(|| {
                ctx.error(
                    value.span(),
                    format!("{key}: {raw:?} is neither a URL nor an address: expected e.g. \"https://10.10.22.11:8080\""),
                )
            })?
    };
    // A bare address with a path or query was turned into a URL above; it is checked alike.
    let glue_path = url.path().trim_end_matches('/') == "/api/v1";
    if let Some(part) = extra_part(&url, glue_path) {
        return Err(ctx.error(
            value.span(),
            format!(
                "{key}: {} has {part}: give only the storage VM's scheme, address and port, e.g. \"https://10.10.22.11:8080\" (drbook adds /api/v1)",
                shown(&url)
            ),
        ));
    }
    Ok(url)
}

/// The first part of `url` beyond scheme, host and port that an API base URL must not have;
/// a path is allowed when `path_ok`.
fn extra_part(url: &Url, path_ok: bool) -> Option<String> {
    if !url.username().is_empty() || url.password().is_some() {
        Some("a user name or password".to_string())
    } else if url.query().is_some() {
        Some("a query (?…)".to_string())
    } else if url.fragment().is_some() {
        Some("a fragment (#…)".to_string())
    } else if !path_ok && !matches!(url.path(), "" | "/") {
        Some(format!("a path ({})", url.path()))
    } else {
        None
    }
}

/// A URL as an error may show it: without user info, query or fragment.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn parse_duration(
    ctx: &Ctx<'_>,
    value: &Spanned<String>,
    key: &str,
) -> Result<Duration, ConfigError> {
    duration::parse(value.get_ref()).map_err(|e| ctx.error(value.span(), format!("{key}: {e}")))
}

fn opt_duration(
    ctx: &Ctx<'_>,
    value: Option<&Spanned<String>>,
    key: &str,
) -> Result<Option<Duration>, ConfigError> {
    value.map(|v| parse_duration(ctx, v, key)).transpose()
}

/// A file holding an inline secret should be private to its owner.
#[cfg(unix)]
fn permission_warning(path: &Path, text: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    let inline_secret = toml::from_str::<toml::Table>(text).ok().is_some_and(|t| {
        t.get("sites")
            .and_then(toml::Value::as_table)
            .is_some_and(|sites| {
                sites
                    .values()
                    .any(|s| s.get("secret_key").is_some() || s.get("api_key").is_some())
            })
    });
    (inline_secret && mode & 0o077 != 0).then(|| {
        format!(
            "{} holds an inline api_key/secret_key and is readable by group or others (mode {:o}): run `chmod 600 {}`, or move the keys to secret_key_env / secret_key_file",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn permission_warning(_path: &Path, _text: &str) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[defaults]
concurrency = 8
poll_interval = "2s"

[notify]
webhook_url = "https://hooks.example/T0/B0"

[sites.site-a]
mold_url = "http://10.10.22.10:8080"
api_key = "AK-a"
secret_key = "SK-a"
signature = "sha256"
glue_urls = ["https://10.10.22.11:8080", "10.10.22.12"]
glue_insecure = true
ssh_user = "root"
ssh_key_file = "keys/id_rsa"

[sites.site-b]
mold_url = "https://10.10.13.10:8443"
api_key = "AK-b"
secret_key = "SK-b"
signature = "sha1"
signature_version = 3
signature_expiry = "10m"
timeout = "30s"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/dr/drbook.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_full_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.defaults.concurrency, 8);
        assert_eq!(c.defaults.poll_interval, Duration::from_secs(2));
        assert!(c.notify.webhook_url.is_some());
        let a = c.site("site-a").unwrap();
        assert_eq!(a.mold.algorithm, SignatureAlgorithm::Sha256);
        assert_eq!(a.mold.api_key.expose(), "AK-a");
        assert_eq!(a.mold.signature_v3_expiry, None);
        assert_eq!(a.mold.poll_interval, Duration::from_secs(2));
        assert_eq!(a.glue.trust, TlsTrust::Insecure);
        assert_eq!(
            a.glue.urls.iter().map(Url::as_str).collect::<Vec<_>>(),
            ["https://10.10.22.11:8080/", "https://10.10.22.12:8080/"]
        );
        assert_eq!(
            a.ssh.key_file.as_deref(),
            Some(Path::new("/etc/dr/keys/id_rsa"))
        );
        let b = c.site("site-b").unwrap();
        assert_eq!(b.mold.algorithm, SignatureAlgorithm::Sha1);
        assert_eq!(b.mold.signature_v3_expiry, Some(Duration::from_secs(600)));
        assert_eq!(b.mold.timeout, Duration::from_secs(30));
        assert!(b.glue.urls.is_empty());
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("glue_insecure"));
        assert!(c.site("site-c").unwrap_err().contains("site-a, site-b"));
    }

    #[test]
    fn state_and_lock_directories_are_relative_to_the_file() {
        let site = "[sites.a]\nmold_url = \"http://x\"\napi_key = \"k\"\nsecret_key = \"s\"\n";
        let c = parse(&format!(
            "[defaults]\nstate_dir = \"state\"\nlock_dir = \"/run/lock/ops\"\n{site}"
        ))
        .unwrap();
        assert_eq!(
            c.defaults.state_dir.as_deref(),
            Some(Path::new("/etc/dr/state"))
        );
        assert_eq!(
            c.defaults.lock_dir.as_deref(),
            Some(Path::new("/run/lock/ops"))
        );
        let e = err(&format!("[defaults]\nlock_dir = \" \"\n{site}"));
        assert!(
            e.contains(":2:") && e.contains("defaults.lock_dir is empty"),
            "{e}"
        );
    }

    #[test]
    fn coordination_through_etcd() {
        let site = "[sites.a]\nmold_url = \"http://x\"\napi_key = \"k\"\nsecret_key = \"s\"\n";
        assert!(
            parse(site).unwrap().coordination.is_none(),
            "no section: no etcd"
        );
        let c = parse(&format!(
            "{site}[coordination]\netcd_endpoints = [\"http://10.0.0.5:2379\", \"http://10.0.1.5:2379\"]\n"
        ))
        .unwrap()
        .coordination
        .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.prefix, "/drbook/");
        assert_eq!(c.lease_ttl, Duration::from_secs(15));
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert!(
            c.margin() < c.lease_ttl && c.renew_every() < c.lease_ttl.saturating_sub(c.margin())
        );
        let c = parse(&format!(
            "{site}[coordination]\netcd_endpoints = [\"https://e:2379\"]\nprefix = \"/dr/site-x\"\nlease_ttl = \"1m\"\nrequest_timeout = \"10s\"\n"
        ))
        .unwrap()
        .coordination
        .unwrap();
        assert_eq!(c.prefix, "/dr/site-x/");
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        for (section, at, words) in [
            (
                "[coordination]\nprefix = \"/x/\"\n",
                ":5:1:",
                "etcd_endpoints is missing",
            ),
            (
                "[coordination]\netcd_endpoints = []\n",
                ":5:1:",
                "etcd_endpoints is missing",
            ),
            (
                "[coordination]\netcd_endpoints = [\"http://e:2379\", \"http://root:pw-x@e:2379\"]\n",
                ":6:36:",
                "a user name or password",
            ),
            (
                "[coordination]\netcd_endpoints = [\"http://e:2379/v3\"]\n",
                ":6:19:",
                "a path",
            ),
            (
                "[coordination]\netcd_endpoints = [\"e:2379\"]\n",
                ":6:19:",
                "etcd_endpoints",
            ),
            (
                "[coordination]\netcd_endpoints = [\"http://e:2379\"]\nlease_ttl = \"10s\"\nrequest_timeout = \"5s\"\n",
                ":8:19:",
                "not well under lease_ttl",
            ),
            (
                "[coordination]\netcd_endpoints = [\"http://e:2379\"]\nlease_ttl = \"0s\"\n",
                ":7:13:",
                "whole seconds",
            ),
            (
                "[coordination]\netcd_endpoints = [\"http://e:2379\"]\nuser = \"drbook\"\n",
                ":7:8:",
                "give password_file too",
            ),
            (
                "[coordination]\netcd_endpoints = [\"http://e:2379\"]\ncert_file = \"c.pem\"\n",
                ":7:13:",
                "give key_file too",
            ),
            (
                "[coordination]\netcd_endpoints = [\"http://e:2379\"]\nprefix = \"drbook\"\n",
                ":7:10:",
                "starting with '/'",
            ),
            (
                "[coordination]\netcd_endpoints = [\"http://e:2379\"]\nleasettl = \"5s\"\n",
                ":7:1:",
                "leasettl",
            ),
        ] {
            let e = err(&format!("{site}{section}"));
            assert!(
                e.starts_with("/etc/dr/drbook.toml") && e.contains(at) && e.contains(words),
                "{section}: {e}"
            );
            assert!(!e.contains("pw-x"), "{e}");
        }
    }

    #[test]
    fn the_example_file_parses_with_and_without_coordination() {
        let example = include_str!("../examples/drbook.toml");
        assert!(parse(example).unwrap().coordination.is_none());
        let on: String = example
            .lines()
            .map(|l| {
                let keys = [
                    "[coordination]",
                    "etcd_endpoints",
                    "prefix",
                    "lease_ttl",
                    "request_timeout",
                ];
                match l.strip_prefix("# ") {
                    Some(rest) if keys.iter().any(|k| rest.starts_with(k)) => rest,
                    _ => l,
                }
            })
            .flat_map(|l| [l, "\n"])
            .collect();
        let c = parse(&on).unwrap().coordination.unwrap();
        assert_eq!(c.endpoints.len(), 3);
        assert_eq!(c.request_timeout, Duration::from_secs(3));
    }

    #[test]
    fn the_etcd_password_comes_from_a_file_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd.pw"), "pw-etcd-1\n").unwrap();
        let path = dir.path().join("drbook.toml");
        let text = "[sites.a]\nmold_url = \"http://x\"\napi_key = \"k\"\nsecret_key = \"s\"\n[coordination]\netcd_endpoints = [\"http://e:2379\"]\nuser = \"drbook\"\npassword_file = \"etcd.pw\"\n";
        let c = Config::parse(text, &path).unwrap();
        let (user, password) = c.coordination.as_ref().unwrap().auth.clone().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("drbook", "pw-etcd-1"));
        assert!(!format!("{c:?}").contains("pw-etcd-1"));
        assert!(
            c.warnings.iter().any(|w| w.contains("unencrypted")),
            "{:?}",
            c.warnings
        );
        std::fs::write(dir.path().join("etcd.pw"), "\n").unwrap();
        let e = Config::parse(text, &path).unwrap_err().to_string();
        assert!(e.contains(":8:17:") && e.contains("is empty"), "{e}");
    }

    #[test]
    fn syntax_errors_point_at_line_and_column() {
        let e = err("[sites.a]\nmold_url = \"http://x\"\napi_key = \n");
        assert!(e.starts_with("/etc/dr/drbook.toml:3:"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err("[sites.a]\nmold_ur = \"http://x\"\n");
        assert!(e.starts_with("/etc/dr/drbook.toml:2:1:"), "{e}");
        assert!(e.contains("mold_ur"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let base = "[sites.a]\nmold_url = \"http://x:8080\"\napi_key = \"k\"\nsecret_key = \"s\"\n";
        let e = err(&format!("{base}signature = \"md5\"\n"));
        assert!(e.starts_with("/etc/dr/drbook.toml:5:13:"), "{e}");
        assert!(e.contains("sites.a.signature") && e.contains("sha1"), "{e}");

        let e = err(&format!("{base}timeout = \"10 minutes\"\n"));
        assert!(e.contains(":5:") && e.contains("sites.a.timeout"), "{e}");

        let e = err("[sites.a]\nmold_url = \"ftp://x\"\napi_key = \"k\"\nsecret_key = \"s\"\n");
        assert!(e.contains(":2:12:") && e.contains("mold_url"), "{e}");

        let e = err("[sites.a]\nmold_url = \"http://x\"\napi_key = \"k\"\n");
        assert!(e.contains("missing secret_key"), "{e}");

        let e = err(&format!("{base}secret_key_env = \"X\"\n"));
        assert!(e.contains("only one of secret_key"), "{e}");

        let e = err(&format!(
            "{base}glue_insecure = true\nglue_ca_file = \"x.pem\"\n"
        ));
        assert!(e.contains("not both"), "{e}");

        let e = err(&format!("{base}ca_file = \"nope.pem\"\n"));
        assert!(
            e.contains("sites.a.ca_file") && e.contains("/etc/dr/nope.pem"),
            "{e}"
        );

        let e = err(&format!("{base}signature_version = 4\n"));
        assert!(e.contains("signature_version"), "{e}");

        let e = err(
            "[defaults]\nconcurrency = 0\n[sites.a]\nmold_url = \"http://x\"\napi_key = \"k\"\nsecret_key = \"s\"\n",
        );
        assert!(e.contains(":2:15:") && e.contains("concurrency"), "{e}");

        let e = err("");
        assert!(e.contains("no sites configured"), "{e}");
    }

    #[test]
    fn glue_urls_take_only_scheme_address_and_port() {
        let base = "[sites.a]\nmold_url = \"http://x:8080\"\napi_key = \"k\"\nsecret_key = \"s\"\n";
        for (entry, part) in [
            ("https://10.10.22.11:8080/glue", "a path (/glue)"),
            (
                "https://10.10.22.11:8080/api/v1/mirror",
                "a path (/api/v1/mirror)",
            ),
            ("https://10.10.22.11:8080/?pool=rbd", "a query"),
            ("https://10.10.22.11:8080/#x", "a fragment"),
            (
                "https://admin:hunter2@10.10.22.11:8080",
                "a user name or password",
            ),
            ("10.10.22.12/glue", "a path"),
            ("admin@10.10.22.12", "a user name or password"),
        ] {
            // The bad entry is the second of the list: the position must point at it.
            let e = err(&format!(
                "{base}glue_urls = [\"10.10.22.13\", \"{entry}\"]\n"
            ));
            assert!(
                e.starts_with("/etc/dr/drbook.toml:5:29: sites.a.glue_urls: "),
                "{entry}: {e}"
            );
            assert!(e.contains(part), "{entry}: {e}");
            assert!(e.contains("\"https://10.10.22.11:8080\""), "{entry}: {e}");
            assert!(
                !e.contains("hunter2") && !e.contains("pool=rbd"),
                "{entry}: {e}"
            );
        }
        // The base forms stay accepted, Glue's own /api/v1 included.
        for entry in [
            "https://10.10.22.11:8080",
            "https://10.10.22.11:8080/",
            "https://10.10.22.11:8080/api/v1",
            "http://127.0.0.1:9000",
            "10.10.22.12",
            "10.10.22.12:8443",
            "[fd00::11]",
        ] {
            let c = parse(&format!(
                "{base}glue_urls = [\"{entry}\"]\nglue_insecure = true\n"
            ));
            assert!(c.is_ok(), "{entry}: {}", c.unwrap_err());
        }
    }

    #[test]
    fn mold_url_may_have_a_path_but_no_query_fragment_or_user() {
        let site = |url: &str| {
            format!("[sites.a]\nmold_url = \"{url}\"\napi_key = \"k\"\nsecret_key = \"s\"\n")
        };
        for (url, part) in [
            (
                "http://10.10.22.10:8080/client/api?command=listZones&apikey=AK-x",
                "a query",
            ),
            ("http://10.10.22.10:8080/#/dashboard", "a fragment"),
            (
                "http://admin:pw-x@10.10.22.10:8080",
                "a user name or password",
            ),
        ] {
            let e = err(&site(url));
            assert!(
                e.starts_with("/etc/dr/drbook.toml:2:12: sites.a.mold_url: "),
                "{url}: {e}"
            );
            assert!(e.contains(part), "{url}: {e}");
            assert!(!e.contains("AK-x") && !e.contains("pw-x"), "{url}: {e}");
        }
        for url in [
            "http://10.10.22.10:8080",
            "http://10.10.22.10:8080/client/api",
            "https://mold.example/site-a/",
        ] {
            assert!(parse(&site(url)).is_ok(), "{url}");
        }
    }

    #[test]
    fn secrets_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sk"), "from-file\n").unwrap();
        let path = dir.path().join("drbook.toml");
        // SAFETY-free: a variable name no other test uses.
        let var = "DRBOOK_TEST_SECRET_FROM_ENV_7731";
        let text = format!(
            "[sites.a]\nmold_url = \"http://x\"\napi_key_env = \"{var}\"\nsecret_key_file = \"sk\"\n"
        );
        let e = Config::parse(&text, &path).unwrap_err().to_string();
        assert!(e.contains(var) && e.contains("not set"), "{e}");
        let text =
            "[sites.a]\nmold_url = \"http://x\"\napi_key = \"k\"\nsecret_key_file = \"sk\"\n";
        let c = Config::parse(text, &path).unwrap();
        assert_eq!(c.sites[0].mold.secret_key.expose(), "from-file");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = parse(GOOD).unwrap();
        let shown = format!("{c:?}");
        for s in ["AK-a", "SK-a", "SK-b", "hooks.example"] {
            assert!(!shown.contains(s), "{s} in {shown}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_inline_secret_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drbook.toml");
        std::fs::write(
            &path,
            "[sites.a]\nmold_url = \"http://x\"\napi_key = \"k\"\nsecret_key = \"s\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&path).unwrap();
        assert!(
            c.warnings.iter().any(|w| w.contains("chmod 600")),
            "{:?}",
            c.warnings
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Config::load(&path).unwrap().warnings.is_empty());
    }

    #[test]
    fn line_columns() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("재해\nx", 3), (1, 2));
        assert_eq!(line_column("재해\nx", 1), (1, 1));
    }
}
