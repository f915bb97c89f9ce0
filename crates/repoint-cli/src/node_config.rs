//! `repoint node-config`: `repoint-nodes` makes the files; this writes
//! them into one directory, all or nothing, and prints the notes.

use std::process::ExitCode;

use anyhow::Result;
use repoint_config::Config;
use repoint_nodes::Request;

use crate::args::NodeConfigArgs;

/// Kept in the output directory to show repoint wrote it, so a later run
/// may replace it.
const MARKER: &str = ".repoint-node-config";

pub fn run(args: &NodeConfigArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let node_config = repoint_nodes::build(&Request {
        config: &config,
        hosts_dir: &args.hosts_dir,
        namespace: &args.namespace,
        installer_image: &args.installer_image,
        pause_image: &args.pause_image,
    })?;
    for note in &node_config.notes {
        eprintln!("repoint: note: {note}");
    }
    let files: Vec<(&str, &str)> = node_config
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.text.as_str()))
        .collect();
    repoint_pipeline::files::write_directory(&args.out, MARKER, &files)?;
    eprintln!(
        "repoint: wrote {} files to {}",
        files.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
