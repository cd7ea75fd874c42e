//! rvsd's command line. Every setting is optional here so that [`crate::config`] can tell "not given"
//! from "given with the default value" when it merges the command line over the configuration file.

use std::path::PathBuf;

use clap::Parser;

/// The largest lblc/lblcr expiration: IPVS's sysctls hold jiffies in an int (INT_MAX / 1000 s at
/// HZ=1000).
pub(crate) const MAX_EXPIRATION_S: i64 = 2_147_483;

/// rvsd: the rvs daemon. Loads the XDP director on the given interfaces, restores the rules saved in the
/// state directory and serves rvsadm on a Unix socket. Runs in the foreground; SIGTERM stops the daemon
/// and leaves forwarding running.
#[derive(Debug, Default, Parser)]
#[command(name = "rvsd", version)]
pub(crate) struct Args {
    /// Interface to attach the director to (repeatable; replaces the file's `interfaces`).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub(crate) interfaces: Vec<String>,

    /// Configuration file (TOML). Without this flag /etc/rvs/rvsd.toml is read if it exists.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// API socket [default: /run/rvs/rvsd.sock].
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,

    /// Directory of the rules file [default: /var/lib/rvs].
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// bpffs directory of the pinned program, maps and links [default: /sys/fs/bpf/rvs].
    #[arg(long, value_name = "DIR")]
    pub(crate) pin_dir: Option<PathBuf>,

    /// Size of the connection table, in entries, 1 to 134217728 [default: 1048576]. The kernel
    /// allocates all of it at start (about 145 bytes an entry; a NAT connection takes two entries).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(rvs_dataplane::CONN_MAX_LIMIT)))]
    pub(crate) conn_max: Option<u32>,

    /// IPVS's expire_quiescent_template: a client's persistence template whose real server was
    /// quiesced (weight 0) is dropped at its next connection, which is scheduled afresh.
    #[arg(long)]
    pub(crate) expire_quiescent_template: bool,

    /// IPVS's lblc_expiration: an lblc service forgets a destination address's real server after
    /// this many seconds without a connection to it, 1 to 2147483 [default: 86400].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=MAX_EXPIRATION_S))]
    pub(crate) lblc_expiration: Option<u32>,

    /// IPVS's lblcr_expiration: as --lblc-expiration for lblcr services, and the time after which an
    /// unchanged set of more than one real server loses its most loaded one [default: 86400].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=MAX_EXPIRATION_S))]
    pub(crate) lblcr_expiration: Option<u32>,

    /// Detach the director from every interface, remove the pinned program and maps and the socket, exit.
    #[arg(long)]
    pub(crate) unload: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn interface_repeats_and_long_forms_parse() {
        let a = Args::try_parse_from([
            "rvsd",
            "-i",
            "eth0",
            "--interface=eth1",
            "-ieth2",
            "--socket",
            "/tmp/s",
            "--state-dir=/tmp/st",
            "--pin-dir",
            "/sys/fs/bpf/x",
            "--conn-max",
            "4096",
        ])
        .unwrap();
        assert_eq!(a.interfaces, ["eth0", "eth1", "eth2"]);
        assert_eq!(a.socket.unwrap(), PathBuf::from("/tmp/s"));
        assert_eq!(a.state_dir.unwrap(), PathBuf::from("/tmp/st"));
        assert_eq!(a.pin_dir.unwrap(), PathBuf::from("/sys/fs/bpf/x"));
        assert_eq!(a.conn_max, Some(4096));
        assert!(!a.unload);
    }

    #[test]
    fn conn_max_is_refused_at_zero_and_above_the_kernels_limit() {
        assert!(Args::try_parse_from(["rvsd", "--conn-max", "0"]).is_err());
        let a = Args::try_parse_from(["rvsd", "--conn-max", "16777216"]).unwrap();
        assert_eq!(a.conn_max, Some(16_777_216));
        let a = Args::try_parse_from(["rvsd", "--conn-max", "134217728"]).unwrap();
        assert_eq!(a.conn_max, Some(134_217_728));
        let e = Args::try_parse_from(["rvsd", "--conn-max", "134217729"]).unwrap_err();
        assert!(e.to_string().contains("1..=134217728"), "{e}");
    }

    #[test]
    fn unload_needs_no_interface() {
        let a = Args::try_parse_from(["rvsd", "--unload"]).unwrap();
        assert!(a.unload);
        assert!(a.interfaces.is_empty());
    }
}
