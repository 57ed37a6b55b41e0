//! What an upstream call is given: which upstream (a region's node or its router) and the
//! request as it will be sent.

use std::fmt;

use axum::body::Bytes;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, Method};
use url::Url;

use crate::metrics::RegionName;
use crate::routing::regions::Region;

/// One upstream: a region's node or its router.
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    pub region: &'a str,
    pub label: &'a RegionName,
    pub base: &'a Url,
    pub kind: UpstreamKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamKind {
    Node,
    Router,
}

impl<'a> Upstream<'a> {
    pub fn node(region: &'a Region) -> Upstream<'a> {
        Upstream {
            region: &region.name,
            label: &region.label,
            base: &region.node,
            kind: UpstreamKind::Node,
        }
    }

    pub fn router(region: &'a Region) -> Upstream<'a> {
        Upstream {
            region: &region.name,
            label: &region.label,
            base: &region.router,
            kind: UpstreamKind::Router,
        }
    }

    /// `node` or `router`, in logs and metric labels.
    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            UpstreamKind::Node => "node",
            UpstreamKind::Router => "router",
        }
    }
}

impl fmt::Display for Upstream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.region, self.kind_label(), self.base)
    }
}

/// A request as it will be sent upstream (headers already cleaned and completed).
pub struct Outgoing {
    pub method: Method,
    /// As the client sent it: a proxy passes the request target on unchanged.
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub body: Bytes,
}
