//! Reads answered in this region: a reader per shard on this region's replica with its lag
//! watched (`replica`), the cache in front (`cache`), consistency tokens for read-your-writes
//! (`consistency`), and the answer with its freshness headers (`answer`).

pub mod answer;
pub mod cache;
pub mod consistency;
pub mod replica;
