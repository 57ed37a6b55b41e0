//! Request extractors whose rejections are our JSON errors, so that bad input never reaches a
//! handler and never gets axum's plain-text answers.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use id_gen::Id;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Content-Type is not required (curl users forget it); the body must parse.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(usize::MAX);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_rejection(rejection, limit))?;
        parse_json(&bytes).map(Json)
    }
}

/// The configured body limit, put in request extensions so rejections can name it.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

fn body_rejection(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::Validation(format!("could not read the request body: {rejection}"))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::InvalidJson("the body is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

/// An `:id` path segment holding a Snowflake ID.
pub struct PathId(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::InvalidId(e.body_text()))?;
        parse_id("id", &raw).map(PathId)
    }
}

/// Parses an ID from a path or query string, naming the field in the error.
pub fn parse_id(field: &str, raw: &str) -> Result<Id, ApiError> {
    raw.parse::<Id>()
        .ok()
        .filter(|id| id.as_u64() > 0)
        .ok_or_else(|| {
            ApiError::InvalidId(format!(
                "{field} must be a positive 64-bit id in decimal, got {:?}",
                truncate(raw, 40)
            ))
        })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Query string into a struct, with our error on failure.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::Validation(e.body_text()))
    }
}

/// A trimmed text field of `min..=max` characters. NUL is refused (PostgreSQL cannot store it),
/// and so is every other control character in one-line fields such as names.
pub fn text<'a>(
    field: &str,
    value: &'a str,
    min: usize,
    max: usize,
    multi_line: bool,
) -> Result<&'a str, ApiError> {
    let value = value.trim();
    let length = value.chars().count();
    if length < min || length > max {
        return Err(ApiError::Validation(if min == 0 {
            format!("{field} must be at most {max} characters")
        } else {
            format!("{field} must be {min} to {max} characters")
        }));
    }
    let allowed = |c: char| !c.is_control() || (multi_line && matches!(c, '\n' | '\r' | '\t'));
    if !value.chars().all(allowed) {
        return Err(ApiError::Validation(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value)
}
