//! How many event streams each client address holds open on this router, capped
//! (`limits.streams_per_address`): a stream costs a connection and a little memory for as long
//! as it lasts, which a rate limit on opening them does not bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::limits::address_key;

type Open = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// Open streams per address key (`limits::address_key`: an IPv6 client by its /64).
pub struct StreamCaps {
    limit: u32,
    open: Open,
}

/// One open stream of an address; dropping it (the stream ended) frees its place.
pub struct StreamPermit {
    key: IpAddr,
    open: Open,
}

impl StreamCaps {
    pub fn new(limit: u32) -> StreamCaps {
        StreamCaps {
            limit,
            open: Arc::default(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// A place for one more stream of `client`, unless it holds `limit` already.
    pub fn acquire(&self, client: IpAddr) -> Option<StreamPermit> {
        let key = address_key(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(StreamPermit {
            key,
            open: self.open.clone(),
        })
    }

    /// Addresses with a stream open (an address with none is forgotten at once).
    pub fn addresses(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_holds_at_most_the_limit_and_a_place_comes_back_when_one_ends() {
        let caps = StreamCaps::new(2);
        let a = caps.acquire(ip("192.0.2.1")).unwrap();
        let _b = caps.acquire(ip("192.0.2.1")).unwrap();
        assert!(caps.acquire(ip("192.0.2.1")).is_none());
        // Another address has its own places; an IPv6 /64 counts as one.
        let _c = caps.acquire(ip("192.0.2.2")).unwrap();
        let _d = caps.acquire(ip("2001:db8::1")).unwrap();
        let _e = caps.acquire(ip("2001:db8::2")).unwrap();
        assert!(caps.acquire(ip("2001:db8::3")).is_none());
        drop(a);
        assert!(caps.acquire(ip("192.0.2.1")).is_some());
        assert_eq!(caps.addresses(), 3);
        drop((_b, _c, _d, _e));
        assert_eq!(
            caps.addresses(),
            0,
            "addresses with no stream are forgotten"
        );
    }
}
