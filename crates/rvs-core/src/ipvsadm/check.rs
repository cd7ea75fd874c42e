//! ipvsadm's legality tables (`commands_v_options`, `tunnel_types_v_options`) and the checks that
//! walk them, with their messages.

use super::CliError;

/// Option columns of the tables, in ipvsadm's OPTC_* order; the values are bit positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Optc {
    Numeric = 0,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Mcast,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    OnePacket,
    PersistenceEngine,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

/// ipvsadm's `optnames`, indexed by [`Optc`].
const OPTNAMES: [&str; 34] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// The commands, in ipvsadm's CMD_* order (which is also the row order of the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

/// ipvsadm's `cmdnames`, indexed by [`Cmd`].
const CMDNAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// `commands_v_options`, one row per [`Cmd`], one char per [`Optc`] column:
/// `+` compulsory, `x` illegal, `1` at most one of the `1` columns, ` ` optional.
/// Columns: -n -c svc -s -p -M -r fwd -w -x -y -mc tot dmn -st -rt thr -pc srt sid -ex ops -pe -b grp port
/// ttl size tinf type tprt nocs csum remc.
const COMMANDS_V_OPTIONS: [&[u8; 34]; 14] = [
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // add-service
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // edit-service
    b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-service
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // flush
    b" 11xxxxxxxxx11       xxxxxxx xxxxx", // list
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // add-server
    b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-server
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // edit-server
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // set
    b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxx", // start-daemon
    b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx", // stop-daemon
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // restore
    b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // save
    b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // zero
];

/// Tunnel types, in IP_VS_CONN_F_TUNNEL_TYPE_* order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TunType {
    #[default]
    Ipip,
    Gue,
    Gre,
}

impl TunType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TunType::Ipip => "ipip",
            TunType::Gue => "gue",
            TunType::Gre => "gre",
        }
    }
}

/// Columns of `tunnel_types_v_options`.
const TUNOPTS: [Optc; 4] = [Optc::TunPort, Optc::TunNocsum, Optc::TunCsum, Optc::TunRemcsum];

/// `tunnel_types_v_options`: rows ipip, gue, gre; columns tun-port nocsum csum remcsum.
const TUNNEL_TYPES_V_OPTIONS: [&[u8; 4]; 3] = [b"xxxx", b"+111", b"x11x"];

/// The set of options given, one bit per [`Optc`] (ipvsadm's `options`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Options(u64);

impl Options {
    /// ipvsadm's `set_option`: each option at most once.
    pub(crate) fn set(&mut self, o: Optc) -> Result<(), CliError> {
        let bit = 1u64 << (o as u8);
        if self.0 & bit != 0 {
            return Err(CliError::fail(format!(
                "multiple '{}' options specified",
                OPTNAMES[o as usize]
            )));
        }
        self.0 |= bit;
        Ok(())
    }

    pub(crate) fn has(self, o: Optc) -> bool {
        self.0 & (1u64 << (o as u8)) != 0
    }

    fn has_index(self, j: usize) -> bool {
        self.0 & (1u64 << j) != 0
    }
}

/// ipvsadm's `generic_opt_check`: required, illegal and mutually exclusive options of `cmd`.
pub(crate) fn generic_opt_check(cmd: Cmd, options: Options) -> Result<(), CliError> {
    let row = COMMANDS_V_OPTIONS[cmd as usize];
    let cmdname = CMDNAMES[cmd as usize];
    let mut last = None;
    for (j, rule) in row.iter().enumerate() {
        if !options.has_index(j) {
            if *rule == b'+' {
                return Err(CliError::fail(format!(
                    "You need to supply the '{}' option for the '{cmdname}' command",
                    OPTNAMES[j]
                )));
            }
            continue;
        }
        match rule {
            b'x' => {
                return Err(CliError::fail(format!(
                    "Illegal '{}' option with the '{cmdname}' command",
                    OPTNAMES[j]
                )));
            }
            b'1' => match last {
                None => last = Some(j),
                Some(l) => {
                    return Err(CliError::fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{cmdname}' command",
                        OPTNAMES[j], OPTNAMES[l]
                    )));
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// ipvsadm's `tunnel_opt_check`: which `--tun-*` options a tunnel type needs or refuses.
pub(crate) fn tunnel_opt_check(tun: TunType, options: Options) -> Result<(), CliError> {
    let row = TUNNEL_TYPES_V_OPTIONS[tun as usize];
    let tunname = tun.name();
    let mut last = None;
    for (rule, optc) in row.iter().zip(TUNOPTS) {
        let name = OPTNAMES[optc as usize];
        if !options.has(optc) {
            if *rule == b'+' {
                return Err(CliError::fail(format!(
                    "You need to supply the '{name}' option for the '{tunname}' tunnel type"
                )));
            }
            continue;
        }
        match rule {
            b'x' => {
                return Err(CliError::fail(format!(
                    "Illegal '{name}' option with the '{tunname}' tunnel type"
                )));
            }
            b'1' => match last {
                None => last = Some(name),
                Some(l) => {
                    return Err(CliError::fail(format!(
                        "The option '{name}' conflicts with the '{l}' option in the '{tunname}' tunnel type"
                    )));
                }
            },
            _ => {}
        }
    }
    Ok(())
}
