//! The layout rule of `src/README.md`: sibling files import each other one way only. Every
//! `use` and every path under `src/` (test modules aside) is read with `syn`, resolved to the
//! module it names, and two siblings that each reach into the other are a failure — but for
//! the engine and nested `run()`, the one cycle the runtime needs (the engine registers
//! `run()`, and `run()` builds an engine), kept in `script/primitives/nested.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The cycles the layout keeps on purpose.
const INHERENT: &[(&str, &str)] = &[("script::engine", "script::primitives")];

/// Every module under `src/` by its path (`script::host`), with its file.
fn modules(root: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            // A file of tests is not part of the layout.
            if parts.last().is_some_and(|p| p == "tests") {
                continue;
            }
            out.insert(parts.join("::"), path);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The paths a file names (`crate::…`, `super::…`, `self::…`), outside its test modules.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl Paths {
    fn tree(&mut self, prefix: &[String], tree: &syn::UseTree) {
        let with = |name: String| {
            let mut p = prefix.to_vec();
            p.push(name);
            p
        };
        match tree {
            syn::UseTree::Path(p) => self.tree(&with(p.ident.to_string()), &p.tree),
            syn::UseTree::Name(n) => self.0.push(with(n.ident.to_string())),
            syn::UseTree::Rename(r) => self.0.push(with(r.ident.to_string())),
            syn::UseTree::Glob(_) => self.0.push(prefix.to_vec()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let test_only = m.attrs.iter().any(|a| {
            a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
        });
        if !test_only {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.tree(&[], &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.0
            .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside a macro's arguments (`format!`, `json!`) are tokens, not syntax; the
        // ones the layout cares about are parsed where they can be.
        if let Ok(args) = m.parse_body_with(
            syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
        ) {
            for e in &args {
                self.visit_expr(e);
            }
        }
        syn::visit::visit_macro(self, m);
    }
}

/// The module a path names, from module `at`: its longest prefix that is a module.
fn resolve(at: &str, path: &[String], known: &BTreeMap<String, PathBuf>) -> Option<String> {
    let mut base: Vec<&str> = if at.is_empty() {
        Vec::new()
    } else {
        at.split("::").collect()
    };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some("self") => rest = &rest[1..],
        _ => return None,
    }
    let full: Vec<&str> = base
        .into_iter()
        .chain(rest.iter().map(String::as_str))
        .collect();
    (1..=full.len())
        .rev()
        .map(|n| full[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// The child of `parent` that `module` is in (itself, or the one above it).
fn child_of<'a>(parent: &str, module: &'a str) -> Option<&'a str> {
    let rest = if parent.is_empty() {
        module
    } else {
        module.strip_prefix(parent)?.strip_prefix("::")?
    };
    let len = parent.len() + if parent.is_empty() { 0 } else { 2 } + rest.split("::").next()?.len();
    Some(&module[..len])
}

#[test]
fn sibling_files_import_each_other_one_way_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&root);
    let mut imports: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &known {
        let source = std::fs::read_to_string(file).unwrap();
        let ast = syn::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut paths = Paths::default();
        paths.visit_file(&ast);
        let targets = paths
            .0
            .iter()
            .filter_map(|p| resolve(module, p, &known))
            .filter(|t| t != module)
            .collect();
        imports.insert(module, targets);
    }
    // Sibling A reaches sibling B when a module inside A names one inside B.
    let mut reaches: BTreeSet<(String, String)> = BTreeSet::new();
    for (from, targets) in &imports {
        for to in targets {
            let common = from
                .split("::")
                .zip(to.split("::"))
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect::<Vec<_>>()
                .join("::");
            if let (Some(a), Some(b)) = (child_of(&common, from), child_of(&common, to))
                && a != b
            {
                reaches.insert((a.to_string(), b.to_string()));
            }
        }
    }
    let cycles: Vec<String> = reaches
        .iter()
        .filter(|(a, b)| a < b && reaches.contains(&(b.clone(), a.clone())))
        .filter(|(a, b)| !INHERENT.contains(&(a.as_str(), b.as_str())))
        .map(|(a, b)| format!("{a} ↔ {b}"))
        .collect();
    assert!(
        cycles.is_empty(),
        "sibling modules that import each other (see src/README.md):\n{}",
        cycles.join("\n")
    );
    // The kept cycle is still there (else its entry and the README's words are stale).
    for (a, b) in INHERENT {
        assert!(
            reaches.contains(&((*a).to_string(), (*b).to_string()))
                && reaches.contains(&((*b).to_string(), (*a).to_string())),
            "{a} ↔ {b} is listed as inherent but is no cycle any more"
        );
    }
}
