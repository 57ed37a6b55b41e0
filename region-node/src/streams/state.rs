//! What a stream message says of an event (`StreamState`: availability per tier and the
//! queue's figures, nothing that changes unless the event does), framed once for every
//! subscriber (`Published`), and the rule for publishing a newly read one.

use std::sync::Arc;

use id_gen::Id;
use serde::Serialize;
use wire::stream::{self, StreamId};

use crate::catalog::store::TierAvailability;
use crate::error::{ApiError, ApiResult};
use crate::queue::views::QueueFigures;

/// A stream message's `data`: no time and no WAL position inside, so that equal states have
/// equal digests, in every region.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamState {
    /// Id as a string (64-bit ids exceed what JavaScript numbers hold).
    pub event_id: String,
    /// Tickets left per tier, dearest first.
    pub tiers: Vec<StreamTier>,
    pub total_available: i64,
    /// The waiting room's figures; `null` when the event is not queued.
    pub queue: Option<QueueFigures>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTier {
    pub name: String,
    pub available: i64,
}

impl StreamState {
    pub fn new(event_id: Id, tiers: &[TierAvailability], queue: Option<QueueFigures>) -> Self {
        StreamState {
            event_id: event_id.to_string(),
            tiers: tiers
                .iter()
                .map(|t| StreamTier {
                    name: t.name.clone(),
                    available: t.available,
                })
                .collect(),
            total_available: tiers.iter().map(|t| t.available).sum(),
            queue,
        }
    }

    /// The state as a message's one-line JSON `data`, with its id: read while the WAL went
    /// from `lsn` to `upto`.
    pub fn publish_at(&self, lsn: u64, upto: u64) -> ApiResult<Published> {
        let data = serde_json::to_string(self).map_err(|e| ApiError::Internal(e.into()))?;
        Ok(Published {
            id: StreamId::between(lsn, upto, stream::digest(data.as_bytes())),
            data: data.into(),
        })
    }
}

/// The latest state of an event as its watcher read it, framed once for every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: StreamId,
    pub data: Arc<str>,
}

impl Published {
    /// The SSE message carrying it.
    pub fn message(&self) -> String {
        stream::message(self.id, "state", &self.data)
    }
}

/// Puts a newly read state in `latest`; true when subscribers must be woken, i.e. the state
/// changed. The same state read again only moves the stored position forward (a subscriber
/// waiting for the replica to catch up looks at it without being woken).
pub fn publish(latest: &mut Option<Published>, read: Published) -> bool {
    match latest {
        Some(current) if current.id.digest == read.id.digest => {
            current.id.lsn = current.id.lsn.max(read.id.lsn);
            current.id.upto = current.id.upto.max(current.id.lsn);
            false
        }
        _ => {
            *latest = Some(read);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(name: &str, available: i64) -> TierAvailability {
        TierAvailability {
            event_id: 7,
            name: name.into(),
            price_cents: 100,
            ticket_count: 10,
            available,
        }
    }

    fn event() -> Id {
        Id::from_u64(386_164_735_021_809_669).unwrap()
    }

    #[test]
    fn a_state_is_one_line_of_json_whose_digest_depends_on_the_state_only() {
        let state = StreamState::new(event(), &[tier("VIP", 2), tier("GA", 5)], None);
        let at_5 = state.publish_at(5, 5).unwrap();
        let at_9 = state.publish_at(9, 9).unwrap();
        assert_eq!(
            &*at_5.data,
            r#"{"eventId":"386164735021809669","tiers":[{"name":"VIP","available":2},{"name":"GA","available":5}],"totalAvailable":7,"queue":null}"#
        );
        assert_eq!(at_5.id.digest, at_9.id.digest);
        assert_eq!((at_5.id.lsn, at_9.id.lsn), (5, 9));
        let fewer = StreamState::new(event(), &[tier("VIP", 1), tier("GA", 5)], None);
        assert_ne!(fewer.publish_at(5, 5).unwrap().id.digest, at_5.id.digest);
        let message = at_5.message();
        assert!(message.starts_with(&format!("id: {}\nevent: state\ndata: {{", at_5.id)));
        assert_eq!(wire::stream::id_of(message.as_bytes()), Some(at_5.id));
    }

    #[test]
    fn only_a_changed_state_wakes_subscribers_and_the_position_only_moves_forward() {
        let state = StreamState::new(event(), &[tier("GA", 5)], None);
        let changed = StreamState::new(event(), &[tier("GA", 4)], None);
        let mut latest = None;
        assert!(publish(&mut latest, state.publish_at(10, 10).unwrap()));
        // Same state, further on: no wake, position kept up to date.
        assert!(!publish(&mut latest, state.publish_at(20, 20).unwrap()));
        assert_eq!(latest.as_ref().unwrap().id.lsn, 20);
        // Same state from a source that is behind (a primary's read, then a replica's).
        assert!(!publish(&mut latest, state.publish_at(15, 15).unwrap()));
        assert_eq!(latest.as_ref().unwrap().id.lsn, 20);
        // A change wakes, whatever its position (the subscribers apply the resume rule).
        assert!(publish(&mut latest, changed.publish_at(18, 18).unwrap()));
        assert_eq!(latest.unwrap(), changed.publish_at(18, 18).unwrap());
    }
}
