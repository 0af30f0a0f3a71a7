//! The prompt's view of the sites: each configured site's live role and health
//! (`site-a:primary✓ site-b:dr✓ >`), refreshed in the background after each command. The
//! prompt waits for a fresh look only briefly: a site that does not answer shows what was
//! last known, marked stale, and the prompt comes back anyway.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::dr::{Dr, SiteRole};
use crate::sync::Locked as _;

/// How long one site's look may take before it counts as unanswered.
const LOOK_BUDGET: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub role: SiteRole,
    pub mold: bool,
    pub glue: bool,
}

pub struct Board {
    dr: Dr,
    rt: tokio::runtime::Handle,
    latest: Arc<Mutex<BTreeMap<String, Look>>>,
    refresh: Option<JoinHandle<()>>,
}

impl Board {
    pub fn new(dr: Dr, rt: tokio::runtime::Handle) -> Self {
        Self {
            dr,
            rt,
            latest: Arc::new(Mutex::new(BTreeMap::new())),
            refresh: None,
        }
    }

    /// Starts a fresh look at every site unless one is still under way, waits for it at
    /// most `wait`, and renders what is known: `site-a:primary✓ site-b:dr✗`; a site still
    /// being looked at keeps its last known look with `…`.
    pub fn prompt(&mut self, wait: Duration) -> String {
        if self.refresh.as_ref().is_none_or(JoinHandle::is_finished) {
            let (dr, latest) = (self.dr.clone(), self.latest.clone());
            self.refresh = Some(self.rt.spawn(async move {
                let looks = dr.site_names().into_iter().map(|site| {
                    let dr = dr.clone();
                    let latest = latest.clone();
                    async move {
                        let look = tokio::time::timeout(LOOK_BUDGET, async {
                            let (role, health) =
                                tokio::join!(dr.site_role(&site), dr.health(&site));
                            Look {
                                role,
                                mold: health.mold,
                                glue: health.glue,
                            }
                        })
                        .await
                        .unwrap_or(Look {
                            role: SiteRole::Unknown,
                            mold: false,
                            glue: false,
                        });
                        latest.locked().insert(site, look);
                    }
                });
                futures_util::future::join_all(looks).await;
            }));
        }
        let done = match self.refresh.as_mut() {
            Some(handle) => self
                .rt
                .block_on(async { tokio::time::timeout(wait, handle).await.is_ok() }),
            None => true,
        };
        if done {
            self.refresh = None;
        }
        let latest = self.latest.locked().clone();
        render(&self.dr.site_names(), &latest, !done)
    }
}

/// `site-a:primary✓ site-b:dr✗`; `?` for a role not known, `…` while a look is under way.
pub fn render(sites: &[String], looks: &BTreeMap<String, Look>, stale: bool) -> String {
    sites
        .iter()
        .map(|site| match looks.get(site) {
            None => format!("{site}:…"),
            Some(l) => {
                let role = match l.role {
                    SiteRole::Unknown => "?",
                    other => other.as_str(),
                };
                let mark = match (l.mold, l.glue) {
                    (true, true) => "✓",
                    (true, false) => "!",
                    (false, _) => "✗",
                };
                format!("{site}:{role}{mark}{}", if stale { "…" } else { "" })
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_roles_and_marks() {
        let sites = vec!["site-a".to_string(), "site-b".to_string(), "c".to_string()];
        let mut looks = BTreeMap::new();
        looks.insert(
            "site-a".into(),
            Look {
                role: SiteRole::Primary,
                mold: true,
                glue: true,
            },
        );
        looks.insert(
            "site-b".into(),
            Look {
                role: SiteRole::Unknown,
                mold: false,
                glue: false,
            },
        );
        assert_eq!(
            render(&sites, &looks, false),
            "site-a:primary✓ site-b:?✗ c:…"
        );
        assert_eq!(render(&sites[..1], &looks, true), "site-a:primary✓…");
    }
}
