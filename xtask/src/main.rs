//! Developer tasks: `cargo xtask bench` (data-plane speed figures), `cargo xtask bench conntable`
//! (connection-table memory and sweep cost), `cargo xtask demo` (namespaces demo).

mod bench;
mod conntable;
mod demo;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask bench|demo [options]");
            std::process::exit(2);
        }
    }
}
