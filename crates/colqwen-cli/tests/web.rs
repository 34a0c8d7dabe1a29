//! The web page in a real browser: `colqwen serve` (the real binary, the tiny fixture model, real PDFs) driven
//! through chromedriver by a WebDriver client (fantoccini), so it runs inside `cargo test`. Uploads with
//! progress and a bad file's error, documents, search with result images, the page viewer with a similarity
//! overlay checked on the screenshot's pixels, a per-token map that differs from the aggregate, keyboard
//! navigation, delete with confirmation, the API-key prompt; the user's own file names (`été ü 日本.pdf`) kept
//! for display, a password field only for a protected PDF (never for a file that is no PDF), no internal upload
//! names or API words in messages, a duplicate upload shown as already stored, the viewer inside a 900-px-high
//! window, no button per padding token of the query, and a favicon. Screenshots of the main views go to
//! `target/tmp/web-screenshots/` (the best are committed under `docs/`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the test fails and
//! says so; a developer without a browser may set `COLQWEN_SKIP_BROWSER=1` to skip it (CI never sets it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use colqwen_testkit::fixtures_dir;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const GOOD: [&str; 2] = ["cplusplus-annotations_p125_table.pdf", "siscone-refman_p60_diagram.pdf"];
const BAD: &str = "html-saved-as.pdf";
/// The second good file is uploaded under this name: letters of several scripts and spaces.
const UNICODE_NAME: &str = "été ü 日本.pdf";
/// Window height the page must fit (the viewer with its controls and the page, nothing cut off).
const WINDOW_HEIGHT: u32 = 900;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The browser's binaries, or `None` when the developer opted out.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(var) {
            return Some(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
    };
    let driver = find("CHROMEDRIVER", &["chromedriver"]);
    let chrome = find("CHROME_BIN", &["chromium", "chromium-browser", "google-chrome"]);
    match (driver, chrome) {
        (Some(d), Some(c)) => Some((d, c)),
        _ if std::env::var_os("COLQWEN_SKIP_BROWSER").is_some_and(|v| v == "1") => {
            eprintln!("web test SKIPPED: COLQWEN_SKIP_BROWSER=1 and no chromium/chromedriver");
            None
        }
        _ => panic!(
            "the web page test needs a browser: install Debian's `chromium` and `chromium-driver` \
             (apt-get install chromium chromium-driver; .ci/run does), or point CHROME_BIN and CHROMEDRIVER at \
             them. Developers without a browser may set COLQWEN_SKIP_BROWSER=1 to skip this test."
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `colqwen serve` on an ephemeral loopback port; returns it and its URL once `/health` answers.
fn serve(index: &Path, key: Option<&str>) -> (Proc, String) {
    let (child, url) = colqwen_testkit::server::start(Path::new(env!("CARGO_BIN_EXE_colqwen")), index, &[], key);
    (Proc(child), url)
}

/// chromedriver on a free port, and a headless chromium session through it.
async fn start_browser(driver: &Path, chrome: &Path) -> (Proc, Client) {
    let port = free_port();
    let child = Proc(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display())),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chrome,
            // --no-sandbox: CI runs as root in a container, where chromium's sandbox cannot start.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--hide-scrollbars"],
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let conn = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(conn).capabilities(caps.clone()).connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(client) => return (child, client),
            Err(e) if Instant::now() > deadline => panic!("chromedriver did not give a browser session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Polls a JavaScript expression until it is truthy; returns its value.
async fn wait_for(c: &Client, what: &str, expr: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = c.execute(&format!("return ({expr});"), vec![]).await.unwrap();
        let truthy = match &v {
            Value::Null | Value::Bool(false) => false,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return v;
        }
        if Instant::now() > deadline {
            let page = c.execute("return document.body.innerText", vec![]).await.unwrap();
            panic!("timed out waiting for {what} ({expr}); the page says:\n{}", page.as_str().unwrap_or(""));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn save_shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

/// The viewer's image as the browser drew it (element screenshot), decoded.
async fn viewer_pixels(c: &Client) -> image::RgbImage {
    let png = c.find(Locator::Id("viewer-img")).await.unwrap().screenshot().await.unwrap();
    image::load_from_memory(&png).unwrap().to_rgb8()
}

/// Share of pixels with a clear hue (max − min channel > 40): the page previews are black-and-white text and
/// line art, the viridis overlay is blue–green–yellow.
fn coloured_share(img: &image::RgbImage) -> f64 {
    let n = img.pixels().filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 40).count();
    n as f64 / f64::from(img.width() * img.height()).max(1.0)
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    // Two shots of the one element can differ by a pixel of layout rounding: compare at one size.
    let resized;
    let b = if a.dimensions() == b.dimensions() {
        b
    } else {
        resized = image::imageops::resize(b, a.width(), a.height(), image::imageops::FilterType::Triangle);
        &resized
    };
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.as_raw().len() as f64
}

#[tokio::test(flavor = "current_thread")]
async fn web_page_in_a_real_browser() {
    let Some((driver, chrome)) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve(dir.path(), None);
    let (_driver, c) = start_browser(&driver, &chrome).await;

    // The page loads, with no document yet, and has an icon.
    c.goto(&format!("{url}/")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "colqwen — search your PDFs");
    wait_for(&c, "the empty document list", "!document.getElementById('documents-empty').hidden", 20).await;
    let icon = ureq::get(&format!("{url}/favicon.ico")).call().unwrap();
    assert_eq!(icon.headers()["content-type"], "image/x-icon");
    let icon_link = c.execute("return document.querySelector('link[rel=icon]').href", vec![]).await.unwrap();
    assert!(icon_link.as_str().unwrap().ends_with("/favicon.ico"), "{icon_link}");

    // Upload two PDFs (one under a name in several scripts) and a bad file at once (the file input takes
    // newline-separated paths).
    let named = tempfile::tempdir().unwrap();
    let renamed = named.path();
    std::fs::copy(fixtures_dir().join("pdfs").join(GOOD[1]), renamed.join(UNICODE_NAME)).unwrap();
    let shown_names = [GOOD[0], UNICODE_NAME];
    let mut files: Vec<PathBuf> = vec![fixtures_dir().join("pdfs").join(GOOD[0]), renamed.join(UNICODE_NAME)];
    files.push(fixtures_dir().join("bad-pdfs").join(BAD));
    let paths: Vec<String> = files.iter().map(|p| p.canonicalize().unwrap().display().to_string()).collect();
    c.find(Locator::Id("file-input")).await.unwrap().send_keys(&paths.join("\n")).await.unwrap();
    wait_for(&c, "three upload rows", "document.querySelectorAll('#uploads li').length === 3", 20).await;
    wait_for(
        &c,
        "both good uploads done and the bad one failed",
        "[...document.querySelectorAll('#uploads li')].filter(l => l.dataset.state === 'done').length === 2 && \
         document.querySelectorAll('#uploads li[data-state=error]').length === 1",
        120,
    )
    .await;
    let rows: Value = c
        .execute(
            "return [...document.querySelectorAll('#uploads li')].map(l => ({state: l.dataset.state, \
             text: l.innerText, value: l.querySelector('progress')?.value, max: l.querySelector('progress')?.max}))",
            vec![],
        )
        .await
        .unwrap();
    let rows = rows.as_array().unwrap();
    for r in rows.iter().filter(|r| r["state"] == "done") {
        // The progress bar of each good file is full and says how many pages were stored.
        assert_eq!(r["value"], r["max"], "{r}");
        assert!(r["text"].as_str().unwrap().contains(" stored"), "{r}");
    }
    let bad = rows.iter().find(|r| r["state"] == "error").unwrap();
    let bad_text = bad["text"].as_str().unwrap();
    assert!(bad_text.contains(BAD), "{bad}");
    assert!(bad_text.contains("not a PDF"), "the bad file's error is shown next to it: {bad}");
    // Not a PDF is not a protected PDF: no password field, and the message is the page's, not the API's.
    let password_fields =
        c.execute("return document.querySelectorAll('#uploads input[type=password]').length", vec![]).await.unwrap();
    assert_eq!(password_fields, json!(0), "a file that is no PDF gets no password field: {bad}");
    for word in ["00-", "`password`", "`file`", "field", "multipart", "upload name"] {
        assert!(!bad_text.contains(word), "the message names {word:?}: {bad_text}");
    }

    // The two documents appear in the list, under the names the user gave them.
    wait_for(&c, "two documents", "document.querySelectorAll('#documents tbody tr').length === 2", 20).await;
    let names: Value = c
        .execute(
            "return [...document.querySelectorAll('#documents tbody tr td:first-child')].map(t => t.innerText)",
            vec![],
        )
        .await
        .unwrap();
    let mut names: Vec<String> = names.as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    names.sort();
    let mut expected: Vec<String> = shown_names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "each document is listed by the name it was uploaded with");
    save_shot(&c, "upload-and-documents").await;

    // Search: result images come back; the page measures the time to the first result image.
    let started = Instant::now();
    c.find(Locator::Id("query")).await.unwrap().send_keys("table of annotations").await.unwrap();
    c.find(Locator::Css("#search-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let in_page = wait_for(&c, "a result image", "document.getElementById('results').dataset.firstResultMs", 60).await;
    let wall = started.elapsed();
    eprintln!("time to first result: {in_page} ms in the page (submit → first image drawn), {wall:?} from the test");
    let shown = wait_for(
        &c,
        "drawn result images",
        "[...document.querySelectorAll('#results img')].filter(i => i.complete && i.naturalWidth > 0).length",
        30,
    )
    .await;
    assert!(shown.as_u64().unwrap() >= 2, "both pages shown as results: {shown}");
    let alt = c.find(Locator::Css("#results img")).await.unwrap().attr("alt").await.unwrap().unwrap();
    assert!(alt.starts_with("Page 1 of ") && alt.ends_with(".pdf"), "alt text names document and page: {alt}");
    save_shot(&c, "search-results").await;

    // Keyboard navigation: the arrow key moves focus to the next result.
    c.execute("document.querySelector('.result').focus()", vec![]).await.unwrap();
    c.find(Locator::Css(".result")).await.unwrap().send_keys("\u{E014}").await.unwrap(); // ArrowRight
    let focused = c.execute("return document.activeElement.dataset.index", vec![]).await.unwrap();
    assert_eq!(focused, json!("1"), "ArrowRight moves to the second result");

    // Open the first result: the page with the aggregate similarity overlay.
    let inner = c.execute("return window.innerHeight", vec![]).await.unwrap();
    assert!(inner.as_u64().unwrap() <= u64::from(WINDOW_HEIGHT), "the window is {inner} px high");
    c.find(Locator::Css(".result[data-index='0']")).await.unwrap().click().await.unwrap();
    let loaded =
        "document.getElementById('viewer-img').complete && document.getElementById('viewer-img').naturalWidth > 0";
    wait_for(
        &c,
        "the aggregate overlay",
        &format!("document.getElementById('viewer-img').dataset.state === 'aggregate' && {loaded}"),
        30,
    )
    .await;
    let error = c.find(Locator::Id("viewer-error")).await.unwrap().text().await.unwrap();
    assert!(error.is_empty(), "the viewer shows an error: {error}");
    wait_for(&c, "the token list", "document.querySelectorAll('#token-list button').length > 2", 30).await;
    // The viewer fits the window: dialog, controls and the whole page image inside it, nothing to scroll.
    let fit: Value = c
        .execute(
            "const d = document.getElementById('viewer').getBoundingClientRect(); \
             const i = document.getElementById('viewer-img').getBoundingClientRect(); \
             const v = document.getElementById('viewer'); \
             return {dialog_top: d.top, dialog_bottom: d.bottom, img_top: i.top, img_bottom: i.bottom, \
                     img_height: i.height, window: window.innerHeight, scroll: v.scrollHeight - v.clientHeight};",
            vec![],
        )
        .await
        .unwrap();
    eprintln!("viewer in a {WINDOW_HEIGHT}-px window: {fit}");
    let f = |k: &str| fit[k].as_f64().unwrap();
    assert!(f("dialog_top") >= 0.0 && f("dialog_bottom") <= f("window"), "the viewer is cut off: {fit}");
    assert!(f("img_top") >= f("dialog_top") && f("img_bottom") <= f("dialog_bottom"), "the page is cut off: {fit}");
    assert!(f("img_height") >= 300.0, "the page is shown large: {fit}");
    assert!(f("scroll") <= 1.0, "the viewer scrolls: {fit}");
    let aggregate = viewer_pixels(&c).await;
    save_shot(&c, "viewer-overlay").await;

    // Overlay off: the plain preview. The overlay is really drawn: coloured pixels, and unlike the preview.
    c.find(Locator::Id("overlay-toggle")).await.unwrap().click().await.unwrap();
    wait_for(
        &c,
        "the plain preview",
        &format!("document.getElementById('viewer-img').dataset.state === 'preview' && {loaded}"),
        30,
    )
    .await;
    let plain = viewer_pixels(&c).await;
    let (with, without) = (coloured_share(&aggregate), coloured_share(&plain));
    let diff = mean_abs_diff(&aggregate, &plain);
    eprintln!("overlay: {:.1}% coloured pixels (preview {:.1}%), mean |Δ| {diff:.1}", with * 100.0, without * 100.0);
    assert!(with > 0.5 && without < 0.05, "the overlay colours the page ({with:.3} vs {without:.3})");
    assert!(diff > 20.0, "the overlay changes the picture (mean |Δ| {diff:.1})");

    // One query token's own map differs from the aggregate.
    c.find(Locator::Id("overlay-toggle")).await.unwrap().click().await.unwrap();
    wait_for(&c, "the token list", "document.querySelectorAll('#token-list button').length > 2", 30).await;
    // The query's padding (augmentation) tokens get no button: one per token of the query's text, plus the
    // aggregate, and a note saying the padding counts in the aggregate.
    let labels: Value = c
        .execute("return [...document.querySelectorAll('#token-list button')].map(b => b.innerText)", vec![])
        .await
        .unwrap();
    let labels: Vec<&str> = labels.as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let docs_now: Value = ureq::get(&format!("{url}/v1/documents")).call().unwrap().body_mut().read_json().unwrap();
    let some_doc = docs_now["documents"][0]["doc_id"].as_str().unwrap().to_string();
    let q: Value = ureq::get(&format!("{url}/v1/pages/{some_doc}/1/similarity?q=table%20of%20annotations&format=json"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let tokens: Vec<&str> = q["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let pads = tokens.iter().filter(|t| t.starts_with("<|") && t.ends_with("|>")).count();
    assert!(pads >= 10, "the query carries its augmentation tokens: {tokens:?}");
    assert_eq!(labels.len(), 1 + tokens.len() - pads, "one button per token of the text: {labels:?} for {tokens:?}");
    assert!(labels.iter().all(|l| !l.contains("pad") && !l.contains("<|")), "{labels:?}");
    let note = c.find(Locator::Id("token-note")).await.unwrap().text().await.unwrap();
    assert!(note.contains(&format!("{pads} padding tokens")), "{note}");
    c.find(Locator::Css("#token-list button:nth-child(2)")).await.unwrap().click().await.unwrap();
    wait_for(
        &c,
        "token 0's map",
        &format!("document.getElementById('viewer-img').dataset.state === 'token-0' && {loaded}"),
        30,
    )
    .await;
    let token = viewer_pixels(&c).await;
    let diff = mean_abs_diff(&token, &aggregate);
    eprintln!("token 0 vs aggregate: mean |Δ| {diff:.1}");
    assert!(diff > 2.0, "a token's map differs from the aggregate (mean |Δ| {diff:.2})");
    assert!(coloured_share(&token) > 0.5);
    save_shot(&c, "viewer-token").await;

    // Phone-sized screen: the results grid still fits (no horizontal scrolling).
    c.find(Locator::Id("viewer-close")).await.unwrap().click().await.unwrap();
    c.set_window_size(390, 844).await.unwrap();
    let overflow = c
        .execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth", vec![])
        .await
        .unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "the page scrolls sideways on a phone: {overflow}");
    save_shot(&c, "phone-results").await;
    c.set_window_size(1280, WINDOW_HEIGHT).await.unwrap();

    // The map API behind the viewer: the JSON form lists one normalised map per query token on the page's grid;
    // a token beyond the query, a page that does not exist and an empty query are clear 4xx answers.
    let docs: Value = ureq::get(&format!("{url}/v1/documents")).call().unwrap().body_mut().read_json().unwrap();
    let doc = docs["documents"][0]["doc_id"].as_str().unwrap().to_string();
    let base = format!("{url}/v1/pages/{doc}");
    let maps: Value =
        ureq::get(&format!("{base}/1/similarity?q=table&format=json")).call().unwrap().body_mut().read_json().unwrap();
    let (tokens, cells) =
        (maps["tokens"].as_array().unwrap().len(), maps["cols"].as_u64().unwrap() * maps["rows"].as_u64().unwrap());
    assert_eq!(maps["maps"].as_array().unwrap().len(), tokens, "{maps}");
    assert_eq!(maps["aggregate"].as_array().unwrap().len() as u64, cells, "{maps}");
    let status = |path: String| {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent.get(&path).call().unwrap();
        let body: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        (r.status().as_u16(), body)
    };
    let (code, body) = status(format!("{base}/1/similarity?q=table&token={tokens}"));
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("token"), "{body}");
    assert_eq!(status(format!("{base}/2/similarity?q=table")).0, 404);
    assert_eq!(status(format!("{base}/1/similarity?q=%20")).0, 400);

    // Delete with confirmation removes the document.
    c.find(Locator::Css("#documents tbody tr button")).await.unwrap().click().await.unwrap();
    wait_for(&c, "the confirmation", "document.getElementById('confirm-delete').open", 10).await;
    c.find(Locator::Id("confirm-yes")).await.unwrap().click().await.unwrap();
    wait_for(&c, "one document left", "document.querySelectorAll('#documents tbody tr').length === 1", 20).await;
    let docs: Value = ureq::get(&format!("{url}/v1/documents")).call().unwrap().body_mut().read_json().unwrap();
    assert_eq!(docs["documents"].as_array().unwrap().len(), 1, "the server has one document left: {docs}");
    let left = docs["documents"][0]["name"].as_str().unwrap().to_string();

    // The one left, uploaded again: shown as already stored, no second document.
    let again = fixtures_dir().join("pdfs").join(if left == GOOD[0] { GOOD[0] } else { GOOD[1] });
    c.find(Locator::Id("file-input"))
        .await
        .unwrap()
        .send_keys(&again.canonicalize().unwrap().display().to_string())
        .await
        .unwrap();
    wait_for(&c, "the duplicate's row", "document.querySelectorAll('#uploads li').length === 4", 20).await;
    let dup = wait_for(
        &c,
        "the duplicate settled",
        "(l => l.dataset.state === 'done' && l.innerText)(document.querySelectorAll('#uploads li')[3])",
        60,
    )
    .await;
    assert!(dup.as_str().unwrap().contains("already stored"), "{dup}");
    let docs: Value = ureq::get(&format!("{url}/v1/documents")).call().unwrap().body_mut().read_json().unwrap();
    assert_eq!(docs["documents"].as_array().unwrap().len(), 1, "no second copy: {docs}");

    // A protected PDF: its row asks for the password, and with it the upload goes through.
    let protected = fixtures_dir().join("bad-pdfs").join("password-secret.pdf");
    c.find(Locator::Id("file-input"))
        .await
        .unwrap()
        .send_keys(&protected.canonicalize().unwrap().display().to_string())
        .await
        .unwrap();
    wait_for(
        &c,
        "the password field",
        "document.querySelectorAll('#uploads li')[4] && document.querySelectorAll('#uploads li')[4].querySelector('input[type=password]')",
        30,
    )
    .await;
    let row = c.execute("return document.querySelectorAll('#uploads li')[4].innerText", vec![]).await.unwrap();
    assert!(row.as_str().unwrap().contains("password-protected"), "{row}");
    assert!(!row.as_str().unwrap().contains('`'), "no API words: {row}");
    c.find(Locator::Css("#uploads li:nth-child(5) input[type=password]"))
        .await
        .unwrap()
        .send_keys("secret\n")
        .await
        .unwrap();
    wait_for(
        &c,
        "the protected PDF stored",
        "document.querySelectorAll('#uploads li')[4].dataset.state === 'done'",
        60,
    )
    .await;
    wait_for(&c, "two documents", "document.querySelectorAll('#documents tbody tr').length === 2", 20).await;

    c.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn with_an_api_key_the_page_asks_for_it_and_leaks_nothing() {
    let Some((driver, chrome)) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = serve(dir.path(), Some("sesame-42-open-sesame"));
    // The shell is served without the key and holds no data; the API refuses without it.
    let mut page = ureq::get(&format!("{url}/")).call().unwrap();
    let html = page.body_mut().read_to_string().unwrap();
    assert!(html.contains("<title>colqwen"), "{html}");
    let resp = ureq::get(&format!("{url}/v1/documents")).config().http_status_as_error(false).build().call().unwrap();
    assert_eq!(resp.status(), 401);

    let (_driver, c) = start_browser(&driver, &chrome).await;
    c.goto(&format!("{url}/")).await.unwrap();
    wait_for(&c, "the key prompt", "document.getElementById('key-dialog').open", 20).await;
    c.find(Locator::Id("key-input")).await.unwrap().send_keys("sesame-42-open-sesame").await.unwrap();
    c.find(Locator::Css("#key-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_for(&c, "the document list with the key", "!document.getElementById('documents-empty').hidden", 20).await;
    let stored = c.execute("return sessionStorage.getItem('colqwen-api-key')", vec![]).await.unwrap();
    assert_eq!(stored, json!("sesame-42-open-sesame"));
    c.close().await.unwrap();
}
