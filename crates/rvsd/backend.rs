//! The other crates' items the daemon uses, in one place (BRIEF.md "Rust interfaces").

pub(crate) use rvs_core::encode::{Encoder, Neighbor};
pub(crate) use rvs_core::ipvsadm::parse_rules_with_lines;
pub(crate) use rvs_core::save::save_restorable;
pub(crate) use rvs_core::table::Table;
pub(crate) use rvs_dataplane::{Dataplane, DataplaneConfig, now_ns, unload};
