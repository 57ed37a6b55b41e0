//! The deployment's regions as the router uses them: names, Snowflake region ids, parsed
//! endpoint URLs, and the order in which reads fall back when the local node is down.

use axum::http::HeaderValue;
use url::Url;

use wire::ConfigError;

use crate::config::{parse_base_url, Config};
use crate::metrics::RegionName;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// The name as a header value (`X-Home-Region`, `X-Client-Region`), made once.
    pub name_header: HeaderValue,
    /// The name as a metric label, made once.
    pub label: RegionName,
    pub id: u8,
    pub node: Url,
    pub router: Url,
}

#[derive(Clone, Debug)]
pub struct Regions {
    list: Vec<Region>,
    own: usize,
    /// Own region first, then the fallback order.
    read_order: Vec<usize>,
}

impl Regions {
    pub fn from_config(config: &Config) -> Result<Regions, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let mut list = Vec::with_capacity(config.regions.len());
        for r in &config.regions {
            list.push(Region {
                name: r.name.clone(),
                name_header: HeaderValue::from_str(&r.name)
                    .map_err(|_| invalid(format!("region name {:?} is not header-safe", r.name)))?,
                label: RegionName::new(&r.name),
                id: r.id,
                node: parse_base_url(&r.node).map_err(invalid)?,
                router: parse_base_url(&r.router).map_err(invalid)?,
            });
        }
        let own = list
            .iter()
            .position(|r| r.name == config.region)
            .ok_or_else(|| invalid(format!("region {:?} is not in `regions`", config.region)))?;
        let index = |name: &str| list.iter().position(|r| r.name == name);
        let mut read_order = vec![own];
        match &config.regions[own].fallback_order {
            Some(order) => {
                for name in order {
                    let i = index(name).ok_or_else(|| {
                        invalid(format!("fallback_order names unknown region {name:?}"))
                    })?;
                    if !read_order.contains(&i) {
                        read_order.push(i);
                    }
                }
            }
            None => read_order.extend((0..list.len()).filter(|&i| i != own)),
        }
        Ok(Regions {
            list,
            own,
            read_order,
        })
    }

    pub fn own(&self) -> &Region {
        &self.list[self.own]
    }

    pub fn is_own(&self, region: &Region) -> bool {
        region.name == self.own().name
    }

    pub fn by_name(&self, name: &str) -> Option<&Region> {
        self.list.iter().find(|r| r.name == name)
    }

    pub fn by_id(&self, id: u8) -> Option<&Region> {
        self.list.iter().find(|r| r.id == id)
    }

    pub fn all(&self) -> &[Region] {
        &self.list
    }

    /// Where reads go: the own region's node, then the fallbacks in order.
    pub fn read_order(&self) -> impl Iterator<Item = &Region> {
        self.read_order.iter().map(|&i| &self.list[i])
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|r| r.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_order_defaults_to_config_order_and_honours_fallback_order() {
        let mut config = Config {
            region: "eu-west".into(),
            ..Config::default()
        };
        let regions = Regions::from_config(&config).unwrap();
        let order: Vec<_> = regions.read_order().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["eu-west", "us-east", "ap-southeast"]);
        config.regions[1].fallback_order = Some(vec!["ap-southeast".into()]);
        let regions = Regions::from_config(&config).unwrap();
        let order: Vec<_> = regions.read_order().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["eu-west", "ap-southeast"]);
        assert_eq!(regions.by_id(3).unwrap().name, "ap-southeast");
        assert_eq!(regions.own().node.as_str(), "http://127.0.0.1:9082/");
    }
}
