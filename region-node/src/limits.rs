//! The node's rate limits: booking writes per user (the caller from the bearer token) and
//! reserves per event. Per-address limits are the router's; these hold whatever path a request
//! took, and the per-event one is a ceiling near what the home primary can book, so a flood is
//! refused cheaply instead of queueing for the database. The real admission control of an
//! on-sale is the waiting room (DESIGN section 10, issue 11), which keeps reserves under it.

use id_gen::Id;
use wire::limits::{Limited, Limiter};
use wire::ConfigError;

use crate::config::LimitsConfig;

/// One keyed limiter per budget.
pub struct NodeLimits {
    user_writes: Limiter<Id>,
    event_reserves: Limiter<Id>,
}

impl NodeLimits {
    pub fn new(config: &LimitsConfig) -> Result<NodeLimits, ConfigError> {
        Ok(NodeLimits {
            user_writes: Limiter::new("user_writes", config.user_writes)?,
            event_reserves: Limiter::new("event_reserves", config.event_reserves)?,
        })
    }

    /// Spends one of `user`'s booking writes (reserve, confirm, cancel).
    pub fn user_write(&self, user: Id) -> Result<(), Limited> {
        self.user_writes.check(&user)
    }

    /// Spends one reserve of `event`.
    pub fn event_reserve(&self, event: Id) -> Result<(), Limited> {
        self.event_reserves.check(&event)
    }

    /// Forgets idle users and events (see `wire::limits::prune_loop`); returns the keys kept.
    pub fn prune(&self) -> usize {
        self.user_writes.prune() + self.event_reserves.prune()
    }
}
