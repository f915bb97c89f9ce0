//! Each crate's `//!` doc says which repoint crates it depends on, and it
//! says it truly: the "Depends on" paragraph names every repoint crate in
//! the crate's `[dependencies]` and no other (`cargo tree -e normal -p
//! CRATE --depth 1` lists the same).

use std::collections::BTreeSet;

use repoint_tests::repo_root;

/// The repoint crates in `[dependencies]` of a Cargo.toml.
fn normal_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut in_dependencies = false;
    let mut found = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies && line.starts_with("repoint-") {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            found.insert(name.to_string());
        }
    }
    found
}

/// The repoint crates the doc's "Depends on" paragraph names.
fn documented_dependencies(source: &str) -> Option<BTreeSet<String>> {
    let doc: Vec<&str> = source
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .collect();
    let start = doc.iter().position(|l| l.contains("Depends on"))?;
    let first = &doc[start][doc[start].find("Depends on")?..];
    let paragraph = std::iter::once(first)
        .chain(
            doc[start + 1..]
                .iter()
                .take_while(|l| !l.is_empty())
                .copied(),
        )
        .collect::<Vec<_>>()
        .join(" ");
    Some(
        paragraph
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("repoint-") && w.len() > "repoint-".len())
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn every_crate_says_what_it_depends_on() {
    let crates = repo_root().join("crates");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let dir = entry.expect("entry").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        // The binary's doc is in main.rs; its library is only the
        // command-line definition.
        let root = if name == "repoint-cli" {
            "src/main.rs"
        } else {
            "src/lib.rs"
        };
        let source = std::fs::read_to_string(dir.join(root)).expect("crate root");
        let documented = documented_dependencies(&source)
            .unwrap_or_else(|| panic!("{name}/{root} has no \"Depends on\" paragraph"));
        assert_eq!(
            documented,
            normal_dependencies(&manifest),
            "{name}: the doc's \"Depends on\" against Cargo.toml's [dependencies]"
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} crates found");
}
