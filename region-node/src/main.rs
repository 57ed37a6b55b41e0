//! `region-node [--config FILE]`: serves the booking API for one region.

fn main() -> anyhow::Result<()> {
    wire::service::main::<region_node::NodeService>()
}
