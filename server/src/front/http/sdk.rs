//! The browser SDK (sdk-js/dist), embedded at compile time so the binary serves it with nothing else
//! installed. The compatibility path `/CometServerApi.js` serves the classic build, a drop-in for pages
//! written for comet-server.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const MODULE: &str = include_str!("../../../../sdk-js/dist/halley.mjs");
const CLASSIC: &str = include_str!("../../../../sdk-js/dist/halley.js");
const TYPES: &str = include_str!("../../../../sdk-js/dist/halley.d.ts");

/// A strong validator from the content, so browsers revalidate cheaply after a deploy.
fn etag(body: &str) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(body.as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn serve(headers: &HeaderMap, body: &'static str, content_type: &'static str) -> Response {
    let tag = etag(body);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    response
}

pub(super) async fn module(headers: HeaderMap) -> Response {
    serve(&headers, MODULE, "text/javascript; charset=utf-8")
}

pub(super) async fn classic(headers: HeaderMap) -> Response {
    serve(&headers, CLASSIC, "text/javascript; charset=utf-8")
}

pub(super) async fn types(headers: HeaderMap) -> Response {
    serve(&headers, TYPES, "application/typescript; charset=utf-8")
}
