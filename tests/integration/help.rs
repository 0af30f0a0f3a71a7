//! `drbook --help` and each subcommand's `--help`, word for word, against golden files under
//! `tests/golden/help/`: a change of help text shows up as a diff in review.

use crate::harness::{Ran, Test, assert_golden};

/// `drbook` with `args`, with nothing from the machine in its help: no `[env: …=value]` of the
/// harness's own directories, and one wrap width whatever the terminal.
fn help(args: &[&str]) -> Ran {
    Test::new()
        .env_remove("DRBOOK_STATE_DIR")
        .env_remove("DRBOOK_LOCK_DIR")
        .env_remove("DRBOOK_STDLIB")
        .env("COLUMNS", "100")
        .args(args.iter().copied())
        .run()
        .expect_code(0)
}

/// The subcommands `drbook --help` lists, without clap's own `help`.
fn subcommands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        // A name sits two spaces in; a summary's wrapped rest sits further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn the_top_level_help_is_as_checked_in() {
    assert_golden("help/drbook.txt", &help(&["--help"]).stdout);
}

#[test]
fn each_subcommands_help_is_as_checked_in() {
    let names = subcommands(&help(&["--help"]).stdout);
    assert!(names.len() >= 8, "subcommands listed: {names:?}");
    for name in &names {
        assert_golden(
            &format!("help/{name}.txt"),
            &help(&[name.as_str(), "--help"]).stdout,
        );
    }
    // A golden file whose subcommand is gone would go stale unseen.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/help");
    let mut stale: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f != "drbook.txt" && !names.iter().any(|n| *f == format!("{n}.txt")))
        .collect();
    stale.sort();
    assert!(
        stale.is_empty(),
        "golden files in tests/golden/help/ for no subcommand: {stale:?}"
    );
}
