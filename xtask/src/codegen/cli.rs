//! `docs/cli.md` and the man pages, from the command-line definition.

use std::fmt::Write;

use anyhow::Result;
use clap::CommandFactory;

/// Help is wrapped at this width whatever the terminal, so the output is
/// the same on every machine.
const WIDTH: usize = 100;

/// The command tree as `repoint --help` shows it, built, at a fixed width,
/// without the values of environment variables that set options (the
/// pages must not depend on the machine that writes them).
fn command() -> clap::Command {
    fn without_env_values(command: clap::Command) -> clap::Command {
        command
            .mut_args(|arg| arg.hide_env_values(true))
            .mut_subcommands(without_env_values)
    }
    let mut command = without_env_values(repoint_cli::args::Cli::command())
        .term_width(WIDTH)
        .disable_help_subcommand(true);
    command.build();
    command
}

/// Every visible command, parents first, with its full name
/// (`repoint webhook manifests`).
fn visible(command: &clap::Command, name: String, out: &mut Vec<(String, clap::Command)>) {
    out.push((name.clone(), command.clone()));
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        visible(sub, format!("{name} {}", sub.get_name()), out);
    }
}

fn commands() -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    visible(&command(), "repoint".into(), &mut out);
    out
}

pub fn markdown() -> Result<String> {
    let mut commands = commands();
    let mut w = String::new();
    writeln!(w, "# Command-line reference\n")?;
    writeln!(w, "{}\n", super::GENERATED)?;
    writeln!(
        w,
        "Written from the command-line definition (`crates/repoint-cli/src/args.rs`); the same \
         text is `repoint COMMAND --help`, and in man pages under `docs/man/` (`man \
         docs/man/repoint-run.1`). Shell completions: `repoint completions bash|zsh|fish`.\n"
    )?;
    for (name, _) in &commands {
        let anchor = name.replace(' ', "-");
        writeln!(w, "- [`{name}`](#{anchor})")?;
    }
    writeln!(w)?;
    for (name, command) in &mut commands {
        writeln!(w, "## {name}\n")?;
        let help = command.render_long_help().to_string();
        let help: Vec<&str> = help.lines().map(str::trim_end).collect();
        writeln!(w, "```text\n{}\n```\n", help.join("\n").trim_end())?;
    }
    Ok(w)
}

/// One man page per visible command: (file name, roff).
pub fn man_pages() -> Result<Vec<(String, String)>> {
    let mut pages = Vec::new();
    for (_, command) in commands() {
        let man = clap_mangen::Man::new(command).manual("repoint manual");
        let mut page = Vec::new();
        man.render(&mut page)?;
        pages.push((man.get_filename(), String::from_utf8(page)?));
    }
    Ok(pages)
}
