//! Where a request goes, as pure functions of the request and the region table, so every rule
//! is unit-tested without a network: the regions table (`regions`), the client's region
//! (`client_region`), the home region an id or body names (`home`), the one body field that
//! names it (`body`), and the decision (`plan`).

pub mod body;
pub mod client_region;
pub mod home;
pub mod plan;
pub mod regions;
