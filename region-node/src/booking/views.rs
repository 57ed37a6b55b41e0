//! A booking as the API shows it, and the row it is made from.

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::Serialize;
use sqlx::types::Json as SqlJson;

use crate::booking::request::Line;
use crate::error::ApiResult;
use crate::ids::id_from_db;

/// A `bookings` row as `booking::store` reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct BookingRow {
    pub id: i64,
    pub event_id: i64,
    pub user_id: i64,
    pub status: String,
    /// `expires_at > now()` by the database clock, the one clock every expiry check uses.
    pub live: bool,
    pub quantity: i32,
    pub lines: SqlJson<Vec<Line>>,
    pub total_cents: i64,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

impl BookingRow {
    /// Held, but the hold has lapsed (the sweeper may not have recorded it yet).
    pub fn lapsed(&self) -> bool {
        self.status == "held" && !self.live
    }

    /// The hold lapsed, whether or not that is recorded yet: `expired` is only ever written
    /// for a lapsed hold (by the sweeper, or by a confirm or cancel that met it lapsed).
    pub fn hold_expired(&self) -> bool {
        self.lapsed() || self.status == "expired"
    }
}

/// A ticket of a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketRef {
    #[serde(serialize_with = "serialize_db_id")]
    #[schema(value_type = Id)]
    pub id: i64,
    pub tier: String,
}

fn serialize_db_id<S: serde::Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// A booking as its owner (or an admin) sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingView {
    pub booking_id: Id,
    pub event_id: Id,
    pub user_id: Id,
    /// A hold past its expiry shows as `expired` even before the sweeper records it.
    #[schema(examples("held", "confirmed", "cancelled", "expired", "payment_failed"))]
    pub status: String,
    pub expires_at: DateTime<Utc>,
    pub total_cents: i64,
    pub lines: Vec<Line>,
    /// The tickets this booking holds or bought; empty once released.
    pub tickets: Vec<TicketRef>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// `<home region>:<LSN>` of the write, for read-your-writes on replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
}

impl BookingView {
    pub fn new(row: BookingRow, mut tickets: Vec<TicketRef>) -> ApiResult<BookingView> {
        tickets.sort_by_key(|t| t.id);
        // A lapsed hold is expired to the user even before the sweeper records it.
        let status = if row.lapsed() {
            "expired".to_owned()
        } else {
            row.status
        };
        Ok(BookingView {
            booking_id: id_from_db(row.id)?,
            event_id: id_from_db(row.event_id)?,
            user_id: id_from_db(row.user_id)?,
            status,
            expires_at: row.expires_at,
            total_cents: row.total_cents,
            lines: row.lines.0,
            tickets,
            created_at: row.created_at,
            updated_at: row.updated_at,
            confirmed_at: row.confirmed_at,
            consistency_token: None,
        })
    }

    pub fn with_token(mut self, token: String) -> BookingView {
        self.consistency_token = Some(token);
        self
    }
}

/// A reserve's answer: the booking, and whether it answers an earlier request with the same
/// `Idempotency-Key` (then the booking is as it is now, with a fresh consistency token).
#[derive(Debug)]
pub struct Reserved {
    pub view: BookingView,
    pub replayed: bool,
}
