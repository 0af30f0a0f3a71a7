//! What drbook could not read, as a value: a dark site, a read that failed every retry, an
//! answer it could not decode. Such a state is never defaulted to "not synced", "not
//! primary" or "stopped": it is a [`Fact::Unknown`] carrying the [`Unreadable`] that says
//! which site, API and call could not be read and why. Decisions on it stop before any
//! mutation ([`DrError::Unknown`](super::DrError::Unknown)).

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Which API of a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Mold,
    Glue,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mold => "Mold",
            Self::Glue => "Glue",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One read that did not give an answer drbook can use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub site: String,
    pub api: Api,
    /// The call that failed: a Mold command (`listVirtualMachines`) or a Glue route
    /// (`GET /mirror/image/rbd`).
    pub command: String,
    /// What went wrong, in the client's words (without the site and call, named above).
    pub error: String,
    /// No endpoint of that API accepted a connection: the site looks dark, as opposed to
    /// answering badly (an error page, a garbled or missing answer).
    pub dark: bool,
}

impl Unreadable {
    /// `site-b's Glue`, for sentences.
    pub fn source(&self) -> String {
        format!("{}'s {}", self.site, self.api)
    }

    /// A few words for progress lines: `site-b's Glue accepts no connection`.
    pub fn short(&self) -> String {
        if self.dark {
            format!("{} accepts no connection", self.source())
        } else {
            format!("{} answers, but not usably", self.source())
        }
    }

    /// What to do about it, in one clause.
    pub fn advice(&self) -> String {
        if self.dark {
            format!(
                "{} accepts no connection: check the site and the network (drbook sites), and run this again once it answers",
                self.source()
            )
        } else {
            format!(
                "{} answered, but not usably: wait a little and run this again, or check it with drbook sites",
                self.source()
            )
        }
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} could not be read ({}: {})",
            self.source(),
            self.command,
            self.error
        )
    }
}

/// A fact drbook read, or could not read (with why). Serialised as the value itself, or as
/// the string `"unknown"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact<T> {
    Known(T),
    Unknown(Arc<Unreadable>),
}

impl<T> Fact<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Self::Known(v) => Some(v),
            Self::Unknown(_) => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Self::Known(_))
    }

    /// Why it is unknown, if it is.
    pub fn unreadable(&self) -> Option<&Arc<Unreadable>> {
        match self {
            Self::Known(_) => None,
            Self::Unknown(u) => Some(u),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Fact<U> {
        match self {
            Self::Known(v) => Fact::Known(f(v)),
            Self::Unknown(u) => Fact::Unknown(u),
        }
    }

    pub fn as_ref(&self) -> Fact<&T> {
        match self {
            Self::Known(v) => Fact::Known(v),
            Self::Unknown(u) => Fact::Unknown(u.clone()),
        }
    }
}

impl Fact<bool> {
    /// `true` only when known true.
    pub fn is_true(&self) -> bool {
        matches!(self, Self::Known(true))
    }

    /// `false` only when known false.
    pub fn is_false(&self) -> bool {
        matches!(self, Self::Known(false))
    }
}

impl<T: fmt::Display> fmt::Display for Fact<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(v) => v.fmt(f),
            Self::Unknown(_) => f.write_str("unknown"),
        }
    }
}

impl<T: Serialize> Serialize for Fact<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Known(v) => v.serialize(s),
            Self::Unknown(_) => s.serialize_str("unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dark() -> Arc<Unreadable> {
        Arc::new(Unreadable {
            site: "site-b".into(),
            api: Api::Glue,
            command: "GET /mirror/image/rbd".into(),
            error: "no Glue endpoint could be reached".into(),
            dark: true,
        })
    }

    #[test]
    fn an_unknown_serialises_as_unknown_and_refuses_a_decision() {
        let f: Fact<bool> = Fact::Unknown(dark());
        assert_eq!(serde_json::to_value(&f).unwrap(), "unknown");
        assert_eq!(serde_json::to_value(Fact::Known(true)).unwrap(), true);
        assert!(!f.is_true() && !f.is_false() && !f.is_known());
        let e = f.require("promote DR cluster \"DR\"", "whether the copies are synced");
        let shown = e.unwrap_err().to_string();
        assert!(
            shown.starts_with("cannot promote DR cluster \"DR\": site-b's Glue could not be read (GET /mirror/image/rbd: no Glue endpoint could be reached)"),
            "{shown}"
        );
    }
}
