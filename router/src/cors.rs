//! CORS for the configured origins (`cors` in the configuration): which request carries an
//! allowed `Origin`, the answer to `OPTIONS` (a preflight's `204`), and the headers an answer
//! to an allowed origin gets. An origin not listed gets no CORS header at all, so the browser
//! keeps the answer from the page.

use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::CorsConfig;

/// The API's methods, for the preflight.
const METHODS: HeaderValue = HeaderValue::from_static("GET, POST, OPTIONS");
/// What a page may send: the token, JSON, a retry key, its own request id and trace, and the
/// consistency token that makes a read show the page's own writes.
const REQUEST_HEADERS: HeaderValue = HeaderValue::from_static(
    "authorization, content-type, idempotency-key, x-request-id, traceparent, x-consistency-token",
);
/// What a page may read of an answer beyond the basic ones: ids, when to retry and the rate
/// limits, links, the consistency token, and how fresh and where from a read was.
const EXPOSED_HEADERS: HeaderValue = HeaderValue::from_static(
    "x-request-id, retry-after, ratelimit, ratelimit-policy, link, x-consistency-token, \
     idempotent-replayed, x-served-by, x-cache, x-data-age-ms, x-stale, x-missing-shards",
);

pub struct Cors {
    origins: Vec<HeaderValue>,
    max_age: HeaderValue,
}

impl Cors {
    pub fn new(config: &CorsConfig) -> Cors {
        Cors {
            // Checked by the configuration: each is a plain origin, so a header value.
            origins: config
                .allowed_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
            max_age: HeaderValue::from(config.max_age_secs),
        }
    }

    /// The request's `Origin`, when it is one of the allowed ones.
    pub fn allowed_origin(&self, request: &HeaderMap) -> Option<HeaderValue> {
        if self.origins.is_empty() {
            return None;
        }
        let origin = request.get(ORIGIN)?;
        self.origins.iter().find(|o| *o == origin).cloned()
    }

    /// The router's own answer to any `OPTIONS` (never forwarded): `204`, and for an allowed
    /// origin's preflight the methods, request headers and max age it may use. No `Allow`: the
    /// methods differ from resource to resource, and a proxy does not know them (a wrong
    /// `Allow` is worse than none; the OpenAPI document lists them).
    pub fn options(&self, origin: Option<&HeaderValue>, request: &HeaderMap) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        if origin.is_some() && request.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, METHODS);
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, REQUEST_HEADERS);
            headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        response
    }

    /// An answer's CORS headers: when CORS is on, `Vary: Origin` (the answer depends on it);
    /// for an allowed origin, that origin and the headers the page may read.
    pub fn stamp(&self, origin: Option<HeaderValue>, answer: &mut HeaderMap) {
        if self.origins.is_empty() {
            return;
        }
        answer.append(VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = origin {
            answer.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            answer.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: vec!["https://tickets.example".into()],
            max_age_secs: 600,
        })
    }

    fn request(origin: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_static(origin));
        headers.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        headers
    }

    #[test]
    fn only_a_listed_origin_is_allowed() {
        let cors = cors();
        assert_eq!(
            cors.allowed_origin(&request("https://tickets.example"))
                .unwrap(),
            "https://tickets.example"
        );
        for other in [
            "https://evil.example",
            "https://tickets.example.evil",
            "null",
        ] {
            assert!(cors.allowed_origin(&request(other)).is_none(), "{other}");
        }
        assert!(cors.allowed_origin(&HeaderMap::new()).is_none());
        let off = Cors::new(&CorsConfig::default());
        assert!(off
            .allowed_origin(&request("https://tickets.example"))
            .is_none());
    }

    #[test]
    fn a_preflight_names_methods_headers_and_max_age_only_for_an_allowed_origin() {
        let cors = cors();
        let allowed = request("https://tickets.example");
        let origin = cors.allowed_origin(&allowed);
        let mut answer = cors.options(origin.as_ref(), &allowed);
        cors.stamp(origin, answer.headers_mut());
        let h = answer.headers();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], "https://tickets.example");
        assert_eq!(h[VARY], "origin");
        assert_eq!(h[ACCESS_CONTROL_MAX_AGE], "600");
        let allowed_headers = h[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        for name in ["authorization", "idempotency-key", "x-consistency-token"] {
            assert!(allowed_headers.contains(name), "{allowed_headers}");
        }
        let refused = request("https://evil.example");
        let origin = cors.allowed_origin(&refused);
        let mut answer = cors.options(origin.as_ref(), &refused);
        cors.stamp(origin, answer.headers_mut());
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert!(answer.headers().get("allow").is_none());
        assert!(answer
            .headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")));
    }
}
