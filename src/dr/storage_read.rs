//! The storage reads over SSH when no Glue endpoint of a site answers: the status reads only
//! (`health`, `mirror_status`, `image_status`), never a mutation.
//!
//! Glue runs `rbd`/`ceph` on the storage VM and passes their JSON through, so the same
//! command over SSH (`ssh()`'s client, host keys checked against `ssh_known_hosts`) gives the
//! same answer; it is decoded into the same types, so what drbook judges does not depend on
//! the way it was read. Where the CLI and Glue differ, the conversion is here: rbd prints
//! `mirroring not enabled on the pool` and fails where Glue answers the empty pool status of a
//! pool without mirroring; `daemon_service` (absent from the CLI's output when no daemon owns
//! the image) and the daemons' `callouts` (which Glue drops) are not read either way.
//!
//! The fallback is taken only when the Glue read failed because no endpoint accepted a
//! connection ([`GlueError::is_unreachable`]) and the site has an `ssh_key_file`. Glue
//! answering with an error, or with something garbled, stays that error: the storage VM
//! answered, and its answer is not second-guessed by a second route. When SSH fails too,
//! the read is [`DrError::StorageUnreadable`], naming both: an unknown, never a default.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Dr, DrError};
use crate::glue::{ClusterHealth, GlueError, ImageStatus, POOL, PoolStatus};
use crate::ssh::SshOutput;

/// Where a site's storage was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// Glue's REST API, as always when it answers.
    Glue,
    /// The same command over SSH on a storage VM: no Glue endpoint was reachable.
    Ssh,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Glue => "glue",
            Self::Ssh => "ssh",
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one site's storage read went: through Glue, or over SSH from which storage VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageRead {
    pub site: String,
    pub via: Via,
    /// The storage VM that answered over SSH (`None` through Glue).
    pub host: Option<String>,
}

impl StorageRead {
    pub(crate) fn glue(site: &str) -> Self {
        Self {
            site: site.to_string(),
            via: Via::Glue,
            host: None,
        }
    }

    /// The line results print when the read went over SSH:
    /// `site-b: Glue unreachable, read over SSH from 127.0.2.1`.
    pub fn note(&self) -> Option<String> {
        match self.via {
            Via::Glue => None,
            Via::Ssh => Some(format!(
                "{}: Glue unreachable, read over SSH from {}",
                self.site,
                self.host.as_deref().unwrap_or("a storage VM")
            )),
        }
    }
}

/// `rbd mirror pool status rbd --verbose --format json`: what Glue's `GET /mirror/image/rbd`
/// runs.
pub fn pool_status_command() -> String {
    format!("rbd mirror pool status {POOL} --verbose --format json")
}

/// `rbd mirror image status rbd/<img> --format json`: what Glue's
/// `GET /mirror/image/status/rbd/<img>` runs. `None` for a name that cannot be one word of a
/// command line (the storage VM would hand it to a shell).
pub fn image_status_command(image: &str) -> Option<String> {
    let plain = !image.is_empty()
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    plain.then(|| format!("rbd mirror image status {POOL}/{image} --format json"))
}

/// `ceph -s -f json`: what Glue's `GET /glue` runs.
pub const CLUSTER_STATUS_COMMAND: &str = "ceph -s -f json";

/// rbd's words for a pool without mirroring (Glue answers an empty pool status instead).
const POOL_NOT_MIRRORED: &str = "mirroring not enabled on the pool";

/// The JSON a command printed, decoded; an exit status other than 0 is the command's own
/// failure, with what it printed on stderr.
fn decode_json<T: DeserializeOwned>(out: &SshOutput) -> Result<T, String> {
    if out.status != 0 {
        return Err(failed(out));
    }
    serde_json::from_str(&out.stdout).map_err(|e| {
        if out.stdout.trim().is_empty() {
            "the command printed nothing".to_string()
        } else {
            format!("its output is not the JSON expected ({e})")
        }
    })
}

/// `exited with status 22: rbd: …` (stderr's lines joined, kept short).
fn failed(out: &SshOutput) -> String {
    let text: Vec<&str> = out
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = text.join("; ");
    if text.chars().count() > 300 {
        text = text.chars().take(300).collect::<String>() + "…";
    }
    if text.is_empty() {
        format!("exited with status {} and printed no error", out.status)
    } else {
        format!("exited with status {}: {text}", out.status)
    }
}

/// `rbd mirror pool status --verbose --format json` as a [`PoolStatus`]. A pool without
/// mirroring is rbd's error and Glue's empty status: the empty status here too.
pub fn decode_pool_status(out: &SshOutput) -> Result<PoolStatus, String> {
    if out.status != 0 && out.stderr.contains(POOL_NOT_MIRRORED) {
        return serde_json::from_str(r#"{"summary":{},"daemons":null,"images":null}"#)
            .map_err(|e| e.to_string());
    }
    decode_json(out)
}

/// `rbd mirror image status --format json` as an [`ImageStatus`].
pub fn decode_image_status(out: &SshOutput) -> Result<ImageStatus, String> {
    decode_json(out)
}

/// `ceph -s -f json` as a [`ClusterHealth`].
pub fn decode_cluster_health(out: &SshOutput) -> Result<ClusterHealth, String> {
    decode_json(out)
}

impl Dr {
    /// `glue`'s answer, or — when it failed because no Glue endpoint of the site accepted a
    /// connection, and the site has an `ssh_key_file` — the same read over SSH with
    /// `command`, decoded by `decode`. Any other Glue failure is returned as it is.
    pub(crate) async fn glue_or_ssh<T>(
        &self,
        site: &str,
        glue: Result<T, GlueError>,
        command: Option<String>,
        decode: fn(&SshOutput) -> Result<T, String>,
    ) -> Result<(T, StorageRead), DrError> {
        let has_key = self.handle(site)?.ssh.key_file.is_some();
        let glue_error = match glue {
            Ok(v) => return Ok((v, StorageRead::glue(site))),
            Err(e) if e.is_unreachable() && has_key => e,
            Err(e) => return Err(e.into()),
        };
        let Some(command) = command else {
            return Err(glue_error.into());
        };
        let unreadable = |ssh: String, ssh_dark: bool| DrError::StorageUnreadable {
            glue: Box::new(glue_error.clone()),
            command: command.clone(),
            ssh,
            ssh_dark,
        };
        let out = match self.ssh(site, &command).await {
            Ok(out) => out,
            Err(e) => {
                let dark = matches!(e, DrError::Ssh(crate::ssh::SshError::Unreachable { .. }));
                return Err(unreadable(e.to_string(), dark));
            }
        };
        match decode(&out) {
            Ok(v) => {
                tracing::info!(site, host = %out.host, %command, "no Glue endpoint answered; read over SSH");
                Ok((
                    v,
                    StorageRead {
                        site: site.to_string(),
                        via: Via::Ssh,
                        host: Some(out.host),
                    },
                ))
            }
            Err(why) => Err(unreadable(format!("on {}, it {why}", out.host), false)),
        }
    }

    /// The site's pool status (`GET /mirror/image/rbd`), over SSH when no Glue endpoint
    /// answers.
    pub(crate) async fn pool_status_read(
        &self,
        site: &str,
    ) -> Result<(PoolStatus, StorageRead), DrError> {
        let glue = self.handle(site)?.glue()?.pool_status().await;
        self.glue_or_ssh(site, glue, Some(pool_status_command()), decode_pool_status)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glue::MirrorSide as _;

    fn out(status: i32, stdout: &str, stderr: &str) -> SshOutput {
        SshOutput {
            host: "10.10.22.11".into(),
            status,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    const IDLE: &str = r#"replaying, {\"bytes_per_second\":0.0,\"local_snapshot_timestamp\":1719214141,\"remote_snapshot_timestamp\":1719214141,\"replay_state\":\"idle\"}"#;

    /// What rbd itself prints (Pacific), not Glue: `daemon_service` only where a daemon owns
    /// the image, the daemons' `callouts`, a trailing newline.
    #[test]
    fn the_cli_pool_status_decodes_as_glue_s() {
        let cli = format!(
            r#"{{"summary":{{"health":"OK","daemon_health":"OK","image_health":"OK","states":{{"replaying":1,"stopped":1}}}},"daemons":[{{"service_id":"4161","instance_id":"4163","client_id":"rbd-mirror.scvm1","hostname":"scvm1","ceph_version":"16.2.15","leader":true,"health":"OK","callouts":{{}}}}],"images":[{{"name":"vol-a","global_id":"ga","state":"up+stopped","description":"local image is primary","daemon_service":{{"service_id":"4161","instance_id":"4163","daemon_id":"scvm1","hostname":"scvm1"}},"last_update":"2024-06-24 16:09:31","peer_sites":[{{"site_name":"remote","mirror_uuids":"u","state":"up+replaying","description":"{IDLE}","last_update":"2024-06-24 16:09:20"}}]}},{{"name":"vol-b","global_id":"gb","state":"up+replaying","description":"{IDLE}","last_update":"2024-06-24 16:09:30","peer_sites":[]}}]}}
"#
        );
        let p = decode_pool_status(&out(0, &cli, "")).unwrap();
        assert_eq!(p.summary.health, "OK");
        assert_eq!(p.daemons.len(), 1);
        assert!(p.daemons[0].leader);
        assert!(p.image("vol-a").unwrap().is_healthy_in_sync());
        assert!(p.image("vol-b").unwrap().is_replaying_idle());
        assert_eq!(
            p.image("vol-b").unwrap().last_update.unwrap().to_string(),
            "2024-06-24 16:09:30"
        );
    }

    #[test]
    fn a_pool_without_mirroring_is_glue_s_empty_status_not_an_error() {
        let p =
            decode_pool_status(&out(22, "", "rbd: mirroring not enabled on the pool\n")).unwrap();
        assert!(p.is_mirroring_disabled());
        assert!(p.images().is_empty());
    }

    #[test]
    fn a_failed_or_garbled_answer_is_an_error_never_a_default() {
        let e = decode_pool_status(&out(
            2,
            "",
            "rbd: error opening pool 'rbd': (2) No such file or directory\n",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "exited with status 2: rbd: error opening pool 'rbd': (2) No such file or directory"
        );
        let e = decode_pool_status(&out(0, "<html>", "")).unwrap_err();
        assert!(e.starts_with("its output is not the JSON expected"), "{e}");
        assert_eq!(
            decode_pool_status(&out(0, "\n", "")).unwrap_err(),
            "the command printed nothing"
        );
        assert_eq!(
            decode_image_status(&out(1, "", "")).unwrap_err(),
            "exited with status 1 and printed no error"
        );
        assert!(decode_cluster_health(&out(0, r#"{"fsid":"x"}"#, "")).is_err());
    }

    #[test]
    fn one_image_and_the_cluster_status() {
        let cli = format!(
            r#"{{"name":"vol-a","global_id":"ga","state":"up+replaying","description":"{IDLE}","last_update":"2024-06-24 16:09:30","peer_sites":[{{"site_name":"local","mirror_uuids":"u","state":"up+stopped","description":"local image is primary","last_update":"2024-06-24 16:09:31"}}]}}"#
        );
        let s = decode_image_status(&out(0, &cli, "")).unwrap();
        assert!(s.is_replaying_idle());
        assert!(s.peer().unwrap().is_primary());
        let e = decode_image_status(&out(22, "", "rbd: mirroring not enabled on the image\n"))
            .unwrap_err();
        assert!(e.contains("mirroring not enabled on the image"), "{e}");

        let ceph = r#"{"fsid":"9980ffe8","health":{"status":"HEALTH_WARN","checks":{"MON_DISK_LOW":{"severity":"HEALTH_WARN","summary":{"message":"mon scvm1 is low on available space","count":1},"muted":false}},"mutes":[]},"election_epoch":148,"quorum_names":["scvm1"]}"#;
        let h = decode_cluster_health(&out(0, ceph, "")).unwrap();
        assert_eq!(h.status, "HEALTH_WARN");
        assert!(h.is_usable());
        assert_eq!(h.checks.len(), 1);
    }

    #[test]
    fn commands_are_glue_s_and_names_stay_one_word() {
        assert_eq!(
            pool_status_command(),
            "rbd mirror pool status rbd --verbose --format json"
        );
        assert_eq!(
            image_status_command("6f1c1d8e-1b0e").as_deref(),
            Some("rbd mirror image status rbd/6f1c1d8e-1b0e --format json")
        );
        for bad in ["", "a b", "x;reboot", "$(id)", "a/b", "'q'"] {
            assert_eq!(image_status_command(bad), None, "{bad}");
        }
        assert!(crate::ssh::is_known_read(&pool_status_command()));
        assert!(crate::ssh::is_known_read(CLUSTER_STATUS_COMMAND));
    }

    #[test]
    fn an_ssh_read_says_so() {
        let read = StorageRead {
            site: "site-b".into(),
            via: Via::Ssh,
            host: Some("127.0.2.1".into()),
        };
        assert_eq!(
            read.note().unwrap(),
            "site-b: Glue unreachable, read over SSH from 127.0.2.1"
        );
        assert_eq!(StorageRead::glue("site-a").note(), None);
        assert_eq!(serde_json::to_value(Via::Ssh).unwrap(), "ssh");
    }
}
