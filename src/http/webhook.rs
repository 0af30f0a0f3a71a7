//! Posting a JSON message to a webhook (`notify()`): one POST, no retry (a webhook that
//! answered nothing usable may still have posted the message), errors without the URL.

use std::time::Duration;

/// Why a webhook post did not go through.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook client cannot be built: {0}")]
    Client(#[from] super::TlsError),
    #[error("the webhook answered HTTP {0}")]
    Status(u16),
    #[error("the webhook could not be reached: {0}")]
    Unreachable(String),
}

/// POSTs `payload` to `url` and waits at most 20 s for the answer.
pub async fn post(url: &str, payload: &serde_json::Value) -> Result<(), WebhookError> {
    let client = super::client(&super::TlsTrust::System, Duration::from_secs(10))?;
    let resp = client
        .post(url)
        .json(payload)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| WebhookError::Unreachable(super::describe_transport_error(&e)))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(WebhookError::Status(resp.status().as_u16()))
    }
}
