//! The local API socket: JSON lines (`rvs_api::Request` in, `rvs_api::Response` out), root only.
//!
//! Connections are served by their own tasks, which only parse and forward: every request goes through
//! one channel to the daemon's loop, so changes are applied one at a time, in arrival order.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rvs_api::{Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// Longest request line accepted. `-R` sends a whole rules file as one line, so this is generous.
const MAX_LINE: u64 = 64 << 20;

/// A request on its way to the daemon, with the slot for its answer.
pub(crate) struct Call {
    pub(crate) request: Request,
    pub(crate) reply: oneshot::Sender<Response>,
}

/// The bound listener; removes the socket file when dropped.
pub(crate) struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

impl Socket {
    /// Creates the parent directory, removes a stale socket left by a daemon that died, binds, and makes
    /// the socket 0600. Refuses to start if another daemon answers on `path`.
    pub(crate) fn bind(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    bail!("another rvsd is already serving {}", path.display());
                }
                fs::remove_file(path).with_context(|| format!("cannot remove stale {}", path.display()))?;
            }
            Ok(_) => bail!("{} exists and is not a socket", path.display()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
        }
        let listener = UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
        let socket = Self {
            listener,
            path: path.to_path_buf(),
        };
        // Before the first accept. Until then the umask's mode applies, which never grants others write
        // access (connecting needs it); the peer check below is the second line anyway.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        Ok(socket)
    }

    /// Waits for the next client.
    pub(crate) async fn accept(&self) -> std::io::Result<UnixStream> {
        Ok(self.listener.accept().await?.0)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Serves one client until it hangs up.
pub(crate) async fn serve(stream: UnixStream, calls: mpsc::Sender<Call>) {
    if let Err(e) = serve_inner(stream, calls).await {
        debug!("API client: {e:#}");
    }
}

async fn serve_inner(stream: UnixStream, calls: mpsc::Sender<Call>) -> anyhow::Result<()> {
    let uid = stream.peer_cred().context("SO_PEERCRED")?.uid();
    let (rd, mut wr) = stream.into_split();
    if !allowed(uid) {
        warn!("refused an API client with uid {uid}");
        let resp = Response::Failed("permission denied: rvsd serves root only".into());
        return send(&mut wr, &resp).await;
    }
    let mut rd = BufReader::new(rd);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut rd).take(MAX_LINE).read_line(&mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 == MAX_LINE {
            let resp = Response::Failed(format!("request longer than {MAX_LINE} bytes"));
            return send(&mut wr, &resp).await;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let (reply, answer) = oneshot::channel();
                calls
                    .send(Call { request, reply })
                    .await
                    .context("daemon is stopping")?;
                answer.await.context("daemon is stopping")?
            }
            Err(e) => Response::Failed(format!("malformed request: {e}")),
        };
        send(&mut wr, &resp).await?;
    }
}

/// Root, or the daemon's own user (who could do anything the daemon does anyway).
fn allowed(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

async fn send(wr: &mut tokio::net::unix::OwnedWriteHalf, resp: &Response) -> anyhow::Result<()> {
    let mut buf = serde_json::to_vec(resp)?;
    buf.push(b'\n');
    wr.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(tag: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!("rvsd-api-{tag}-{}", std::process::id()))
            .join("rvsd.sock")
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn bind_creates_the_dir_sets_0600_and_removes_the_socket_on_drop() {
        let p = path("bind");
        rt().block_on(async {
            let s = Socket::bind(&p).unwrap();
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            // A second daemon on the same path is refused while the first listens.
            let e = Socket::bind(&p).err().unwrap();
            assert!(e.to_string().contains("already serving"), "{e:#}");
            drop(s);
        });
        assert!(!p.exists());
        fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced_but_a_regular_file_is_not() {
        let p = path("stale");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap()); // leaves the file, nobody listening
        rt().block_on(async {
            drop(Socket::bind(&p).unwrap());
        });
        fs::write(&p, "x").unwrap();
        rt().block_on(async {
            let e = Socket::bind(&p).err().unwrap();
            assert!(e.to_string().contains("not a socket"), "{e:#}");
        });
        fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn requests_reach_the_daemon_and_bad_lines_get_failed() {
        let p = path("serve");
        rt().block_on(async {
            let s = Socket::bind(&p).unwrap();
            let (tx, mut rx) = mpsc::channel::<Call>(4);
            // The "daemon": answers List with an empty snapshot.
            tokio::spawn(async move {
                while let Some(c) = rx.recv().await {
                    assert_eq!(c.request, Request::List);
                    let _ = c.reply.send(Response::Snapshot(Default::default()));
                }
            });
            let p2 = p.clone();
            let client = tokio::task::spawn_blocking(move || {
                use std::io::{BufRead, Write};
                let mut c = rvs_api::Client::connect(&p2).unwrap();
                let r1 = c.call(&Request::List).unwrap();
                let r2 = c.call(&Request::List).unwrap();
                let mut raw = std::os::unix::net::UnixStream::connect(&p2).unwrap();
                raw.write_all(b"{\"nonsense\":1}\n").unwrap();
                let mut line = String::new();
                std::io::BufReader::new(raw).read_line(&mut line).unwrap();
                (r1, r2, line)
            });
            for _ in 0..2 {
                let st = s.accept().await.unwrap();
                tokio::spawn(serve(st, tx.clone()));
            }
            let (r1, r2, line) = client.await.unwrap();
            assert_eq!(r1, Response::Snapshot(Default::default()));
            assert_eq!(r2, r1);
            let bad: Response = serde_json::from_str(&line).unwrap();
            assert!(
                matches!(bad, Response::Failed(m) if m.starts_with("malformed request")),
                "{line}"
            );
        });
        fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}
