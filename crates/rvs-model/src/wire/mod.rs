//! Typed zero-copy views over packet bytes: the model's `<linux/if_ether.h>`, `<linux/ip.h>`,
//! `<linux/ipv6.h>`, `<linux/icmp.h>`, `<linux/tcp.h>` and `<linux/udp.h>`. Each view checks its length once in `new_checked`; after that no
//! accessor panics. Code outside `wire/` never indexes a packet.

pub mod eth;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
