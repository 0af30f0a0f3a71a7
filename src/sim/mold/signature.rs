//! The request checks `ApiServer.verifyRequest` makes: the API key, the signature with the
//! site's secret and algorithm, and `signatureversion=3` with `expires` (spec §2.2, §8.5).

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

use crate::mold::sign;
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
    if sign::verify(&params.0, &spec.secret_key, spec.algorithm, signature) {
        Ok(())
    } else {
        Err("signature mismatch".into())
    }
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
