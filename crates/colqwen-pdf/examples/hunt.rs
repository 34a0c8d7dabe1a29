//! Looks for inputs that make hayro panic or hang (see NOTES.md).
//!
//!   cargo run --release --example hunt -- mutate [variants-per-file]
//!   cargo run --release --example hunt -- craft [case]
//!   cargo run --release --example hunt -- list
//!   cargo run --release --example hunt -- file a.pdf b.pdf ...
//!
//! Every open and render is contained (panic -> RenderPanicked, > budget -> RenderTimeout).
//! Run it under `ulimit -v` so that an allocation blow-up aborts only this process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use colqwen_pdf::{Document, Error, RenderLimits, contain, render_contained, render_size};
use image::RgbImage;

fn limits() -> RenderLimits {
    RenderLimits { time_budget: Duration::from_secs(10), max_hung_renders: 64, ..RenderLimits::default() }
}

/// Open (contained: opening parses the page tree) and render up to `max_pages` pages.
fn exercise(bytes: Vec<u8>, name: &str, max_pages: usize) -> Vec<String> {
    let mut findings = vec![];
    let l = limits();
    let name_owned = name.to_owned();
    // Opening is not contained by the library API; contain it here with the closure seam.
    let opened = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = opened.clone();
    let r = contain(Path::new(name), usize::MAX, &l, move || {
        let doc = Document::from_bytes(bytes, None, &name_owned);
        *slot.lock().unwrap() = Some(doc);
        Ok(RgbImage::new(1, 1))
    });
    if let Err(e @ (Error::RenderPanicked { .. } | Error::RenderTimeout { .. })) = r {
        findings.push(format!("OPEN {e}"));
        return findings;
    }
    let doc = match opened.lock().unwrap().take() {
        Some(Ok(doc)) => Arc::new(doc),
        Some(Err(_)) | None => return findings,
    };
    for page_index in 0..doc.page_count().min(max_pages) {
        let Ok(size) = doc.page_size_pt(page_index) else {
            continue;
        };
        let (w, h) = render_size(size, 602_112, &l);
        let t = Instant::now();
        match render_contained(&doc, page_index, w, h, &l) {
            Err(e @ (Error::RenderPanicked { .. } | Error::RenderTimeout { .. })) => {
                findings.push(format!("RENDER {e}"))
            }
            Err(e @ (Error::ImageTooLarge { .. } | Error::TooManyDashes { .. })) => {
                findings.push(format!("REFUSED {e}"))
            }
            _ => {
                let ms = t.elapsed().as_millis();
                if ms > 2000 {
                    findings.push(format!("SLOW {name} page {page_index}: {ms} ms"));
                }
            }
        }
    }
    findings
}

/// xorshift64*
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(per_file: usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pdfs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    files.sort();
    let interesting: &[&[u8]] = &[
        b"0",
        b"-1",
        b"99999999",
        b"1e38",
        b"-0",
        b"R",
        b"obj",
        b"<<",
        b">>",
        b"[",
        b"]",
        b"/Length 999999999",
        b"/Width 65535",
        b"/Height 65535",
        b"/BitsPerComponent 16",
        b"/Rotate 45",
        b"q",
        b"Q",
        b"cm",
        b"BI",
        b"EI",
        b"(",
        b")",
        b"\\",
        b"%",
        b"\0",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut total = 0;
    let started = Instant::now();
    for path in &files {
        let orig = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for v in 0..per_file {
            let mut b = orig.clone();
            match v % 4 {
                // random byte flips
                0 => {
                    for _ in 0..1 + rng.below(200) {
                        let i = rng.below(b.len());
                        b[i] = rng.next() as u8;
                    }
                }
                // splice interesting tokens in
                1 => {
                    for _ in 0..1 + rng.below(20) {
                        let i = rng.below(b.len());
                        let tok = interesting[rng.below(interesting.len())];
                        b.splice(i..(i + tok.len()).min(b.len()), tok.iter().copied());
                    }
                }
                // truncate, keeping the tail (so the xref survives)
                2 => {
                    let cut = rng.below(b.len());
                    let keep_tail = rng.below(2000).min(b.len() - cut);
                    let tail = b[b.len() - keep_tail..].to_vec();
                    b.truncate(cut);
                    b.extend(tail);
                }
                // duplicate a random block
                _ => {
                    let i = rng.below(b.len());
                    let n = rng.below(4096).min(b.len() - i);
                    let block = b[i..i + n].to_vec();
                    let j = rng.below(b.len());
                    b.splice(j..j, block);
                }
            }
            let label = format!("{name}#v{v}");
            for f in exercise(b, &label, 4) {
                println!("{f}");
            }
            total += 1;
        }
    }
    println!("mutate: {total} variants in {:.0?}", started.elapsed());
}

/// A minimal PDF with correct xref from object bodies (object i+1 = objs[i]).
fn pdf(objs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = vec![];
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).bytes());
        out.extend(o);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).bytes());
    for o in offsets {
        out.extend(format!("{o:010} 00000 n \n").bytes());
    }
    out.extend(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objs.len() + 1).bytes());
    out
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut v = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    v.extend(data);
    v.extend(b"\nendstream");
    v
}

/// Catalog + pages + one page with the given page-dict extras and content.
fn one_page(page_extra: &str, content: &[u8], more: Vec<Vec<u8>>) -> Vec<u8> {
    let mut objs = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R {page_extra} >>").into_bytes(),
        stream("", content),
    ];
    objs.extend(more);
    pdf(&objs)
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = vec![];
    // Form XObject fan-out: each level draws the next twice -> 2^depth draws.
    {
        let depth = 40;
        let mut more = vec![];
        for level in 0..depth {
            let next = 5 + level + 1;
            let body = if level + 1 < depth { format!("/X{next} Do /X{next} Do") } else { "0 0 1 1 re f".to_owned() };
            let res = if level + 1 < depth {
                format!("/Resources << /XObject << /X{next} {next} 0 R >> >>")
            } else {
                String::new()
            };
            more.push(stream(&format!("/Type /XObject /Subtype /Form /BBox [0 0 612 792] {res}"), body.as_bytes()));
        }
        v.push(("form-fanout-2^40", one_page("/Resources << /XObject << /X5 5 0 R >> >>", b"/X5 Do", more)));
    }
    // Self-referencing form (recursion).
    v.push((
        "form-self-recursion",
        one_page(
            "/Resources << /XObject << /X 5 0 R >> >>",
            b"/X Do",
            vec![stream(
                "/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /X 5 0 R >> >>",
                b"/X Do /X Do",
            )],
        ),
    ));
    // Tiny dash on a long line.
    v.push(("dash-1e-6", one_page("", b"[0.000001] 0 d 1 w 0 0 m 100000 100000 l S", vec![])));
    v.push(("dash-1e-3-long", one_page("", b"[0.001] 0 d 1 w 0 0 m 600 700 l 10 700 l 600 0 l S", vec![])));
    // Huge coordinates / widths.
    v.push(("coords-1e30", one_page("", b"0 0 m 1e30 1e30 l 1e30 0 1e-30 1 0 1e30 c f", vec![])));
    v.push(("stroke-width-1e30", one_page("", b"1e30 w 0 0 m 100 100 l S", vec![])));
    v.push((
        "curve-1e15",
        one_page("", b"0 0 m 1e15 -1e15 -1e15 1e15 300 300 c S 1e10 0 0 1e10 0 0 cm 0 0 m 1 1 l 1 0 l f", vec![]),
    ));
    // Many operations.
    {
        let mut c = Vec::new();
        for i in 0..2_000_000u32 {
            c.extend(format!("{} {} m {} {} l S\n", i % 600, i % 700, (i * 7) % 600, (i * 13) % 700).bytes());
        }
        v.push(("2M-strokes", one_page("", &c, vec![])));
    }
    // The same kind of overflow with few bytes: nested forms, 30 x 20 x 500 long strokes.
    {
        let c: Vec<u8> = "0 0 m 612 792 l S 612 0 m 0 792 l S\n".repeat(250).into_bytes();
        v.push((
            "alpha-overflow-forms",
            one_page(
                "/Resources << /XObject << /A 5 0 R >> >>",
                b"/A Do",
                vec![
                    stream(
                        "/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /B 6 0 R >> >>",
                        "/B Do ".repeat(30).as_bytes(),
                    ),
                    stream(
                        "/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /C 7 0 R >> >>",
                        "/C Do ".repeat(20).as_bytes(),
                    ),
                    stream("/Type /XObject /Subtype /Form /BBox [0 0 612 792]", &c),
                ],
            ),
        ));
    }
    // Absurd boxes.
    v.push(("mediabox-1e30", one_page("/MediaBox [0 0 1e30 1e30]", b"0 0 100 100 re f", vec![])));
    v.push(("mediabox-negative", one_page("/MediaBox [0 0 -612 -792]", b"0 0 100 100 re f", vec![])));
    v.push(("mediabox-tiny", one_page("/MediaBox [0 0 1e-9 1e-9]", b"0 0 100 100 re f", vec![])));
    v.push(("rotate-45", one_page("/Rotate 45", b"0 0 100 100 re f", vec![])));
    v.push(("rotate-huge", one_page("/Rotate 2147483647", b"0 0 100 100 re f", vec![])));
    v.push(("userunit-1e6", one_page("/UserUnit 1000000", b"0 0 100 100 re f", vec![])));
    // Huge image declared, tiny data.
    v.push((
        "image-65535sq-nodata",
        one_page(
            "/Resources << /XObject << /I 5 0 R >> >>",
            b"612 0 0 792 0 0 cm /I Do",
            vec![stream(
                "/Type /XObject /Subtype /Image /Width 65535 /Height 65535 /ColorSpace /DeviceRGB /BitsPerComponent 8",
                b"\xff\x00",
            )],
        ),
    ));
    v.push((
        "image-2e9-wide",
        one_page(
            "/Resources << /XObject << /I 5 0 R >> >>",
            b"612 0 0 792 0 0 cm /I Do",
            vec![stream("/Type /XObject /Subtype /Image /Width 2000000000 /Height 2000000000 /ColorSpace /DeviceGray /BitsPerComponent 1", b"\xff\x00")],
        ),
    ));
    v.push((
        "image-negative",
        one_page(
            "/Resources << /XObject << /I 5 0 R >> >>",
            b"612 0 0 792 0 0 cm /I Do",
            vec![stream(
                "/Type /XObject /Subtype /Image /Width -5 /Height 0 /ColorSpace /DeviceGray /BitsPerComponent 3",
                b"\xff\x00",
            )],
        ),
    ));
    // The same, reached through a form, as a soft mask, and inline, at 1 bit.
    v.push((
        "image-2e9-in-form",
        one_page(
            "/Resources << /XObject << /F 5 0 R >> >>",
            b"/F Do",
            vec![
                stream("/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /XObject << /I 6 0 R >> >>", b"612 0 0 792 0 0 cm /I Do"),
                stream("/Type /XObject /Subtype /Image /Width 2000000000 /Height 2000000000 /ColorSpace /DeviceGray /BitsPerComponent 1", b"\xff\x00"),
            ],
        ),
    ));
    v.push((
        "image-smask-2e9",
        one_page(
            "/Resources << /XObject << /I 5 0 R >> >>",
            b"612 0 0 792 0 0 cm /I Do",
            vec![
                stream("/Type /XObject /Subtype /Image /Width 10 /Height 10 /ColorSpace /DeviceGray /BitsPerComponent 8 /SMask 6 0 R", &[0x80; 100]),
                stream("/Type /XObject /Subtype /Image /Width 2000000000 /Height 2000000000 /ColorSpace /DeviceGray /BitsPerComponent 1", b"\xff\x00"),
            ],
        ),
    ));
    v.push((
        "inline-image-2e9-1bit",
        one_page("", b"q 100 0 0 100 0 0 cm BI /W 2000000000 /H 2000000000 /CS /G /BPC 1 ID \xff\xff EI Q", vec![]),
    ));
    v.push((
        "inline-image-60000-1bit",
        one_page("", b"q 100 0 0 100 0 0 cm BI /W 60000 /H 60000 /CS /G /BPC 1 ID \xff\xff EI Q", vec![]),
    ));
    // Inline image with absurd size.
    v.push((
        "inline-image-huge",
        one_page("", b"q 100 0 0 100 0 0 cm BI /W 60000 /H 60000 /CS /G /BPC 8 ID \xff\xff EI Q", vec![]),
    ));
    // Unbalanced graphics state / clip stack.
    {
        let mut c = Vec::new();
        for _ in 0..100_000 {
            c.extend(b"q 0 0 100 100 re W n ");
        }
        v.push(("100k-q-clips", one_page("", &c, vec![])));
    }
    v.push(("Q-underflow", one_page("", b"Q Q Q Q 0 0 1 1 re f Q Q", vec![])));
    // Shading with pathological function.
    v.push((
        "shading-sampled-huge",
        one_page(
            "/Resources << /Shading << /S 5 0 R >> >>",
            b"/S sh",
            vec![
                b"<< /ShadingType 2 /ColorSpace /DeviceRGB /Coords [0 0 612 792] /Function 6 0 R /Extend [true true] >>".to_vec(),
                stream("/FunctionType 0 /Domain [0 1] /Range [0 1 0 1 0 1] /Size [100000000] /BitsPerSample 32", b"\x00\x00"),
            ],
        ),
    ));
    v.push((
        "shading-postscript-loop",
        one_page(
            "/Resources << /Shading << /S 5 0 R >> >>",
            b"/S sh",
            vec![
                b"<< /ShadingType 1 /ColorSpace /DeviceRGB /Function 6 0 R >>".to_vec(),
                stream("/FunctionType 4 /Domain [0 1 0 1] /Range [0 1 0 1 0 1]", b"{ 1 1 100000 { pop } for dup dup }"),
            ],
        ),
    ));
    // Pattern recursion.
    v.push((
        "pattern-self",
        one_page(
            "/Resources << /Pattern << /P 5 0 R >> >>",
            b"/Pattern cs /P scn 0 0 612 792 re f",
            vec![stream(
                "/PatternType 1 /PaintType 1 /TilingType 1 /BBox [0 0 1 1] /XStep 0.01 /YStep 0.01 /Resources << /Pattern << /P 5 0 R >> >>",
                b"/Pattern cs /P scn 0 0 1 1 re f",
            )],
        ),
    ));
    v.push((
        "pattern-tiny-step",
        one_page(
            "/Resources << /Pattern << /P 5 0 R >> >>",
            b"/Pattern cs /P scn 0 0 612 792 re f",
            vec![stream(
                "/PatternType 1 /PaintType 1 /TilingType 1 /BBox [0 0 1 1] /XStep 0.0001 /YStep 0.0001",
                b"0 0 0.5 0.5 re f",
            )],
        ),
    ));
    // Page tree loop.
    v.push((
        "pagetree-loop",
        pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>".to_vec(),
        ]),
    ));
    // Deeply nested arrays in content.
    {
        let mut c = vec![b'['; 200_000];
        c.extend(vec![b']'; 200_000]);
        v.push(("nested-arrays-200k", one_page("", &c, vec![])));
        let mut d = b"<< /A ".to_vec();
        for _ in 0..100_000 {
            d.extend(b"<< /A ");
        }
        v.push(("nested-dicts-100k", pdf(&[d, b"<< /Type /Pages /Kids [] /Count 0 >>".to_vec()])));
    }
    // Reference chain: object n -> n+1 -> ... (indirect length)
    {
        let mut objs = vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox 4 0 R >>".to_vec(),
        ];
        for i in 0..50_000 {
            objs.push(format!("{} 0 R", 5 + i).into_bytes());
        }
        objs.push(b"[0 0 612 792]".to_vec());
        v.push(("ref-chain-50k", pdf(&objs)));
        let objs = vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox 4 0 R >>".to_vec(),
            b"5 0 R".to_vec(),
            b"4 0 R".to_vec(),
        ];
        v.push(("ref-cycle", pdf(&objs)));
    }
    // Text with a huge font size and Type3 recursion.
    v.push((
        "text-size-1e9",
        one_page(
            "/Resources << /Font << /F 5 0 R >> >>",
            b"BT /F 1e9 Tf 0 0 Td (Hello) Tj ET",
            vec![b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec()],
        ),
    ));
    v.push((
        "type3-recursive",
        one_page("/Resources << /Font << /F 5 0 R >> >>", b"BT /F 12 Tf 100 100 Td (AAAA) Tj ET", vec![
            b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 1 1] /FontMatrix [0.001 0 0 0.001 0 0] /CharProcs << /a 6 0 R >> /Encoding << /Differences [65 /a] >> /FirstChar 65 /LastChar 65 /Widths [1000] /Resources << /Font << /F 5 0 R >> >> >>".to_vec(),
            stream("", b"1000 0 d0 BT /F 12 Tf (AA) Tj ET 0 0 1000 1000 re f"),
        ]),
    ));
    v
}

fn craft(which: Option<&str>) {
    for (name, bytes) in cases() {
        if which.is_some_and(|w| w != name) {
            continue;
        }
        let t = Instant::now();
        let findings = exercise(bytes, name, 2);
        println!(
            "{name}: {:.0?} {}",
            t.elapsed(),
            if findings.is_empty() { "ok".into() } else { findings.join(" | ") }
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("mutate") => mutate(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100)),
        Some("craft") => craft(args.get(1).map(String::as_str)),
        Some("file") => {
            for p in &args[1..] {
                let t = Instant::now();
                let f = exercise(std::fs::read(p).unwrap(), p, 1000);
                println!("{p}: {:.0?} {}", t.elapsed(), if f.is_empty() { "ok".into() } else { f.join(" | ") });
            }
        }
        Some("write") => {
            for (name, bytes) in cases() {
                if args.get(1).is_some_and(|w| *w == name) {
                    std::fs::write(&args[2], bytes).unwrap();
                }
            }
        }
        Some("list") => cases().iter().for_each(|(n, _)| println!("{n}")),
        _ => eprintln!("usage: hunt mutate [n] | hunt craft [case] | hunt list"),
    }
}
