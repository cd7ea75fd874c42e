//! The rvs domain: virtual services and real servers as an operator configures them, the ipvsadm command
//! grammar (shared by `rvsadm`, `-R` and the daemon's rules file), the scheduler tables computed in Rust,
//! and `encode`, the single place where configuration becomes map operations.

pub mod domain;
pub mod encode;
pub mod ipvsadm;
pub mod save;
pub mod sched;
pub mod table;

pub use domain::*;
