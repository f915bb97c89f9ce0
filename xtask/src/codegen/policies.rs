//! `docs/policies/*.md`: a page per built-in policy, from its crate's doc
//! comment, the description it gives of itself, its settings schema and
//! its test suite.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use repoint_runtime::probe::Offline;
use repoint_runtime::{PolicySource, Runtime, RuntimeOptions};

/// (file name, page) for each policy under `dir`, and an index.
pub fn pages(dir: &Path) -> Result<Vec<(String, String)>> {
    let runtime = Runtime::new(RuntimeOptions::default(), Arc::new(Offline))?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("schema.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut pages = Vec::new();
    let mut index = String::new();
    writeln!(index, "# Built-in policies\n\n{}\n", super::GENERATED)?;
    writeln!(
        index,
        "Compiled into repoint and used as `module: builtin:NAME`. Each page is written from \
         the policy's source in `policies/NAME/`.\n"
    )?;
    for name in &names {
        let loaded = runtime.load(&PolicySource::Builtin(name.clone()))?;
        writeln!(
            index,
            "- [`{name}`]({name}.md): {}",
            loaded.info.description
        )?;
        let page = page(
            &dir.join(name),
            name,
            &loaded.info.description,
            &loaded.info.version,
        )?;
        pages.push((format!("{name}.md"), page));
    }
    pages.push(("README.md".into(), index));
    Ok(pages)
}

/// The crate's `//!` comment in full, less the "`name`: " its first line
/// opens with (the page's title says it).
fn about(lib: &str, name: &str) -> String {
    let text: Vec<&str> = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            let l = l.trim_start_matches("//!");
            l.strip_prefix(' ').unwrap_or(l)
        })
        .collect();
    let text = text.join("\n");
    let text = text.trim();
    let rest = text
        .strip_prefix(&format!("`{name}`:"))
        .map_or(text, str::trim_start);
    let mut chars = rest.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn page(dir: &Path, name: &str, description: &str, version: &str) -> Result<String> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let lib = read("src/lib.rs")?;
    let schema_text = read("schema.json")?;
    let schema: serde_json::Value = serde_json::from_str(&schema_text)
        .with_context(|| format!("policies/{name}/schema.json is not JSON"))?;
    let suite = read("repoint-test.yaml")?;

    let mut w = String::new();
    writeln!(w, "# `builtin:{name}`\n\n{}\n", super::GENERATED)?;
    writeln!(w, "{description} (version {version}).\n")?;
    writeln!(w, "{}\n", about(&lib, name))?;

    writeln!(w, "## Settings\n")?;
    writeln!(
        w,
        "| setting | type | required | default | meaning |\n|---|---|---|---|---|"
    )?;
    for setting in repoint_runtime::schema::settings(&schema) {
        writeln!(
            w,
            "| `{}` | {} | {} | {} | {} |",
            setting.name,
            setting.kind.replace('|', "\\|"),
            if setting.required { "yes" } else { "no" },
            setting
                .default
                .map_or_else(String::new, |d| format!("`{d}`")),
            setting.description.unwrap_or_default().replace('|', "\\|"),
        )?;
    }
    writeln!(
        w,
        "\nThe JSON Schema (`policies/{name}/schema.json`; `repoint policy inspect \
         builtin:{name}` prints it too):\n\n```json\n{}\n```\n",
        schema_text.trim_end()
    )?;
    writeln!(w, "## Examples\n")?;
    writeln!(
        w,
        "The policy's test suite (`policies/{name}/repoint-test.yaml`), which CI runs with \
         `repoint test`: each case is an input and what the policy must make of it.\n\n\
         ```yaml\n{}\n```",
        suite.trim_end()
    )?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::about;

    #[test]
    fn the_module_doc_is_kept_whole() {
        let lib =
            "//! `mirror`: a policy. Images move\n//! to the mirror.\n//!\n//! More.\nuse x;\n";
        assert_eq!(
            about(lib, "mirror"),
            "A policy. Images move\nto the mirror.\n\nMore."
        );
        assert_eq!(about("//! No name first.\n", "mirror"), "No name first.");
    }
}
