//! How long a client connection may stay silent and how many may be open at once: the same
//! settings, with the same defaults, in both services' configuration (`connections`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// A request head must arrive whole within this of its first byte, so a client that sends
    /// half a request (slow-loris) loses its connection.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight and nothing written for this long is closed.
    /// Keep it above the routers' `upstream.pool_idle_timeout_ms`, so a pooled upstream
    /// connection is dropped by its client before the server closes it under a request.
    pub idle_timeout_ms: u64,
    /// Client connections open at once on the API listener; past it a new connection gets a
    /// `503` and is closed. Keep it under the open-file limit, with room for upstream and
    /// database connections.
    pub max: usize,
    /// The same for the operations listener, counted apart so a flood of clients cannot lock
    /// out the metrics scraper.
    pub max_ops: usize,
    /// The hard open-file limit a service started as root raises itself to (capped by the
    /// kernel's `fs.nr_open`), so that tens of thousands of streams fit; others can only raise
    /// their soft limit to the hard one they were given.
    pub max_open_files: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout_ms: 5_000,
            idle_timeout_ms: 75_000,
            max: 10_000,
            max_ops: 64,
            max_open_files: 1_048_576,
        }
    }
}

impl ConnectionLimits {
    /// What is wrong with these settings, for the service's `ConfigError::Invalid`.
    pub fn validate(&self) -> Result<(), String> {
        if self.header_read_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            return Err(
                "connections.header_read_timeout_ms and idle_timeout_ms must be positive".into(),
            );
        }
        if self.max == 0 || self.max_ops == 0 {
            return Err("connections.max and max_ops must be positive".into());
        }
        Ok(())
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeroes_are_refused() {
        ConnectionLimits::default().validate().unwrap();
        for bad in [
            ConnectionLimits {
                max: 0,
                ..ConnectionLimits::default()
            },
            ConnectionLimits {
                header_read_timeout_ms: 0,
                ..ConnectionLimits::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
