//! `cargo xtask bench` (in progress).

pub(crate) fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
