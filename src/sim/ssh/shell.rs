//! What a simulated storage VM answers over SSH: one `rbd` or `ceph` command line, as the
//! control API's `POST /ssh/{site}` receives it from `drbook sim exec` (sshd's
//! `ForceCommand`), answered from the storage behind the site.
//!
//! - **No shell.** A real storage VM hands the line to bash; the simulator splits it into
//!   words as a shell would for plain words (blanks; `'…'` and `"…"` quoting; `\` escaping
//!   outside single quotes) and runs nothing else. A line with `;` `|` `&` `>` `<` `$` or a
//!   backquote, or a line break, is refused with status 2 rather than half run; an unclosed
//!   quote is bash's own status-2 complaint.
//! - **Two programs.** `rbd …` (also `/usr/bin/rbd`) goes to [`Storage::rbd_command`]
//!   (the model's command line, or the real `rbd` on `--storage ceph`); `ceph -s` /
//!   `ceph status` and `ceph health`, with `-f json` or `json-pretty` (`ceph health` also
//!   plain), answer the site's cluster status as Glue's `GET /glue` renders it (the real
//!   `ceph -s -f json` on `--storage ceph`). Anything else is bash's `command not found`,
//!   status 127.
//! - **Counted on arrival** (see [`mutations`](crate::sim::mutations)): every line in
//!   [`World::ssh_calls`] as received; every line that is not a read in `mutations` under
//!   [`Api::Ssh`]. The reads: an rbd command whose last word is `ls`, `list`, `info` or
//!   `status` (`rbd ls`, `rbd snap ls`, `rbd trash ls`, `rbd mirror pool status`, …), and
//!   the ceph reads above. An rbd command is keyed by its command words as typed, without
//!   options and names (`rbd snap create`, `rbd mirror image promote`); any other line —
//!   refused, not found, not one of rbd's commands — by the line as received, so it stands
//!   out.
//!
//! [`Storage::rbd_command`]: crate::sim::storage::Storage::rbd_command

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sim::faults::Api;
use crate::sim::world::World;

/// What the command printed and how it ended, as the storage VM's sshd passes it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Answer {
    fn ok(stdout: String) -> Self {
        Self {
            status: 0,
            stdout,
            stderr: String::new(),
        }
    }

    /// A failure with `text` on stderr, ending in a newline as a CLI's does.
    fn failed(status: i32, text: &str) -> Self {
        let mut stderr = text.to_string();
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        Self {
            status,
            stdout: String::new(),
            stderr,
        }
    }
}

/// What a shell would give meaning to and the simulator will not pretend to run.
const REFUSED: &[char] = &[';', '|', '&', '>', '<', '$', '`', '\n', '\r'];

/// One command line as the storage VM reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Only blanks: the shell does nothing.
    Empty,
    /// `rbd` and its arguments.
    Rbd(Vec<String>),
    /// `ceph` and its arguments.
    Ceph(Vec<String>),
    /// A program the storage VM does not have here.
    NotFound(String),
}

/// Reads one command line; a refusal is already the answer.
pub fn parse(line: &str) -> Result<Line, Answer> {
    let mut words = words(line)?.into_iter();
    let Some(program) = words.next() else {
        return Ok(Line::Empty);
    };
    let args = words.collect();
    Ok(match program.as_str() {
        "rbd" | "/usr/bin/rbd" | "/bin/rbd" => Line::Rbd(args),
        "ceph" | "/usr/bin/ceph" | "/bin/ceph" => Line::Ceph(args),
        _ => Line::NotFound(program),
    })
}

/// The line's words, as a shell splits plain words.
fn words(line: &str) -> Result<Vec<String>, Answer> {
    if let Some(c) = line.chars().find(|c| REFUSED.contains(c)) {
        let shown = match c {
            '\n' => "a line break".to_string(),
            '\r' => "a carriage return".to_string(),
            c => format!("`{c}`"),
        };
        return Err(Answer::failed(
            2,
            &format!(
                "drbook sim: the simulated storage VM runs one command without a shell, and this line has {shown}: send one rbd or ceph command per ssh() (no ; | & > < $ ` or line breaks)"
            ),
        ));
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(unclosed('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(unclosed('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(unclosed('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// bash's answer to a quote left open.
fn unclosed(quote: char) -> Answer {
    Answer::failed(
        2,
        &format!("bash: -c: line 1: unexpected EOF while looking for matching `{quote}'"),
    )
}

/// rbd's commands (Ceph 16.2's `rbd help`, aliases included), as words.
const RBD_COMMANDS: &[&str] = &[
    "bench",
    "children",
    "clone",
    "config global get",
    "config global list",
    "config global ls",
    "config global remove",
    "config global rm",
    "config global set",
    "config image get",
    "config image list",
    "config image ls",
    "config image remove",
    "config image rm",
    "config image set",
    "config pool get",
    "config pool list",
    "config pool ls",
    "config pool remove",
    "config pool rm",
    "config pool set",
    "copy",
    "cp",
    "create",
    "deep copy",
    "deep cp",
    "device attach",
    "device detach",
    "device list",
    "device ls",
    "device map",
    "device unmap",
    "showmapped",
    "map",
    "unmap",
    "diff",
    "disk-usage",
    "du",
    "encryption format",
    "export",
    "export-diff",
    "feature disable",
    "feature enable",
    "flatten",
    "group create",
    "group image add",
    "group image list",
    "group image ls",
    "group image remove",
    "group image rm",
    "group list",
    "group ls",
    "group remove",
    "group rm",
    "group rename",
    "group snap create",
    "group snap list",
    "group snap ls",
    "group snap remove",
    "group snap rm",
    "group snap rename",
    "group snap rollback",
    "image-meta get",
    "image-meta list",
    "image-meta ls",
    "image-meta remove",
    "image-meta rm",
    "image-meta set",
    "import",
    "import-diff",
    "info",
    "journal client disconnect",
    "journal export",
    "journal import",
    "journal info",
    "journal inspect",
    "journal reset",
    "journal status",
    "list",
    "ls",
    "lock add",
    "lock list",
    "lock ls",
    "lock remove",
    "lock rm",
    "merge-diff",
    "migration abort",
    "migration commit",
    "migration execute",
    "migration prepare",
    "mirror image demote",
    "mirror image disable",
    "mirror image enable",
    "mirror image promote",
    "mirror image resync",
    "mirror image snapshot",
    "mirror image status",
    "mirror pool demote",
    "mirror pool disable",
    "mirror pool enable",
    "mirror pool info",
    "mirror pool peer add",
    "mirror pool peer bootstrap create",
    "mirror pool peer bootstrap import",
    "mirror pool peer remove",
    "mirror pool peer set",
    "mirror pool promote",
    "mirror pool status",
    "mirror snapshot schedule add",
    "mirror snapshot schedule list",
    "mirror snapshot schedule ls",
    "mirror snapshot schedule remove",
    "mirror snapshot schedule rm",
    "mirror snapshot schedule status",
    "namespace create",
    "namespace list",
    "namespace ls",
    "namespace remove",
    "namespace rm",
    "object-map check",
    "object-map rebuild",
    "perf image iostat",
    "perf image iotop",
    "pool init",
    "pool stats",
    "remove",
    "rm",
    "rename",
    "mv",
    "resize",
    "snap add",
    "snap create",
    "snap limit clear",
    "snap limit set",
    "snap list",
    "snap ls",
    "snap protect",
    "snap purge",
    "snap remove",
    "snap rm",
    "snap rename",
    "snap revert",
    "snap rollback",
    "snap unprotect",
    "sparsify",
    "status",
    "trash list",
    "trash ls",
    "trash move",
    "trash mv",
    "trash purge",
    "trash purge schedule add",
    "trash purge schedule list",
    "trash purge schedule ls",
    "trash purge schedule remove",
    "trash purge schedule rm",
    "trash purge schedule status",
    "trash remove",
    "trash rm",
    "trash restore",
    "watch",
];

/// rbd's options that take the next word as their value (unless written `--opt=value`).
const RBD_VALUE_OPTIONS: &[&str] = &[
    "-p",
    "--pool",
    "--namespace",
    "--image",
    "--image-id",
    "--snap",
    "--dest",
    "--dest-pool",
    "--dest-namespace",
    "--format",
    "-s",
    "--size",
    "--rbd-default-clone-format",
    "--image-feature",
    "--image-format",
    "--object-size",
    "--order",
    "--stripe-unit",
    "--stripe-count",
    "--data-pool",
    "--journal-pool",
    "--limit",
    "--path",
    "--from-snap",
    "-c",
    "--conf",
    "--cluster",
    "--id",
    "-n",
    "--name",
    "-k",
    "--keyring",
    "-m",
    "--mon_host",
];

/// Which of rbd's commands `args` name: its words as typed (the longest that fits), or
/// `None` for none of them.
fn rbd_command(args: &[String]) -> Option<Vec<&str>> {
    let mut positional = Vec::new();
    let mut rest = args.iter().map(String::as_str);
    while let Some(arg) = rest.next() {
        if RBD_VALUE_OPTIONS.contains(&arg) {
            rest.next();
        } else if !arg.starts_with('-') {
            positional.push(arg);
        }
    }
    RBD_COMMANDS
        .iter()
        .map(|c| c.split(' ').collect::<Vec<_>>())
        .filter(|c| positional.starts_with(c))
        .max_by_key(Vec::len)
}

/// Whether an rbd command only reads.
fn rbd_reads(command: &[&str]) -> bool {
    matches!(command.last(), Some(&("ls" | "list" | "info" | "status")))
}

/// What `ceph` is asked here: `-s`/`status` or `health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CephAsk {
    Status,
    Health,
}

/// The read a `ceph` line asks for (`None`: anything else), and the format it names.
fn ceph_words(args: &[String]) -> (Option<CephAsk>, Option<&str>) {
    let mut ask = None;
    let mut other = false;
    let mut format = None;
    let mut rest = args.iter().map(String::as_str);
    while let Some(arg) = rest.next() {
        let this = match arg {
            "-s" | "--status" | "status" => CephAsk::Status,
            "health" => CephAsk::Health,
            "-f" | "--format" => {
                format = Some(rest.next().unwrap_or(""));
                continue;
            }
            _ if arg.starts_with("--format=") => {
                format = Some(&arg["--format=".len()..]);
                continue;
            }
            _ => {
                other = true;
                continue;
            }
        };
        if ask.is_some_and(|a| a != this) {
            other = true;
        }
        ask = Some(this);
    }
    (if other { None } else { ask }, format)
}

/// The key a line counts under in `mutations` (see the module documentation); `None` for a
/// read, or a line of blanks.
pub fn mutation_key(line: &str) -> Option<String> {
    let as_received = || Some(line.trim().to_string());
    match parse(line) {
        Ok(Line::Empty) => None,
        Ok(Line::Rbd(args)) => match rbd_command(&args) {
            Some(command) if rbd_reads(&command) => None,
            Some(command) => Some(format!("rbd {}", command.join(" "))),
            None => as_received(),
        },
        Ok(Line::Ceph(args)) => match ceph_words(&args) {
            (Some(_), _) => None,
            (None, _) => as_received(),
        },
        Ok(Line::NotFound(_)) | Err(_) => as_received(),
    }
}

/// Answers one command line on `site` (up), counting it first. The world has been advanced
/// to `now`.
pub fn answer(w: &mut World, now: Instant, site: &str, line: &str) -> Answer {
    *w.ssh_calls
        .entry((site.to_string(), line.trim().to_string()))
        .or_default() += 1;
    if let Some(key) = mutation_key(line) {
        w.mutations.record(site, Api::Ssh, &key);
    }
    match parse(line) {
        Err(refused) => refused,
        Ok(Line::Empty) => Answer::ok(String::new()),
        Ok(Line::NotFound(program)) => Answer::failed(
            127,
            &format!(
                "bash: {program}: command not found (the simulated storage VM answers only rbd and ceph)"
            ),
        ),
        Ok(Line::Rbd(args)) => match w.storage.rbd_command(now, site, &args) {
            Ok(stdout) => Answer::ok(stdout),
            Err(e) => Answer::failed(e.exit_status, &e.output),
        },
        Ok(Line::Ceph(args)) => ceph(w, site, &args),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    Json,
    JsonPretty,
}

fn ceph(w: &mut World, site: &str, args: &[String]) -> Answer {
    let (ask, format) = ceph_words(args);
    let Some(ask) = ask else {
        return Answer::failed(
            22,
            "no valid command found\nError EINVAL: invalid command (the simulated storage VM answers only `ceph -s`, `ceph status` and `ceph health`, with -f json or json-pretty)",
        );
    };
    let format = match format {
        None | Some("plain") => Format::Plain,
        Some("json") => Format::Json,
        Some("json-pretty") => Format::JsonPretty,
        Some(other) => {
            return Answer::failed(
                2,
                &format!(
                    "ceph: error: argument -f/--format: invalid choice: '{other}' (the simulated storage VM prints json, json-pretty or plain)"
                ),
            );
        }
    };
    if ask == CephAsk::Status && format == Format::Plain {
        return Answer::failed(
            22,
            "drbook sim: the simulated storage VM prints `ceph status` as JSON only: add -f json",
        );
    }
    let status = if w.storage.backend() == "ceph" {
        // The real cluster's `ceph -s -f json`; no answer is an answer of its own.
        match w.storage.cluster_status(site) {
            Some(status) => status,
            None => {
                return Answer::failed(
                    1,
                    "[errno 110] RADOS timed out (error connecting to the cluster)",
                );
            }
        }
    } else {
        crate::sim::glue_api::ceph_status(w, site)
    };
    let value = match ask {
        CephAsk::Status => status,
        CephAsk::Health => status.get("health").cloned().unwrap_or(Value::Null),
    };
    Answer::ok(match format {
        Format::Json => format!("{value}\n"),
        Format::JsonPretty => format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        Format::Plain => health_line(&value),
    })
}

/// `ceph health` in plain text: `HEALTH_OK`, or the status and each check's summary.
fn health_line(health: &Value) -> String {
    let status = health
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("HEALTH_ERR");
    let summaries: Vec<&str> = health
        .get("checks")
        .and_then(Value::as_object)
        .map(|checks| {
            checks
                .values()
                .filter_map(|c| c.pointer("/summary/message").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if summaries.is_empty() {
        format!("{status}\n")
    } else {
        format!("{status} {}\n", summaries.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Line {
        parse(line).unwrap_or_else(|a| panic!("{line:?} refused: {a:?}"))
    }

    fn rbd(words: &[&str]) -> Line {
        Line::Rbd(words.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn words_split_as_a_shell_splits_plain_words() {
        assert_eq!(
            parsed("  rbd   ls\t--format json "),
            rbd(&["ls", "--format", "json"])
        );
        assert_eq!(
            parsed(r#"rbd snap create 'rbd/my image@t 1' "a\"b" c\ d '' x"y"z"#),
            rbd(&[
                "snap",
                "create",
                "rbd/my image@t 1",
                "a\"b",
                "c d",
                "",
                "xyz"
            ])
        );
        assert_eq!(parsed(r#"rbd "a\nb""#), rbd(&[r"a\nb"]));
        assert_eq!(parsed("/usr/bin/rbd ls"), rbd(&["ls"]));
        assert_eq!(
            parsed("ceph -s -f json"),
            Line::Ceph(vec!["-s".into(), "-f".into(), "json".into()])
        );
        assert_eq!(parsed(""), Line::Empty);
        assert_eq!(parsed("   "), Line::Empty);
        assert_eq!(parsed("reboot now"), Line::NotFound("reboot".into()));
        assert_eq!(parsed("'r bd' ls"), Line::NotFound("r bd".into()));
    }

    #[test]
    fn shell_syntax_is_refused_with_status_2() {
        for line in [
            "ceph -s; reboot",
            "rbd ls | head",
            "rbd ls && reboot",
            "rbd ls > /tmp/x",
            "rbd import - x < /tmp/x",
            "rbd info $IMAGE",
            "rbd info `hostname`",
            "rbd ls\nreboot",
            "rbd ls\r",
            "rbd info 'a;b'",
        ] {
            let refused = parse(line).unwrap_err();
            assert_eq!(refused.status, 2, "{line:?}");
            assert!(
                refused.stderr.contains("without a shell") && refused.stderr.ends_with('\n'),
                "{line:?}: {}",
                refused.stderr
            );
            assert!(refused.stdout.is_empty());
        }
        let semicolon = parse("ceph -s; reboot").unwrap_err();
        assert!(semicolon.stderr.contains("has `;`"), "{}", semicolon.stderr);
        let newline = parse("rbd ls\nreboot").unwrap_err();
        assert!(
            newline.stderr.contains("a line break"),
            "{}",
            newline.stderr
        );
        for line in ["rbd info 'x", r#"rbd info "x"#, r#"rbd info "x\"#] {
            let refused = parse(line).unwrap_err();
            assert_eq!(refused.status, 2, "{line:?}");
            assert!(
                refused
                    .stderr
                    .starts_with("bash: -c: line 1: unexpected EOF")
            );
        }
    }

    #[test]
    fn reads_count_nowhere_and_mutations_count_without_names() {
        for read in [
            "rbd ls --format json",
            "rbd --pool rbd ls",
            "rbd list",
            "rbd info rbd/vol-1 --format json",
            "rbd status rbd/vol-1",
            "rbd snap ls --all rbd/vol-1 --format json",
            "rbd snap list rbd/vol-1",
            "rbd trash ls --format json",
            "rbd mirror image status --pool rbd --image vol-1 --format json",
            "rbd mirror pool status rbd --verbose --format json",
            "rbd mirror pool info rbd",
            "ceph -s -f json",
            "ceph status --format json-pretty",
            "ceph --format=json health",
            "ceph -s",
            "ceph -s -f xml",
            "",
        ] {
            assert_eq!(mutation_key(read), None, "{read:?}");
        }
        for (line, key) in [
            ("rbd snap create rbd/vol-1@t1", "rbd snap create"),
            ("rbd snap add vol-1@t1", "rbd snap add"),
            ("rbd --pool rbd snap rm --snap t1 vol-1", "rbd snap rm"),
            (
                "rbd clone --rbd-default-clone-format 2 rbd/vol-1@t1 rbd/vol-1-test",
                "rbd clone",
            ),
            ("rbd rm rbd/vol-1-test", "rbd rm"),
            (
                "rbd mirror image promote --force --pool rbd --image vol-1",
                "rbd mirror image promote",
            ),
            (
                "rbd mirror image snapshot rbd/vol-1",
                "rbd mirror image snapshot",
            ),
            (
                "rbd mirror pool peer bootstrap create rbd",
                "rbd mirror pool peer bootstrap create",
            ),
            ("rbd trash restore 1234", "rbd trash restore"),
        ] {
            assert_eq!(mutation_key(line).as_deref(), Some(key), "{line:?}");
        }
        // What is not one of rbd's commands, or not rbd or ceph at all, or refused: as sent.
        for line in [
            "rbd frobnicate vol-1",
            "rbd",
            "ceph osd pool create x",
            "ceph -s health",
            "systemctl restart ceph",
            "ceph -s; reboot",
        ] {
            assert_eq!(mutation_key(line).as_deref(), Some(line), "{line:?}");
        }
        assert_eq!(mutation_key("  hostname  ").as_deref(), Some("hostname"));
    }

    #[test]
    fn ceph_reads_are_status_and_health() {
        let args =
            |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_string).collect() };
        assert_eq!(
            ceph_words(&args("-s -f json")),
            (Some(CephAsk::Status), Some("json"))
        );
        assert_eq!(
            ceph_words(&args("-f json-pretty status")),
            (Some(CephAsk::Status), Some("json-pretty"))
        );
        assert_eq!(ceph_words(&args("health")), (Some(CephAsk::Health), None));
        assert_eq!(ceph_words(&args("health detail")).0, None);
        assert_eq!(ceph_words(&args("osd tree")).0, None);
        assert_eq!(ceph_words(&args("-s health")).0, None);
    }

    #[test]
    fn plain_health_is_the_status_and_the_checks_summaries() {
        assert_eq!(
            health_line(&serde_json::json!({"status": "HEALTH_OK", "checks": {}})),
            "HEALTH_OK\n"
        );
        assert_eq!(
            health_line(&serde_json::json!({"status": "HEALTH_WARN", "checks": {
                "MON_DOWN": {"severity": "HEALTH_WARN", "summary": {"message": "1/3 mons down", "count": 1}}}})),
            "HEALTH_WARN 1/3 mons down\n"
        );
    }
}
