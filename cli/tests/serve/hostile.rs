//! Clients that do not play by the rules: strangers sending large bodies, heads and bodies trickled
//! byte by byte, connections that say nothing, more connections than `serve` takes at once. Raw TCP,
//! because an HTTP client library would not misbehave on request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinSet;

use super::{SECRET, Serve, USER, delivery, open_work_items, start_sim};

/// A generous bound on anything a test waits for; reaching it means the test failed.
const HANG_GUARD: Duration = Duration::from_secs(90);
/// What the issue allows `serve` to grow to under attack.
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Between two trickled pieces.
const TRICKLE: Duration = Duration::from_millis(100);

fn basic() -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{SECRET}"));
    format!("Authorization: Basic {token}\r\n")
}

fn head(auth: bool, framing: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nHost: ado-sync\r\nContent-Type: application/json\r\n{}{framing}\r\n",
        if auth { basic() } else { String::new() }
    )
}

fn content_length(n: usize) -> String {
    format!("Content-Length: {n}\r\n")
}

const CHUNKED: &str = "Transfer-Encoding: chunked\r\n";

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq)]
enum End {
    /// The server answered with this status, then closed (or would have kept the connection).
    Answered(u16),
    /// The server closed the connection without a word.
    Cut,
}

/// Reads until the status line is in (or the connection ends); the rest is discarded.
async fn read_status(reader: &mut OwnedReadHalf) -> End {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(line_end) = got.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&got[..line_end]).into_owned();
            let status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
            return End::Answered(status);
        }
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return End::Cut,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Waits until the server closes the connection; what it sends before is discarded.
async fn read_to_close(reader: &mut OwnedReadHalf) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn connect(addr: SocketAddr) -> (OwnedReadHalf, OwnedWriteHalf) {
    TcpStream::connect(addr).await.unwrap().into_split()
}

/// Sends `head`, then `body_bytes` of body as fast as the server takes them (chunk-encoded when
/// `chunked`), and returns the answer. Write errors are expected: the server may close first.
async fn send_large(addr: SocketAddr, head: String, body_bytes: usize, chunked: bool) -> End {
    let (mut reader, mut writer) = connect(addr).await;
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let piece = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_bytes {
            if chunked {
                writer
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                writer.write_all(&piece).await?;
                writer.write_all(b"\r\n").await?;
            } else {
                writer.write_all(&piece).await?;
            }
            sent += piece.len();
        }
        // Held open (not closed) until the answer is in, as a client waiting for it would.
        Ok::<_, std::io::Error>(writer)
    });
    let end = read_status(&mut reader).await;
    sending.abort();
    end
}

/// Sends `head` a few bytes at a time and never finishes it.
async fn trickle_head(addr: SocketAddr) -> End {
    let (mut reader, mut writer) = connect(addr).await;
    let done = Arc::new(AtomicBool::new(false));
    let trickling = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut pieces = head(false, "").into_bytes();
            // Never the blank line that ends a head.
            pieces.truncate(pieces.len() - 2);
            for piece in pieces.chunks(3).cycle() {
                if done.load(Ordering::SeqCst) || writer.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(TRICKLE).await;
            }
        })
    };
    let end = read_status(&mut reader).await;
    done.store(true, Ordering::SeqCst);
    trickling.abort();
    end
}

/// Sends an authenticated head announcing a body, then the body a few bytes at a time.
async fn trickle_body(addr: SocketAddr) -> End {
    let (mut reader, mut writer) = connect(addr).await;
    let done = Arc::new(AtomicBool::new(false));
    let trickling = {
        let done = done.clone();
        tokio::spawn(async move {
            if writer
                .write_all(head(true, &content_length(100_000)).as_bytes())
                .await
                .is_err()
            {
                return;
            }
            while !done.load(Ordering::SeqCst) && writer.write_all(b"{  ").await.is_ok() {
                tokio::time::sleep(TRICKLE).await;
            }
        })
    };
    let end = read_status(&mut reader).await;
    done.store(true, Ordering::SeqCst);
    trickling.abort();
    end
}

/// Connects and says nothing.
async fn silent(addr: SocketAddr) -> End {
    let (mut reader, _writer) = connect(addr).await;
    read_status(&mut reader).await
}

/// One authenticated delivery, then the connection is left open; returns the answer once the
/// server has closed the connection.
async fn idle_after_a_delivery(addr: SocketAddr, body: Vec<u8>) -> End {
    let (mut reader, mut writer) = connect(addr).await;
    writer
        .write_all(head(true, &content_length(body.len())).as_bytes())
        .await
        .unwrap();
    writer.write_all(&body).await.unwrap();
    let end = read_status(&mut reader).await;
    read_to_close(&mut reader).await;
    end
}

fn tally(ends: &[End]) -> String {
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for e in ends {
        *counts.entry(format!("{e:?}")).or_default() += 1;
    }
    format!("{counts:?}")
}

async fn join_all(tasks: JoinSet<End>) -> Vec<End> {
    tokio::time::timeout(HANG_GUARD, tasks.join_all())
        .await
        .expect("every connection ends")
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_clients_keep_serve_under_64_mib_and_the_slow_ones_are_cut_off() {
    let (_sim, urls) = start_sim();
    let org = urls["ado_org_url"].as_str().unwrap().trim_end_matches('/');
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &dir.path().join("q.db"),
        &[
            ("ADO_ORG_URL", org.to_owned()),
            ("ADO_PAT", "anything".into()),
            ("CATALOG_DB", dir.path().join("c.db").display().to_string()),
            // One line per refused stranger would be most of the test's output.
            ("LOG_LEVEL", "error".into()),
        ],
        &[
            "--header-timeout-secs",
            "1",
            "--body-timeout-secs",
            "2",
            "--idle-timeout-secs",
            "2",
        ],
    );
    let addr = serve.addr;
    let client = reqwest::Client::new();
    let (project_id, work_item) = open_work_items(&client, org, 1).await.remove(0);
    let six_mib = 6 * 1024 * 1024;

    let mut strangers = JoinSet::new();
    for _ in 0..60 {
        strangers.spawn(send_large(
            addr,
            head(false, &content_length(six_mib)),
            six_mib,
            false,
        ));
    }
    for _ in 0..20 {
        strangers.spawn(send_large(addr, head(false, CHUNKED), six_mib, true));
    }
    let mut heads = JoinSet::new();
    for _ in 0..30 {
        heads.spawn(trickle_head(addr));
    }
    for _ in 0..10 {
        heads.spawn(silent(addr));
    }
    let mut bodies = JoinSet::new();
    for _ in 0..20 {
        bodies.spawn(trickle_body(addr));
    }
    let mut idle = JoinSet::new();
    for n in 0..10 {
        idle.spawn(idle_after_a_delivery(
            addr,
            delivery(&project_id, work_item, n),
        ));
    }

    let strangers = join_all(strangers).await;
    assert!(
        strangers
            .iter()
            .all(|e| matches!(e, End::Answered(401) | End::Cut)),
        "strangers get 401 (or a closed connection while still sending): {}",
        tally(&strangers)
    );
    assert!(
        strangers.contains(&End::Answered(401)),
        "{}",
        tally(&strangers)
    );
    let heads = join_all(heads).await;
    assert!(
        heads.iter().all(|e| *e == End::Cut),
        "unfinished heads are cut off without an answer: {}",
        tally(&heads)
    );
    let bodies = join_all(bodies).await;
    assert!(
        bodies.iter().all(|e| *e == End::Answered(408)),
        "unfinished bodies are answered 408: {}",
        tally(&bodies)
    );
    let idle = join_all(idle).await;
    assert!(
        idle.iter().all(|e| *e == End::Answered(202)),
        "idle connections were served, then closed: {}",
        tally(&idle)
    );

    let after = client
        .post(serve.url("/webhook"))
        .basic_auth(USER, Some(SECRET))
        .body(delivery(&project_id, work_item, 100))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 202, "still serving after the attack");
    let peak = serve.peak_rss_kib();
    eprintln!("serve peaked at {peak} KiB");
    assert!(
        peak < RSS_LIMIT_KIB,
        "serve peaked at {peak} KiB under attack (limit {RSS_LIMIT_KIB} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_is_answered_401_before_sending_any_of_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &dir.path().join("q.db"),
        &[
            ("ADO_ORG_URL", "http://127.0.0.1:9/org".into()),
            ("ADO_PAT", "anything".into()),
            ("CATALOG_DB", dir.path().join("c.db").display().to_string()),
        ],
        &[],
    );
    for framing in [content_length(6 * 1024 * 1024), CHUNKED.to_owned()] {
        let (mut reader, mut writer) = connect(serve.addr).await;
        writer
            .write_all(head(false, &framing).as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(HANG_GUARD, reader.read_to_end(&mut answer))
            .await
            .expect("answered and closed without the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{answer}"
        );
        drop(writer);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_is_refused_413_from_its_content_length_or_once_the_limit_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 64 * 1024;
    let serve = Serve::start(
        &dir.path().join("q.db"),
        &[
            ("ADO_ORG_URL", "http://127.0.0.1:9/org".into()),
            ("ADO_PAT", "anything".into()),
            ("CATALOG_DB", dir.path().join("c.db").display().to_string()),
            ("WEBHOOK_MAX_BODY_BYTES", limit.to_string()),
        ],
        &[],
    );
    // Nothing of the body is sent: the answer must come from the head alone.
    let (mut reader, mut writer) = connect(serve.addr).await;
    writer
        .write_all(head(true, &content_length(limit + 1)).as_bytes())
        .await
        .unwrap();
    let end = tokio::time::timeout(HANG_GUARD, read_status(&mut reader))
        .await
        .unwrap();
    assert_eq!(end, End::Answered(413));
    drop(writer);

    let end = tokio::time::timeout(
        HANG_GUARD,
        send_large(serve.addr, head(true, CHUNKED), 4 * limit, true),
    )
    .await
    .unwrap();
    assert_eq!(end, End::Answered(413));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &dir.path().join("q.db"),
        &[
            ("ADO_ORG_URL", "http://127.0.0.1:9/org".into()),
            ("ADO_PAT", "anything".into()),
            ("CATALOG_DB", dir.path().join("c.db").display().to_string()),
        ],
        &["--max-connections", "1", "--header-timeout-secs", "60"],
    );
    let holder = TcpStream::connect(serve.addr).await.unwrap();
    let (mut reader, mut writer) = connect(serve.addr).await;
    writer
        .write_all(b"GET /health HTTP/1.1\r\nHost: ado-sync\r\n\r\n")
        .await
        .unwrap();
    // The holder keeps the only slot for up to a minute: no answer can come while it is open.
    let early = tokio::time::timeout(Duration::from_millis(500), read_status(&mut reader)).await;
    assert!(
        early.is_err(),
        "answered while the only slot was taken: {early:?}"
    );
    drop(holder);
    let end = tokio::time::timeout(HANG_GUARD, read_status(&mut reader))
        .await
        .expect("served once the slot is free");
    assert_eq!(end, End::Answered(200));
}
