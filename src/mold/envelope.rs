//! Decoding Mold's JSON envelope, defensively (as the official Go SDK's tests demand).
//!
//! Every answer is `{"<command>response": {...}}` with exactly one key; errors put `errorcode`
//! and `errortext` inside it (sometimes with HTTP 200), and an unknown command answers under
//! `errorresponse`. Lists come as `{"count": N, "<object>": [...]}`, or `{}` / `{"count": 0}`
//! when empty, and sometimes as a single object where an array is expected.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::MoldErrorKind;
use super::sign::SignatureAlgorithm;

/// The inside of a decoded envelope.
pub type Body = Map<String, Value>;

/// An HTTP answer as received, before decoding.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    /// Mold's `X-Description` header: the errortext on the `ServerApiException` path.
    pub x_description: Option<&'a str>,
    pub body: &'a [u8],
}

/// Unwraps `{"<command>response": {...}}`, turning every failure shape into a typed error.
pub fn decode(
    command: &str,
    answer: Answer<'_>,
    algorithm: SignatureAlgorithm,
) -> Result<Body, MoldErrorKind> {
    let status = answer.status;
    let Ok(json) = serde_json::from_slice::<Value>(answer.body) else {
        return Err(if (200..300).contains(&status) {
            // A success answer that does not parse is Mold's own, cut off or garbled: its
            // text is not quoted (a DR record list carries the peer's keys further on).
            MoldErrorKind::Decode {
                http_status: status,
                detail: format!("not JSON ({})", garbled(answer.body)),
            }
        } else {
            let excerpt = text_excerpt(answer.body);
            MoldErrorKind::Http {
                http_status: status,
                excerpt,
            }
        });
    };
    let decode_err = |detail: String| MoldErrorKind::Decode {
        http_status: status,
        detail,
    };
    let Value::Object(top) = json else {
        return Err(decode_err(format!(
            "expected a JSON object, got {}",
            kind_of(&json)
        )));
    };
    let expected = format!("{}response", command.to_lowercase());
    if top.len() != 1 {
        let keys: Vec<&str> = top.keys().map(String::as_str).collect();
        return Err(decode_err(format!(
            "expected exactly one top-level key {expected:?}, got {keys:?}"
        )));
    }
    let (key, inner) = top.into_iter().next().expect("one key");
    let inner = match inner {
        Value::Object(map) => map,
        other => {
            return Err(decode_err(format!(
                "{key:?} holds {}, not an object",
                kind_of(&other)
            )));
        }
    };
    if let Some(code) = inner.get("errorcode") {
        let errorcode = code
            .as_i64()
            .or_else(|| code.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(i64::from(status));
        let errortext = answer
            .x_description
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .or_else(|| {
                inner
                    .get("errortext")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "(Mold gave no error text)".to_string());
        if status == 401 || errorcode == 401 {
            return Err(MoldErrorKind::Unauthorized {
                errortext,
                algorithm,
            });
        }
        return Err(MoldErrorKind::Api {
            http_status: status,
            errorcode,
            cserrorcode: inner.get("cserrorcode").and_then(Value::as_i64),
            errortext,
        });
    }
    if key != expected {
        return Err(decode_err(format!(
            "expected top-level key {expected:?}, got {key:?}"
        )));
    }
    if !(200..300).contains(&status) {
        return Err(MoldErrorKind::Http {
            http_status: status,
            excerpt: format!("an {key:?} envelope without errorcode"),
        });
    }
    Ok(inner)
}

/// The items of a list answer: `{}` and `{"count": 0}` are empty, a single object is a
/// one-item list.
pub fn list<T: DeserializeOwned>(body: &Body, object: &str) -> Result<Vec<T>, String> {
    match body.get(object) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| typed(item, object))
            .collect::<Result<Vec<T>, String>>(),
        Some(item @ Value::Object(_)) => Ok(vec![typed(item, object)?]),
        Some(other) => Err(format!("{object:?} holds {}, not a list", kind_of(other))),
    }
}

/// The `count` of a list page (the page's size, not a total).
pub fn count(body: &Body) -> usize {
    body.get("count")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

/// A single object answer, `{"<object>": {...}}`.
pub fn single<T: DeserializeOwned>(body: &Body, object: &str) -> Result<T, String> {
    match body.get(object) {
        Some(item @ Value::Object(_)) => typed(item, object),
        Some(Value::Array(items)) if items.len() == 1 => typed(&items[0], object),
        Some(other) => Err(format!(
            "{object:?} holds {}, not an object",
            kind_of(other)
        )),
        None => Err(format!("no {object:?} in the answer")),
    }
}

/// A `{"success": true}` answer (older builds send the string `"true"`).
pub fn success(body: &Body) -> Result<bool, String> {
    match body.get("success") {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => Ok(s.eq_ignore_ascii_case("true")),
        Some(other) => Err(format!("\"success\" holds {}", kind_of(other))),
        None => Err("no \"success\" in the answer".to_string()),
    }
}

/// What an async command returns at submit: the job, and for create-style commands the new
/// entity's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncSubmit {
    pub jobid: String,
    pub id: Option<String>,
}

pub fn async_submit(body: &Body) -> Result<AsyncSubmit, String> {
    let jobid = body
        .get("jobid")
        .and_then(Value::as_str)
        .ok_or("no \"jobid\": this command did not start an async job")?;
    Ok(AsyncSubmit {
        jobid: jobid.to_string(),
        id: body.get("id").and_then(Value::as_str).map(str::to_string),
    })
}

/// Converts one item, with an error that names the object and the field problem but never
/// quotes a value (a DR record's values include the peer's keys).
pub fn typed<T: DeserializeOwned>(value: &Value, object: &str) -> Result<T, String> {
    T::deserialize(value).map_err(|e| {
        format!(
            "unexpected {object:?}: {}",
            crate::http::unquote(&e.to_string())
        )
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most this many characters of a body's text go into an error message, so that the line
/// stays short enough to read with its next step.
const EXCERPT_CHARS: usize = 80;

/// A short, single-line view of a non-JSON body: an HTML page's `<title>` (never its
/// markup), only the kind of any other markup (Mold's XML would hold a DR record's keys), else
/// the start of its text.
/// What a success answer that is not JSON looks like, without its words.
fn garbled(body: &[u8]) -> String {
    if let Some(summary) = crate::http::markup_summary(body) {
        return summary;
    }
    let trimmed = String::from_utf8_lossy(body);
    let trimmed = trimmed.trim();
    if trimmed.is_empty() {
        "empty body".to_string()
    } else if trimmed.starts_with('{') || trimmed.starts_with('[') {
        format!("cut off or garbled after {} bytes", body.len())
    } else {
        format!("{} bytes of text", body.len())
    }
}

fn text_excerpt(body: &[u8]) -> String {
    if let Some(summary) = crate::http::markup_summary(body) {
        return summary;
    }
    let text = String::from_utf8_lossy(body);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "empty body".to_string();
    }
    let mut excerpt: String = flat.chars().take(EXCERPT_CHARS).collect();
    if flat.chars().count() > EXCERPT_CHARS {
        excerpt.push('…');
    }
    format!("\"{excerpt}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn ok(status: u16, body: &str) -> Result<Body, MoldErrorKind> {
        decode(
            "getDisasterRecoveryClusterList",
            Answer {
                status,
                x_description: None,
                body: body.as_bytes(),
            },
            SignatureAlgorithm::Sha256,
        )
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        id: String,
    }

    #[test]
    fn list_shapes() {
        let full = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"count":2,"disasterrecoverycluster":[{"id":"a"},{"id":"b"}]}}"#,
        )
        .unwrap();
        assert_eq!(count(&full), 2);
        let items: Vec<Item> = list(&full, "disasterrecoverycluster").unwrap();
        assert_eq!(items.len(), 2);

        let empty = ok(200, r#"{"getdisasterrecoveryclusterlistresponse":{}}"#).unwrap();
        assert!(
            list::<Item>(&empty, "disasterrecoverycluster")
                .unwrap()
                .is_empty()
        );

        let zero = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"count":0}}"#,
        )
        .unwrap();
        assert!(
            list::<Item>(&zero, "disasterrecoverycluster")
                .unwrap()
                .is_empty()
        );

        let one = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"count":1,"disasterrecoverycluster":{"id":"solo"}}}"#,
        )
        .unwrap();
        assert_eq!(
            list::<Item>(&one, "disasterrecoverycluster").unwrap(),
            vec![Item { id: "solo".into() }]
        );
    }

    #[test]
    fn single_success_and_async_submit() {
        let body = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"disasterrecoverycluster":{"id":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(
            single::<Item>(&body, "disasterrecoverycluster").unwrap(),
            Item { id: "x".into() }
        );
        let s = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"success":true}}"#,
        )
        .unwrap();
        assert_eq!(success(&s), Ok(true));
        let s = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"success":"true"}}"#,
        )
        .unwrap();
        assert_eq!(success(&s), Ok(true));
        let a = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"id":"e1","jobid":"j1"}}"#,
        )
        .unwrap();
        assert_eq!(
            async_submit(&a).unwrap(),
            AsyncSubmit {
                jobid: "j1".into(),
                id: Some("e1".into())
            }
        );
        let j = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"jobid":"j2"}}"#,
        )
        .unwrap();
        assert_eq!(async_submit(&j).unwrap().id, None);
        assert!(async_submit(&s).is_err());
    }

    #[test]
    fn error_envelope_prefers_x_description() {
        let body = r#"{"promotedisasterrecoveryclusterresponse":{"uuidList":[],"errorcode":530,"cserrorcode":9999,"errortext":"body text"}}"#;
        let err = decode(
            "promoteDisasterRecoveryCluster",
            Answer {
                status: 530,
                x_description: Some("header text"),
                body: body.as_bytes(),
            },
            SignatureAlgorithm::Sha256,
        )
        .unwrap_err();
        match err {
            MoldErrorKind::Api {
                http_status,
                errorcode,
                cserrorcode,
                errortext,
            } => {
                assert_eq!(
                    (http_status, errorcode, cserrorcode),
                    (530, 530, Some(9999))
                );
                assert_eq!(errortext, "header text");
            }
            other => panic!("{other:?}"),
        }
        let err = decode(
            "promoteDisasterRecoveryCluster",
            Answer {
                status: 530,
                x_description: None,
                body: body.as_bytes(),
            },
            SignatureAlgorithm::Sha256,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("body text (Mold errorcode 530"));
    }

    #[test]
    fn errorcode_inside_a_200_is_an_error() {
        let err = ok(
            200,
            r#"{"getdisasterrecoveryclusterlistresponse":{"errorcode":431,"errortext":"Invalid parameter id"}}"#,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            MoldErrorKind::Api {
                errorcode: 431,
                http_status: 200,
                ..
            }
        ));
    }

    #[test]
    fn unauthorized_names_the_settings_to_check() {
        let err = ok(
            401,
            r#"{"getdisasterrecoveryclusterlistresponse":{"uuidList":[],"errorcode":401,"errortext":"unable to verify user credentials and/or request signature"}}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unable to verify user credentials"), "{text}");
        assert!(text.contains("secret_key"), "{text}");
        assert!(text.contains("sha256"), "{text}");
    }

    #[test]
    fn unknown_command_answers_under_errorresponse() {
        let err = ok(
            432,
            r#"{"errorresponse":{"uuidList":[],"errorcode":432,"errortext":"The given command does not exist or it is not available for user"}}"#,
        )
        .unwrap_err();
        assert!(matches!(err, MoldErrorKind::Api { errorcode: 432, .. }));
    }

    #[test]
    fn html_error_page_is_an_http_error_with_its_title() {
        let err = ok(
            503,
            "<html><head><title>503 Service Unavailable</title></head><body>down</body></html>",
        )
        .unwrap_err();
        match &err {
            MoldErrorKind::Http {
                http_status,
                excerpt,
            } => {
                assert_eq!(*http_status, 503);
                assert!(excerpt.contains("503 Service Unavailable"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.is_transient_for_read());
        assert!(!err.proves_not_executed());
    }

    #[test]
    fn a_cut_off_success_answer_is_described_never_quoted() {
        let body = r#"{"getdisasterrecoveryclusterlistresponse": {"drclusterapikey": "AK-SECRET-1"#;
        let err = ok(200, body).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("not JSON (cut off or garbled after"),
            "{shown}"
        );
        assert!(
            !shown.contains("AK-SECRET") && !shown.contains("drcluster"),
            "{shown}"
        );
    }

    #[test]
    fn malformed_bodies_are_decode_errors() {
        for (body, needle) in [
            (
                "{\"getdisasterrecoveryclusterlistresponse\": {\"count\": 1,",
                "not JSON",
            ),
            ("null", "a JSON object"),
            ("[1,2]", "a JSON object"),
            (
                r#"{"listvirtualmachinesresponse":{}}"#,
                "expected top-level key",
            ),
            (r#"{"a":{},"b":{}}"#, "exactly one top-level key"),
            (
                r#"{"getdisasterrecoveryclusterlistresponse":null}"#,
                "not an object",
            ),
            (
                r#"{"getdisasterrecoveryclusterlistresponse":"x"}"#,
                "not an object",
            ),
            ("", "not JSON"),
        ] {
            let err = ok(200, body).unwrap_err();
            assert!(
                matches!(err, MoldErrorKind::Decode { .. }) && err.to_string().contains(needle),
                "{body:?}: {err}"
            );
        }
    }

    #[test]
    fn typed_errors_never_quote_values() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            n: u32,
        }
        let v: Value = serde_json::json!({"n": "s3cr3t-value"});
        let err = typed::<Strict>(&v, "thing").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }
}
