//! Free-space guard. The page log is written with `write` (a full disk is an `ENOSPC` error, not a SIGBUS as with
//! writes into memory maps) and a torn record is cut on the next open; still, the store checks the free space
//! before every write so that a full disk stops an ingest between batches with one clear `NoSpace` error, with
//! room left for the rest of the index folder (previews, job files, the coarse stage).

use std::path::Path;

use crate::error::{Error, Result};

/// Room kept free beyond the data being written: `coarse.bin` rewrites, job files, previews of the batch.
pub(crate) const HEADROOM_BYTES: u64 = 8 << 20;

/// Bytes available to this process on the file system of `dir`; `None` where it cannot be asked.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        (rc == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Refuses `op` unless `need` bytes plus the engine's headroom are free on the file system of `dir`.
pub(crate) fn ensure(dir: &Path, need: u64, op: &'static str) -> Result<()> {
    match free_bytes(dir) {
        Some(free) if free < need.saturating_add(HEADROOM_BYTES) => Err(Error::NoSpace { op, path: dir.to_path_buf() }),
        _ => Ok(()),
    }
}
