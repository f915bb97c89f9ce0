//! `repoint webhook manifests`: `repoint-manifests` makes them; this loads
//! the config and its chain, prints the stream and the notes.

use std::process::ExitCode;

use anyhow::{Context, Result};
use repoint_config::Config;
use repoint_manifests::Request;

use crate::args::ManifestsArgs;

pub fn run(args: &ManifestsArgs) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let config_text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    // The policies are loaded (`oci://` ones pulled and verified, as the
    // server will) to tell which sets mutate. Nothing is evaluated, so
    // nothing is probed.
    let settings = repoint_pipeline::Settings {
        jobs: Some(1),
        ..Default::default()
    };
    let chain = repoint_pipeline::chain::build(&config, &settings, false)?;
    let manifests = repoint_manifests::build(&Request {
        config: &config,
        config_text: &config_text,
        chain: &chain,
        namespace: &args.namespace,
        image: &args.image,
        cert_manager: args.cert_manager,
        days: args.days,
        kube_version: args.kube_version,
        url: args.url.as_deref(),
    })?;
    for note in &manifests.notes {
        eprintln!("repoint: note: {note}");
    }
    print!("{}", manifests.to_yaml()?);
    Ok(ExitCode::SUCCESS)
}
