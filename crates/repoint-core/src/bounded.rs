//! Reads that cannot grow without bound: an input, a policy module or a
//! helper's answer is read to a limit, and one that is larger is an error
//! naming the limit, read no further (`/dev/zero`, an endless pipe).

use std::io::Read;
use std::path::Path;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It is larger than the limit.
    #[error("larger than {limit} bytes (the limit; it can be raised)")]
    TooLarge { limit: u64 },
    /// Not a regular file where only one will do (a FIFO would block
    /// forever, a device never end).
    #[error("not a regular file")]
    NotRegular,
    /// The read itself failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Everything `reader` gives, up to `limit` bytes.
pub fn read_to_limit(reader: impl Read, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// A file's bytes, up to `limit`. Pipes are read (process substitution
/// hands `/dev/fd/N` over), to the same bound.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path)?;
    // A regular file larger than the limit fails before it is read.
    if let Ok(meta) = file.metadata()
        && meta.is_file()
        && meta.len() > limit
    {
        return Err(ReadError::TooLarge { limit });
    }
    read_to_limit(file, limit)
}

/// A regular file's bytes, up to `limit`; anything else (a FIFO, a device,
/// a directory) is refused before it is opened.
pub fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(ReadError::NotRegular);
    }
    read_file(path, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_limit() {
        assert_eq!(read_to_limit(&b"abc"[..], 3).expect("fits"), b"abc");
        assert!(matches!(
            read_to_limit(std::io::repeat(0), 1 << 10),
            Err(ReadError::TooLarge { limit: 1024 })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_bounded_and_not_regular() {
        let zero = Path::new("/dev/zero");
        assert!(matches!(
            read_file(zero, 1 << 16),
            Err(ReadError::TooLarge { .. })
        ));
        assert!(matches!(
            read_regular_file(zero, 1 << 16),
            Err(ReadError::NotRegular)
        ));
    }
}
