//! Mold's request signature, exactly as `ApiServer.verifyRequest` checks it.
//!
//! Every parameter except `signature`, sorted by name, each as `name=value` with the value
//! encoded by Java's `URLEncoder` rules (space as `%20`), joined with `&`, the whole string
//! lower-cased, then `Base64(HMAC(secret, string))`. Mold has used HMAC-SHA256 since 2023-07;
//! older Mold and upstream CloudStack use HMAC-SHA1, so the algorithm is a per-site setting.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};

/// Which HMAC a site's Mold verifies with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// Current Mold (the default).
    #[default]
    Sha256,
    /// Mold builds before 2023-07 and upstream CloudStack.
    Sha1,
}

impl FromStr for SignatureAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" | "hmacsha256" => Ok(Self::Sha256),
            "sha1" | "hmacsha1" => Ok(Self::Sha1),
            other => Err(format!(
                "unknown signature algorithm {other:?}: use \"sha256\" (current Mold) or \"sha1\" (older Mold, upstream CloudStack)"
            )),
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha256 => "sha256",
            Self::Sha1 => "sha1",
        })
    }
}

/// Encodes a value the way `java.net.URLEncoder.encode(v, "UTF-8")` does, then replaces `+`
/// with `%20` as Mold does: `A–Z a–z 0–9 . - * _` stay, everything else is `%XX` of its UTF-8
/// bytes (so `~` becomes `%7E`, unlike RFC 3986 encoders).
pub fn java_url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push_str("%20"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
    out
}

/// The string Mold signs: parameters sorted by name (not by `name=value`), values
/// Java-encoded, names literal, all lower-cased. `signature` itself is left out.
pub fn canonical_string<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| !k.eq_ignore_ascii_case("signature"))
        .collect();
    // Java sorts by UTF-16 code unit; names are ASCII, where byte order is the same. A stable
    // sort keeps repeated names in the order given, as the server sees them.
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let joined = sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", java_url_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    joined.to_lowercase()
}

/// `Base64(HMAC(secret, canonical_string(params)))`, not yet percent-encoded.
pub fn signature<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    secret_key: &str,
    algorithm: SignatureAlgorithm,
) -> String {
    let canonical = canonical_string(params);
    let mac = match algorithm {
        SignatureAlgorithm::Sha256 => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret_key.as_bytes())
                .expect("HMAC accepts keys of any length");
            mac.update(canonical.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        SignatureAlgorithm::Sha1 => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret_key.as_bytes())
                .expect("HMAC accepts keys of any length");
            mac.update(canonical.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    BASE64.encode(mac)
}

/// Checks a received signature in constant time (for the simulator's Mold).
pub fn verify<K: AsRef<str>, V: AsRef<str>>(
    params: &[(K, V)],
    secret_key: &str,
    algorithm: SignatureAlgorithm,
    received: &str,
) -> bool {
    let expected = signature(params, secret_key, algorithm);
    let (a, b) = (expected.as_bytes(), received.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "TestApiKey-123";
    const SECRET: &str = "TestSecret-456";

    fn vector1() -> Vec<(&'static str, &'static str)> {
        vec![
            ("command", "getDisasterRecoveryClusterList"),
            ("response", "json"),
            ("apikey", KEY),
            ("drclustertype", "secondary"),
        ]
    }

    #[test]
    fn spec_vector_1_both_algorithms() {
        let p = vector1();
        assert_eq!(
            canonical_string(&p),
            "apikey=testapikey-123&command=getdisasterrecoveryclusterlist&drclustertype=secondary&response=json"
        );
        assert_eq!(
            signature(&p, SECRET, SignatureAlgorithm::Sha256),
            "wIdme3MKrhNqjj0vwN4SMw87GR0WSW971hKq+K6+508="
        );
        assert_eq!(
            signature(&p, SECRET, SignatureAlgorithm::Sha1),
            "3vfB8jzV1cblVFkByEv9khLaq/Y="
        );
    }

    #[test]
    fn spec_vector_2_signature_version_3_and_details() {
        let p = [
            ("command", "updateDisasterRecoveryCluster"),
            ("response", "json"),
            ("apikey", KEY),
            ("id", "0b6f1b2e-1111-2222-3333-444455556666"),
            ("drclusterstatus", "Enabled"),
            ("mirroringagentstatus", "Enabled"),
            ("details[0].mirrorscheduleinterval", "30m"),
            ("signatureversion", "3"),
            ("expires", "2030-01-01T00:00:00+0000"),
        ];
        assert_eq!(
            canonical_string(&p),
            "apikey=testapikey-123&command=updatedisasterrecoverycluster&details[0].mirrorscheduleinterval=30m&drclusterstatus=enabled&expires=2030-01-01t00%3a00%3a00%2b0000&id=0b6f1b2e-1111-2222-3333-444455556666&mirroringagentstatus=enabled&response=json&signatureversion=3"
        );
        assert_eq!(
            signature(&p, SECRET, SignatureAlgorithm::Sha256),
            "vuCRGoyo+PMC8HMkVKfIQcdkCmHK4lHH7Aw5jpnhewY="
        );
    }

    #[test]
    fn spec_vector_3_space_tilde_star_slash() {
        let p = [
            ("command", "listVirtualMachines"),
            ("response", "json"),
            ("apikey", KEY),
            ("keyword", "web 01~a*b/c"),
        ];
        assert_eq!(
            canonical_string(&p),
            "apikey=testapikey-123&command=listvirtualmachines&keyword=web%2001%7ea*b%2fc&response=json"
        );
        assert_eq!(
            signature(&p, SECRET, SignatureAlgorithm::Sha256),
            "mCxBm6GE6IE0xMYn+k68OwrQ8vFAOW9MQV617qw4v9E="
        );
        assert_eq!(
            signature(&p, SECRET, SignatureAlgorithm::Sha1),
            "nOIOOTBs+NWO9RabwS7taUDVp8I="
        );
    }

    #[test]
    fn java_encoding_rules() {
        assert_eq!(java_url_encode("AZaz09.-*_"), "AZaz09.-*_");
        assert_eq!(java_url_encode("a b"), "a%20b");
        assert_eq!(java_url_encode("~+/=:"), "%7E%2B%2F%3D%3A");
        assert_eq!(java_url_encode("재해"), "%EC%9E%AC%ED%95%B4");
    }

    #[test]
    fn the_signature_parameter_is_not_signed() {
        let mut p = vector1();
        let bare = signature(&p, SECRET, SignatureAlgorithm::Sha256);
        p.push(("signature", "whatever"));
        assert_eq!(signature(&p, SECRET, SignatureAlgorithm::Sha256), bare);
    }

    #[test]
    fn verify_accepts_only_the_right_signature() {
        let p = vector1();
        let good = signature(&p, SECRET, SignatureAlgorithm::Sha1);
        assert!(verify(&p, SECRET, SignatureAlgorithm::Sha1, &good));
        assert!(!verify(&p, SECRET, SignatureAlgorithm::Sha256, &good));
        assert!(!verify(&p, "wrong", SignatureAlgorithm::Sha1, &good));
    }

    #[test]
    fn algorithm_names() {
        assert_eq!("SHA1".parse(), Ok(SignatureAlgorithm::Sha1));
        assert_eq!("sha256".parse(), Ok(SignatureAlgorithm::Sha256));
        assert!("md5".parse::<SignatureAlgorithm>().is_err());
    }

    proptest! {
        #[test]
        fn canonical_string_ignores_parameter_order(
            params in proptest::collection::btree_map("[a-z][a-z0-9.\\[\\]]{0,12}", "\\PC{0,16}", 1..8),
            seed in any::<u64>(),
        ) {
            let ordered: Vec<(String, String)> = params.into_iter().collect();
            let mut shuffled = ordered.clone();
            fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
            prop_assert_eq!(canonical_string(&ordered), canonical_string(&shuffled));
            prop_assert_eq!(
                signature(&ordered, SECRET, SignatureAlgorithm::Sha256),
                signature(&shuffled, SECRET, SignatureAlgorithm::Sha256)
            );
        }

        #[test]
        fn encoded_values_hold_only_safe_characters(value in "\\PC{0,32}") {
            let enc = java_url_encode(&value);
            prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"%.-*_".contains(&b)));
        }
    }
}
