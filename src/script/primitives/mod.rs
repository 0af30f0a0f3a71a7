//! Every primitive scripts get, each defined once beside its behaviour: a [`Primitive`]
//! descriptor (name, typed parameters of each overload, kind, doc, confirmation question) and
//! the function that registers it, one file per section of the reference. From the
//! descriptors come the Rhai registration (parameter names and docs included), the kind the
//! host acts by, `drbook doc` and its editor definitions, `drbook check`'s known functions
//! and the REPL's help and completion.

/// Registers a primitive's two overloads, without its options map and with it, both calling
/// `$f(p, &host, &arg…, &options)` (an empty map for the first).
macro_rules! with_options {
    ($p:expr, $engine:expr, $h:expr, $f:expr, ($($arg:ident: $ty:ty),*)) => {{
        let h = $h.clone();
        $p.register_fn($engine, move |$($arg: $ty),*| {
            ($f)($p, &h, $(&$arg,)* &rhai::Map::new())
        });
        let h = $h.clone();
        $p.register_fn($engine, move |$($arg: $ty,)* options: rhai::Map| {
            ($f)($p, &h, $(&$arg,)* &options)
        });
    }};
}

mod cluster;
mod control;
mod escape;
mod images;
mod nested;
mod status;
mod test_copies;
mod vms;

use std::borrow::Cow;
use std::sync::Arc;

use rhai::{Engine, FuncRegistration, Map, RhaiNativeFunc, Variant};

use super::convert::Options;
pub use super::host::Kind;
use super::host::{Act, Host, RhaiResult};

/// What a parameter takes: the type the editor definitions show, and what the REPL offers
/// to complete inside a string there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A `Site` or its name.
    Site,
    /// A `DrCluster` or its name.
    Cluster,
    /// A `Vm`, its name or its id.
    Vm,
    /// An array of VMs (each a `Vm`, a name or an id).
    Vms,
    /// An RBD image, `pool/name`.
    Image,
    /// An array of RBD images.
    Images,
    /// A runbook: a file next to the script, or a shipped runbook's name.
    Runbook,
    /// A duration: `"30s"`, `"1h30m"` or seconds.
    Duration,
    /// A string.
    Text,
    /// A map of these options, every one optional.
    Options(&'static [&'static str]),
    /// A map.
    Map,
    /// A closure (`|| ...`).
    Closure,
    /// Any value.
    Value,
}

impl Ty {
    /// The type as Rhai definition files spell it (`?` for a value of more than one type).
    fn rhai(self) -> &'static str {
        match self {
            Ty::Site | Ty::Cluster | Ty::Vm | Ty::Duration | Ty::Value => "?",
            Ty::Vms | Ty::Images => "Array",
            Ty::Image | Ty::Runbook | Ty::Text => "String",
            Ty::Options(_) | Ty::Map => "Map",
            Ty::Closure => "FnPtr",
        }
    }

    /// Whether a registered Rust parameter of type `t` takes what this type says. A
    /// `Dynamic` takes anything: the function converts it, with an error that says what it
    /// expected.
    fn accepts(self, t: std::any::TypeId) -> bool {
        use std::any::TypeId;
        if t == TypeId::of::<rhai::Dynamic>() {
            return true;
        }
        match self.rhai() {
            "String" => [
                TypeId::of::<&str>(),
                TypeId::of::<String>(),
                TypeId::of::<rhai::ImmutableString>(),
            ]
            .contains(&t),
            "Array" => t == TypeId::of::<rhai::Array>(),
            "Map" => t == TypeId::of::<Map>(),
            "FnPtr" => t == TypeId::of::<rhai::FnPtr>(),
            // `?`: a value of any type (the function converts it, or overloads by type).
            _ => true,
        }
    }

    /// What a value of this type may be, for the definitions' docs.
    fn about(self) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed(match self {
            Ty::Site => "a Site or its name",
            Ty::Cluster => "a DrCluster or its name",
            Ty::Vm => "a Vm, its name or its id",
            Ty::Vms => "an array of VMs (Vm, name or id)",
            Ty::Image => "an RBD image, pool/name",
            Ty::Images => "an array of RBD images (pool/name)",
            Ty::Runbook => "a runbook file next to this script, else a shipped runbook's name",
            Ty::Duration => "\"30s\", \"1h30m\" or seconds",
            Ty::Closure => "a closure",
            Ty::Options(keys) => {
                return Some(Cow::Owned(format!(
                    "a map of options, each optional: {}",
                    keys.join(", ")
                )));
            }
            Ty::Text | Ty::Map | Ty::Value => return None,
        }))
    }
}

/// One parameter of an overload.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    /// How the reference writes it when not by its name (`|| cond`, `#{force: true}`).
    shown: &'static str,
}

impl Param {
    pub const fn new(name: &'static str, ty: Ty) -> Self {
        Self {
            name,
            ty,
            shown: "",
        }
    }

    /// Written this way in the reference.
    #[must_use]
    pub const fn shown(self, shown: &'static str) -> Self {
        Self { shown, ..self }
    }

    /// How the reference writes it: as shown, an options map by its keys, else its name.
    pub fn display(&self) -> Cow<'static, str> {
        if !self.shown.is_empty() {
            return Cow::Borrowed(self.shown);
        }
        match self.ty {
            Ty::Options(keys) => Cow::Owned(format!("#{{{}}}", keys.join(", "))),
            _ => Cow::Borrowed(self.name),
        }
    }
}

/// One way to call a primitive.
#[derive(Debug)]
pub struct Overload {
    pub params: &'static [Param],
    /// What it returns, as the reference writes it (`map`, `[Vm]`, `#{ok, reason}`; empty
    /// for nothing).
    pub returns: &'static str,
}

impl Overload {
    /// The type definition files give the result.
    fn rhai_returns(&self) -> &'static str {
        match self.returns {
            "" => "()",
            "map" => "Map",
            "string" => "String",
            "value" => "?",
            r if r.starts_with('[') => "Array",
            r if r.starts_with("#{") => "Map",
            r => r,
        }
    }
}

/// One primitive: everything said about it, and how it is registered.
pub struct Primitive {
    pub name: &'static str,
    pub kind: Kind,
    /// One sentence or a few, ending with a full stop.
    pub doc: &'static str,
    /// How a confirmation question names a destructive act, `{0}`/`{1}` standing for the
    /// call's arguments: `Promote DR cluster {0}`.
    pub question: &'static str,
    pub overloads: &'static [Overload],
    /// Registers every overload; it receives this descriptor, so what it registers and what
    /// the host does on a call come from here.
    pub register: fn(&'static Primitive, &mut Engine, &Arc<Host>),
}

impl Act for Primitive {
    fn name(&self) -> &'static str {
        self.name
    }

    fn kind(&self) -> Kind {
        self.kind
    }

    fn doc(&self) -> &'static str {
        self.doc
    }

    fn question(&self) -> &'static str {
        self.question
    }
}

impl std::fmt::Debug for Primitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The name says which; the rest is static text and a function pointer.
        f.debug_struct("Primitive")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Primitive {
    /// Every overload as the reference writes it: `promote(cluster) -> map`.
    pub fn signatures(&self) -> Vec<String> {
        self.overloads
            .iter()
            .map(|o| {
                let params: Vec<_> = o.params.iter().map(Param::display).collect();
                let call = format!("{}({})", self.name, params.join(", "));
                if o.returns.is_empty() {
                    call
                } else {
                    format!("{call} -> {}", o.returns)
                }
            })
            .collect()
    }

    /// The reference section this primitive is in.
    pub fn section(&self) -> &'static str {
        SECTIONS
            .iter()
            .find(|s| s.primitives.iter().any(|p| p.name == self.name))
            .map_or("", |s| s.title)
    }

    /// Parameter `arg` of the first overload that has it.
    pub fn param(&self, arg: usize) -> Option<&'static Param> {
        self.overloads.iter().find_map(|o| o.params.get(arg))
    }

    /// A call's options map, checked against the keys the descriptor lists.
    pub fn options<'a>(&self, map: &'a Map) -> RhaiResult<Options<'a>> {
        let keys = self
            .overloads
            .iter()
            .flat_map(|o| o.params)
            .find_map(|p| match p.ty {
                Ty::Options(keys) => Some(keys),
                _ => None,
            })
            .unwrap_or_default();
        Options::new(map, keys, self.name)
    }

    /// Registers `func` as the overload with its number of parameters, under this name,
    /// with that overload's parameter names and types and this primitive's doc.
    ///
    /// # Panics
    ///
    /// When no overload has `N` parameters, or a parameter's Rust type is not the one its
    /// descriptor says: a descriptor that does not say what is registered (the tests
    /// register every primitive).
    pub fn register_fn<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &'static self,
        engine: &mut Engine,
        func: FUNC,
    ) where
        R: Variant + Clone,
        FUNC: RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
    {
        let overload = self
            .overloads
            .iter()
            .find(|o| o.params.len() == N)
            .unwrap_or_else(|| panic!("{}: no overload with {N} parameters", self.name));
        for (param, t) in overload.params.iter().zip(FUNC::param_types()) {
            assert!(
                param.ty.accepts(t),
                "{}: parameter {} is registered with another type than {:?}",
                self.name,
                param.name,
                param.ty
            );
        }
        let mut info: Vec<String> = overload
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, p.ty.rhai()))
            .collect();
        info.push(overload.rhai_returns().to_string());
        FuncRegistration::new(self.name)
            .with_params_info(info)
            .with_comments([self.comments(overload)])
            .register_into_engine(engine, func);
    }

    /// The doc comment of one overload: the doc, what its parameters take, the kind.
    fn comments(&self, overload: &Overload) -> String {
        let mut lines = vec![format!("/// {}", self.doc)];
        let params: Vec<String> = overload
            .params
            .iter()
            .filter_map(|p| p.ty.about().map(|a| format!("/// * `{}`: {a}", p.name)))
            .collect();
        if !params.is_empty() {
            lines.push("///".into());
            lines.extend(params);
        }
        lines.push("///".into());
        let kind = match self.kind {
            Kind::Destructive => "destructive (asks for a yes first)".to_string(),
            k => k.as_str().to_string(),
        };
        lines.push(format!("/// Kind: {kind}. Section: {}.", self.section()));
        lines.join("\n")
    }
}

/// One section of the reference: its title and its primitives, in order.
pub struct Section {
    pub title: &'static str,
    pub primitives: &'static [Primitive],
}

/// The sections of the reference, in order.
pub static SECTIONS: &[Section] = &[
    Section {
        title: "Sites, clusters, status",
        primitives: status::PRIMITIVES,
    },
    Section {
        title: "DR cluster operations",
        primitives: cluster::PRIMITIVES,
    },
    Section {
        title: "VMs",
        primitives: vms::PRIMITIVES,
    },
    Section {
        title: "Images (Glue, image level)",
        primitives: images::PRIMITIVES,
    },
    Section {
        title: "DR tests without an outage",
        primitives: test_copies::PRIMITIVES,
    },
    Section {
        title: "Runbook control",
        primitives: control::PRIMITIVES,
    },
    Section {
        title: "Nested runs",
        primitives: nested::PRIMITIVES,
    },
    Section {
        title: "Escape hatches",
        primitives: escape::PRIMITIVES,
    },
];

/// Every primitive, section by section: `for p in PRIMITIVES`.
#[derive(Debug, Clone, Copy)]
pub struct Table;

/// The table of every primitive.
pub const PRIMITIVES: Table = Table;

type SectionPrimitives = fn(&'static Section) -> &'static [Primitive];

impl Table {
    pub fn iter(self) -> <Self as IntoIterator>::IntoIter {
        self.into_iter()
    }
}

impl IntoIterator for Table {
    type Item = &'static Primitive;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'static, Section>,
        &'static [Primitive],
        SectionPrimitives,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let of: SectionPrimitives = |s| s.primitives;
        SECTIONS.iter().flat_map(of)
    }
}

/// Looks a primitive up by name.
pub fn find(name: &str) -> Option<&'static Primitive> {
    PRIMITIVES.iter().find(|p| p.name == name)
}

/// Registers every primitive.
pub fn register_all(engine: &mut Engine, host: &Arc<Host>) {
    for p in PRIMITIVES {
        (p.register)(p, engine, host);
    }
}

/// A plan-mode stand-in for an outcome.
fn planned(action: &str, args: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"action": action, "planned": true, "args": args})
}

/// The parameters most primitives share.
const SITE: Param = Param::new("site", Ty::Site);
const CLUSTER: Param = Param::new("cluster", Ty::Cluster);
const VM: Param = Param::new("vm", Ty::Vm);
const VMS: Param = Param::new("vms", Ty::Vms);
const IMAGE: Param = Param::new("image", Ty::Image);
const IMAGES: Param = Param::new("images", Ty::Images);

#[cfg(test)]
mod tests;
