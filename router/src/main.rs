//! `router [--config FILE]`: the geo routing proxy for one region.

fn main() -> anyhow::Result<()> {
    wire::service::main::<router::RouterService>()
}
