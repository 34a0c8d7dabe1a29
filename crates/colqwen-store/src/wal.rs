//! Keeps qdrant-edge 0.7's write-ahead log bounded.
//!
//! qdrant-edge 0.7.0 appends every update to `shard/wal/` (CBOR, ~1.2× the raw vectors) but never
//! acknowledges or truncates it, and never replays it on load (durability comes from the segment
//! flush). Left alone, the WAL grows without bound. Its entry numbers are the operation versions
//! stored with each point, so they must keep increasing: we delete all `closed-<start>` files but
//! the newest one, exactly what the WAL's own `prefix_truncate` (retain 1) does, which keeps the
//! numbering. Only ever run while no `EdgeShard` has the directory open (we hold `LOCK`).

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// `Store::flush` closes, compacts and reopens the shard when closed WAL files exceed this.
pub(crate) const COMPACT_AT_BYTES: u64 = 1 << 30;

fn closed_segments(shard_dir: &Path) -> Result<Vec<(u64, std::path::PathBuf, u64)>> {
    let wal_dir = shard_dir.join("wal");
    let entries = match fs::read_dir(&wal_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", &wal_dir)(e)),
    };
    let mut closed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io("listing", &wal_dir))?;
        let name = entry.file_name();
        let Some(start) = name.to_str().and_then(|n| n.strip_prefix("closed-")).and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        closed.push((start, entry.path(), len));
    }
    closed.sort_by_key(|c| c.0);
    Ok(closed)
}

/// Bytes in closed WAL segments (0 if unreadable).
pub(crate) fn closed_bytes(shard_dir: &Path) -> u64 {
    closed_segments(shard_dir).map(|c| c.iter().map(|s| s.2).sum()).unwrap_or(0)
}

/// Deletes every closed WAL segment except the newest. Returns the bytes freed. Does nothing
/// while anything holds the WAL's own flock (the shard is open somewhere).
pub(crate) fn compact(shard_dir: &Path) -> Result<u64> {
    let wal_dir = shard_dir.join("wal");
    let wal_lock = match fs::File::open(&wal_dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("opening", &wal_dir)(e)),
    };
    match wal_lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(0),
        Err(fs::TryLockError::Error(e)) => return Err(Error::io("locking", &wal_dir)(e)),
    }
    let closed = closed_segments(shard_dir)?;
    let mut freed = 0;
    if closed.len() > 1 {
        for (_, path, len) in &closed[..closed.len() - 1] {
            fs::remove_file(path).map_err(Error::io("removing old WAL segment", path))?;
            freed += len;
        }
        tracing::debug!(dir = %shard_dir.display(), removed = closed.len() - 1, freed, "compacted WAL");
    }
    Ok(freed)
}
