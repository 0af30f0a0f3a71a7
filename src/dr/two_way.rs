//! Active-Active: one pairing protecting VMs both ways (Mold spec §3.8). Mold's cluster-level
//! commands loop over every row of the record they are sent to, and a row has the same shape
//! in both directions, so in such a pairing a failback's demote would also demote the DR
//! site's own production, a promote would need it stopped, and removing the pairing would
//! destroy it. This guard works out, from each VM's recorded home, which VMs an act would
//! touch that are not part of the failover being undone, and refuses naming them.

use std::fmt::Write as _;

use super::DrError;
use super::unknown::Fact;

/// Which way a mirrored VM counts as protected for the cluster-level acts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Way {
    /// At home on this site (one of the pairing's), mirrored to the other.
    Home(String),
    /// Its direction cannot be told, and why.
    Untold(String),
}

impl Way {
    /// The home site, if told.
    pub fn home(&self) -> Option<&str> {
        match self {
            Self::Home(site) => Some(site),
            Self::Untold(_) => None,
        }
    }
}

/// Each VM's way, from its home as read (`None`: never recorded). A pairing where no VM is
/// known to be at home on the DR site protects one way, as Mold's UI builds it: there a VM
/// without a readable home counts as protected from the protected site, as drbook always
/// assumed. Once some VM is at home on the DR site, a VM without a readable home has no way
/// drbook can tell.
pub fn ways<'a>(
    homes: &[(&'a str, &Fact<Option<String>>)],
    protected: &str,
    dr: &str,
) -> Vec<(&'a str, Way)> {
    let two_way = homes
        .iter()
        .any(|(_, h)| matches!(h, Fact::Known(Some(s)) if s == dr));
    homes
        .iter()
        .map(|(vm, home)| {
            let way = match home {
                Fact::Known(Some(s)) if s == protected || s == dr => Way::Home(s.clone()),
                Fact::Known(Some(s)) => Way::Untold(format!(
                    "its home is recorded as {s}, not a site of this pairing"
                )),
                _ if !two_way => Way::Home(protected.to_string()),
                Fact::Known(None) => Way::Untold("its home is not recorded".into()),
                Fact::Unknown(u) => Way::Untold(format!("its home could not be read ({u})")),
            };
            (*vm, way)
        })
        .collect()
}

/// The VMs whose way cannot be told, each as `name (why)`, for refusals.
pub fn untold(ways: &[(&str, Way)]) -> Vec<String> {
    ways.iter()
        .filter_map(|(vm, w)| match w {
            Way::Untold(why) => Some(format!("{vm} ({why})")),
            Way::Home(_) => None,
        })
        .collect()
}

/// Refuses a cluster-level act on DR cluster `cluster` when the VMs it would act on (every
/// mapped VM, `homes`) include one at home on the DR site `dr` or one whose way cannot be
/// told. `effect` says what Mold's command would do to them ("demote the images of these
/// VMs on site-b"). The refusal names every such VM and the per-direction way instead.
pub fn other_direction_untouched(
    action: &str,
    cluster: &str,
    effect: &str,
    instead: &str,
    homes: &[(&str, &Fact<Option<String>>)],
    protected: &str,
    dr: &str,
) -> Result<(), DrError> {
    let ways = ways(homes, protected, dr);
    let at_dr: Vec<&str> = ways
        .iter()
        .filter(|(_, w)| w.home() == Some(dr))
        .map(|(vm, _)| *vm)
        .collect();
    let untold = untold(&ways);
    if at_dr.is_empty() && untold.is_empty() {
        return Ok(());
    }
    let mut problem = Vec::new();
    if !at_dr.is_empty() {
        problem.push(format!(
            "DR cluster {cluster:?} also protects VMs at home on {dr} towards {protected}, and Mold's command acts on every mirrored VM of the pairing: it would {effect}: {}",
            at_dr.join(", ")
        ));
    }
    if !untold.is_empty() {
        problem.push(format!(
            "the pairing protects both ways and drbook cannot tell which way {} go",
            untold.join(", ")
        ));
    }
    let mut advice = instead.to_string();
    if !untold.is_empty() {
        let _ = write!(
            advice,
            "; record the missing homes first (record_homes({cluster:?}))"
        );
    }
    Err(DrError::guard(action, problem.join("; "), advice))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dr::unknown::{Api, Unreadable};

    fn home(site: &str) -> Fact<Option<String>> {
        Fact::Known(Some(site.into()))
    }

    fn unread() -> Fact<Option<String>> {
        Fact::Unknown(Arc::new(Unreadable {
            site: "site-a".into(),
            api: Api::Mold,
            command: "listTags".into(),
            error: "connection refused".into(),
            dark: true,
        }))
    }

    fn check(homes: &[(&str, &Fact<Option<String>>)]) -> Result<(), DrError> {
        other_direction_untouched(
            "demote DR cluster \"dr\"",
            "dr",
            "demote the images of these VMs on site-b",
            "fail back by direction: drbook run failback",
            homes,
            "site-a",
            "site-b",
        )
    }

    #[test]
    fn a_one_way_pairing_passes_whatever_was_recorded() {
        let (none, a) = (Fact::Known(None), home("site-a"));
        assert!(check(&[("db-1", &none), ("db-2", &a), ("db-3", &unread())]).is_ok());
    }

    #[test]
    fn a_vm_at_home_on_the_dr_site_is_named_and_nothing_is_sent() {
        let (a, b) = (home("site-a"), home("site-b"));
        let e = check(&[("db-1", &a), ("win-1", &b), ("win-2", &b)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("demote the images of these VMs on site-b: win-1, win-2"),
            "{e}"
        );
        assert!(e.contains("drbook run failback"), "{e}");
        assert!(!e.contains("db-1"), "{e}");
    }

    #[test]
    fn in_a_two_way_pairing_a_vm_without_a_readable_home_is_refused() {
        let (b, none, dark) = (home("site-b"), Fact::Known(None), unread());
        let e = check(&[("win-1", &b), ("db-1", &none), ("db-2", &dark)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("db-1 (its home is not recorded)"), "{e}");
        assert!(e.contains("db-2 (its home could not be read"), "{e}");
        assert!(e.contains("record_homes(\"dr\")"), "{e}");
        let c = home("site-c");
        let e = check(&[("x", &c)]).unwrap_err().to_string();
        assert!(e.contains("recorded as site-c"), "{e}");
    }
}
