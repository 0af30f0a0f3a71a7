//! The `rbd` command line a storage VM answers over SSH, read the way rbd reads it: the
//! subcommands a DR test and a status fallback need, images as `[pool/]image[@snap]` (pool
//! `rbd` only), and listings in `--format json` (the model renders no tables).

use std::time::Instant;

use super::ModelStorage;
use crate::sim::storage::{RbdError, Storage as _};

/// The only pool Glue mirrors.
const POOL: &str = "rbd";

/// One parsed command line: its words without options, and the options given.
struct Line<'a> {
    words: Vec<&'a str>,
    all: bool,
    verbose: bool,
    json: bool,
    clone_format: Option<&'a str>,
}

impl<'a> Line<'a> {
    fn parse(args: &'a [String]) -> Result<Self, RbdError> {
        let mut line = Self {
            words: Vec::new(),
            all: false,
            verbose: false,
            json: false,
            clone_format: None,
        };
        let mut rest = args.iter().map(String::as_str);
        while let Some(arg) = rest.next() {
            match arg {
                "-a" | "--all" => line.all = true,
                "--verbose" => line.verbose = true,
                "--format" => match rest.next() {
                    Some("json") => line.json = true,
                    Some("plain") => line.json = false,
                    other => return Err(bad_format(other.unwrap_or(""))),
                },
                "--rbd-default-clone-format" => line.clone_format = rest.next(),
                "-p" | "--pool" => match rest.next() {
                    Some(POOL) => {}
                    other => return Err(no_pool(other.unwrap_or(""))),
                },
                _ if arg.starts_with("--format=") => {
                    line.json = &arg["--format=".len()..] == "json";
                }
                _ if arg.starts_with("--rbd-default-clone-format=") => {
                    line.clone_format = Some(&arg["--rbd-default-clone-format=".len()..]);
                }
                _ if arg.starts_with('-') => {
                    return Err(RbdError::new(
                        1,
                        format!("rbd: unrecognised option '{arg}'"),
                    ));
                }
                _ => line.words.push(arg),
            }
        }
        Ok(line)
    }

    /// The `n`th word after the command's own, or rbd's complaint that it is missing.
    fn spec(&self, n: usize, what: &str) -> Result<Spec<'a>, RbdError> {
        let text = self
            .words
            .get(n)
            .ok_or_else(|| RbdError::new(22, format!("rbd: {what} name was not specified")))?;
        Spec::parse(text)
    }
}

/// `[pool/]image[@snap]`.
struct Spec<'a> {
    image: &'a str,
    snap: Option<&'a str>,
}

impl<'a> Spec<'a> {
    fn parse(text: &'a str) -> Result<Self, RbdError> {
        let (pool, rest) = text.split_once('/').unwrap_or((POOL, text));
        if pool != POOL {
            return Err(no_pool(pool));
        }
        let (image, snap) = match rest.split_once('@') {
            Some((image, snap)) => (image, Some(snap)),
            None => (rest, None),
        };
        Ok(Self { image, snap })
    }

    fn snap(&self) -> Result<&'a str, RbdError> {
        self.snap
            .ok_or_else(|| RbdError::new(22, "rbd: snapshot name was not specified"))
    }
}

fn no_pool(pool: &str) -> RbdError {
    RbdError::new(
        2,
        format!("rbd: error opening pool '{pool}': (2) No such file or directory"),
    )
}

fn bad_format(format: &str) -> RbdError {
    RbdError::new(22, format!("rbd: unknown format '{format}'"))
}

/// Listings exist only as JSON here: say so rather than print something rbd would not.
fn json_only(line: &Line<'_>, command: &str) -> Result<(), RbdError> {
    if line.json {
        Ok(())
    } else {
        Err(RbdError::new(
            22,
            format!(
                "rbd: the simulated storage VM prints `{command}` as JSON only: add --format json"
            ),
        ))
    }
}

fn json_line(value: &serde_json::Value) -> String {
    format!("{value}\n")
}

impl ModelStorage {
    /// Runs one `rbd` command line on `site` (the words after `rbd`): stdout on success, the
    /// exit status and stderr on failure.
    pub fn rbd_command(
        &mut self,
        now: Instant,
        site: &str,
        args: &[String],
    ) -> Result<String, RbdError> {
        let line = Line::parse(args)?;
        let words: Vec<&str> = line.words.iter().take(3).copied().collect();
        match words.as_slice() {
            ["snap", "create" | "add", ..] => {
                let spec = line.spec(2, "image")?;
                self.snap_create(now, site, spec.image, spec.snap()?)
            }
            ["snap", "rm" | "remove", ..] => {
                let spec = line.spec(2, "image")?;
                self.snap_remove(now, site, spec.image, spec.snap()?)
            }
            ["snap", "ls" | "list", ..] => {
                json_only(&line, "snap ls")?;
                let spec = line.spec(2, "image")?;
                self.snap_list(now, site, spec.image, line.all)
                    .map(|v| json_line(&v))
            }
            ["clone", ..] => {
                let parent = line.spec(1, "image")?;
                let child = line.spec(2, "destination image")?;
                let format_2 = line.clone_format == Some("2");
                self.clone_image(
                    now,
                    site,
                    parent.image,
                    parent.snap()?,
                    child.image,
                    format_2,
                )
            }
            ["rm" | "remove", ..] => {
                let spec = line.spec(1, "image")?;
                self.remove_image(now, site, spec.image)
                    .map(|()| String::new())
            }
            ["trash", "ls" | "list", ..] => {
                json_only(&line, "trash ls")?;
                self.trash_list(now, site).map(|v| json_line(&v))
            }
            ["ls" | "list", ..] => {
                json_only(&line, "ls")?;
                self.image_list(now, site).map(|v| json_line(&v))
            }
            ["info", ..] => {
                json_only(&line, "info")?;
                let spec = line.spec(1, "image")?;
                self.advance(now);
                let ix = self.live_site(site)?;
                let info = self.cli_info_json(ix, spec.image, self.image(ix, spec.image)?);
                Ok(json_line(&info))
            }
            ["mirror", "pool", "status"] => {
                json_only(&line, "mirror pool status")?;
                self.advance(now);
                self.live_site(site)?;
                let status = self.pool_status(now, site);
                let status = if line.verbose {
                    status
                } else {
                    serde_json::json!({"summary": status["summary"]})
                };
                Ok(json_line(&status))
            }
            ["mirror", "image", "status"] => {
                json_only(&line, "mirror image status")?;
                let spec = line.spec(3, "image")?;
                self.image_status(now, site, spec.image)
                    .map(|v| json_line(&v))
            }
            ["mirror", "image", "snapshot"] => {
                let spec = line.spec(3, "image")?;
                self.mirror_snapshot(now, site, spec.image)
            }
            _ => Err(RbdError::new(
                1,
                format!(
                    "rbd: error parsing command '{}'; -h or --help for usage",
                    line.words.join(" ")
                ),
            )),
        }
    }
}
