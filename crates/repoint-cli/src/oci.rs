//! `repoint policy push` and the `oci://` side of `policy inspect`: policy
//! components as Wasm OCI artifacts, with a config's registry settings and
//! credentials.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use repoint_config::Config;
use repoint_pipeline::oci::{LoadError, LoadedFrom};
use repoint_runtime::probe::Offline;
use repoint_runtime::{PolicySource, Runtime, RuntimeOptions};
use serde_json::json;

use crate::args::{PushArgs, RegistryArgs};

/// The config `-c` names, or one with no registries and no credentials.
fn config(path: Option<&std::path::Path>) -> Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None => Ok(Config::empty(std::env::current_dir()?)),
    }
}

/// Load `source` for `policy inspect`: an `oci://` one pulled as the
/// runtime caches, and verified with `--key`, else with the config's
/// `verify:` keys.
pub fn load(args: &RegistryArgs, runtime: &Runtime, source: &PolicySource) -> Result<LoadedFrom> {
    let config = config(args.config.as_deref())?;
    let keys = match (source, args.keys.is_empty()) {
        (PolicySource::Oci(reference), true) => config.verify_keys_for_module(reference),
        _ => args.keys.clone(),
    };
    repoint_pipeline::oci::load(runtime, &config, "(inspected)", source, &keys, args.offline)
        .map_err(|e| match e {
            LoadError::Pull { reference, why } => anyhow!("{reference}: {why}"),
            LoadError::Load(e) => e.into(),
        })
}

pub fn push(args: &PushArgs) -> Result<ExitCode> {
    let config = config(args.config.as_deref())?;
    let bytes = repoint_core::bounded::read_regular_file(&args.file, config.module_size())
        .map_err(|reason| anyhow!("{}: {reason}", args.file.display()))?;
    // Only a component that implements the contract is pushed: loading it
    // checks that, and gives the names its artifact config lists.
    let runtime = Runtime::new(
        RuntimeOptions {
            cache_dir: None,
            ..RuntimeOptions::default()
        },
        Arc::new(Offline),
    )?;
    let loaded = runtime.load_bytes(PolicySource::File(args.file.clone()), &bytes)?;
    let (imports, exports) = runtime.interfaces(&loaded);
    let artifact_config = json!({
        "created": rfc3339(created()?),
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [repoint_pipeline::oci::sha256(&bytes)],
        "component": {"exports": exports, "imports": imports, "target": null},
    });
    let digest = repoint_pipeline::oci::push(&config, &args.reference, &bytes, &artifact_config)
        .map_err(|why| anyhow!(why))
        .with_context(|| format!("pushing {} to {}", args.file.display(), args.reference))?;
    println!("{digest}");
    eprintln!(
        "pushed {} {} as {}@{digest}",
        loaded.info.name, loaded.info.version, args.reference
    );
    Ok(ExitCode::SUCCESS)
}

/// When the artifact was made, in seconds since the epoch:
/// `SOURCE_DATE_EPOCH` when set (https://reproducible-builds.org/specs/source-date-epoch/),
/// so the same file pushed twice has one digest, else now.
fn created() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text.trim().parse().map_err(|_| {
            anyhow!("SOURCE_DATE_EPOCH: {text:?} is not a count of seconds since 1970")
        }),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())),
    }
}

/// `secs` since the epoch as RFC 3339 UTC (`2026-12-03T08:15:00Z`), what
/// the artifact config's `created` holds.
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // A leap day, and the last second of a century year.
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_796_286_900), "2026-12-03T08:35:00Z");
    }
}
