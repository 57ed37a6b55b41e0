//! The thin HTTP handlers: the API proxy (`api`), the operations endpoints (`ops`), and the
//! middleware every answer passes through (`middleware`). The routes are assembled in `server`.

pub mod api;
pub mod middleware;
pub mod ops;
