//! The last check before a mutating request leaves drbook. A run that holds a DR cluster's
//! lock in etcd may lose it while a primitive is still reading its guards; the host scopes
//! each mutating call with a check of the locks it holds ([`guarded`]), and the Mold, Glue
//! and SSH clients ask it ([`check`]) right before sending anything that changes state — a
//! read of the holder's own deadline, no round trip. Outside such a scope (reads, the
//! simulator, tools) there is nothing to check.

use std::future::Future;
use std::sync::Arc;

/// Whether sending a mutation is still allowed; the reason when it is not.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

tokio::task_local! {
    static FENCE: Check;
}

/// Runs `fut` with `check` asked before each mutating request it makes (on this task).
pub async fn guarded<F: Future>(check: Check, fut: F) -> F::Output {
    FENCE.scope(check, fut).await
}

/// The scope's check, for a client about to send a mutation: `Err(reason)` means it must not.
pub fn check() -> Result<(), String> {
    FENCE.try_with(|c| c()).unwrap_or(Ok(()))
}

/// The scope's check, to carry onto another thread (a blocking SSH session).
pub fn current() -> Option<Check> {
    FENCE.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_inside_a_scope() {
        assert_eq!(check(), Ok(()));
        let no: Check = Arc::new(|| Err("lost".into()));
        assert_eq!(guarded(no, async { check() }).await, Err("lost".into()));
        assert!(current().is_none());
    }
}
