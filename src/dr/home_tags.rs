//! Reading which way each mirrored VM is protected — its home, the site where it runs in
//! normal operation — from the sites' tags (`direction.rs` writes them). Mold's records
//! cannot say (a map row has the same shape both ways, and `READY`/`SYNCING` only tells where
//! an image is primary now), so drbook keeps it as a resource tag on both sites' VMs (Mold
//! spec §4.1) — `drbook.dr=home` on the VM at home, `drbook.dr=mirror` on its mirrored VM —
//! where it lives with the sites and outlasts any drbook machine.

use std::collections::BTreeMap;

use futures_util::future::join_all;

use super::unknown::{Api, Fact, Unreadable};
use super::{Dr, DrError};

/// The tag's key.
pub const TAG: &str = "drbook.dr";
/// Its value on the VM at home.
pub const HOME: &str = "home";
/// Its value on the mirrored VM.
pub const MIRROR: &str = "mirror";

const LIST_TAGS: &str = "listTags";

/// Each site's `drbook.dr` tags: VM id → value, or why the site's tags could not be read.
pub(crate) type SiteTags = BTreeMap<String, Result<BTreeMap<String, String>, Unreadable>>;

/// A VM's home from its two copies' tags, `(site, tag value)` each: `Ok(None)` when neither
/// carries one (the direction was never recorded), an error text when they contradict each
/// other. One tag alone is enough: a protection whose second tag was never written still
/// says which copy is at home.
pub fn home_of(copies: [(&str, Option<&str>); 2]) -> Result<Option<String>, String> {
    let mut home = None;
    for (i, (site, value)) in copies.iter().enumerate() {
        let other = copies[1 - i].0;
        let says = match *value {
            None => continue,
            Some(HOME) => *site,
            Some(MIRROR) => other,
            Some(v) => {
                return Err(format!(
                    "{site}'s copy is tagged {TAG}={v}, which is neither {HOME} nor {MIRROR}"
                ));
            }
        };
        match home {
            Some(h) if h != says => {
                return Err(format!(
                    "the copies' {TAG} tags contradict each other ({}: {}, {}: {})",
                    copies[0].0,
                    copies[0].1.unwrap_or("none"),
                    copies[1].0,
                    copies[1].1.unwrap_or("none")
                ));
            }
            _ => home = Some(says),
        }
    }
    Ok(home.map(str::to_string))
}

/// A VM's home as a fact: from its copies' VM ids (`None` for a copy drbook did not see) and
/// the sites' tags. One readable tag is enough, so a dark site does not hide the direction
/// the survivor's copy records; unknown when the copies that could be read carry no tag but a
/// site's tags could not be read (that site may hold the only one), or when they contradict.
pub(crate) fn home_fact(
    copies: [(&str, Option<&str>); 2],
    tags: &SiteTags,
) -> Fact<Option<String>> {
    let mut values = [None, None];
    let mut unread = None;
    for (i, (site, id)) in copies.iter().enumerate() {
        match tags.get(*site) {
            Some(Err(u)) => unread = Some(u),
            Some(Ok(by_id)) => values[i] = id.and_then(|id| by_id.get(id)).map(String::as_str),
            None => {}
        }
    }
    if let Some(u) = unread
        && values.iter().all(Option::is_none)
    {
        return Fact::Unknown(std::sync::Arc::new(u.clone()));
    }
    match home_of([(copies[0].0, values[0]), (copies[1].0, values[1])]) {
        Ok(home) => Fact::Known(home),
        Err(why) => Fact::Unknown(std::sync::Arc::new(Unreadable {
            site: copies[0].0.to_string(),
            api: Api::Mold,
            command: format!("{LIST_TAGS} {TAG}"),
            error: why,
            dark: false,
        })),
    }
}

impl Dr {
    /// Every configured site's `drbook.dr` tags, read at once (one `listTags` per site).
    pub(crate) async fn home_tags(&self, sites: &[&str]) -> SiteTags {
        let reads = sites.iter().map(|site| async move {
            let read = async {
                let h = self.handle(site)?;
                let tags: Vec<crate::mold::types::ResourceTag> = h
                    .mold
                    .list(
                        LIST_TAGS,
                        &[
                            ("resourcetype", "UserVm"),
                            ("key", TAG),
                            ("listall", "true"),
                        ],
                        "tag",
                    )
                    .await?;
                Ok::<_, DrError>(
                    tags.into_iter()
                        .filter(|t| t.key.as_deref() == Some(TAG))
                        .filter_map(|t| Some((t.resourceid?, t.value.unwrap_or_default())))
                        .collect(),
                )
            };
            let result = read
                .await
                .map_err(|e| Unreadable::new(site, Api::Mold, LIST_TAGS, &e));
            ((*site).to_string(), result)
        });
        join_all(reads).await.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_is_read_from_either_copys_tag() {
        let (a, b) = ("site-a", "site-b");
        assert_eq!(home_of([(a, None), (b, None)]), Ok(None));
        assert_eq!(
            home_of([(a, Some(HOME)), (b, Some(MIRROR))]),
            Ok(Some(a.into()))
        );
        assert_eq!(
            home_of([(a, Some(MIRROR)), (b, Some(HOME))]),
            Ok(Some(b.into()))
        );
        assert_eq!(home_of([(a, None), (b, Some(HOME))]), Ok(Some(b.into())));
        assert_eq!(home_of([(a, Some(MIRROR)), (b, None)]), Ok(Some(b.into())));
        let both = home_of([(a, Some(HOME)), (b, Some(HOME))]).unwrap_err();
        assert!(both.contains("contradict"), "{both}");
        let odd = home_of([(a, Some("yes")), (b, None)]).unwrap_err();
        assert!(odd.contains("neither home nor mirror"), "{odd}");
    }

    #[test]
    fn a_dark_site_hides_a_home_only_when_the_other_copy_has_no_tag() {
        let dark = Unreadable {
            site: "site-a".into(),
            api: Api::Mold,
            command: LIST_TAGS.into(),
            error: "connection refused".into(),
            dark: true,
        };
        let tagged = |value: &str| {
            let mut tags = SiteTags::new();
            tags.insert("site-a".into(), Err(dark.clone()));
            let mut b = BTreeMap::new();
            if !value.is_empty() {
                b.insert("vm-b".to_string(), value.to_string());
            }
            tags.insert("site-b".into(), Ok(b));
            tags
        };
        let copies = [("site-a", Some("vm-a")), ("site-b", Some("vm-b"))];
        assert!(matches!(
            home_fact(copies, &tagged(MIRROR)),
            Fact::Known(Some(h)) if h == "site-a"
        ));
        assert!(matches!(
            home_fact(copies, &tagged(HOME)),
            Fact::Known(Some(h)) if h == "site-b"
        ));
        assert!(matches!(home_fact(copies, &tagged("")), Fact::Unknown(_)));
    }
}
