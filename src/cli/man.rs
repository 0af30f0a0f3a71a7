//! `drbook man DIR`: the man pages, drbook.1 and one drbook-<command>.1 per subcommand,
//! made by clap_mangen from the same clap definitions as `--help` and the completions.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::Error;

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where to write the pages (made if missing), e.g. /usr/local/share/man/man1
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(args: &ManArgs) -> Result<ExitCode, Error> {
    let fail = |what: &str, e: std::io::Error| {
        Error::Failed(format!(
            "cannot write {what} in {}: {e}",
            args.dir.display()
        ))
    };
    std::fs::create_dir_all(&args.dir).map_err(|e| fail("the man pages", e))?;
    let mut top = <super::Cli as clap::CommandFactory>::command();
    top.build();
    let mut pages = vec![("drbook.1".to_string(), top.clone())];
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("drbook-{}", sub.get_name());
        pages.push((format!("{name}.1"), sub.clone().name(name)));
    }
    for (file, command) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut out)
            .map_err(|e| fail(&file, e))?;
        std::fs::write(args.dir.join(&file), out).map_err(|e| fail(&file, e))?;
        crate::term::line(&args.dir.join(&file).display().to_string());
    }
    Ok(ExitCode::SUCCESS)
}
