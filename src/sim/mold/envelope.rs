//! Mold's answer shapes: the `<command>response` envelope, lists, paging, and errors with
//! `X-Description` (spec §2.4).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::sim::params::Params;
use crate::sim::world::ApiError;

/// The framework's catch-all text for a failure it does not explain.
pub const INTERNAL: &str =
    "Internal error executing command, please contact your system administrator";

pub fn ok(key: &str, inner: &Value) -> Response {
    json_response(StatusCode::OK, &json!({ key: inner }))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

/// Mold's error envelope: HTTP status = errorcode, `X-Description` = errortext.
pub fn error(key: &str, e: &ApiError) -> Response {
    let mut inner = json!({"uuidList": [], "errorcode": e.errorcode, "errortext": e.errortext});
    if let Some(cs) = e.cserrorcode {
        inner["cserrorcode"] = json!(cs);
    }
    let status = StatusCode::from_u16(e.errorcode).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &json!({ key: inner }));
    if let Ok(v) = HeaderValue::from_str(&e.errortext) {
        r.headers_mut().insert("X-Description", v);
    }
    r
}

/// The 401 of a bad signature: no `cserrorcode`, no `X-Description` (spec §8.5).
pub fn unauthorized(key: &str, why: &str) -> Response {
    tracing::debug!(why, "rejected request signature");
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({ key: {"uuidList": [], "errorcode": 401,
            "errortext": "unable to verify user credentials and/or request signature"}}),
    )
}

/// A list answer: `{}` when empty, as Mold sends it.
pub fn list(object: &str, items: &[Value]) -> Value {
    if items.is_empty() {
        json!({})
    } else {
        json!({"count": items.len(), object: items})
    }
}

/// Applies `page`/`pagesize` to a full list.
pub fn page(params: &Params, items: Vec<Value>) -> Vec<Value> {
    let size: usize = params
        .get("pagesize")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(usize::MAX);
    let page: usize = params
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    items
        .into_iter()
        .skip(size.saturating_mul(page - 1))
        .take(size)
        .collect()
}
