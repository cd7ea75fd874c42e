//! The daemon's settings: the TOML file, overridden field by field by the command line.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::cli::Args;

/// Read when `--config` is not given, and only if it exists.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/rvs/rvsd.toml";
/// Default directory of the rules file.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/rvs";
/// Default bpffs directory of the pins.
pub(crate) const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/rvs";

/// The configuration file as written. Unknown keys are refused so that a typo is not silently ignored.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub(crate) interfaces: Option<Vec<String>>,
    pub(crate) socket: Option<PathBuf>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) pin_dir: Option<PathBuf>,
    pub(crate) conn_max: Option<u32>,
    pub(crate) expire_quiescent_template: Option<bool>,
    pub(crate) lblc_expiration: Option<u32>,
    pub(crate) lblcr_expiration: Option<u32>,
}

/// The settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) interfaces: Vec<String>,
    pub(crate) socket: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) pin_dir: PathBuf,
    pub(crate) conn_max: u32,
    /// IPVS's `expire_quiescent_template` sysctl: a persistence template whose real server has weight
    /// 0 is not used (off by default, as in IPVS).
    pub(crate) expire_quiescent_template: bool,
    /// IPVS's `lblc_expiration` (s): an idle lblc entry is forgotten after it.
    pub(crate) lblc_expiration: u32,
    /// IPVS's `lblcr_expiration` (s): the same for lblcr, and how long a set of several real servers
    /// stays unchanged before it loses its most loaded one.
    pub(crate) lblcr_expiration: u32,
}

/// Reads the file named by `--config` (which must exist) or, failing that, `default_path` if it
/// exists, and merges the command line over it.
pub(crate) fn load(args: &Args, default_path: &Path) -> anyhow::Result<Config> {
    let file = match &args.config {
        Some(path) => Some(read_file(path)?),
        None => match std::fs::read_to_string(default_path) {
            Ok(text) => Some(parse(&text).with_context(|| format!("{}", default_path.display()))?),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", default_path.display()));
            }
        },
    };
    merge(args, file.unwrap_or_default())
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("{}", path.display()))
}

/// Parses the TOML text of a configuration file.
pub(crate) fn parse(text: &str) -> anyhow::Result<FileConfig> {
    Ok(toml::from_str(text)?)
}

/// Command-line values win over the file's, the file's over the defaults. `-i` replaces the file's
/// interface list rather than adding to it, so that an operator can run on exactly the interfaces named.
pub(crate) fn merge(args: &Args, file: FileConfig) -> anyhow::Result<Config> {
    let interfaces = if args.interfaces.is_empty() {
        file.interfaces.unwrap_or_default()
    } else {
        args.interfaces.clone()
    };
    let conn_max = args.conn_max.or(file.conn_max).unwrap_or(rvs_abi::CONN_DEFAULT);
    let limit = rvs_dataplane::CONN_MAX_LIMIT;
    anyhow::ensure!(
        (1..=limit).contains(&conn_max),
        "conn_max = {conn_max}: the connection table takes 1 to {limit} entries ({limit} is the largest \
         hash map the kernel makes)"
    );
    Ok(Config {
        interfaces,
        socket: args
            .socket
            .clone()
            .or(file.socket)
            .unwrap_or_else(|| rvs_api::DEFAULT_SOCKET.into()),
        state_dir: args
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
        pin_dir: args
            .pin_dir
            .clone()
            .or(file.pin_dir)
            .unwrap_or_else(|| DEFAULT_PIN_DIR.into()),
        conn_max,
        expire_quiescent_template: args.expire_quiescent_template
            || file.expire_quiescent_template.unwrap_or(false),
        lblc_expiration: expiration("lblc_expiration", args.lblc_expiration.or(file.lblc_expiration))?,
        lblcr_expiration: expiration(
            "lblcr_expiration",
            args.lblcr_expiration.or(file.lblcr_expiration),
        )?,
    })
}

/// An lblc/lblcr expiration as given (1 s up to what IPVS's sysctl holds), or IPVS's default.
fn expiration(name: &str, secs: Option<u32>) -> anyhow::Result<u32> {
    let secs = secs.unwrap_or(rvs_core::encode::LBLC_EXPIRATION_DEFAULT_S);
    let max = crate::cli::MAX_EXPIRATION_S;
    anyhow::ensure!(
        (1..=max).contains(&i64::from(secs)),
        "{name} = {secs}: give 1 to {max} seconds"
    );
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("rvsd").chain(argv.iter().copied())).unwrap()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rvsd-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const FULL: &str = r#"
interfaces = ["eth0", "eth1"]
socket = "/run/x.sock"
state_dir = "/var/lib/x"
pin_dir = "/sys/fs/bpf/x"
conn_max = 4096
expire_quiescent_template = true
lblc_expiration = 600
lblcr_expiration = 1200
"#;

    #[test]
    fn defaults_without_file_or_flags() {
        let c = merge(&args(&[]), FileConfig::default()).unwrap();
        assert_eq!(
            c,
            Config {
                interfaces: vec![],
                socket: "/run/rvs/rvsd.sock".into(),
                state_dir: "/var/lib/rvs".into(),
                pin_dir: "/sys/fs/bpf/rvs".into(),
                conn_max: 1_048_576,
                expire_quiescent_template: false,
                lblc_expiration: 86400,
                lblcr_expiration: 86400,
            }
        );
    }

    #[test]
    fn file_values_are_used_when_flags_are_absent() {
        let c = merge(&args(&[]), parse(FULL).unwrap()).unwrap();
        assert_eq!(c.interfaces, ["eth0", "eth1"]);
        assert_eq!(c.socket, PathBuf::from("/run/x.sock"));
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(c.pin_dir, PathBuf::from("/sys/fs/bpf/x"));
        assert_eq!(c.conn_max, 4096);
        assert!(c.expire_quiescent_template);
        assert_eq!((c.lblc_expiration, c.lblcr_expiration), (600, 1200));
    }

    #[test]
    fn lblc_expirations_are_checked_and_the_flags_win() {
        let c = merge(&args(&["--lblcr-expiration", "30"]), parse(FULL).unwrap()).unwrap();
        assert_eq!((c.lblc_expiration, c.lblcr_expiration), (600, 30));
        let e = merge(&args(&[]), parse("lblc_expiration = 0").unwrap()).unwrap_err();
        assert!(e.to_string().contains("lblc_expiration = 0"), "{e}");
        assert!(Args::try_parse_from(["rvsd", "--lblc-expiration", "0"]).is_err());
    }

    #[test]
    fn flags_override_the_file_field_by_field() {
        let c = merge(
            &args(&["-i", "veth9", "--conn-max", "77", "--socket", "/tmp/s"]),
            parse(FULL).unwrap(),
        )
        .unwrap();
        // -i replaces the list, it does not append to it.
        assert_eq!(c.interfaces, ["veth9"]);
        assert_eq!(c.conn_max, 77);
        assert_eq!(c.socket, PathBuf::from("/tmp/s"));
        // Not given on the command line: the file's.
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(c.pin_dir, PathBuf::from("/sys/fs/bpf/x"));
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let c = merge(&args(&[]), parse("pin_dir = \"/sys/fs/bpf/p\"\n").unwrap()).unwrap();
        assert_eq!(c.pin_dir, PathBuf::from("/sys/fs/bpf/p"));
        assert_eq!(c.socket, PathBuf::from("/run/rvs/rvsd.sock"));
        assert_eq!(c.conn_max, 1_048_576);
    }

    #[test]
    fn unknown_keys_and_zero_conn_max_are_refused() {
        assert!(parse("interface = [\"eth0\"]\n").is_err());
        assert!(merge(&args(&[]), parse("conn_max = 0\n").unwrap()).is_err());
    }

    #[test]
    fn conn_max_up_to_the_kernels_limit_is_accepted_and_above_it_refused() {
        for n in [16_777_216u32, 134_217_728] {
            let c = merge(&args(&[]), parse(&format!("conn_max = {n}\n")).unwrap()).unwrap();
            assert_eq!(c.conn_max, n);
        }
        let e = merge(&args(&[]), parse("conn_max = 134217729\n").unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains("1 to 134217728"), "{e:#}");
        // Beyond u32 is a type error of the file, not a silent wrap.
        assert!(parse("conn_max = 4294967296\n").is_err());
    }

    #[test]
    fn missing_default_file_is_not_an_error_but_a_missing_named_file_is() {
        let d = tempdir("missing");
        let c = load(&args(&["-i", "lo"]), &d.join("absent.toml")).unwrap();
        assert_eq!(c.interfaces, ["lo"]);
        let named = d.join("named.toml");
        let e = load(
            &args(&["--config", named.to_str().unwrap()]),
            &d.join("absent.toml"),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("named.toml"), "{e:#}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn default_file_is_read_when_present_and_named_file_wins_over_it() {
        let d = tempdir("present");
        let default = d.join("rvsd.toml");
        std::fs::write(&default, FULL).unwrap();
        let c = load(&args(&[]), &default).unwrap();
        assert_eq!(c.conn_max, 4096);

        let named = d.join("other.toml");
        std::fs::write(&named, "conn_max = 9\n").unwrap();
        let c = load(&args(&["--config", named.to_str().unwrap()]), &default).unwrap();
        assert_eq!(c.conn_max, 9);
        assert!(
            c.interfaces.is_empty(),
            "the default file must not be merged in as well"
        );

        std::fs::write(&default, "conn_max = \"x\"\n").unwrap();
        let e = load(&args(&[]), &default).unwrap_err();
        assert!(format!("{e:#}").contains("rvsd.toml"), "{e:#}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
