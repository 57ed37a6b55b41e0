//! The waiting room of a queued on-sale (DESIGN section 10): its settings, the lobby and its
//! fair draw, the serving counter's closed loop, a user's place and pass, and the figures a
//! live stream and `/metrics` show. Settings in `settings`, joins in `join`, the draw and the
//! counter's loop in `serving`. All its SQL is in `store`; the rate and wait maths, which need
//! no database, in `estimate`.

pub mod estimate;
pub mod join;
pub mod me;
pub mod pass;
pub mod place;
pub mod serving;
pub mod settings;
pub mod store;
pub mod views;
