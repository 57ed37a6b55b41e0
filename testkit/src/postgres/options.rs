//! What a [`super::PgCluster`] start asks for: where its data lives, its port, how durable it is,
//! its settings, and whether it is a replica.

use std::path::PathBuf;

/// How much the cluster cares about surviving a machine crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`: data is
    /// thrown away anyway, so tests don't pay for disk flushes.
    Fast,
    /// PostgreSQL defaults: benchmarks and the dev cluster should measure and
    /// behave like production.
    #[default]
    Durable,
}

/// How to start a [`PgCluster`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `None`: a fresh temp directory, removed on stop. `Some`: used and kept;
    /// initialized only if it does not already hold a cluster (`PG_VERSION`).
    pub data_dir: Option<PathBuf>,
    /// `None`: a free port (retried if another process grabs it first).
    pub port: Option<u16>,
    pub durability: Durability,
    pub max_connections: u32,
    pub shared_buffers: String,
    /// Extra `postgresql.conf` settings, written verbatim as `key = value`
    /// (quote string values yourself, e.g. `("log_statement", "'all'")`).
    pub extra_settings: Vec<(String, String)>,
    /// Make this a streaming replica: the data directory (when new) is a `pg_basebackup -R` of
    /// the server at this address, which may be a WAN link in front of the primary, so the
    /// replication stream keeps flowing through it.
    pub replica_of: Option<std::net::SocketAddr>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            data_dir: None,
            port: None,
            durability: Durability::default(),
            max_connections: 200,
            shared_buffers: "128MB".to_owned(),
            extra_settings: Vec::new(),
            replica_of: None,
        }
    }
}
