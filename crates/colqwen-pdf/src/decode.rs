//! Measuring how large a stream decodes, without holding its output.
//!
//! hayro 0.9 decodes streams into one `Vec` with no size cap (its `FlateDecode` is a
//! port of pdf.js's inflater), so a few MB of Flate data that inflate to gigabytes
//! exhaust memory before anything can stop them. Before a contained render, every stream
//! the page uses is decoded here with a limit: the data filters (`FlateDecode`,
//! `LZWDecode`, `RunLengthDecode`, `ASCIIHexDecode`, `ASCII85Decode`, in a chain) are
//! run, the last stage's output is only counted (a 32 KiB window for Flate), earlier
//! stages' output is kept (it is the next stage's input) up to the limit, and decoding
//! stops as soon as the limit is passed. Image codecs (`DCTDecode`, `JPXDecode`,
//! `JBIG2Decode`, `CCITTFaxDecode`) end the chain: their output is bounded by the image
//! size checks instead.

use hayro::hayro_syntax::Filter;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

/// Result of measuring a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Measured {
    /// Decoded bytes (of the last data filter; the raw length if there is none).
    pub(crate) bytes: u64,
    /// False if measuring stopped because `bytes` passed the limit.
    pub(crate) complete: bool,
}

/// Where decoded bytes go: counted only, or kept (for the next filter).
trait Sink {
    /// Take `bytes`; false once the limit is passed.
    fn put(&mut self, bytes: &[u8]) -> bool;
}

struct Count {
    n: u64,
    limit: u64,
}

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) -> bool {
        self.n += bytes.len() as u64;
        self.n <= self.limit
    }
}

struct Keep {
    out: Vec<u8>,
    limit: u64,
}

impl Sink for Keep {
    fn put(&mut self, bytes: &[u8]) -> bool {
        if (self.out.len() + bytes.len()) as u64 > self.limit {
            return false;
        }
        self.out.extend_from_slice(bytes);
        true
    }
}

/// Measure `raw` decoded through `filters` (`lzw_early_change[i]` for an LZW filter at
/// index i), stopping once more than `limit` bytes come out of any stage.
pub(crate) fn measure(raw: &[u8], filters: &[Filter], lzw_early_change: &[bool], limit: u64) -> Measured {
    let data_filters: Vec<(usize, Filter)> = filters
        .iter()
        .copied()
        .enumerate()
        .take_while(|(_, f)| {
            !matches!(f, Filter::DctDecode | Filter::JpxDecode | Filter::Jbig2Decode | Filter::CcittFaxDecode)
        })
        .filter(|(_, f)| *f != Filter::Crypt)
        .collect();
    let mut input: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(raw);
    let last = data_filters.len().saturating_sub(1);
    for (k, &(i, filter)) in data_filters.iter().enumerate() {
        let early = lzw_early_change.get(i).copied().unwrap_or(true);
        if k == last {
            let mut sink = Count { n: 0, limit };
            let complete = run(filter, &input, early, &mut sink);
            return Measured { bytes: sink.n, complete };
        }
        let mut sink = Keep { out: Vec::new(), limit };
        if !run(filter, &input, early, &mut sink) {
            return Measured { bytes: sink.out.len() as u64, complete: false };
        }
        input = std::borrow::Cow::Owned(sink.out);
    }
    Measured { bytes: input.len() as u64, complete: true }
}

/// Run one filter; false if the sink refused more output.
fn run(filter: Filter, data: &[u8], lzw_early_change: bool, sink: &mut dyn Sink) -> bool {
    match filter {
        Filter::FlateDecode => inflate(data, sink),
        Filter::LzwDecode => lzw(data, lzw_early_change, sink),
        Filter::RunLengthDecode => run_length(data, sink),
        Filter::AsciiHexDecode => ascii_hex(data, sink),
        Filter::Ascii85Decode => ascii85(data, sink),
        // Image codecs and Crypt are filtered out by `measure`.
        _ => true,
    }
}

/// zlib-wrapped if the header is valid, raw deflate otherwise (as hayro does). A
/// damaged stream counts what was inflated before the damage.
fn inflate(data: &[u8], sink: &mut dyn Sink) -> bool {
    let zlib = data.len() >= 2
        && data[0] & 0x0f == 8
        && (u16::from(data[0]) << 8 | u16::from(data[1])).is_multiple_of(31)
        && data[1] & 0x20 == 0;
    let flags =
        if zlib { inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER | inflate_flags::TINFL_FLAG_IGNORE_ADLER32 } else { 0 };
    let mut state = Box::<DecompressorOxide>::default();
    let mut window = vec![0u8; 64 * 1024];
    let (mut in_pos, mut out_pos) = (0usize, 0usize);
    loop {
        let (status, read, written) = decompress(&mut state, &data[in_pos..], &mut window, out_pos, flags);
        in_pos += read;
        if written > 0 && !sink.put(&window[out_pos..out_pos + written]) {
            return false;
        }
        out_pos = (out_pos + written) & (window.len() - 1);
        match status {
            TINFLStatus::HasMoreOutput => {}
            _ => return true,
        }
    }
}

fn lzw(data: &[u8], early_change: bool, sink: &mut dyn Sink) -> bool {
    const CLEAR: usize = 256;
    const EOD: usize = 257;
    // Table entries 258..4096: (prefix code, last byte, length).
    let mut prefix = vec![0u16; 4096];
    let mut last = vec![0u8; 4096];
    let mut len = vec![0u16; 4096];
    for c in 0..256 {
        last[c] = c as u8;
        len[c] = 1;
    }
    let mut next = 258usize;
    let mut width = 9u32;
    let mut prev: Option<usize> = None;
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut buf = vec![0u8; 4096];
    let early = usize::from(early_change);
    let mut bytes = data.iter();
    loop {
        while bits < width {
            let Some(&b) = bytes.next() else { return true };
            acc = (acc << 8) | u32::from(b);
            bits += 8;
        }
        let code = ((acc >> (bits - width)) & ((1 << width) - 1)) as usize;
        bits -= width;
        acc &= (1 << bits) - 1;
        if code == CLEAR {
            next = 258;
            width = 9;
            prev = None;
            continue;
        }
        if code == EOD {
            return true;
        }
        // The string for `code` (for code == next: prev's string + its first byte).
        let (emit_code, extra) = if code < next {
            (code, None)
        } else if code == next
            && let Some(p) = prev
        {
            (p, Some(()))
        } else {
            return true; // invalid code: hayro stops there too
        };
        let n = usize::from(len[emit_code]);
        let mut c = emit_code;
        for k in (0..n).rev() {
            buf[k] = last[c];
            c = usize::from(prefix[c]);
        }
        let first = buf[0];
        let mut out_len = n;
        if extra.is_some() {
            buf[n] = first;
            out_len += 1;
        }
        if !sink.put(&buf[..out_len]) {
            return false;
        }
        if let Some(p) = prev
            && next < 4096
        {
            prefix[next] = p as u16;
            last[next] = first;
            len[next] = len[p].saturating_add(1).min(4095);
            next += 1;
        }
        prev = Some(code);
        width = match next + early {
            n if n >= 2048 => 12,
            n if n >= 1024 => 11,
            n if n >= 512 => 10,
            _ => 9,
        };
    }
}

fn run_length(data: &[u8], sink: &mut dyn Sink) -> bool {
    let mut i = 0;
    while i < data.len() {
        let l = usize::from(data[i]);
        i += 1;
        match l {
            0..=127 => {
                let end = (i + l + 1).min(data.len());
                if !sink.put(&data[i..end]) {
                    return false;
                }
                i = end;
            }
            128 => return true,
            _ => {
                let Some(&b) = data.get(i) else { return true };
                if !sink.put(&[b; 128][..257 - l]) {
                    return false;
                }
                i += 1;
            }
        }
    }
    true
}

fn ascii_hex(data: &[u8], sink: &mut dyn Sink) -> bool {
    let mut out = Vec::with_capacity(data.len() / 2 + 1);
    let mut hi: Option<u8> = None;
    for &b in data {
        if b == b'>' {
            break;
        }
        let Some(v) = (b as char).to_digit(16) else { continue };
        match hi.take() {
            None => hi = Some(v as u8),
            Some(h) => out.push(h << 4 | v as u8),
        }
    }
    if let Some(h) = hi {
        out.push(h << 4);
    }
    sink.put(&out)
}

fn ascii85(data: &[u8], sink: &mut dyn Sink) -> bool {
    let mut out = Vec::with_capacity(data.len() * 4 / 5 + 4);
    let mut group = [0u8; 5];
    let mut n = 0;
    for &b in data {
        match b {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0; 4]),
            b'!'..=b'u' => {
                group[n] = b - b'!';
                n += 1;
                if n == 5 {
                    let v = group.iter().fold(0u64, |a, &d| a * 85 + u64::from(d));
                    out.extend_from_slice(&(v as u32).to_be_bytes());
                    n = 0;
                }
            }
            _ => {}
        }
    }
    if n > 1 {
        for slot in group.iter_mut().skip(n) {
            *slot = 84;
        }
        let v = group.iter().fold(0u64, |a, &d| a * 85 + u64::from(d));
        out.extend_from_slice(&(v as u32).to_be_bytes()[..n - 1]);
    }
    sink.put(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flate_counts_and_stops() {
        // 1 MiB of zeros, zlib-compressed by miniz.
        let z = miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; 1 << 20], 9);
        assert_eq!(measure(&z, &[Filter::FlateDecode], &[], 1 << 30), Measured { bytes: 1 << 20, complete: true });
        let m = measure(&z, &[Filter::FlateDecode], &[], 1000);
        assert!(!m.complete && m.bytes > 1000);
        // Two stages.
        let zz = miniz_oxide::deflate::compress_to_vec_zlib(&z, 9);
        let m = measure(&zz, &[Filter::FlateDecode, Filter::FlateDecode], &[], 1 << 30);
        assert_eq!(m, Measured { bytes: 1 << 20, complete: true });
        // Raw deflate.
        let raw = miniz_oxide::deflate::compress_to_vec(b"hello hello hello", 6);
        assert_eq!(measure(&raw, &[Filter::FlateDecode], &[], 100).bytes, 17);
    }

    #[test]
    fn lzw_example_from_the_spec() {
        // ISO 32000-1 7.4.4.2: "-----A---B" encodes as 80 0B 60 50 22 0C 0C 85 01.
        let data = [0x80, 0x0B, 0x60, 0x50, 0x22, 0x0C, 0x0C, 0x85, 0x01];
        let mut k = Keep { out: vec![], limit: 100 };
        assert!(lzw(&data, true, &mut k));
        assert_eq!(k.out, b"-----A---B");
    }

    #[test]
    fn small_filters() {
        let mut k = Keep { out: vec![], limit: 100 };
        assert!(run_length(&[2, b'a', b'b', b'c', 254, b'x', 128], &mut k));
        assert_eq!(k.out, b"abcxxx");
        let mut k = Keep { out: vec![], limit: 100 };
        assert!(ascii_hex(b"48 65 6c6C 6f7>", &mut k));
        assert_eq!(k.out, b"Hellop");
        let mut k = Keep { out: vec![], limit: 100 };
        assert!(ascii85(b"87cURD]i,\"Ebo80~>", &mut k));
        assert_eq!(k.out, b"Hello World!");
    }
}
