//! Which rvsd to talk to, and the connection to it.

use std::ffi::OsString;
use std::path::PathBuf;

use rvs_api::{Client, ClientError, DEFAULT_SOCKET, Request, Response};

/// Something that answers API requests: rvsd over its socket, or a fake in tests.
pub(crate) trait Daemon {
    /// One request, one response.
    fn call(&mut self, req: &Request) -> Result<Response, ClientError>;
}

/// rvsd behind a Unix socket, connected on first use (so `-h`, `-v` and bad command lines work
/// without a daemon).
pub(crate) struct SocketDaemon {
    path: PathBuf,
    client: Option<Client>,
}

impl SocketDaemon {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, client: None }
    }
}

impl Daemon for SocketDaemon {
    fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(Client::connect(&self.path)?),
        };
        client.call(req)
    }
}

/// Takes rvsadm's own leading options off `args` and returns the socket to use: `--socket PATH` or
/// `--socket=PATH` before the ipvsadm arguments, else `$RVS_SOCKET` when set and not empty, else
/// [`DEFAULT_SOCKET`]. Only the leading position is accepted, so that everything after it is parsed
/// exactly as ipvsadm would parse it (and `-R` lines never see the option).
pub(crate) fn take_socket(args: &mut Vec<String>, env: Option<OsString>) -> Result<PathBuf, String> {
    let mut path = None;
    loop {
        match args.first().map(String::as_str) {
            Some("--socket") => {
                if args.len() < 2 {
                    return Err("--socket: missing argument".to_owned());
                }
                path = Some(PathBuf::from(args.remove(1)));
                args.remove(0);
            }
            Some(a) if a.starts_with("--socket=") => {
                path = Some(PathBuf::from(&a["--socket=".len()..]));
                args.remove(0);
            }
            _ => break,
        }
    }
    Ok(path
        .or_else(|| env.filter(|e| !e.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::time::Duration;

    use rvs_api::Snapshot;
    use rvs_core::{ApplyError, Command};

    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn socket_from_option_env_or_default() {
        let mut a = strings(&["--socket", "/tmp/x.sock", "-Ln"]);
        assert_eq!(
            take_socket(&mut a, Some("/env".into())).unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        assert_eq!(a, strings(&["-Ln"]));
        let mut a = strings(&["--socket=/tmp/y.sock", "-S", "-n"]);
        assert_eq!(take_socket(&mut a, None).unwrap(), PathBuf::from("/tmp/y.sock"));
        assert_eq!(a, strings(&["-S", "-n"]));
        let mut a = strings(&["-Ln"]);
        assert_eq!(
            take_socket(&mut a, Some("/env".into())).unwrap(),
            PathBuf::from("/env")
        );
        assert_eq!(
            take_socket(&mut a, Some("".into())).unwrap(),
            PathBuf::from(DEFAULT_SOCKET)
        );
        assert_eq!(take_socket(&mut a, None).unwrap(), PathBuf::from(DEFAULT_SOCKET));
        // Later on the line it is not rvsadm's: ipvsadm's grammar will call it an unknown option.
        let mut a = strings(&["-Ln", "--socket", "/x"]);
        assert_eq!(take_socket(&mut a, None).unwrap(), PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(a.len(), 3);
        assert!(take_socket(&mut strings(&["--socket"]), None).is_err());
    }

    /// A one-connection fake rvsd: answers each request line with the next canned response line and
    /// hands back the request lines it read.
    fn fake_rvsd(answers: Vec<Response>) -> (PathBuf, std::thread::JoinHandle<Vec<String>>) {
        let dir = std::env::temp_dir().join(format!("rvsadm-test-{}-{}", std::process::id(), answers.len()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rvsd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut writer = conn;
            let mut seen = Vec::new();
            for answer in answers {
                let mut line = String::new();
                assert!(reader.read_line(&mut line).unwrap() > 0, "client hung up early");
                seen.push(line);
                let mut out = serde_json::to_vec(&answer).unwrap();
                out.push(b'\n');
                writer.write_all(&out).unwrap();
            }
            seen
        });
        (path, handle)
    }

    #[test]
    fn framing_is_one_json_line_each_way() {
        let snap = Snapshot {
            conn_tab_size: 4096,
            timeouts: Default::default(),
            conns: vec![],
            services: vec![],
        };
        let answers = vec![
            Response::Ok,
            Response::Refused {
                index: 1,
                error: ApplyError::ServiceExists,
            },
            Response::Snapshot(snap.clone()),
        ];
        let (path, server) = fake_rvsd(answers.clone());
        let mut d = SocketDaemon::new(path.clone());
        let reqs = [
            Request::Apply(vec![Command::Clear]),
            Request::Apply(vec![Command::Clear; 2]),
            Request::List,
        ];
        for (req, want) in reqs.iter().zip(&answers) {
            assert_eq!(&d.call(req).unwrap(), want);
        }
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 3);
        for (line, req) in seen.iter().zip(&reqs) {
            assert!(
                line.ends_with('\n') && !line[..line.len() - 1].contains('\n'),
                "{line:?}"
            );
            assert_eq!(&serde_json::from_str::<Request>(line).unwrap(), req);
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn no_daemon_is_a_connect_error() {
        let path = std::env::temp_dir().join(format!("rvsadm-test-{}-absent.sock", std::process::id()));
        let err = SocketDaemon::new(path).call(&Request::List).unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    }
}
