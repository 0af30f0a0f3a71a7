//! The escape hatches: any Mold command or Glue call, signed and sent by the site's client
//! with its rules (reads retried, mutations sent once), the answer returned as JSON with
//! every secret-looking field replaced by `***` — Mold echoes the peer's keys in DR records
//! and Glue returns cephx keys in its setup answers.

use reqwest::Method;
use serde_json::Value;

use super::{Dr, DrError};
use crate::mold::is_read_command;

/// What secret fields are replaced with.
const REDACTED: &str = "***";

/// Whether a JSON key names a credential: Mold's `drclusterapikey`, `drclustersecretkey`,
/// `drclusterprivatekey`, a user's `apikey`/`secretkey`, Glue's `localToken`, a pool peer's
/// cephx `key`, passwords.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token", "privatekey", "private_key"]
        .iter()
        .any(|s| k.contains(s))
        || (k.ends_with("key") && k != "publickey")
        || k.ends_with("_key")
}

/// `value` with every secret field replaced, at any depth.
pub(crate) fn redacted(mut value: Value) -> Value {
    redact(&mut value);
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

impl Dr {
    /// A raw signed Mold command on `site`. Reads (`list…`, `get…`, `query…`, `find…`) go as
    /// GET and are retried; anything else is a POST sent once, and when Mold answers with a
    /// job id drbook waits for the job and returns its result.
    pub async fn mold_raw(
        &self,
        site: &str,
        command: &str,
        params: &[(String, String)],
    ) -> Result<Value, DrError> {
        let h = self.handle(site)?;
        let refs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !is_read_command(command) {
            tracing::info!(site, command, "raw Mold call");
        }
        let body = h.mold.call(command, &refs).await?;
        if !is_read_command(command)
            && let Some(jobid) = body.get("jobid").and_then(Value::as_str)
        {
            let result = h.mold.wait_for_job(command, jobid).await?;
            return Ok(redacted(result));
        }
        Ok(redacted(Value::Object(body)))
    }

    /// A raw Glue call on `site`: `method` is GET, POST, PUT or DELETE; `path` is under
    /// `/api/v1` (given with or without that prefix). GET is a read (fail-over, retries);
    /// the others are sent once.
    pub async fn glue_raw(
        &self,
        site: &str,
        method: &str,
        path: &str,
        form: &[(String, String)],
    ) -> Result<Value, DrError> {
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "DELETE" => Method::DELETE,
            other => {
                return Err(DrError::Config(format!(
                    "Glue method {other:?} is not one Glue serves: use GET, POST, PUT or DELETE"
                )));
            }
        };
        let trimmed = path.trim().trim_start_matches('/');
        let trimmed = trimmed.strip_prefix("api/v1").unwrap_or(trimmed);
        let segments: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() {
            return Err(DrError::Config(format!(
                "Glue path {path:?} is empty: give e.g. \"/mirror/image/rbd\""
            )));
        }
        let glue = self.handle(site)?.glue()?;
        let refs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if method != Method::GET {
            tracing::info!(site, %method, path, "raw Glue call");
        }
        Ok(redacted(glue.raw(method, &segments, &refs).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_replaced_at_any_depth() {
        let v = redacted(json!({
            "getdisasterrecoveryclusterlistresponse": {"disasterrecoverycluster": [{
                "name": "DR",
                "details": {
                    "drclusterapikey": "AK", "drclustersecretkey": "SK",
                    "drclusterprivatekey": "-----BEGIN", "mirrorscheduleinterval": "1h"
                }
            }]},
            "user": {"apikey": "a", "secretkey": "s", "keyword": "k", "publickey": "ssh-rsa"},
            "glue": {"localToken": "t", "peers": [{"key": "cephx", "mon_host": "m"}], "mold_api_key": "x"},
            "privateKeyFile": null
        }));
        let shown = v.to_string();
        for secret in [
            "\"AK\"", "\"SK\"", "BEGIN", "\"a\"", "\"s\"", "\"t\"", "cephx", "\"x\"",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let d =
            &v["getdisasterrecoveryclusterlistresponse"]["disasterrecoverycluster"][0]["details"];
        assert_eq!(d["mirrorscheduleinterval"], "1h");
        assert_eq!(v["user"]["keyword"], "k");
        assert_eq!(v["user"]["publickey"], "ssh-rsa");
        assert_eq!(v["glue"]["peers"][0]["mon_host"], "m");
        assert!(v["privateKeyFile"].is_null());
    }
}
