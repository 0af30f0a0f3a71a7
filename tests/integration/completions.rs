//! Shell completion in a real bash, and the man pages: both made from the clap definitions.
//! The completion script calls drbook back, so names are read live: subcommands, the
//! shipped runbooks and the `.rhai` files here, and run ids under the state directory.

use std::process::Command;

use crate::harness::Test;

/// What bash offers for `line` (the words typed, the last one being completed), with the
/// script `drbook completions bash` prints, run in `dir`.
fn offered(t: &Test, words: &[&str]) -> Vec<String> {
    let script = t.run_with(["completions", "bash"]).expect_code(0).stdout;
    std::fs::write(t.dir().join("drbook.bash"), script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let current = words.last().unwrap();
    let previous = words[words.len() - 2];
    let body = format!(
        "source drbook.bash\nCOMP_WORDS=({})\nCOMP_CWORD={}\n_clap_complete_drbook drbook '{current}' '{previous}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        quoted.join(" "),
        words.len() - 1
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(body)
        .current_dir(t.dir())
        .env("DRBOOK_STATE_DIR", t.state_dir())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    names.sort();
    names
}

#[test]
fn bash_completes_subcommands_runbooks_and_run_ids() {
    let t = Test::new().file("test-mine.rhai", "print(1);");
    assert_eq!(offered(&t, &["drbook", "ru"]), ["run", "runs"]);
    assert_eq!(
        offered(&t, &["drbook", "run", "fa"]),
        ["failback", "failover"]
    );
    // A file here is a runbook too.
    assert_eq!(
        offered(&t, &["drbook", "run", "te"]),
        ["test-failover", "test-mine.rhai"]
    );
    // Run ids come from the state directory.
    let run = t.state_dir().join("runs").join("20261203-101010-abcd");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("journal.jsonl"),
        r#"{"event":"run_start","at":"2026-12-03T10:10:10Z","run":"20261203-101010-abcd","script":"scripts/failover.rhai","args":{},"resumed":false}"#,
    )
    .unwrap();
    assert_eq!(
        offered(&t, &["drbook", "report", "2026"]),
        ["20261203-101010-abcd"]
    );
    assert_eq!(
        offered(&t, &["drbook", "run", "failover", "--resume", ""]),
        ["20261203-101010-abcd"]
    );
}

#[test]
fn the_man_pages_are_written_for_drbook_and_each_command() {
    let t = Test::new();
    let dir = t.dir().join("man1");
    t.run_with(["man", dir.to_str().unwrap()]).expect_code(0);
    for page in [
        "drbook.1",
        "drbook-run.1",
        "drbook-report.1",
        "drbook-watch.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    let run = std::fs::read_to_string(dir.join("drbook-run.1")).unwrap();
    assert!(run.contains("resume"), "{run}");
    // The hidden `sim exec` is no page of its own.
    assert!(!dir.join("drbook-exec.1").exists());
}
