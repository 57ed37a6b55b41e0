//! `/api/v1/*`: every API request is read (bounded) and handed to the proxy; nodes answer
//! unknown API routes themselves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::error::RouterError;
use crate::proxy;
use crate::state::App;

/// Any API request: routed and forwarded.
pub async fn api(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    match read_body(body, &parts.headers, app.config.http.body_limit_bytes).await {
        Ok(body) => proxy::proxy(&app, peer.ip(), &parts, body)
            .await
            .into_response(),
        Err(error) => error.into_response(),
    }
}

/// The whole request body, refused with `413` past `limit` (early, from `Content-Length`,
/// when the client declares it).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, RouterError> {
    let too_large = || RouterError::PayloadTooLarge { limit };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RouterError::Validation(format!("could not read the request body: {e}"))
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}
