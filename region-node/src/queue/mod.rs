//! The waiting room of a queued on-sale (DESIGN section 10): its settings, the lobby and its
//! fair draw, the serving counter's closed loop, a user's place and pass, and the figures a
//! live stream and `/metrics` show. All its SQL is in `store`; the rate and wait maths, which
//! need no database, in `estimate`.

pub mod estimate;
pub mod me;
pub mod pass;
pub mod place;
pub mod store;
pub mod views;
