//! Live streams of an event (DESIGN section 10, `GET /events/{id}/stream`): what a message
//! holds (`state`), one watcher per event reading it once per interval (`watcher`) and fanning
//! out through one `watch` channel kept in the node's registry (`hub`), and a subscriber's
//! Server-Sent Events answer (`subscription`). The SQL is the catalog's and the queue's own;
//! the resume rule and framing are `wire::stream`'s.

pub mod hub;
pub mod state;
pub mod subscription;
pub mod watcher;
