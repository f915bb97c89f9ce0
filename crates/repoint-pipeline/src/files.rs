//! Writing files so that nothing is ever half-written.

use std::io::Write;
use std::path::Path;

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
