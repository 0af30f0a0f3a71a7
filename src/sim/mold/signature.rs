//! The request checks `ApiServer.verifyRequest` makes: the API key, the signature with the
//! site's secret and algorithm, and `signatureversion=3` with `expires` (spec §2.2, §8.5).
//!
//! The signature is computed here from the spec's rules, not with drbook's signing code:
//! the client is checked against the simulator, never against itself.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use hmac::{Hmac, Mac};

use crate::mold::SignatureAlgorithm;
use crate::sim::config::SiteSpec;
use crate::sim::params::Params;

/// Checks the signature the way `ApiServer.verifyRequest` does; the error is for the log.
pub fn verify(params: &Params, spec: &SiteSpec) -> Result<(), String> {
    let api_key = params.get("apikey").ok_or("no apikey")?;
    let signature = params.get("signature").ok_or("no signature")?;
    if api_key != spec.api_key {
        return Err("unknown api key".into());
    }
    let expires = params.get("expires");
    match params.get("signatureversion") {
        Some("3") => {
            let expires = expires.ok_or("signatureversion=3 without expires")?;
            let at = parse_expires(expires).ok_or("unparseable expires")?;
            let now = Utc::now();
            if at < now {
                return Err("request expired".into());
            }
            if spec.enforce_post && at > now + chrono::Duration::minutes(15) {
                return Err("expires too far ahead".into());
            }
        }
        Some(_) => return Err("signatureversion must be 3".into()),
        None if spec.enforce_post => return Err("signatureversion=3 is enforced".into()),
        None => {}
    }
    let expected = expected_signature(params, &spec.secret_key, spec.algorithm);
    if same_in_constant_time(expected.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err("signature mismatch".into())
    }
}

/// A value as Java's `URLEncoder.encode(v, "UTF-8")` writes it, with its `+` for a space
/// replaced by `%20` as Mold does: `A–Z a–z 0–9 . - * _` as they are, every other byte of
/// the UTF-8 form `%XX`.
fn java_url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b".-*_".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The string Mold signs: every parameter but `signature`, sorted by name as received
/// (stably: a repeated name keeps its order), `name=value` with the value Java-encoded and
/// the name literal, joined with `&`, all lower-cased.
fn canonical_string(params: &Params) -> String {
    let mut signed: Vec<&(String, String)> = params
        .0
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("signature"))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let joined: Vec<String> = signed
        .iter()
        .map(|(name, value)| format!("{name}={}", java_url_encode(value)))
        .collect();
    joined.join("&").to_lowercase()
}

/// `Base64(HMAC(secret, canonical string))`, as the client should have sent it.
fn expected_signature(params: &Params, secret: &str, algorithm: SignatureAlgorithm) -> String {
    let canonical = canonical_string(params);
    let mac = match algorithm {
        SignatureAlgorithm::Sha256 => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(canonical.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        SignatureAlgorithm::Sha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(canonical.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    BASE64.encode(mac)
}

/// Mold compares signatures in constant time.
fn same_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `expires` formats Mold accepts (spec §2.2, §8.5).
pub fn parse_expires(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%SZ%z",
    ] {
        if let Ok(d) = DateTime::<FixedOffset>::parse_from_str(s, f) {
            return Some(d.with_timezone(&Utc));
        }
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|n| Utc.from_utc_datetime(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "TestApiKey-123";
    const SECRET: &str = "TestSecret-456";

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        )
    }

    /// Spec §2.3's test vectors: canonical string, SHA-256 and (where given) SHA-1.
    #[test]
    fn the_spec_s_test_vectors() {
        let vectors: [(Params, &str, &str, Option<&str>); 3] = [
            (
                params(&[
                    ("command", "getDisasterRecoveryClusterList"),
                    ("response", "json"),
                    ("apikey", KEY),
                    ("drclustertype", "secondary"),
                ]),
                "apikey=testapikey-123&command=getdisasterrecoveryclusterlist&drclustertype=secondary&response=json",
                "wIdme3MKrhNqjj0vwN4SMw87GR0WSW971hKq+K6+508=",
                Some("3vfB8jzV1cblVFkByEv9khLaq/Y="),
            ),
            (
                params(&[
                    ("command", "updateDisasterRecoveryCluster"),
                    ("response", "json"),
                    ("apikey", KEY),
                    ("id", "0b6f1b2e-1111-2222-3333-444455556666"),
                    ("drclusterstatus", "Enabled"),
                    ("mirroringagentstatus", "Enabled"),
                    ("details[0].mirrorscheduleinterval", "30m"),
                    ("signatureversion", "3"),
                    ("expires", "2030-01-01T00:00:00+0000"),
                ]),
                "apikey=testapikey-123&command=updatedisasterrecoverycluster&details[0].mirrorscheduleinterval=30m&drclusterstatus=enabled&expires=2030-01-01t00%3a00%3a00%2b0000&id=0b6f1b2e-1111-2222-3333-444455556666&mirroringagentstatus=enabled&response=json&signatureversion=3",
                "vuCRGoyo+PMC8HMkVKfIQcdkCmHK4lHH7Aw5jpnhewY=",
                None,
            ),
            (
                params(&[
                    ("command", "listVirtualMachines"),
                    ("response", "json"),
                    ("apikey", KEY),
                    ("keyword", "web 01~a*b/c"),
                ]),
                "apikey=testapikey-123&command=listvirtualmachines&keyword=web%2001%7ea*b%2fc&response=json",
                "mCxBm6GE6IE0xMYn+k68OwrQ8vFAOW9MQV617qw4v9E=",
                Some("nOIOOTBs+NWO9RabwS7taUDVp8I="),
            ),
        ];
        for (p, canonical, sha256, sha1) in vectors {
            assert_eq!(canonical_string(&p), canonical);
            assert_eq!(
                expected_signature(&p, SECRET, SignatureAlgorithm::Sha256),
                sha256
            );
            if let Some(sha1) = sha1 {
                assert_eq!(
                    expected_signature(&p, SECRET, SignatureAlgorithm::Sha1),
                    sha1
                );
            }
        }
    }

    #[test]
    fn a_signed_request_passes_and_anything_else_is_refused() {
        let spec = SiteSpec {
            name: "site-a".into(),
            api_key: KEY.into(),
            secret_key: SECRET.into(),
            algorithm: SignatureAlgorithm::Sha256,
            glue_endpoints: 1,
            dr_enabled: true,
            enforce_post: false,
        };
        let mut p = params(&[
            ("command", "listZones"),
            ("response", "json"),
            ("apiKey", KEY),
        ]);
        let good = expected_signature(&p, SECRET, SignatureAlgorithm::Sha256);
        p.0.push(("signature".into(), good.clone()));
        assert_eq!(verify(&p, &spec), Ok(()));
        let sha1 = SiteSpec {
            algorithm: SignatureAlgorithm::Sha1,
            ..spec.clone()
        };
        assert_eq!(verify(&p, &sha1), Err("signature mismatch".into()));
        let mut tampered = p.clone();
        tampered.0[0].1 = "listHosts".into();
        assert_eq!(verify(&tampered, &spec), Err("signature mismatch".into()));
    }

    #[test]
    fn java_encoding_rules() {
        assert_eq!(java_url_encode("AZaz09.-*_"), "AZaz09.-*_");
        assert_eq!(java_url_encode("a b"), "a%20b");
        assert_eq!(java_url_encode("~+/=:"), "%7E%2B%2F%3D%3A");
        assert_eq!(java_url_encode("재해"), "%EC%9E%AC%ED%95%B4");
    }

    #[test]
    fn expires_formats() {
        for s in [
            "2030-01-01T00:00:00+09:00",
            "2030-01-01T00:00:00+0900",
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:00:00.123456+0900",
            "2030-01-01T00:00:00Z+0900",
        ] {
            assert!(parse_expires(s).is_some(), "{s}");
        }
        assert!(parse_expires("tomorrow").is_none());
    }
}
