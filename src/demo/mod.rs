//! The demo chat at `/demo`: one page of plain HTML and JavaScript, shipped inside the
//! binary, that uses only the public API (REST and one WebSocket). It is how a
//! newcomer sees Hark work in two browser tabs, and what the browser test drives.

use poem::{Endpoint, endpoint::make_sync, web::Html};

/// The page, as written in `src/demo/index.html`.
const PAGE: &str = include_str!("index.html");

/// The endpoint serving the page.
pub fn page() -> impl Endpoint + 'static {
    make_sync(|_| Html(PAGE))
}
