//! Every `§` reference under `src/` points at a heading of the API notes in `docs/`.
//!
//! Which notes a reference means is the convention of `docs/README.md`: the notes named last
//! before it in the same comment, else the notes its file names first, else the notes the
//! enclosing module's root file names, else the Mold notes. A reference resolves when that
//! file has a heading whose text starts with the section number (`### 3.8 …`, `## 5 …`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notes {
    Mold,
    Glue,
}

impl Notes {
    fn file(self) -> &'static str {
        match self {
            Self::Mold => "docs/mold-dr-api.md",
            Self::Glue => "docs/glue-and-rbd.md",
        }
    }
}

/// What names the notes in a comment. `mold-api` is the notes' former file name, which comments
/// still use.
const NAMES: [(&str, Notes); 5] = [
    ("Mold spec", Notes::Mold),
    ("mold-api", Notes::Mold),
    ("mold-dr-api", Notes::Mold),
    ("Glue spec", Notes::Glue),
    ("glue-and-rbd", Notes::Glue),
];

/// References the convention reads as the wrong notes: a piece of the reference's line, its
/// section, and the notes it means. Reword the comment to name its notes ("Glue spec §6.6"),
/// then delete its entry here; the test says when an entry is no longer needed.
const MISWORDED: &[(&str, &str, Notes)] = &[];

/// A run of consecutive comment lines (or one line of code), its text joined so that a name
/// broken across lines ("the Glue\n//! spec §6.6") is still found.
struct Block {
    text: String,
    /// Where each line starts in `text`, with its line number.
    starts: Vec<(usize, usize)>,
    comment: bool,
}

impl Block {
    fn line_at(&self, offset: usize) -> usize {
        self.starts
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset)
            .map_or(0, |(_, line)| *line)
    }

    /// The notes named last before `offset`.
    fn named_before(&self, offset: usize) -> Option<Notes> {
        let before = &self.text[..offset];
        NAMES
            .iter()
            .filter_map(|(name, notes)| before.rfind(name).map(|at| (at, *notes)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, notes)| notes)
    }
}

fn blocks(source: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        let comment = trimmed.starts_with("//");
        let text = if comment {
            trimmed
                .trim_start_matches('/')
                .trim_start_matches('!')
                .trim()
        } else {
            line
        };
        match blocks.last_mut() {
            Some(block) if comment && block.comment => {
                block.text.push(' ');
                block.starts.push((block.text.len(), index + 1));
                block.text.push_str(text);
            }
            _ => blocks.push(Block {
                text: text.to_string(),
                starts: vec![(0, index + 1)],
                comment,
            }),
        }
    }
    blocks
}

/// The notes a file names first in its comments.
fn first_named(source: &str) -> Option<Notes> {
    blocks(source)
        .iter()
        .filter(|block| block.comment)
        .find_map(|block| {
            NAMES
                .iter()
                .filter_map(|(name, notes)| block.text.find(name).map(|at| (at, *notes)))
                .min_by_key(|(at, _)| *at)
                .map(|(_, notes)| notes)
        })
}

/// The root files of the modules enclosing `file`, innermost first: for
/// `src/sim/rbd/state.rs`, `src/sim/rbd/mod.rs` or `src/sim/rbd.rs`, then `src/sim/mod.rs` or
/// `src/sim.rs`. A `mod.rs` is its own directory's root, so its search starts one level up.
fn module_roots(file: &Path, src: &Path) -> Vec<PathBuf> {
    let mut dir = file.parent();
    if file.file_name().is_some_and(|name| name == "mod.rs") {
        dir = dir.and_then(Path::parent);
    }
    let mut roots = Vec::new();
    while let Some(d) = dir.filter(|d| *d != src && d.starts_with(src)) {
        roots.push(d.join("mod.rs"));
        roots.push(d.with_extension("rs"));
        dir = d.parent();
    }
    roots
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The section numbers of a notes file's headings (`## 5 States` → `5`). A number that
/// heads two sections would make references to it ambiguous, so it fails here.
fn headings(root: &Path, notes: Notes) -> Vec<String> {
    let path = root.join(notes.file());
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut numbers: Vec<String> = Vec::new();
    for line in text.lines().filter(|line| line.starts_with('#')) {
        let title = line.trim_start_matches('#').trim_start();
        let first = title.split_whitespace().next().unwrap_or_default();
        let number = first.trim_end_matches('.');
        if number.starts_with(|c: char| c.is_ascii_digit())
            && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        {
            assert!(
                !numbers.iter().any(|n| n == number),
                "{}: two headings are numbered {number}",
                notes.file()
            );
            numbers.push(number.to_string());
        }
    }
    numbers
}

/// The section number written after a `§`: `6.6` in `§6.6.` or `§6.6:`.
fn section_after(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text[..end].trim_end_matches('.')
}

#[test]
fn every_section_reference_in_src_resolves_to_a_heading_in_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mold = headings(root, Notes::Mold);
    let glue = headings(root, Notes::Glue);
    let has = |notes: Notes, section: &str| match notes {
        Notes::Mold => mold.iter().any(|n| n == section),
        Notes::Glue => glue.iter().any(|n| n == section),
    };

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let sources: BTreeMap<PathBuf, String> = files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, text)
        })
        .collect();
    let default_of = |file: &Path| -> (Notes, String) {
        if let Some(notes) = first_named(&sources[file]) {
            return (notes, "the notes the file names".into());
        }
        for module_root in module_roots(file, &src) {
            if let Some(notes) = sources.get(&module_root).and_then(|s| first_named(s)) {
                let shown = module_root.strip_prefix(root).unwrap_or(&module_root);
                return (notes, format!("the notes {} names", shown.display()));
            }
        }
        (Notes::Mold, "no notes named: the default".into())
    };

    let mut found = 0;
    let mut misworded_used = vec![false; MISWORDED.len()];
    let mut failures = Vec::new();
    for (file, source) in &sources {
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        let lines: Vec<&str> = source.lines().collect();
        for block in blocks(source) {
            for (offset, _) in block.text.match_indices('§') {
                found += 1;
                let line = block.line_at(offset);
                let section = section_after(&block.text[offset + '§'.len_utf8()..]);
                let at = format!("{shown}:{line}: §{section}");
                if section.is_empty() {
                    failures.push(format!("{at}: no section number after §"));
                    continue;
                }
                let (notes, why) = match block.named_before(offset) {
                    Some(notes) => (notes, "named in the comment".to_string()),
                    None => default_of(file),
                };
                let misworded = MISWORDED.iter().position(|(piece, number, _)| {
                    *number == section && lines[line - 1].contains(piece)
                });
                let (notes, why) = match misworded {
                    Some(i) if MISWORDED[i].2 == notes => {
                        misworded_used[i] = true;
                        failures.push(format!(
                            "{at}: now reads as {} ({why}): remove its MISWORDED entry",
                            notes.file()
                        ));
                        (notes, why)
                    }
                    Some(i) => {
                        misworded_used[i] = true;
                        (MISWORDED[i].2, "listed in MISWORDED".to_string())
                    }
                    None => (notes, why),
                };
                if !has(notes, section) {
                    failures.push(format!(
                        "{at}: {} ({why}) has no heading {section}",
                        notes.file()
                    ));
                }
            }
        }
    }
    for (i, used) in misworded_used.iter().enumerate() {
        if !used {
            failures.push(format!(
                "MISWORDED entry {:?} matches no reference any more: remove it",
                MISWORDED[i].0
            ));
        }
    }
    assert!(found > 0, "no § reference found under {}", src.display());
    assert!(
        failures.is_empty(),
        "{} of {found} § references do not resolve (see docs/README.md):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
