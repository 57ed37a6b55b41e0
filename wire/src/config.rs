//! Service configuration as data: defaults < TOML file < environment variables with the
//! service's own prefix (`TICKETING_NODE_DATABASE__URL` sets the node's `database.url`), so one
//! environment can configure both services. Loaded and validated here for both.

use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The local three-region layout of DESIGN section 1: each region's name and the region id its
/// Snowflake ids carry. Both services default to it.
pub const DEFAULT_REGIONS: [(&str, u8); 3] = [("us-east", 1), ("eu-west", 2), ("ap-southeast", 3)];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// A service's configuration: its defaults, its environment prefix, its own checks.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// `TICKETING_NODE_` or `TICKETING_ROUTER_`; `__` separates nested keys.
    const ENV_PREFIX: &'static str;

    /// Checks what the types cannot say (ranges, references between fields).
    fn validate(&self) -> Result<(), ConfigError>;

    /// Where the binary serves its API.
    fn listen(&self) -> SocketAddr;

    /// Where it serves its operations endpoints (`/metrics`, the cluster view, health):
    /// loopback by default, never the API listener.
    fn ops_listen(&self) -> SocketAddr;

    /// Its connection timeouts and caps.
    fn connections(&self) -> &crate::server::ConnectionLimits;

    /// Defaults, then the TOML file if given, then the prefixed environment; validated.
    fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(layers::<Self>(file))
    }

    /// Extracts and validates a configuration from already layered providers.
    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Self = figment.extract().map_err(Box::new)?;
        if config.listen() == config.ops_listen() && config.listen().port() != 0 {
            return Err(ConfigError::Invalid(
                "ops_listen must differ from listen: the operations endpoints are not public"
                    .into(),
            ));
        }
        config.validate()?;
        Ok(config)
    }
}

/// The layers, lowest first: defaults, the TOML file, the environment.
pub fn layers<C: ServiceConfig>(file: Option<&Path>) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(C::default()));
    if let Some(file) = file {
        figment = figment.merge(Toml::file(file));
    }
    figment.merge(Env::prefixed(C::ENV_PREFIX).split("__"))
}

#[cfg(test)]
// figment::Jail's closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Example {
        listen: SocketAddr,
        limit: u32,
        nested: Nested,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Nested {
        name: String,
    }

    impl Default for Example {
        fn default() -> Self {
            Example {
                listen: SocketAddr::from(([127, 0, 0, 1], 1)),
                limit: 5,
                nested: Nested::default(),
            }
        }
    }

    impl ServiceConfig for Example {
        const ENV_PREFIX: &'static str = "WIRE_EXAMPLE_";

        fn validate(&self) -> Result<(), ConfigError> {
            if self.limit == 0 {
                return Err(ConfigError::Invalid("limit must be positive".into()));
            }
            Ok(())
        }

        fn listen(&self) -> SocketAddr {
            self.listen
        }

        fn ops_listen(&self) -> SocketAddr {
            SocketAddr::new(self.listen.ip(), self.listen.port() + 1)
        }

        fn connections(&self) -> &crate::server::ConnectionLimits {
            &LIMITS
        }
    }

    static LIMITS: crate::server::ConnectionLimits = crate::server::ConnectionLimits {
        header_read_timeout_ms: 1,
        idle_timeout_ms: 1,
        max: 1,
        max_ops: 1,
        max_open_files: 1,
    };

    #[test]
    fn the_environment_overrides_the_file_which_overrides_the_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("example.toml", "limit = 7\n[nested]\nname = \"file\"\n")?;
            jail.set_env("WIRE_EXAMPLE_NESTED__NAME", "env");
            let config = Example::load(Some(Path::new("example.toml"))).unwrap();
            assert_eq!(config.limit, 7);
            assert_eq!(config.nested.name, "env");
            assert_eq!(config.listen(), SocketAddr::from(([127, 0, 0, 1], 1)));
            Ok(())
        });
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_with_a_reason() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("zero.toml", "limit = 0\n")?;
            let error = Example::load(Some(Path::new("zero.toml"))).unwrap_err();
            assert!(
                error.to_string().contains("limit must be positive"),
                "{error}"
            );
            jail.create_file("typo.toml", "limmit = 3\n")?;
            let error = Example::load(Some(Path::new("typo.toml"))).unwrap_err();
            assert!(error.to_string().contains("limmit"), "{error}");
            Ok(())
        });
    }
}
