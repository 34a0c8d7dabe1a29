//! Free-space guard. qdrant-edge writes its WAL and vector storage through memory maps; on a full file system a
//! write into a mapped page kills the process with SIGBUS (no error to catch, seen on tmpfs even when merely
//! opening an index, which maps a fresh WAL segment). So the store checks the free space itself before any
//! operation that can grow a mapping and refuses with `NoSpace` instead: one clear error, the index intact.

use std::path::Path;

use crate::error::{Error, Result};

/// Room the engine may need beyond the data itself: a fresh WAL segment (32 MiB in qdrant's configuration),
/// twice, plus slack for segment metadata.
pub(crate) const HEADROOM_BYTES: u64 = 96 << 20;

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
