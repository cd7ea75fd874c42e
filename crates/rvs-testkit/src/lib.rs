//! Test helpers. Never depends on rvs-model or on the C, so fixtures cannot share a bug with either.

pub mod http;
pub mod lab;
mod labcore;
pub mod natlab;
pub mod netns;
pub mod packet;
pub mod udp;
pub mod wait;
