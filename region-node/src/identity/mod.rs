//! Who is asking and who mints ids: bearer tokens and roles (`auth`), users (`users`), and the
//! node's machine-number lease that makes its ids unique (`lease`).

pub mod auth;
pub mod lease;
pub mod users;
