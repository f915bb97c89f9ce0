//! Helpers for repoint's integration tests: where the shared test data is,
//! and how to run the built `repoint` binary.

use std::path::PathBuf;

/// The shared data directory (`../shared` beside the repository), or the
/// directory named by `REPOINT_SHARED_DIR`. Tests read the corpus and the
/// conformance table from here at run time; nothing is copied into the repo.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REPOINT_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let dir = repo.join("../shared");
    assert!(
        dir.join("corpus").is_dir(),
        "shared test data not found at {} (set REPOINT_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// The corpus files, sorted by name.
pub fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared_dir().join("corpus"))
        .expect("read corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}
