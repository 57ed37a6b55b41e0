//! The booking aggregate on its home primary: what a request asks (`request`), reserve with
//! group commit (`reserve`, batched by `crate::coalesce`, and hand-out `assign`), confirm and the
//! simulated payment (`confirm`, `payment`), cancel, `Idempotency-Key` records
//! (`idempotency`), the views (`views`) and reads in this region (`lookup`). All its SQL is in
//! `store`.

pub mod assign;
pub mod cancel;
pub mod confirm;
pub mod idempotency;
pub mod lookup;
pub mod payment;
pub mod request;
pub mod reserve;
pub mod store;
pub mod views;
