//! What is on sale: events and their tiers (`events`), their tickets (`tickets`), the sale
//! terms a reserve needs (`terms`). All its SQL is in `store`.

pub mod events;
pub mod store;
pub mod terms;
pub mod tickets;
