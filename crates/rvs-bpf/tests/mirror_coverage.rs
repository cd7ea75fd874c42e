//! Every function of the C data plane has its mirror in rvs-model, in the paired file (STYLE.md 3.3):
//! a C definition starts its line with its name (kernel style), and the Rust mirror carries
//! ``/// Mirrors `name` `` in its doc comment.

use std::path::{Path, PathBuf};

/// (C source, Rust mirror), relative to the repository root.
const PAIRS: &[(&str, &str)] = &[
    ("bpf/rvs_xdp.c", "crates/rvs-model/src/xdp.rs"),
    ("bpf/include/rvs_maps.h", "crates/rvs-model/src/maps.rs"),
    ("bpf/lib/hooks.h", "crates/rvs-model/src/env.rs"),
    ("bpf/lib/parse.h", "crates/rvs-model/src/parse.rs"),
    ("bpf/lib/csum.h", "crates/rvs-model/src/csum.rs"),
    ("bpf/lib/svc.h", "crates/rvs-model/src/svc.rs"),
    ("bpf/lib/mark.h", "crates/rvs-model/src/mark.rs"),
    ("bpf/lib/conn.h", "crates/rvs-model/src/conn.rs"),
    ("bpf/lib/sched.h", "crates/rvs-model/src/sched.rs"),
    ("bpf/lib/persist.h", "crates/rvs-model/src/persist.rs"),
    ("bpf/lib/dr.h", "crates/rvs-model/src/fwd/dr.rs"),
    ("bpf/lib/fib.h", "crates/rvs-model/src/fwd/fib.rs"),
    ("bpf/lib/nat.h", "crates/rvs-model/src/fwd/nat.rs"),
    ("bpf/lib/tun.h", "crates/rvs-model/src/fwd/tun.rs"),
    ("bpf/lib/icmp.h", "crates/rvs-model/src/fwd/icmp.rs"),
    ("bpf/lib/stats.h", "crates/rvs-model/src/stats.rs"),
    ("bpf/lib/expire.h", "crates/rvs-model/src/expire.rs"),
    ("bpf/rvs_decap.c", "crates/rvs-model/src/decap.rs"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn read(rel: &str) -> Option<String> {
    std::fs::read_to_string(root().join(rel)).ok()
}

/// Functions defined in a C file: names starting a line and followed by `(`.
fn c_functions(src: &str) -> Vec<String> {
    let def = regex::Regex::new(r"(?m)^(rvs_[a-z0-9_]+)\(").unwrap();
    def.captures_iter(src).map(|m| m[1].to_owned()).collect()
}

#[test]
fn every_c_function_has_a_rust_mirror() {
    let mut missing = Vec::new();
    for (c, rs) in PAIRS {
        // A file that does not exist yet has nothing to mirror.
        let Some(c_src) = read(c) else { continue };
        let fns = c_functions(&c_src);
        let rs_src = read(rs).unwrap_or_default();
        for name in fns {
            if !rs_src.contains(&format!("/// Mirrors `{name}`")) {
                missing.push(format!("{c}: `{name}` has no `/// Mirrors `{name}`` in {rs}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} C functions without a mirror:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn every_c_file_of_the_data_plane_is_paired() {
    // A new header under bpf/lib/ needs a row in PAIRS (and a mirror file), or its functions would
    // escape the check above.
    let lib = root().join("bpf/lib");
    for entry in std::fs::read_dir(&lib).expect("bpf/lib") {
        let path = entry.expect("dir entry").path();
        let rel = format!("bpf/lib/{}", path.file_name().unwrap().to_string_lossy());
        let src = std::fs::read_to_string(&path).expect("read header");
        if c_functions(&src).is_empty() {
            continue;
        }
        assert!(
            PAIRS.iter().any(|(c, _)| *c == rel),
            "{rel} defines functions but has no mirror file in PAIRS"
        );
    }
}
