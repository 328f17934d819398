//! The dashboard's static files, embedded at compile time so the binary is self-contained. `/` is the
//! dashboard's page (landing and sign-up when logged out); its scripts and styles are under `/dashboard/`.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

macro_rules! embed {
    ($($path:literal => $mime:literal),* $(,)?) => {
        &[$(($path, $mime, include_bytes!(concat!("../../../../../dashboard/", $path)))),*]
    };
}

/// (path under `/dashboard/`, content type, bytes).
static FILES: &[(&str, &str, &[u8])] = embed! {
    "index.html" => "text/html; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/main.js" => "text/javascript; charset=utf-8",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/dom.js" => "text/javascript; charset=utf-8",
    "js/auth.js" => "text/javascript; charset=utf-8",
    "js/overview.js" => "text/javascript; charset=utf-8",
    "js/keys.js" => "text/javascript; charset=utf-8",
    "js/quickstart.js" => "text/javascript; charset=utf-8",
    "js/live.js" => "text/javascript; charset=utf-8",
    "js/settings.js" => "text/javascript; charset=utf-8",
};

fn serve(path: &str) -> Response {
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, mime, bytes)) => (
            [
                (header::CONTENT_TYPE, *mime),
                // Not versioned by name: revalidate so a new server version is picked up at once.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

pub(super) async fn index() -> Response {
    serve("index.html")
}

pub(super) async fn file(Path(file): Path<String>) -> Response {
    serve(&file)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_load_scripts_only_from_files() {
        let html = std::str::from_utf8(super::FILES[0].2).unwrap();
        assert!(
            !html.contains("<script>"),
            "inline scripts are refused by the CSP"
        );
        assert!(
            !html.contains(" style=\""),
            "inline styles are refused by the CSP"
        );
        assert!(!html.contains("//cdn"), "no external CDN");
    }
}
