//! Render pages of a PDF to PNG files (and a JPEG preview), at the size render_size
//! gives for a 602112-px target (for looking at).
//!
//!   cargo run --release --example render -- in.pdf out_dir [first_page last_page] [--password PW]

use std::path::PathBuf;

use colqwen_pdf::{Document, RenderLimits, encode_preview, render_size};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let password = args.iter().position(|a| a == "--password").map(|i| {
        let pw = args.get(i + 1).cloned().unwrap_or_default();
        args.drain(i..(i + 2).min(args.len()));
        pw
    });
    let (Some(input), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: render in.pdf out_dir [first_page last_page] [--password PW]");
        std::process::exit(2);
    };
    let doc = Document::open(&PathBuf::from(input), password.as_deref())?;
    let first: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let last: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(doc.page_count().saturating_sub(1));
    std::fs::create_dir_all(out)?;
    let limits = RenderLimits::default();
    for i in first..=last.min(doc.page_count().saturating_sub(1)) {
        let size = doc.page_size_pt(i)?;
        let (w, h) = render_size(size, 602_112, &limits);
        let img = doc.render_page(i, w, h)?;
        let path = PathBuf::from(out).join(format!("page-{i:04}.png"));
        img.save_with_format(&path, image::ImageFormat::Png)?;
        let jpeg = encode_preview(&img, 512, 80)?;
        std::fs::write(PathBuf::from(out).join(format!("page-{i:04}-preview.jpg")), jpeg)?;
        println!("{} {}x{} pt -> {w}x{h} px", path.display(), size.0, size.1);
    }
    Ok(())
}
