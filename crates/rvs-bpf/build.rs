//! Compiles every `bpf/rvs_*.c` with clang into `$OUT_DIR`. No stub: without clang the build fails and
//! says which packages to install, because a silently missing data plane would only fail at run time.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const OBJECTS: &[&str] = &["rvs_xdp", "rvs_decap", "rvs_pass", "rvs_bench"];

fn find_clang() -> Option<String> {
    let candidates = [
        env::var("RVS_CLANG").ok(),
        Some("clang-19".into()),
        Some("clang".into()),
    ];
    candidates.into_iter().flatten().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

fn rerun_if_changed(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read bpf/") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rerun_if_changed(&p);
        } else {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../bpf");
    let root = root.canonicalize().expect("bpf/ next to crates/");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=RVS_CLANG");
    rerun_if_changed(&root);
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let clang = find_clang().unwrap_or_else(|| {
        panic!(
            "clang is missing: the XDP data plane is C compiled with clang -target bpf.\n\
             Install it with: apt-get update && apt-get install -y clang-19 libbpf-dev"
        )
    });
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!(
            "bpf/bpf_helpers.h is missing. Install it with: apt-get update && apt-get install -y libbpf-dev"
        );
    }
    for name in OBJECTS {
        let src = root.join(format!("{name}.c"));
        let obj = out.join(format!("{name}.o"));
        let status = Command::new(&clang)
            .args([
                "-target", "bpf", "-O2", "-g", "-mcpu=v3", "-Wall", "-Wextra", "-Werror",
            ])
            .arg(format!("-I{}", root.join("include").display()))
            .arg(format!("-I{}", root.display()))
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| panic!("running {clang}: {e}"));
        assert!(status.success(), "{clang} failed on {}", src.display());
    }
}
