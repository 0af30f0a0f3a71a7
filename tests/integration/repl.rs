//! `drbook repl` driven through a pseudo-terminal against the in-process simulator: what an
//! operator types, keys included (Tab, Ctrl-C, Ctrl-D), and what the session shows and keeps.

use std::path::Path;
use std::process::Command;

use rexpect::reader::Options;
use rexpect::session::PtySession;

use crate::harness::{Test, has, lacks, start_sim};

/// How long one expected output may take to show (a bound, not a timing assertion).
const EXPECT_MS: u64 = 60_000;

/// A REPL session in the test directory, its history under `state/`.
fn repl(dir: &Path) -> PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drbook"));
    cmd.arg("repl")
        .current_dir(dir)
        .env_remove("DRBOOK_CONFIG")
        .env_remove("DRBOOK_LOG")
        .env("DRBOOK_STATE_DIR", dir.join(".drbook"))
        .env("DRBOOK_LOCK_DIR", dir.join("locks"))
        .env("TERM", "xterm")
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("XDG_STATE_HOME", dir.join("state"));
    let mut p = rexpect::session::spawn_with_options(
        cmd,
        Options::new()
            .timeout_ms(Some(EXPECT_MS))
            .strip_ansi_escape_codes(true),
    )
    .expect("drbook repl starts in a pty");
    p.exp_string("Ctrl-D leaves.").expect("the banner");
    prompt(&mut p);
    p
}

/// Waits for the next prompt.
fn prompt(p: &mut PtySession) {
    p.exp_string(" > ").expect("a prompt");
}

/// Types keys without Enter (Tab included).
fn keys(p: &mut PtySession, keys: &str) {
    p.send(keys).expect("send");
    p.flush().expect("flush");
}

/// Sends a line and waits for `shown` in what follows.
fn send(p: &mut PtySession, line: &str, shown: &str) -> String {
    p.send_line(line).expect("send");
    p.exp_string(shown)
        .unwrap_or_else(|e| panic!("after {line:?}, expected {shown:?}: {e}"))
}

/// Ctrl-D at the prompt: the session ends and says where its journal is.
fn leave(p: &mut PtySession) -> String {
    p.send_control('d').expect("Ctrl-D");
    let tail = p.exp_string("ended:").expect("the session ends");
    let rest = p.exp_eof().expect("the REPL exits");
    format!("{tail}{rest}")
}

fn journal(dir: &Path) -> String {
    let runs = dir.join(".drbook/runs");
    let mut text = String::new();
    for entry in std::fs::read_dir(&runs).expect("a run directory") {
        let path = entry.unwrap().path().join("journal.jsonl");
        text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repl_completes_a_vm_name_and_runs_a_multi_line_loop() {
    let sim = start_sim(|c| *c = std::mem::take(c).with_vms(6)).await;
    let t = Test::new().sim_config(&sim);
    tokio::task::block_in_place(|| {
        let mut p = repl(t.dir());
        // dr-win-1 is the only VM whose name starts so: Tab completes it, read live.
        let before = sim.mold_calls("site-a", "listVirtualMachines");
        keys(&mut p, "vm(\"site-a\", \"dr-w");
        keys(&mut p, "\t");
        p.exp_string("dr-win-1").expect("the VM name completed");
        assert_eq!(sim.mold_calls("site-a", "listVirtualMachines"), before + 1);
        // Ctrl-C clears the line; a second completion soon after reuses the names.
        p.send_control('c').unwrap();
        prompt(&mut p);
        keys(&mut p, "stop_vm(\"site-a\", \"dr-w");
        keys(&mut p, "\t");
        p.exp_string("dr-win-1").expect("completed again");
        assert_eq!(
            sim.mold_calls("site-a", "listVirtualMachines"),
            before + 1,
            "VM names are cached briefly"
        );
        p.send_control('c').unwrap();
        prompt(&mut p);
        // A completed name in a call that runs: the completion is the real name.
        keys(&mut p, "vm(\"site-a\", \"dr-w");
        keys(&mut p, "\t");
        p.exp_string("dr-win-1").unwrap();
        send(&mut p, "\").state", "Running");
        prompt(&mut p);

        // The hint shows the signature from the primitive table as a name is typed.
        keys(&mut p, "mirror_st");
        p.exp_string("mirror_status(cluster) -> MirrorStatus")
            .expect("the signature hint");
        p.send_control('c').unwrap();
        prompt(&mut p);
        // Inside quotes of a cluster parameter: the DR clusters, read live.
        keys(&mut p, "mirror_status(\"");
        keys(&mut p, "\t");
        p.exp_string("DR").expect("the cluster name completed");
        // The status prints as a table.
        send(&mut p, "\")", "(protected)");
        p.exp_string("last snapshot").expect("the table header");
        p.exp_string("dr-win-1").expect("a row per VM");
        prompt(&mut p);

        // A `for` loop over three lines: the open brace continues the input.
        p.send_line("let names = [];").unwrap();
        prompt(&mut p);
        p.send_line("for v in vms(\"site-a\") {").unwrap();
        p.send_line("  names.push(v.name);").unwrap();
        p.send_line("  print(`seen ${v.name}`);").unwrap();
        send(&mut p, "}", "seen dr-win-1");
        prompt(&mut p);
        // The variable the loop filled stays in the session.
        send(&mut p, "names.len() * 100", "600");
        prompt(&mut p);
        // An unfinished expression waits for the rest, as brackets do; a blank line gives up.
        p.send_line("let answer = 40 +").unwrap();
        send(&mut p, "2", " > ");
        send(&mut p, "answer", "42");
        prompt(&mut p);
        p.send_line("let lost = 1 +").unwrap();
        send(&mut p, "", "(unfinished input abandoned)");
        prompt(&mut p);
        // Functions stay too.
        p.send_line("fn twice(x) { x * 2 }").unwrap();
        prompt(&mut p);
        send(&mut p, "twice(names.len()) + 1000", "1012");
        prompt(&mut p);
        leave(&mut p);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repl_asks_before_a_destructive_call_and_journals_what_was_done() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    tokio::task::block_in_place(|| {
        let mut p = repl(t.dir());
        // Plan mode lists a mutation instead of sending it.
        send(&mut p, ":plan on", "plan mode on");
        prompt(&mut p);
        send(
            &mut p,
            "stop_vm(\"site-a\", \"dr-centos-1\")",
            "plan: would run stop_vm(\"site-a\", \"dr-centos-1\"",
        );
        prompt(&mut p);
        send(&mut p, ":plan off", "plan mode off");
        prompt(&mut p);
        send(&mut p, "vm(\"site-a\", \"dr-centos-1\").state", "Running");
        prompt(&mut p);

        // Refused with n: nothing is sent.
        p.send_line("promote(\"DR\")").unwrap();
        p.exp_string("Promote DR cluster \"DR\" on site-b? [y/N]")
            .expect("the question");
        send(&mut p, "n", "nothing was sent");
        prompt(&mut p);
        lacks(&journal(t.dir()), "\"primitive\":\"promote\"");

        // Stop the VMs (a mutation: no question), then promote with y.
        send(
            &mut p,
            "stop_vms(\"site-a\", vms(\"site-a\").map(|v| v.name)).len() * 111",
            "333",
        );
        prompt(&mut p);
        p.send_line("let r = promote(\"DR\");").unwrap();
        p.exp_string("Promote DR cluster \"DR\" on site-b? [y/N]")
            .expect("the question again");
        p.send_line("y").unwrap();
        prompt(&mut p);
        send(&mut p, ":journal", "promote(\"DR\") on site-b");
        prompt(&mut p);
        let end = leave(&mut p);
        has(&end, "act(s) made");
    });
    let journal = journal(t.dir());
    let promote = journal
        .lines()
        .filter(|l| l.contains("\"primitive\":\"promote\""))
        .count();
    assert_eq!(promote, 1, "{journal}");
    has(&journal, "\"script\":\"repl\"");
    has(&journal, "\"primitive\":\"stop_vms\"");
    has(&journal, "\"event\":\"run_end\"");
    // The plan-mode stop_vm was never sent.
    lacks(&journal, "\"primitive\":\"stop_vm\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repl_ctrl_c_cancels_a_long_wait_and_the_session_survives() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        let mut p = repl(t.dir());
        p.send_line("let keep = 42;").unwrap();
        prompt(&mut p);
        // The DR site goes dark: its side reads as unknown, so nothing counts as synced.
        rt.block_on(sim.disaster("site-b")).unwrap();
        p.send_line("wait_synced(\"DR\", #{timeout: \"10m\"})")
            .unwrap();
        p.exp_string("waiting for DR cluster DR to sync")
            .expect("the wait started");
        p.send_control('c').unwrap();
        p.exp_string("was cancelled by Ctrl-C")
            .expect("the wait is cancelled");
        prompt(&mut p);
        // The session is intact: its variables are still there.
        send(&mut p, "keep + 1", "43");
        prompt(&mut p);
        // The prompt comes back while the dark site is being looked at, and once the look
        // gives up it shows the site's role as unknown and its health as down.
        let mut seen = Vec::new();
        for _ in 0..200 {
            p.send_line("").unwrap();
            let (_, shown) = p
                .exp_regex(r"site-b:[^ ]* > ")
                .expect("a prompt while site-b is dark");
            if shown.starts_with("site-b:?") {
                break;
            }
            seen.push(shown);
        }
        assert!(seen.len() < 200, "site-b never showed as unknown: {seen:?}");
        leave(&mut p);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repl_errors_show_the_position_and_a_caret() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    tokio::task::block_in_place(|| {
        let mut p = repl(t.dir());
        p.send_line("let v = vm(\"site-a\", \"no-such-vm\");")
            .unwrap();
        let shown = p.exp_string("^").expect("a caret");
        has(&shown, "error: no VM on site-a");
        has(&shown, "--> <input 1>:1:9");
        has(&shown, " 1 | let v = vm(\"site-a\", \"no-such-vm\");");
        prompt(&mut p);
        // A parse error too; the session goes on.
        p.send_line("let = 5").unwrap();
        let shown = p.exp_string("^").expect("a caret");
        has(&shown, "--> <input 2>:1:5");
        prompt(&mut p);
        // An error inside a function defined earlier points into the input that defined it.
        p.send_line("fn lookup(name) {").unwrap();
        p.send_line("  vm(\"site-a\", name)").unwrap();
        p.send_line("}").unwrap();
        prompt(&mut p);
        p.send_line("let a = 1; let b = lookup(\"gone\");").unwrap();
        let shown = p.exp_string("^").expect("a caret");
        has(&shown, "--> <input 3>:2:3");
        has(&shown, " 2 |   vm(\"site-a\", name)");
        let note = p.exp_string("\n").expect("the note");
        let note = format!("{note}{}", p.exp_string("\n").expect("the note"));
        has(&note, "in lookup() called at <input 4>:1:20");
        prompt(&mut p);
        send(&mut p, ":help promote", "Asks before it acts");
        prompt(&mut p);
        leave(&mut p);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repl_history_persists_across_sessions_without_config_secrets() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim);
    let secret = sim.endpoints().sites["site-a"].secret_key.clone();
    tokio::task::block_in_place(|| {
        let mut p = repl(t.dir());
        p.send_line("let marker = \"from-the-first-session\";")
            .unwrap();
        prompt(&mut p);
        send(
            &mut p,
            &format!("let leaked = \"{secret}\";"),
            "not kept in the history",
        );
        prompt(&mut p);
        leave(&mut p);

        let mut p = repl(t.dir());
        send(
            &mut p,
            ":history",
            "let marker = \"from-the-first-session\";",
        );
        prompt(&mut p);
        leave(&mut p);
    });
    let history = std::fs::read_to_string(t.dir().join("state/drbook/history")).unwrap();
    has(&history, "from-the-first-session");
    // No configured secret is kept in the history.
    lacks(&history, &secret);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.dir().join("state/drbook/history"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "history readable by others: {mode:o}");
    }
}

#[test]
fn repl_refuses_yes() {
    let t = Test::new()
        .config(&crate::harness::site_toml(
            "site-a",
            "http://127.0.0.1:9",
            crate::harness::SECRET_KEY,
            "",
        ))
        .args(["repl", "--yes"]);
    let ran = t.run().expect_code(2).expect_no_secret();
    ran.stderr_has("does not take --yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repl_keeps_imports_and_loaded_scripts_for_the_session() {
    let sim = start_sim(|_| {}).await;
    let t = Test::new().sim_config(&sim).file(
        "helpers.rhai",
        "fn greet(who) { `hello ${who}` }\nlet loaded = 7;\n",
    );
    tokio::task::block_in_place(|| {
        let mut p = repl(t.dir());
        // The import stays although the rest of the line failed.
        send(
            &mut p,
            "import \"dr\" as dr; dr::no_such_function()",
            "error:",
        );
        prompt(&mut p);
        send(&mut p, "dr::names(vms(\"site-a\")).len() * 11", "33");
        prompt(&mut p);
        // `dr::` completes from the library's functions.
        keys(&mut p, "dr::wait_all_s");
        keys(&mut p, "\t");
        p.exp_string("ynced")
            .expect("dr::wait_all_synced completed");
        p.send_control('c').unwrap();
        prompt(&mut p);
        send(&mut p, ":load helpers.rhai", "loaded helpers.rhai");
        prompt(&mut p);
        send(&mut p, "greet(\"ops\")", "hello ops");
        prompt(&mut p);
        send(&mut p, "loaded * 6", "42");
        prompt(&mut p);
        send(&mut p, ":vars", "loaded");
        prompt(&mut p);
        leave(&mut p);
    });
}
