//! moto, the local AWS server (SQS, Secrets Manager, SSM) the tests run against: the one
//! `scripts/test.sh` started (`MOTO_ENDPOINT`), or one this process starts from `.venv` on first use
//! and that ends with it. Without either, the caller fails saying how to install it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The moto server for this process, started at most once.
static SERVER: OnceLock<String> = OnceLock::new();
/// The keeper shell of a server this process started, held so its stdin stays open; see
/// [`start_server`].
static KEEPER: Mutex<Option<Child>> = Mutex::new(None);

/// The endpoint URL of moto, without a trailing `/`.
pub fn endpoint() -> String {
    SERVER
        .get_or_init(|| match std::env::var("MOTO_ENDPOINT") {
            Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
            _ => start_server(),
        })
        .clone()
}

/// Starts `.venv/bin/moto_server` on a free port. A keeper shell owns it and kills it when its stdin
/// (a pipe this process holds) closes, that is when the process exits, however it exits.
fn start_server() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let moto = root.join(".venv/bin/moto_server");
    assert!(
        moto.exists(),
        "moto is not installed ({} is missing): run scripts/moto.sh install (or scripts/test.sh)",
        moto.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let keeper = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; read -r _; kill "$pid""#)
        .arg(&moto)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .expect("moto_server starts");
    *KEEPER.lock().unwrap_or_else(|e| e.into_inner()) = Some(keeper);
    // It listens after about half a second; a loaded CI machine gets 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = ([127, 0, 0, 1], port).into();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    format!("http://127.0.0.1:{port}")
}
