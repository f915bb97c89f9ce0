//! Writing files so that nothing is ever half-written: one file
//! atomically ([`atomic_write`]), or a set of files all or nothing
//! ([`stage`] each, then [`commit`]).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `text` through a temporary file beside `path`, then rename it over
/// `path`: a reader sees the old file or the new one, never a mix. `mode`
/// sets the new file's permissions (Unix); `None` keeps the replaced file's.
pub fn atomic_write(path: &Path, text: &str, mode: Option<u32>) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    match mode {
        #[cfg(unix)]
        Some(mode) => {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        Some(_) => {}
        None => {
            if let Ok(meta) = std::fs::metadata(path) {
                tmp.as_file().set_permissions(meta.permissions())?;
            }
        }
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// [`atomic_write`], creating the directories above `path` first; errors
/// name the path.
pub fn atomic_write_creating_dirs(path: &Path, text: &str, mode: u32) -> crate::Result<()> {
    use crate::Error;
    if let Some(parent) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::write("creating", parent, e))?;
    }
    atomic_write(path, text, Some(mode)).map_err(|e| Error::write("writing", path, e))
}

/// A file's new text, written and synced beside it, not yet in its place.
#[derive(Debug)]
pub struct Staged {
    /// The path as the user named it.
    named: PathBuf,
    /// The file itself (a symbolic link resolved).
    target: PathBuf,
    temp: tempfile::NamedTempFile,
    /// The text it had, to put back if a later file cannot be written.
    original: String,
}

/// Why rewriting files did not happen, or not wholly.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// A file could not be staged; nothing was written.
    #[error("{}: {why}; nothing was written", named.display())]
    Stage {
        named: PathBuf,
        why: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// A staged file could not be put in place; the files before it were
    /// put back as they were (`restored`), or could not be (`written`).
    #[error("{}: cannot be replaced, so {}", failed.display(), outcome(written, restored))]
    Commit {
        failed: PathBuf,
        #[source]
        source: std::io::Error,
        written: Vec<PathBuf>,
        restored: Vec<PathBuf>,
    },
}

fn outcome(written: &[PathBuf], restored: &[PathBuf]) -> String {
    let list = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (written.is_empty(), restored.is_empty()) {
        (true, true) => "nothing was written".into(),
        (true, false) => format!(
            "nothing was written ({} put back as it was)",
            list(restored)
        ),
        (false, _) => format!(
            "these files WERE rewritten and could not be put back: {}",
            list(written)
        ),
    }
}

/// Write `text` beside the file `named` (through a symbolic link, beside
/// its target), synced, with the file's mode, owner and group, ready to
/// replace it. A file with other hard links is refused: replacing it
/// would leave the other names with the old text.
pub fn stage(named: &Path, text: &str, original: &str) -> Result<Staged, RewriteError> {
    let fail = |why: &str, source: Option<std::io::Error>| RewriteError::Stage {
        named: named.to_path_buf(),
        why: why.to_string(),
        source,
    };
    let target = named
        .canonicalize()
        .map_err(|e| fail("cannot resolve it", Some(e)))?;
    let meta = std::fs::metadata(&target).map_err(|e| fail("cannot read its metadata", Some(e)))?;
    if !meta.is_file() {
        return Err(fail("not a regular file; --in-place rewrites files", None));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(fail(
                &format!(
                    "it has {} hard links, which rewriting it would break; rewrite a copy",
                    meta.nlink()
                ),
                None,
            ));
        }
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| fail("cannot create a file beside it", Some(e)))?;
    let written = temp
        .write_all(text.as_bytes())
        .and_then(|()| temp.as_file().set_permissions(meta.permissions()));
    written.map_err(|e| fail("cannot write beside it", Some(e)))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::fchown(temp.as_file(), Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| fail("cannot keep its owner and group", Some(e)))?;
    }
    temp.as_file()
        .sync_all()
        .map_err(|e| fail("cannot sync the new text", Some(e)))?;
    Ok(Staged {
        named: named.to_path_buf(),
        target,
        temp,
        original: original.to_string(),
    })
}

/// Put every staged file in place, in order; returns the paths written.
/// If one cannot be, those already in place get their old text back, and
/// the error says which files, if any, remain rewritten.
pub fn commit(staged: Vec<Staged>) -> Result<Vec<PathBuf>, RewriteError> {
    let mut done: Vec<(PathBuf, PathBuf, String)> = Vec::new();
    for file in staged {
        let Staged {
            named,
            target,
            temp,
            original,
        } = file;
        if let Err(e) = temp.persist(&target) {
            let mut written = Vec::new();
            let mut restored = Vec::new();
            for (named, target, original) in done.into_iter().rev() {
                match stage(&target, &original, "").and_then(|s| {
                    s.temp.persist(&s.target).map_err(|e| RewriteError::Stage {
                        named: target.clone(),
                        why: "cannot put it back".into(),
                        source: Some(e.error),
                    })
                }) {
                    Ok(_) => restored.push(named),
                    Err(_) => written.push(named),
                }
            }
            return Err(RewriteError::Commit {
                failed: named,
                source: e.error,
                written,
                restored,
            });
        }
        sync_dir(&target);
        done.push((named, target, original));
    }
    Ok(done.into_iter().map(|(named, _, _)| named).collect())
}

/// Make a rename durable: sync the directory that holds it (best effort;
/// not every platform can open a directory).
fn sync_dir(file: &Path) {
    if let Some(dir) = file.parent()
        && let Ok(handle) = std::fs::File::open(dir)
    {
        let _ = handle.sync_all();
    }
}

/// Replace the directory `dir` with exactly `files` (paths relative to it,
/// `/`-separated): the new tree is written and synced beside `dir`, then
/// renamed into its place, so a reader finds the old set of files or the
/// new one, never a mix, and files the previous run wrote but this one
/// does not are gone. `marker` is a file kept in the directory to show
/// that repoint made it: an existing directory without it (and not empty)
/// is refused, never replaced.
pub fn write_directory(dir: &Path, marker: &str, files: &[(&str, &str)]) -> crate::Result<()> {
    use crate::Error;
    let refuse = |why: &str| {
        Err(Error::Overlay(format!(
            "{} {why}; choose another directory",
            dir.display()
        )))
    };
    let exists = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !dir.join(marker).is_file() {
                return refuse("exists and was not written by repoint");
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return refuse("is not a directory");
        }
        Err(e) => return Err(Error::write("reading", dir, e)),
    };
    let parent = dir
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::write("creating", parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".repoint-new-")
        .tempdir_in(parent)
        .map_err(|e| Error::write("creating a directory in", parent, e))?;
    let marked = std::iter::once((marker, ""));
    for (relative, text) in files.iter().copied().chain(marked) {
        let path = staging.path().join(relative);
        atomic_write_creating_dirs(&path, text, 0o644)?;
    }
    if exists {
        let old = tempfile::Builder::new()
            .prefix(".repoint-old-")
            .tempdir_in(parent)
            .map_err(|e| Error::write("creating a directory in", parent, e))?;
        let aside = old.path().join("previous");
        std::fs::rename(dir, &aside).map_err(|e| Error::write("moving aside", dir, e))?;
        if let Err(e) = std::fs::rename(staging.path(), dir) {
            // Put the old tree back: the run fails with it intact.
            let _ = std::fs::rename(&aside, dir);
            return Err(Error::write("replacing", dir, e));
        }
        let _ = staging.keep();
    } else {
        std::fs::rename(staging.path(), dir).map_err(|e| Error::write("creating", dir, e))?;
        let _ = staging.keep();
    }
    sync_dir(dir);
    Ok(())
}
