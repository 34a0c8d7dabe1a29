//! The web page served at `/`: one HTML shell, one script, one style sheet, compiled into the binary
//! (`include_str!`), so `cargo build` is the whole build and the page needs no network at run time. Plain
//! JavaScript and CSS, no framework and no bundler: the page is small, and a build step would put npm between
//! users and a working binary.
//!
//! The shell holds no data: everything it shows comes from the API with the key the user types in (kept in
//! the tab's `sessionStorage`), so serving these files without a key leaks nothing.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

static INDEX_HTML: &str = include_str!("../web/index.html");
static APP_JS: &str = include_str!("../web/app.js");
static APP_CSS: &str = include_str!("../web/app.css");
/// A 32 × 32 icon (a PNG inside an ICO file, as every browser reads it).
static FAVICON: &[u8] = include_bytes!("../web/favicon.ico");

/// Only our own files; images from the API arrive as `blob:` URLs (fetched with the key).
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Paths served without the API key: the shell, its two files and the icon.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/" || path == "/web/app.js" || path == "/web/app.css" || path == "/favicon.ico"
}

fn page(body: &'static str, mime: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, mime)], body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /`: the page.
pub(crate) async fn index() -> Response {
    page(INDEX_HTML, "text/html; charset=utf-8")
}

/// `GET /web/{file}`: the script and the style sheet.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => page(APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => page(APP_CSS, "text/css; charset=utf-8"),
        _ => ApiError::not_found("no such file of the web page").into_response(),
    }
}

/// `GET /favicon.ico`: the page's icon (browsers ask for it on their own).
pub(crate) async fn favicon() -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "image/x-icon")], FAVICON).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    resp
}
