//! The JSON error of DESIGN section 5: `{"error": {"code", "message", "status", ...}}`. Every
//! error either service gives is built and sent through here, so router and node answers match.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Seconds a client should wait before retrying a `503`: short, because the overload or the
/// unreachable region behind it may be gone (or failed over by DNS) within seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The whole error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"error": {
    "code": "sold_out", "message": "not enough tickets: VIP wants 2, 1 left",
    "status": 409, "available": {"VIP": 1}}})))]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// The error itself: a stable machine-readable `code`, a sentence for people, the HTTP status,
/// and any fields that help the client (`available` on `sold_out`, for instance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable and machine-readable: `validation`, `unauthorized`, `sold_out`, ...
    pub code: String,
    /// For people; it may change, and never names internals.
    pub message: String,
    /// The HTTP status, repeated.
    #[cfg_attr(feature = "openapi", schema(minimum = 400, maximum = 599))]
    pub status: u16,
    /// Extra fields beside the three (the schema allows any).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub details: Map<String, Value>,
}

impl ErrorEnvelope {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                status: status.as_u16(),
                details: Map::new(),
            },
        }
    }

    /// Adds an extra field beside `code`, `message` and `status`.
    pub fn with(mut self, field: &str, value: Value) -> ErrorEnvelope {
        self.error.details.insert(field.to_owned(), value);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_value(&self) -> Value {
        // A struct of strings, numbers and JSON values always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A serde message made fit for clients: the names of our own types (`expected struct
/// ReserveRequest`) become what the client should have sent (`expected an object`); field
/// names, values and positions stay.
pub fn public_parse_message(message: &str) -> String {
    // Longest first: "struct variant" before "struct".
    const KINDS: [(&str, &str); 8] = [
        ("struct variant ", "an object"),
        ("tuple variant ", "an array"),
        ("newtype variant ", "a value"),
        ("tuple struct ", "an array"),
        ("unit struct ", "null"),
        ("newtype struct ", "a value"),
        ("struct ", "an object"),
        ("enum ", "one of the allowed values"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("expected ") {
        let after = at + "expected ".len();
        out.push_str(&rest[..after]);
        rest = &rest[after..];
        if let Some((kind, plain)) = KINDS.iter().find(|(kind, _)| rest.starts_with(kind)) {
            let name = &rest[kind.len()..];
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '<' | '>')))
                .unwrap_or(name.len());
            out.push_str(plain);
            rest = &name[end..];
        }
    }
    out.push_str(rest);
    out
}

impl IntoResponse for ErrorEnvelope {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        // RFC 9110: a 401 names the scheme that would be accepted.
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_envelope_has_the_design_shape_with_extra_fields_beside() {
        let envelope = ErrorEnvelope::new(StatusCode::CONFLICT, "sold_out", "not enough tickets")
            .with("available", json!({"VIP": 0}));
        assert_eq!(
            envelope.to_value(),
            json!({"error": {"code": "sold_out", "message": "not enough tickets", "status": 409,
                             "available": {"VIP": 0}}})
        );
        let back: ErrorEnvelope = serde_json::from_value(envelope.to_value()).unwrap();
        assert_eq!(back, envelope);
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    #[serde(deny_unknown_fields)]
    struct SecretName {
        kind: SecretKind,
        count: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum SecretKind {
        Success,
    }

    #[test]
    fn parse_messages_name_no_type_of_ours_but_keep_fields_and_values() {
        for body in [
            r#""text""#,
            r#"[1]"#,
            r#"{"kind": 3, "count": 1}"#,
            r#"{"kind": "none", "count": 1}"#,
            r#"{"kind": "success", "count": -1}"#,
            r#"{"kind": "success", "cuont": 1}"#,
        ] {
            let raw = serde_json::from_str::<SecretName>(body)
                .unwrap_err()
                .to_string();
            let public = public_parse_message(&raw);
            assert!(!public.contains("Secret"), "{body}: {public} (from {raw})");
            assert!(public.contains("expected"), "{body}: {public}");
        }
        let raw = serde_json::from_str::<SecretName>(r#"{"kind": "none", "count": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(public_parse_message(&raw).contains("`none`"), "{raw}");
        assert_eq!(
            public_parse_message("invalid type: string \"x\", expected struct A at line 1"),
            "invalid type: string \"x\", expected an object at line 1"
        );
    }

    #[test]
    fn unavailable_answers_carry_retry_after() {
        let response = ErrorEnvelope::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "busy")
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response =
            ErrorEnvelope::new(StatusCode::NOT_FOUND, "not_found", "gone").into_response();
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn unauthorized_answers_name_the_bearer_scheme() {
        let response =
            ErrorEnvelope::new(StatusCode::UNAUTHORIZED, "unauthorized", "who?").into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
