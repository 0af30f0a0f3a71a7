//! `drbook doc` and `drbook doc --definitions`, word for word, against golden files under
//! `tests/golden/doc/`: the reference and the editor definitions come from the primitives'
//! descriptors and the types' registrations, so a change there shows up as a diff in review.

use crate::harness::{Test, assert_golden};

#[test]
fn the_reference_is_as_checked_in() {
    let ran = Test::new().args(["doc"]).run().expect_code(0);
    assert_golden("doc/reference.md", &ran.stdout);
}

/// The primitives' part of the definitions (the file also holds Rhai's own packages, which
/// change with Rhai, not with drbook): each overload with its parameters named and its doc.
#[test]
fn the_definitions_name_every_parameter_and_carry_the_docs() {
    let t = Test::new().args(["doc", "--definitions", "defs"]);
    t.run().expect_code(0);
    let text = std::fs::read_to_string(t.dir().join("defs/__static__.d.rhai")).unwrap();
    let ours: Vec<&str> = text
        .split("\n\n")
        // Rhai's own `sleep` shares a primitive's name; drbook's blocks say their kind.
        .filter(|block| block.contains("\n/// Kind: "))
        .filter(|block| {
            block
                .lines()
                .find_map(|l| l.strip_prefix("fn "))
                .and_then(|f| f.split('(').next())
                .is_some_and(|name| drbook::script::primitives::find(name).is_some())
        })
        .collect();
    for p in drbook::script::primitives::PRIMITIVES {
        let blocks: Vec<&&str> = ours
            .iter()
            .filter(|b| {
                b.contains(&format!("\nfn {}(", p.name))
                    || b.starts_with(&format!("fn {}(", p.name))
            })
            .collect();
        assert!(
            blocks.len() >= p.overloads.len(),
            "{}: {} definitions for {} overloads",
            p.name,
            blocks.len(),
            p.overloads.len()
        );
        for b in blocks {
            assert!(b.starts_with("/// "), "{}: no doc:\n{b}", p.name);
            assert!(
                !b.contains("(_:") && !b.contains(", _:"),
                "{}: an unnamed parameter:\n{b}",
                p.name
            );
        }
    }
    assert_golden("doc/definitions.d.rhai", &(ours.join("\n\n") + "\n"));
}
