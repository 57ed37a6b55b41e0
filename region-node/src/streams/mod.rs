//! Live streams of an event (DESIGN section 10, `GET /events/{id}/stream`): what a message
//! holds and how it is read (`state`), one watcher per event fanning out through one `watch`
//! channel (`hub`), and a subscriber's Server-Sent Events answer (`subscription`). The SQL is
//! the catalog's and the queue's own; the resume rule and framing are `wire::stream`'s.

pub mod hub;
pub mod state;
pub mod subscription;

pub use hub::Hub;
