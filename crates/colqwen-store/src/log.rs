//! The page log: `<dir>/pages.log`, the only file that holds pages. Append-only; a page written again or
//! deleted leaves a dead record that compaction drops later.
//!
//! ```text
//! header (64 bytes): "CQPGLOG\0", version u32, dim u32, element bytes u32, pad, committed u64, crc32 u32
//! record (starts 64-aligned): "CQPR", kind u8 (1 put, 2 delete), 3 pad, body_len u64, crc32 u32, meta_len u32,
//!                             meta (JSON), zero pad to a 64-aligned file offset, vectors; zero pad to 64
//! ```
//!
//! - A *put* carries one page: its metadata as JSON and its vectors in the kernel's block-transposed layout
//!   ([`crate::kernel::layout`]), f32, f16 or i8 (each block then ends with its 16 rows' f32 scales)
//!   little-endian, starting at a 64-aligned offset so the memory map can be read as a slice of elements; in a
//!   pooled index the vectors are followed by one `u32` label per original row (`pooled_from` in the
//!   metadata). A *delete* carries `{"ids": [...]}` and no vectors.
//! - `committed` in the header is the log length that the last flush made durable (data `fsync`ed first, then the
//!   header). On open, records below it are trusted (only headers and metadata are read, so opening 100k pages
//!   reads a few MB, not 20 GB); records beyond it are checked against their CRC-32 and the log is cut at the
//!   first torn or partial one: those are the unflushed writes of a killed process, which the contract of
//!   [`colqwen_core::PageIndex::flush`] allows to lose. A bad record *below* `committed` is damage, reported.
//! - Compaction writes the live records into a new file, syncs it and renames it over the log (one atomic
//!   step); readers that still map the old file keep reading it until they drop it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub(crate) const LOG_FILE: &str = "pages.log";
pub(crate) const COMPACT_FILE: &str = "pages.log.compact";
pub(crate) const VERSION: u32 = 1;
pub(crate) const ALIGN: u64 = 64;
const FILE_MAGIC: &[u8; 8] = b"CQPGLOG\0";
const RECORD_MAGIC: &[u8; 4] = b"CQPR";
pub(crate) const FILE_HEADER: u64 = 64;
const RECORD_HEADER: u64 = 24;
/// A record body above this size is not one we wrote (a page of 64k rows × 128 × f32 is 32 MiB).
const MAX_BODY: u64 = 1 << 31;
/// Metadata above this size is not one we wrote.
const MAX_META: u64 = 1 << 20;

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;

/// What the log says of one page (the vectors stay in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PageMeta {
    pub(crate) id: u64,
    pub(crate) doc_id: String,
    pub(crate) source_path: String,
    pub(crate) file_sha256: String,
    pub(crate) page_index: usize,
    pub(crate) page_count: usize,
    pub(crate) page_width_pt: f32,
    pub(crate) page_height_pt: f32,
    pub(crate) preview: Option<String>,
    /// Real rows (the stored block layout pads to a multiple of 16).
    pub(crate) rows: usize,
    /// Rows of the page before token pooling, when the index pools: the record's vectors are then followed by
    /// that many little-endian `u32` labels (the stored row that stands for each original row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pooled_from: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct DeleteMeta {
    ids: Vec<u64>,
}

/// One record found while scanning.
pub(crate) enum Entry {
    Put {
        meta: PageMeta,
        /// Where the record starts and how long it is (with padding): what compaction copies.
        record: (u64, u64),
        /// Where the vectors start, and their byte length.
        data: (u64, u64),
    },
    Delete {
        ids: Vec<u64>,
        record: (u64, u64),
    },
}

fn align(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// The fixed header of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHeader {
    pub(crate) dim: u32,
    pub(crate) elem_bytes: u32,
    pub(crate) committed: u64,
}

impl FileHeader {
    pub(crate) fn encode(&self) -> [u8; FILE_HEADER as usize] {
        let mut h = [0u8; FILE_HEADER as usize];
        h[..8].copy_from_slice(FILE_MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.dim.to_le_bytes());
        h[16..20].copy_from_slice(&self.elem_bytes.to_le_bytes());
        h[24..32].copy_from_slice(&self.committed.to_le_bytes());
        let crc = crc32fast::hash(&h[..32]);
        h[32..36].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// `Ok(None)`: the header is torn (its CRC fails); the caller then verifies every record.
    fn decode(h: &[u8; FILE_HEADER as usize], path: &Path) -> Result<(FileHeader, bool)> {
        if &h[..8] != FILE_MAGIC {
            return Err(Error::Damaged { dir: path.to_path_buf(), reason: "pages.log does not start with its magic" });
        }
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        if u32_at(8) != VERSION {
            return Err(Error::Damaged { dir: path.to_path_buf(), reason: "pages.log has an unknown version" });
        }
        let header = FileHeader {
            dim: u32_at(12),
            elem_bytes: u32_at(16),
            committed: u64::from_le_bytes(h[24..32].try_into().expect("8 bytes")),
        };
        let intact = crc32fast::hash(&h[..32]) == u32_at(32);
        Ok((header, intact))
    }
}

/// Creates an empty log (header only, synced).
pub(crate) fn create(path: &Path, dim: u32, elem_bytes: u32) -> Result<File> {
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(Error::io("creating page log", path))?;
    let header = FileHeader { dim, elem_bytes, committed: FILE_HEADER };
    file.write_all_at(&header.encode(), 0).map_err(Error::io("writing page log", path))?;
    file.sync_all().map_err(Error::io("syncing page log", path))?;
    Ok(file)
}

/// Records the durable length in the header (after the data itself was synced).
pub(crate) fn commit(file: &File, path: &Path, header: FileHeader) -> Result<()> {
    file.sync_data().map_err(Error::io("syncing page log", path))?;
    file.write_all_at(&header.encode(), 0).map_err(Error::io("writing page log header", path))?;
    file.sync_data().map_err(Error::io("syncing page log", path))
}

/// Encodes a put record; `vectors` is the stored layout, little-endian.
pub(crate) fn put_record(meta: &PageMeta, vectors: &[u8], at: u64, out: &mut Vec<u8>) {
    let meta = serde_json::to_vec(meta).expect("page metadata serialises");
    record(KIND_PUT, &meta, vectors, at, out);
}

/// Encodes a delete record.
pub(crate) fn delete_record(ids: &[u64], at: u64, out: &mut Vec<u8>) {
    let meta = serde_json::to_vec(&DeleteMeta { ids: ids.to_vec() }).expect("ids serialise");
    record(KIND_DELETE, &meta, &[], at, out);
}

/// Offset of the vectors of a put record that starts at `at` with `meta_len` bytes of metadata.
fn data_offset(at: u64, meta_len: u64) -> u64 {
    align(at + RECORD_HEADER + meta_len)
}

fn record(kind: u8, meta: &[u8], vectors: &[u8], at: u64, out: &mut Vec<u8>) {
    debug_assert_eq!(at % ALIGN, 0);
    let start = out.len();
    let meta_len = meta.len() as u64;
    let data_at = if vectors.is_empty() { at + RECORD_HEADER + meta_len } else { data_offset(at, meta_len) };
    let body_len = data_at + vectors.len() as u64 - (at + RECORD_HEADER);
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, below
    out.extend_from_slice(&(meta_len as u32).to_le_bytes());
    out.extend_from_slice(meta);
    out.resize(start + (data_at - at) as usize, 0);
    out.extend_from_slice(vectors);
    let crc = {
        let mut h = crc32fast::Hasher::new();
        h.update(&[kind]);
        h.update(&(meta_len as u32).to_le_bytes());
        h.update(&out[start + RECORD_HEADER as usize..]);
        h.finalize()
    };
    out[start + 16..start + 20].copy_from_slice(&crc.to_le_bytes());
    let end = align(at + RECORD_HEADER + body_len);
    out.resize(start + (end - at) as usize, 0);
}

/// Opens a log and reads every record (see the module docs for what is trusted and what is checked).
/// Returns the header and the valid length; the caller truncates the file to it if it is shorter.
pub(crate) fn scan(file: &mut File, path: &Path, mut each: impl FnMut(Entry)) -> Result<(FileHeader, u64)> {
    let damaged = |reason| Error::Damaged { dir: path.to_path_buf(), reason };
    let len = file.metadata().map_err(Error::io("reading page log", path))?.len();
    if len < FILE_HEADER {
        return Err(damaged("pages.log is shorter than its header"));
    }
    let mut h = [0u8; FILE_HEADER as usize];
    file.read_exact_at(&mut h, 0).map_err(Error::io("reading page log", path))?;
    let (header, intact) = FileHeader::decode(&h, path)?;
    let committed = if intact { header.committed } else { FILE_HEADER };
    if committed > len {
        return Err(damaged("pages.log is shorter than its last flush recorded"));
    }
    let mut at = FILE_HEADER;
    let mut rec = [0u8; RECORD_HEADER as usize];
    let mut body = Vec::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &*file);
    while at < len {
        let trusted = at < committed;
        let parsed = (|| -> Option<Entry> {
            if len - at < RECORD_HEADER {
                return None;
            }
            reader.seek(SeekFrom::Start(at)).ok()?;
            reader.read_exact(&mut rec).ok()?;
            if &rec[..4] != RECORD_MAGIC {
                return None;
            }
            let kind = rec[4];
            let body_len = u64::from_le_bytes(rec[8..16].try_into().ok()?);
            let crc = u32::from_le_bytes(rec[16..20].try_into().ok()?);
            let meta_len = u32::from_le_bytes(rec[20..24].try_into().ok()?) as u64;
            if body_len > MAX_BODY || meta_len > MAX_META || meta_len > body_len || at + RECORD_HEADER + body_len > len
            {
                return None;
            }
            // Trusted records: read the metadata only. Others: the whole body, checked.
            let read = if trusted { meta_len } else { body_len };
            body.resize(read as usize, 0);
            reader.read_exact(&mut body).ok()?;
            if !trusted {
                let mut hsh = crc32fast::Hasher::new();
                hsh.update(&[kind]);
                hsh.update(&(meta_len as u32).to_le_bytes());
                hsh.update(&body);
                if hsh.finalize() != crc {
                    return None;
                }
            }
            let meta = &body[..meta_len as usize];
            let record = (at, align(at + RECORD_HEADER + body_len) - at);
            match kind {
                KIND_PUT => {
                    let meta: PageMeta = serde_json::from_slice(meta).ok()?;
                    let data_at = data_offset(at, meta_len);
                    let data_len = at + RECORD_HEADER + body_len - data_at;
                    Some(Entry::Put { meta, record, data: (data_at, data_len) })
                }
                KIND_DELETE => {
                    let meta: DeleteMeta = serde_json::from_slice(meta).ok()?;
                    Some(Entry::Delete { ids: meta.ids, record })
                }
                _ => None,
            }
        })();
        match parsed {
            Some(entry) => {
                let (start, size) = match &entry {
                    Entry::Put { record, .. } | Entry::Delete { record, .. } => *record,
                };
                at = (start + size).min(len);
                each(entry);
            }
            None if trusted => return Err(damaged("a flushed record of pages.log is unreadable")),
            None => break,
        }
    }
    if at < len {
        tracing::warn!(
            log = %path.display(),
            bytes = len - at,
            "dropping the unflushed tail of the page log (a process stopped while writing)"
        );
    }
    Ok((header, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u64) -> PageMeta {
        PageMeta {
            id,
            doc_id: "d".into(),
            source_path: "a.pdf".into(),
            file_sha256: "s".into(),
            page_index: 0,
            page_count: 1,
            page_width_pt: 1.0,
            page_height_pt: 2.0,
            preview: None,
            rows: 3,
            pooled_from: None,
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let file = create(&path, 4, 2).unwrap();
        let mut buf = Vec::new();
        let mut at = FILE_HEADER;
        put_record(&meta(1), &[7u8; 100], at, &mut buf);
        at += buf.len() as u64;
        let first_end = at;
        let mut b2 = Vec::new();
        delete_record(&[1, 2], at, &mut b2);
        buf.extend_from_slice(&b2);
        file.write_all_at(&buf, FILE_HEADER).unwrap();
        commit(&file, &path, FileHeader { dim: 4, elem_bytes: 2, committed: first_end }).unwrap();
        // A torn record after the committed length: cut, not an error.
        let len = FILE_HEADER + buf.len() as u64;
        file.write_all_at(b"CQPR\x01\0\0\0", len).unwrap();
        drop(file);
        let mut file = File::options().read(true).write(true).open(&path).unwrap();
        let mut seen = Vec::new();
        let (header, valid) = scan(&mut file, &path, |e| seen.push(e)).unwrap();
        assert_eq!(header.committed, first_end);
        assert_eq!(valid, len);
        assert_eq!(seen.len(), 2);
        match &seen[0] {
            Entry::Put { meta: m, data, .. } => {
                assert_eq!(m, &meta(1));
                assert_eq!(data.0 % ALIGN, 0);
                assert_eq!(data.1, 100);
                let mut v = vec![0u8; 100];
                file.read_exact_at(&mut v, data.0).unwrap();
                assert_eq!(v, vec![7u8; 100]);
            }
            Entry::Delete { .. } => panic!("put expected"),
        }
        assert!(matches!(&seen[1], Entry::Delete { ids, .. } if ids == &[1, 2]));
        // A flipped byte inside the committed region is damage.
        file.write_all_at(b"X", FILE_HEADER + 30).unwrap();
        let err = scan(&mut file, &path, |_| {}).err().expect("damage is reported");
        assert!(matches!(err, Error::Damaged { .. }), "{err}");
    }
}
