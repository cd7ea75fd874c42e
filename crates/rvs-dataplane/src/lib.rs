//! The XDP data plane, driven from user space with aya.
