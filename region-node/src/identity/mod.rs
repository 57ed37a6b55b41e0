//! Who is asking and who mints ids: what a caller may do (`auth`; the tokens are
//! `wire::token`'s), accounts (`signup`, `users`, `sessions`: login, refresh, logout),
//! password hashing (`password`), all account SQL (`store`), and the node's machine-number
//! lease that makes its ids unique (`lease`).

pub mod auth;
pub mod lease;
pub mod password;
pub mod sessions;
pub mod signup;
pub mod store;
pub mod users;
