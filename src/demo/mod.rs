//! The demo chat at `/demo`: one page of plain HTML and JavaScript, shipped inside the
//! binary, that uses only the public API: REST, and for everything live the
//! TypeScript SDK (`clients/typescript`), whose browser bundle is served beside it.
//! It is how a newcomer sees Hark work in two browser tabs, and what the browser
//! tests drive.

use poem::{Endpoint, IntoResponse, endpoint::make_sync, web::Html};

/// The page, as written in `src/demo/index.html`.
const PAGE: &str = include_str!("index.html");

/// The SDK's browser bundle, built by `npm run bundle` in `clients/typescript` (and
/// checked to be current by `scripts/client-tests.sh`).
const SDK: &str = include_str!("hark-sdk.js");

/// The endpoint serving the page.
pub fn page() -> impl Endpoint + 'static {
    make_sync(|_| Html(PAGE))
}

/// The endpoint serving the SDK's bundle.
pub fn sdk() -> impl Endpoint + 'static {
    make_sync(|_| {
        SDK.with_content_type("text/javascript; charset=utf-8")
            .with_header("cache-control", "no-cache")
    })
}
