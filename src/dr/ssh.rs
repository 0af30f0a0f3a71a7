//! The `ssh()` escape hatch: a command on one of the site's storage VMs.

use super::{Dr, DrError};
use crate::ssh::SshOutput;

impl Dr {
    /// Runs `command` on the first of the site's storage VMs that accepts an SSH connection
    /// (the hosts of `glue_urls`, the site's `ssh_user` and `ssh_key_file`).
    pub async fn ssh(&self, site: &str, command: &str) -> Result<SshOutput, DrError> {
        let target = self.handle(site)?.ssh.clone();
        if target.known_hosts.is_none() {
            tracing::warn!(
                site,
                "the storage VMs' SSH host keys are not checked: set ssh_known_hosts in drbook.toml"
            );
        }
        let command = command.to_string();
        // The blocking session runs off this task: the run lock's check goes with it.
        let fence = crate::fence::current();
        tokio::task::spawn_blocking(move || {
            crate::ssh::run_fenced(&target, &command, fence.as_ref())
        })
        .await
        .map_err(|e| DrError::Config(format!("the SSH task failed: {e}")))?
        .map_err(DrError::from)
    }
}
