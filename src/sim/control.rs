//! The control API: what a test or a rehearsal does to the simulated world — disasters,
//! recoveries, writes, faults, partitions — and what it reads back (`/state`, the ledger).
//! The same operations are methods of [`Sim`](super::Sim) for in-process tests. Also where
//! the storage VMs' sshd hands each command (`POST /ssh/{site}` `{"command"}`, from `drbook
//! sim exec`; [`super::ssh::shell`] answers `{"status", "stdout", "stderr"}`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Controls;
use super::faults::FaultSpec;

pub fn router(sim: Arc<Controls>) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/disaster", post(disaster))
        .route("/recover", post(recover))
        .route("/write", post(write))
        .route("/ledger/{vm}", get(ledger))
        .route("/fault", post(fault))
        .route("/faults", delete(clear_faults).get(list_faults))
        .route("/partition", post(partition))
        .route("/heal", post(heal))
        .route("/ssh/{site}", post(ssh))
        .with_state(sim)
}

#[derive(Deserialize)]
struct SiteBody {
    site: String,
}

#[derive(Deserialize)]
struct SshBody {
    command: String,
}

#[derive(Deserialize)]
struct WriteBody {
    vm: String,
    site: String,
    #[serde(default = "one")]
    count: u64,
}

fn one() -> u64 {
    1
}

fn answer(result: Result<Value, String>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::CONFLICT, Json(json!({"error": e}))).into_response(),
    }
}

async fn state(State(sim): State<Arc<Controls>>) -> Response {
    Json(sim.state()).into_response()
}

async fn disaster(State(sim): State<Arc<Controls>>, Json(b): Json<SiteBody>) -> Response {
    answer(
        sim.disaster(&b.site)
            .await
            .map(|()| json!({"site": b.site, "up": false})),
    )
}

async fn recover(State(sim): State<Arc<Controls>>, Json(b): Json<SiteBody>) -> Response {
    answer(
        sim.recover(&b.site)
            .await
            .map(|()| json!({"site": b.site, "up": true})),
    )
}

async fn write(State(sim): State<Arc<Controls>>, Json(b): Json<WriteBody>) -> Response {
    answer(sim.write(&b.vm, &b.site, b.count))
}

async fn ledger(State(sim): State<Arc<Controls>>, Path(vm): Path<String>) -> Response {
    answer(sim.ledger(&vm))
}

async fn fault(State(sim): State<Arc<Controls>>, Json(spec): Json<FaultSpec>) -> Response {
    answer(sim.add_fault(spec).map(|()| json!({"ok": true})))
}

async fn clear_faults(State(sim): State<Arc<Controls>>) -> Response {
    sim.shared.faults().clear();
    Json(json!({"ok": true})).into_response()
}

async fn list_faults(State(sim): State<Arc<Controls>>) -> Response {
    Json(json!(sim.shared.faults().list())).into_response()
}

async fn partition(State(sim): State<Arc<Controls>>) -> Response {
    answer(
        sim.set_partitioned(true)
            .map(|()| json!({"partitioned": true})),
    )
}

async fn heal(State(sim): State<Arc<Controls>>) -> Response {
    answer(
        sim.set_partitioned(false)
            .map(|()| json!({"partitioned": false})),
    )
}

async fn ssh(
    State(sim): State<Arc<Controls>>,
    Path(site): Path<String>,
    Json(b): Json<SshBody>,
) -> Response {
    // On real Ceph the command runs rbd: off the async threads.
    let answered = tokio::task::spawn_blocking(move || sim.ssh_command(&site, &b.command)).await;
    match answered {
        Ok(result) => answer(result.map(|a| json!(a))),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": format!("the command's task failed: {e}")})),
        )
            .into_response(),
    }
}
