//! The platform on one machine, the `devcluster` command: the simulated WAN (`wan`), the
//! loopback DNS server for region names (`dns`), and the cluster itself (`cluster`), built on
//! testkit's throwaway PostgreSQL and tied child processes.

pub mod cluster;
pub mod dns;
pub mod wan;
