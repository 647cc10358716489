//! Reading a small configuration file (PEM, YAML) that someone else controls the path of.
//!
//! `std::fs::read` on the wrong kind of file never returns: a FIFO blocks in `open` until a
//! writer appears (a hung secret mount looks the same), `/dev/zero` is read until memory runs out.
//! Here the file is opened without blocking, must be a regular file, and is read up to a size
//! bound; each refusal is an error naming what the file is.

use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest PEM or YAML file the process reads: far above any real certificate chain or
/// configuration, far below what would hurt.
pub const MAX_SMALL_FILE_BYTES: u64 = 4 << 20;

/// The contents of the regular file at `path`, at most `max_bytes` long.
pub fn read_small_file(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer; it
    // changes nothing for a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({what})"),
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {max_bytes} bytes allowed"),
        )
    };
    if metadata.len() > max_bytes {
        return Err(too_large());
    }
    let mut contents = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // The file may grow after the look at its size.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::read_small_file;

    #[test]
    fn regular_files_are_read_and_everything_else_refused() {
        let dir = std::env::temp_dir().join(format!("meshsync-small-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("a.pem");
        std::fs::write(&file, b"hello").expect("write");
        assert_eq!(read_small_file(&file, 5).expect("read"), b"hello");
        let err = read_small_file(&file, 4).expect_err("too large");
        assert!(err.to_string().contains("larger than the 4 bytes"), "{err}");
        let err = read_small_file(std::path::Path::new("/dev/zero"), 4).expect_err("device");
        assert!(err.to_string().contains("a device"), "{err}");
        let err = read_small_file(&dir, 4).expect_err("directory");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
        // SAFETY: mkfifo reads one NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_small_file(&fifo, 4).expect_err("fifo");
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
