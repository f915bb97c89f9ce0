//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Point container images at the registries you choose, and wire up the
/// pull secrets to fetch them.
#[derive(Debug, Parser)]
#[command(name = "repoint", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every image in the given manifests: an inventory for mirroring
    /// scripts.
    Images(ImagesArgs),
}

/// Output format of `repoint images`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagesFormat {
    /// One line per image: `file:line  kind/name  container  image`.
    Text,
    /// One JSON array of objects (or of strings with `--unique`).
    Json,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); `-` reads
    /// standard input. Nothing given reads standard input.
    pub inputs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ImagesFormat::Text)]
    pub format: ImagesFormat,
    /// Print each normalized image once, sorted.
    #[arg(long)]
    pub unique: bool,
    /// Largest document to read, in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub max_document_size: usize,
}
