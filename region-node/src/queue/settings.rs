//! A queue's settings (`PUT /events/{id}/queue`, admin, on the event's home node): checked,
//! then created or changed in one transaction; the answer is the queue's figures with the
//! write's consistency token. Also the queue's figures read in this region
//! (`GET /events/{id}/queue`) and why an event has none.

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use id_gen::Id;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};
use utoipa::ToSchema;

use crate::catalog;
use crate::error::{ApiError, ApiResult};
use crate::ids::ensure_home;
use crate::queue::store::{self, SettingsRow};
use crate::queue::views::QueueFigures;
use crate::reads::answer::ReadAnswer;
use crate::reads::consistency::ReadAfter;
use crate::state::Node;

/// What an admin sets of an event's waiting room.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"opensAt": "2030-06-01T10:00:00Z", "closesAt": "2030-06-01T20:00:00Z",
    "targetActive": 500, "maxAdmitPerSecond": 50, "passSeconds": 600}))]
pub struct QueueSettings {
    /// Joins before this wait in the lobby; at it, the lobby is drawn into random positions.
    /// Cannot change once the lobby was drawn.
    pub opens_at: DateTime<Utc>,
    /// Joins after this are refused (absent: open as long as the event); after `opensAt`.
    pub closes_at: Option<DateTime<Utc>>,
    /// Admitted users not yet done (pass neither used nor lapsed) the loop keeps near.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub target_active: i64,
    /// The loop never admits faster than this, per second (above 0).
    #[schema(exclusive_minimum = 0, maximum = 100_000)]
    pub max_admit_per_second: f64,
    /// An admitted user's window to use their pass, from admission.
    #[schema(minimum = 10, maximum = 86_400)]
    pub pass_seconds: i64,
}

/// A queue's figures after a change to its settings, with the write's consistency token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettled {
    #[serde(flatten)]
    pub figures: QueueFigures,
    /// `<home region>:<LSN>` of the write: present it on a read to see this change.
    pub consistency_token: String,
}

/// Everything settings must be, checked before anything is written.
pub fn validate(settings: &QueueSettings) -> ApiResult<SettingsRow> {
    let bad = |m: &str| Err(ApiError::Validation(m.to_owned()));
    if !(1..=1_000_000).contains(&settings.target_active) {
        return bad("targetActive must be 1 to 1000000");
    }
    let rate = settings.max_admit_per_second;
    if !(rate.is_finite() && rate > 0.0 && rate <= 100_000.0) {
        return bad("maxAdmitPerSecond must be above 0 and at most 100000");
    }
    if !(10..=86_400).contains(&settings.pass_seconds) {
        return bad("passSeconds must be 10 to 86400");
    }
    // Years the database and every client read alike (chrono parses far beyond them).
    let sane = |t: DateTime<Utc>| (2000..=9999).contains(&t.year());
    if !sane(settings.opens_at) || !settings.closes_at.is_none_or(sane) {
        return bad("opensAt and closesAt must fall in the years 2000 to 9999");
    }
    if settings
        .closes_at
        .is_some_and(|closes| closes.trunc_subsecs(6) <= settings.opens_at.trunc_subsecs(6))
    {
        return bad("closesAt must be after opensAt");
    }
    // The ranges above fit the columns' types; times are kept to the microsecond, as the
    // database does, so a PUT repeating the stored opensAt is the same opensAt.
    Ok(SettingsRow {
        opens_at: settings.opens_at.trunc_subsecs(6),
        closes_at: settings.closes_at.map(|c| c.trunc_subsecs(6)),
        target_active: settings.target_active as i32,
        max_admit_per_second: rate,
        pass_seconds: settings.pass_seconds as i32,
    })
}

/// Creates or changes `event_id`'s queue on its home primary. `opensAt` is fixed once the
/// lobby was drawn (`409 queue_already_open`). This node's sale terms and views of the event
/// are dropped, so its next reserve sees the queue at once.
pub async fn put(node: &Node, event_id: Id, settings: QueueSettings) -> ApiResult<QueueSettled> {
    ensure_home(&node.config, event_id)?;
    let row = validate(&settings)?;
    let id = event_id.as_i64();
    let mut conn = node.pool.acquire().await?;
    let mut tx = conn.begin().await?;
    // An unknown event is a 404 (the queue row's foreign key needs the event).
    catalog::store::find_event(&mut tx, event_id).await?;
    if let Some((opens_at, drawn)) = store::lock_settings(&mut tx, id).await? {
        if drawn && opens_at != row.opens_at {
            return Err(ApiError::QueueAlreadyOpen(event_id.to_string()));
        }
    }
    store::save_settings(&mut tx, id, &row).await?;
    tx.commit().await?;
    node.terms.invalidate(id).await;
    let token = node.listing_written(&mut conn, id).await?;
    let queue = store::queue(&mut *conn, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("queue {id} vanished after its PUT")))?;
    Ok(QueueSettled {
        figures: QueueFigures::from_row(&queue),
        consistency_token: token,
    })
}

/// `event_id`'s queue figures, read in this region (honouring the read's consistency token):
/// `404 not_found` for an unknown event, `404 queue_not_found` for an event without a queue.
pub async fn figures(node: &Node, event_id: Id, after: &ReadAfter) -> ApiResult<ReadAnswer> {
    let source = node.read_source(node.shard_of(event_id)?, after).await?;
    let mut conn = source.pool.acquire().await?;
    match store::queue(&mut *conn, event_id.as_i64()).await? {
        Some(queue) => ReadAnswer::uncached(&QueueFigures::from_row(&queue), &source),
        None => Err(missing_queue(&mut conn, event_id).await),
    }
}

/// Why an event has no queue row: the event is unknown (`not_found`) or not queued.
pub async fn missing_queue(conn: &mut PgConnection, event_id: Id) -> ApiError {
    match catalog::store::find_event(conn, event_id).await {
        Ok(_) => ApiError::QueueNotFound(event_id.to_string()),
        Err(error) => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> QueueSettings {
        QueueSettings {
            opens_at: "2030-06-01T10:00:00Z".parse().unwrap(),
            closes_at: None,
            target_active: 500,
            max_admit_per_second: 50.0,
            pass_seconds: 600,
        }
    }

    #[test]
    fn settings_within_their_ranges_pass() {
        let row = validate(&settings()).unwrap();
        assert_eq!((row.target_active, row.pass_seconds), (500, 600));
        let edges = QueueSettings {
            closes_at: Some("2030-06-01T10:00:01Z".parse().unwrap()),
            target_active: 1_000_000,
            max_admit_per_second: 100_000.0,
            pass_seconds: 10,
            ..settings()
        };
        assert!(validate(&edges).is_ok());
    }

    #[test]
    fn each_setting_out_of_range_is_refused_naming_it() {
        /// Spoils one setting of good ones, naming it.
        type Spoil = (fn(&mut QueueSettings), &'static str);
        let cases: [Spoil; 10] = [
            (|s| s.target_active = 0, "targetActive"),
            (|s| s.target_active = 1_000_001, "targetActive"),
            (|s| s.max_admit_per_second = 0.0, "maxAdmitPerSecond"),
            (|s| s.max_admit_per_second = f64::NAN, "maxAdmitPerSecond"),
            (|s| s.max_admit_per_second = 100_000.5, "maxAdmitPerSecond"),
            (|s| s.pass_seconds = 9, "passSeconds"),
            (|s| s.pass_seconds = 86_401, "passSeconds"),
            (|s| s.closes_at = Some(s.opens_at), "closesAt"),
            (
                |s| s.opens_at = "-0100-01-01T00:00:00Z".parse().unwrap(),
                "opensAt",
            ),
            (
                |s| s.closes_at = Some("+20000-01-01T00:00:00Z".parse().unwrap()),
                "closesAt",
            ),
        ];
        for (spoil, field) in cases {
            let mut bad = settings();
            spoil(&mut bad);
            let message = validate(&bad).unwrap_err().to_string();
            assert!(message.contains(field), "{message}");
        }
    }
}
