//! Where a request goes, as pure functions of the request and the region table, so every rule
//! is unit-tested without a network: the regions table (`regions`), the client's region
//! (`client_region`), the home region an id or body names (`home`), and the decision (`plan`).

pub mod client_region;
pub mod home;
pub mod plan;
pub mod regions;
