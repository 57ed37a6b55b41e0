//! `cluster.json`: the machine-readable description of the running cluster (DESIGN section 7)
//! that loadgen and people read, with the PIDs of every process it runs (loadgen accounts CPU
//! per request to them).

use serde_json::{json, Value};

use super::private::write_private;
use super::Cluster;

impl Cluster {
    /// Writes [`Cluster::cluster_json`] to `cluster.json` in the state folder, mode 0600 (it
    /// holds the admin token, the demo users' tokens and the JWT secret).
    pub(super) fn write_cluster_json(&self) -> anyhow::Result<()> {
        let path = self.state_dir.join("cluster.json");
        write_private(&path, &serde_json::to_vec_pretty(&self.cluster_json())?)
    }

    /// The machine-readable description of DESIGN section 7.
    pub fn cluster_json(&self) -> Value {
        let regions: Vec<Value> = self
            .regions
            .iter()
            .map(|r| {
                let replicas: serde_json::Map<String, Value> = r
                    .replicas
                    .iter()
                    .map(|(shard, _, url)| (shard.clone(), Value::String(url.clone())))
                    .collect();
                let replica_pids: serde_json::Map<String, Value> = r
                    .replicas
                    .iter()
                    .map(|(shard, replica, _)| (shard.clone(), json!(replica.pid())))
                    .collect();
                json!({
                    "name": r.config.name,
                    "id": r.config.id,
                    "router": r.router_url,
                    // Every router of the region (the first is `router`): clients may spread
                    // over them.
                    "routers": r.router_urls,
                    "node": r.node_url,
                    // Operations listeners: the node's `/cluster`, both `/metrics`.
                    "routerOps": r.router_ops_url,
                    "nodeOps": r.node_ops_url,
                    "primary": r.primary_url,
                    "dns": r.dns.local_addr().to_string(),
                    "replicas": replicas,
                    // The postmasters' pids: their backends are their children.
                    "pids": {
                        "router": r.routers.first().map(|c| c.id()),
                        "routers": r.routers.iter().map(|c| c.id()).collect::<Vec<_>>(),
                        "node": r.node.id(),
                        "primary": r.primary.pid(),
                        "replicas": replica_pids,
                    },
                })
            })
            .collect();
        let links: Vec<Value> = self
            .links
            .iter()
            .map(|l| {
                json!({"from": l.from, "to": l.to, "address": l.link.local_addr().to_string(),
                             "oneWayDelayMs": l.link.one_way_delay().as_millis() as u64})
            })
            .collect();
        json!({
            "adminToken": self.admin_token,
            // The secret every node signs and checks tokens with (the file is 0600): loadgen
            // mints access tokens for synthetic users with it (`loadgen queue`).
            "jwtSecret": self.jwt_secret,
            // This process: it also runs the WAN links and the DNS servers.
            "devclusterPid": std::process::id(),
            "regions": regions,
            "links": links,
            "demo": {"events": self.demo["events"], "users": self.demo["users"],
                     "admin": self.demo["admin"]},
        })
    }
}
