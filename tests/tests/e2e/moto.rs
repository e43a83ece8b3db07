//! moto's SQS server for the queue tests: the one `scripts/test.sh` started (`MOTO_ENDPOINT`), or one
//! this test binary starts from `.venv` on first use and that ends with it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use shared::queue::sqs::{SqsQueue, create_fifo_pair};

/// The moto server for this test binary, started at most once.
static SERVER: OnceLock<String> = OnceLock::new();
/// The keeper shell of a server this binary started, held so its stdin stays open; see
/// [`start_server`].
static KEEPER: Mutex<Option<Child>> = Mutex::new(None);

pub fn endpoint() -> String {
    SERVER
        .get_or_init(|| match std::env::var("MOTO_ENDPOINT") {
            Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
            _ => start_server(),
        })
        .clone()
}

/// Starts `.venv/bin/moto_server` on a free port. A keeper shell owns it and kills it when its stdin
/// (a pipe this process holds) closes, that is when the test binary exits, however it exits.
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

/// An SQS client pointed at moto, with static test credentials (nothing read from the machine's AWS
/// configuration).
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// A FIFO queue and its dead-letter queue, named uniquely so tests don't see each other's messages.
pub struct FifoPair {
    pub main: SqsQueue,
    pub dlq: SqsQueue,
    pub main_url: String,
    pub dlq_url: String,
    pub client: aws_sdk_sqs::Client,
}

/// Visibility timeout of the test queues: longer than any test, so a message is redelivered only when
/// a test releases it.
pub const VISIBILITY: Duration = Duration::from_secs(60);

pub async fn fifo_pair(max_receives: u32) -> FifoPair {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "e2e-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let client = sqs_client().await;
    let (main_url, dlq_url) = create_fifo_pair(&client, &name, max_receives, VISIBILITY)
        .await
        .expect("the FIFO queue pair is created");
    FifoPair {
        main: SqsQueue::new(client.clone(), main_url.clone()),
        dlq: SqsQueue::new(client.clone(), dlq_url.clone()),
        main_url,
        dlq_url,
        client,
    }
}
