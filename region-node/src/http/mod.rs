//! HTTP handlers: thin adapters from requests to the functions of `users`, `events`, `tickets`
//! and `booking`.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::app::Node;

mod booking;
mod events;
mod ops;
mod tickets;
mod users;

pub fn api_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/users", post(users::create))
        .route("/users/{id}", get(users::get))
        .route("/events", get(events::list).post(events::create))
        .route("/events/{id}", get(events::get))
        .route("/tickets", get(tickets::availability))
        .route("/tickets/create", post(tickets::create))
        .route("/tickets/{id}", get(tickets::get))
        .route("/booking/reserve", post(booking::reserve))
        .route("/booking/confirm", post(booking::confirm))
        .route("/booking/cancel", post(booking::cancel))
        .route("/booking/user/{id}", get(booking::for_user))
        .route("/booking/{id}", get(booking::get))
        .route("/cluster", get(ops::cluster))
}

pub fn ops_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
}

/// `?limit=` for lists: 1..=500, default 100.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub limit: Option<i64>,
}

impl ListParams {
    pub fn limit(&self) -> Result<i64, crate::error::ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=500).contains(&n) => Ok(n),
            Some(_) => Err(crate::error::ApiError::Validation(
                "limit must be 1 to 500".into(),
            )),
        }
    }
}
