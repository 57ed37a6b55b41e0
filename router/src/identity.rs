//! Identity first (DESIGN section 11): a protected request without a valid bearer token gets
//! `401` here, before the router reads or parses its body, so a caller learns nothing about
//! its body's validity and costs nothing to refuse. The nodes check the token again.

use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::Method;
use wire::token::TokenKeys;

use crate::error::RouterError;

/// Whether a request needs a caller: every write but sign-up and `/auth/*` (how a caller gets
/// a token), and the reads the nodes serve only to their owner (`/users/{id}`,
/// `/booking/...`). `OPTIONS` never does: a CORS preflight carries no credentials.
pub fn needs_identity(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    if method == Method::GET || method == Method::HEAD {
        return rest.starts_with("users/") || rest.starts_with("booking/");
    }
    if method == Method::OPTIONS {
        return false;
    }
    let signs_in = rest.starts_with("auth/") || (method == Method::POST && rest == "users");
    !signs_in
}

/// Refuses a protected request that carries no valid bearer token.
pub fn check(keys: &TokenKeys, parts: &Parts) -> Result<(), RouterError> {
    if !needs_identity(&parts.method, parts.uri.path()) {
        return Ok(());
    }
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        // A header that is not text is no `Bearer <token>` either.
        .map(|h| h.to_str().unwrap_or_default());
    keys.caller(authorization)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_private_reads_need_a_caller() {
        let protected = [
            (Method::POST, "/api/v1/booking/reserve"),
            (Method::POST, "/api/v1/booking/confirm"),
            (Method::POST, "/api/v1/booking/cancel"),
            (Method::POST, "/api/v1/events"),
            (Method::POST, "/api/v1/tickets/create"),
            (Method::POST, "/api/v1/whatever"),
            (Method::PUT, "/api/v1/users"),
            (Method::DELETE, "/api/v1/events/1"),
            (Method::POST, "/api/v1/users/1"),
            (Method::GET, "/api/v1/users/123"),
            (Method::HEAD, "/api/v1/users/123"),
            (Method::GET, "/api/v1/booking/user/123"),
            (Method::GET, "/api/v1/booking/123"),
        ];
        for (method, path) in protected {
            assert!(needs_identity(&method, path), "{method} {path}");
        }
        let open = [
            (Method::POST, "/api/v1/users"),
            (Method::POST, "/api/v1/auth/login"),
            (Method::POST, "/api/v1/auth/refresh"),
            (Method::POST, "/api/v1/auth/logout"),
            (Method::GET, "/api/v1/events"),
            (Method::GET, "/api/v1/events/123"),
            (Method::GET, "/api/v1/tickets"),
            (Method::GET, "/api/v1/tickets/123"),
            (Method::GET, "/api/v1/cluster"),
            (Method::OPTIONS, "/api/v1/booking/reserve"),
            (Method::POST, "/healthz"),
        ];
        for (method, path) in open {
            assert!(!needs_identity(&method, path), "{method} {path}");
        }
    }
}
