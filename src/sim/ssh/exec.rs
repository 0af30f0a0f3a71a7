//! `drbook sim exec --control URL --site NAME`: what a simulated storage VM's sshd runs for
//! every command (its `ForceCommand`). It sends `SSH_ORIGINAL_COMMAND` to the simulator's
//! control API (`POST /ssh/{site}`), prints the answer's stdout and stderr, and exits with
//! its status. When the simulator cannot answer, it says why on stderr and exits 255, the
//! status ssh itself gives a connection that failed.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use super::shell::Answer;

/// A command the simulator does not answer within this long is given up (rbd on real Ceph
/// has its own deadlines, well within it).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the command sshd was asked for on `site`'s storage VM, through `control`.
pub async fn run(control: &str, site: &str) -> ExitCode {
    let Some(line) = std::env::var_os("SSH_ORIGINAL_COMMAND") else {
        eprintln!(
            "drbook sim: {site}'s simulated storage VMs run single commands only (ssh HOST COMMAND); there is no login shell"
        );
        return ExitCode::from(1);
    };
    let Ok(line) = line.into_string() else {
        eprintln!("drbook sim: the command is not UTF-8, which the simulated storage VM refuses");
        return ExitCode::from(2);
    };
    match ask(control, site, &line).await {
        Ok(answer) => {
            // A closed pipe on the client's side is the client's business.
            let _ = std::io::stdout().write_all(answer.stdout.as_bytes());
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().write_all(answer.stderr.as_bytes());
            ExitCode::from(exit_status(answer.status))
        }
        Err(e) => {
            eprintln!("drbook sim: {site}'s simulated storage VM cannot answer: {e}");
            ExitCode::from(255)
        }
    }
}

async fn ask(control: &str, site: &str, line: &str) -> Result<Answer, String> {
    let mut url = url::Url::parse(control)
        .map_err(|e| format!("the control API's address {control:?}: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| format!("the control API's address {control:?} takes no path"))?
        .pop_if_empty()
        .extend(["ssh", site]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(ANSWER_TIMEOUT)
        .build()
        .map_err(|e| crate::http::describe_transport_error(&e))?;
    let response = client
        .post(url)
        .json(&serde_json::json!({ "command": line }))
        .send()
        .await
        .map_err(|e| {
            format!(
                "the simulator's control API: {}",
                crate::http::describe_transport_error(&e)
            )
        })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| {
        format!(
            "the simulator's control API answered {status} without JSON: {}",
            crate::http::describe_transport_error(&e)
        )
    })?;
    if !status.is_success() {
        let why = body
            .get("error")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no reason given");
        return Err(why.to_string());
    }
    serde_json::from_value(body).map_err(|e| {
        format!("the simulator's control API answered a shape this drbook cannot read: {e}")
    })
}

/// A process's exit status as a shell sees it (0–255).
fn exit_status(status: i32) -> u8 {
    u8::try_from(status.rem_euclid(256)).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_are_what_a_shell_sees() {
        assert_eq!(super::exit_status(0), 0);
        assert_eq!(super::exit_status(127), 127);
        assert_eq!(super::exit_status(256), 0);
        assert_eq!(super::exit_status(-1), 255);
    }
}
