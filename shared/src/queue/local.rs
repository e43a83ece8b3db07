//! A durable local queue for the self-hosted mode: one SQLite file, SQS FIFO semantics where they
//! matter (dedup window, per-group order, visibility timeout, dead letters after too many receives).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::Notify;

use super::sqs::MAX_MESSAGE_BYTES;
use super::{ChangeMessage, Queue, QueueConsumer, QueueError, Received};
use crate::failure::Failure;

/// How the queue behaves; the defaults are SQS's (dedup window) and the deployed queue's.
#[derive(Debug, Clone)]
pub struct LocalQueueOptions {
    /// How long a received message stays hidden before it is delivered again.
    pub visibility_timeout: Duration,
    /// Receives after which a message is a dead letter instead of being delivered again (SQS's
    /// `maxReceiveCount`).
    pub max_receives: u32,
    /// How long a dedup id is remembered after its first send, delivered or not (SQS: 5 minutes).
    pub dedup_window: Duration,
}

impl Default for LocalQueueOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(60),
            max_receives: 5,
            dedup_window: Duration::from_secs(300),
        }
    }
}

/// A message that was received too often.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub message_id: String,
    pub group_id: String,
    pub dedup_id: String,
    pub body: String,
    pub receive_count: u32,
    /// Unix milliseconds.
    pub died_at: i64,
}

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub struct LocalQueue {
    conn: Arc<Mutex<Connection>>,
    options: LocalQueueOptions,
    /// Wakes a waiting receive when something becomes visible through this process.
    notify: Arc<Notify>,
    clock: Clock,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL UNIQUE,
    group_id      TEXT NOT NULL,
    dedup_id      TEXT NOT NULL,
    body          TEXT NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS messages_group ON messages (group_id, seq);
CREATE TABLE IF NOT EXISTS dedup (
    dedup_id   TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL,
    group_id      TEXT NOT NULL,
    dedup_id      TEXT NOT NULL,
    body          TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    died_at       INTEGER NOT NULL
);
";

/// How often a waiting receive looks again for messages whose visibility timeout ran out (those wake
/// nobody).
const POLL: Duration = Duration::from_millis(100);

fn db_error(e: rusqlite::Error) -> QueueError {
    // A busy or full database clears up; a broken file needs a person, but retrying does no harm.
    QueueError::Transient(Failure::new("local queue database").with_source(e))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LocalQueue {
    /// Opens (or creates) the queue in the SQLite file at `path`; what was queued before a restart is
    /// still there, and messages in flight then become visible when their timeout runs out.
    pub fn open(path: &Path, options: LocalQueueOptions) -> Result<Self, QueueError> {
        Self::open_file(path, OpenFlags::default(), options)
    }

    /// Opens the queue at `path` only if the file is there: the dead-letter tools must not leave an
    /// empty queue behind a mistyped path and report it as having no dead letters.
    pub fn open_existing(path: &Path, options: LocalQueueOptions) -> Result<Self, QueueError> {
        let flags = OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE;
        Self::open_file(path, flags, options)
    }

    fn open_file(
        path: &Path,
        flags: OpenFlags,
        options: LocalQueueOptions,
    ) -> Result<Self, QueueError> {
        let conn = Connection::open_with_flags(path, flags).map_err(|e| {
            QueueError::invalid(format!("cannot open local queue {}: {e}", path.display()))
        })?;
        Self::with_connection(
            conn,
            options,
            Arc::new(|| chrono::Utc::now().timestamp_millis()),
        )
    }

    fn with_connection(
        conn: Connection,
        options: LocalQueueOptions,
        clock: Clock,
    ) -> Result<Self, QueueError> {
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(db_error)?;
        conn.execute_batch(SCHEMA).map_err(db_error)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            options,
            notify: Arc::new(Notify::new()),
            clock,
        })
    }

    /// Runs a database step off the async threads: SQLite commits wait on the disk.
    async fn with_db<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, i64) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let now = (self.clock)();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn, now)
        })
        .await
        .map_err(|e| QueueError::transient(format!("local queue task: {e}")))?
    }

    /// The messages that were received too often, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        self.with_db(|conn, _| {
            let mut stmt = conn
                .prepare(
                    "SELECT message_id, group_id, dedup_id, body, receive_count, died_at
                     FROM dead_letters ORDER BY seq",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(DeadLetter {
                        message_id: r.get(0)?,
                        group_id: r.get(1)?,
                        dedup_id: r.get(2)?,
                        body: r.get(3)?,
                        receive_count: r.get(4)?,
                        died_at: r.get(5)?,
                    })
                })
                .map_err(db_error)?;
            rows.collect::<Result<_, _>>().map_err(db_error)
        })
        .await
    }

    /// Puts the oldest `max` dead letters (all when `None`) back at the end of the queue with a fresh
    /// receive count, in the order they died; returns how many. The dedup window is bypassed: these
    /// were delivered before. One transaction: a crash moves all of them or none.
    pub async fn replay_dead_letters(&self, max: Option<usize>) -> Result<usize, QueueError> {
        // SQLite reads a negative LIMIT as none.
        let limit = max.map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX));
        let n = self
            .with_db(move |conn, now| {
                let tx = conn.transaction().map_err(db_error)?;
                // Dead letters die in `seq` order, so the oldest `max` are those up to a cutoff.
                let cutoff: Option<i64> = tx
                    .query_row(
                        "SELECT max(seq) FROM
                             (SELECT seq FROM dead_letters ORDER BY seq LIMIT ?1)",
                        params![limit],
                        |r| r.get(0),
                    )
                    .map_err(db_error)?;
                let Some(cutoff) = cutoff else {
                    return Ok(0);
                };
                let n = tx
                    .execute(
                        "INSERT INTO messages (message_id, group_id, dedup_id, body, visible_at)
                         SELECT lower(hex(randomblob(16))), group_id, dedup_id, body, ?1
                         FROM dead_letters WHERE seq <= ?2 ORDER BY seq",
                        params![now, cutoff],
                    )
                    .map_err(db_error)?;
                tx.execute("DELETE FROM dead_letters WHERE seq <= ?1", params![cutoff])
                    .map_err(db_error)?;
                tx.commit().map_err(db_error)?;
                Ok(n)
            })
            .await?;
        self.notify.notify_waiters();
        Ok(n)
    }

    /// For the one consumer of the file, at its start: messages a previous process received and never
    /// finished (it was killed, or the machine went down) are delivered again now rather than after
    /// their visibility timeout, so a restart does not hold their groups back. Messages released for
    /// a later retry keep their delay, and every receive count stays, so a message that kills the
    /// process each time still ends among the dead letters. Returns how many came back.
    pub async fn recover_in_flight(&self) -> Result<usize, QueueError> {
        let n = self
            .with_db(|conn, now| {
                conn.execute(
                    "UPDATE messages SET visible_at = ?1, receipt = NULL
                     WHERE receipt IS NOT NULL AND visible_at > ?1",
                    params![now],
                )
                .map_err(db_error)
            })
            .await?;
        self.notify.notify_waiters();
        Ok(n)
    }

    /// How many messages are queued or in flight (not dead letters).
    pub async fn len(&self) -> Result<usize, QueueError> {
        self.with_db(|conn, _| {
            conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
                .map_err(db_error)
        })
        .await
    }

    pub async fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len().await? == 0)
    }

    fn take_visible(
        conn: &mut Connection,
        now: i64,
        max: usize,
        options: &LocalQueueOptions,
    ) -> Result<Vec<Received>, QueueError> {
        let tx = conn.transaction().map_err(db_error)?;
        // Visible messages that used up their receives are dead letters now (SQS moves them on the
        // receive after maxReceiveCount), so they neither get delivered nor hold their group back.
        tx.execute(
            "INSERT INTO dead_letters (message_id, group_id, dedup_id, body, receive_count, died_at)
             SELECT message_id, group_id, dedup_id, body, receive_count, ?1 FROM messages
             WHERE visible_at <= ?1 AND receive_count >= ?2 ORDER BY seq",
            params![now, options.max_receives],
        )
        .map_err(db_error)?;
        tx.execute(
            "DELETE FROM messages WHERE visible_at <= ?1 AND receive_count >= ?2",
            params![now, options.max_receives],
        )
        .map_err(db_error)?;
        // FIFO: a group delivers in order and nothing while one of its messages is in flight (hidden).
        let candidates: Vec<(i64, u32)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT seq, receive_count FROM messages m
                     WHERE visible_at <= ?1
                       AND NOT EXISTS (SELECT 1 FROM messages h
                                       WHERE h.group_id = m.group_id AND h.visible_at > ?1)
                     ORDER BY seq LIMIT ?2",
                )
                .map_err(db_error)?;
            stmt.query_map(params![now, max as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_error)?
                .collect::<Result<_, _>>()
                .map_err(db_error)?
        };
        let hidden_until = now.saturating_add(millis(options.visibility_timeout));
        let mut out = Vec::with_capacity(candidates.len());
        for (seq, count) in candidates {
            let receipt = uuid::Uuid::new_v4().simple().to_string();
            let (message_id, group_id, body): (String, String, String) = tx
                .query_row(
                    "UPDATE messages SET visible_at = ?1, receive_count = receive_count + 1,
                         receipt = ?2
                     WHERE seq = ?3 RETURNING message_id, group_id, body",
                    params![hidden_until, receipt, seq],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(db_error)?;
            out.push(Received {
                receipt,
                message_id,
                group_id: Some(group_id),
                body,
                receive_count: count + 1,
            });
        }
        tx.commit().map_err(db_error)?;
        Ok(out)
    }

    #[cfg(test)]
    fn in_memory_with_clock(options: LocalQueueOptions, clock: Clock) -> Self {
        Self::with_connection(Connection::open_in_memory().unwrap(), options, clock).unwrap()
    }
}

#[async_trait]
impl Queue for LocalQueue {
    /// A dedup id seen within the window returns the first message's id and queues nothing, also when
    /// that message was already delivered and deleted (as SQS does).
    async fn send(&self, message: &ChangeMessage) -> Result<String, QueueError> {
        let body = serde_json::to_string(message)
            .map_err(|e| QueueError::invalid(format!("message does not serialise: {e}")))?;
        // Same limit as SQS, so the self-hosted mode doesn't accept what the deployed one rejects.
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(QueueError::invalid(format!(
                "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES}",
                body.len()
            )));
        }
        let group_id = message.group_id();
        let dedup_id = message.dedup_id();
        let window = millis(self.options.dedup_window);
        let id = self
            .with_db(move |conn, now| {
                let tx = conn.transaction().map_err(db_error)?;
                tx.execute("DELETE FROM dedup WHERE expires_at <= ?1", params![now])
                    .map_err(db_error)?;
                let seen: Option<String> = tx
                    .query_row(
                        "SELECT message_id FROM dedup WHERE dedup_id = ?1",
                        params![dedup_id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db_error)?;
                if let Some(id) = seen {
                    return Ok(id);
                }
                let id = uuid::Uuid::new_v4().to_string();
                tx.execute(
                    "INSERT INTO messages (message_id, group_id, dedup_id, body, visible_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, group_id, dedup_id, body, now],
                )
                .map_err(db_error)?;
                tx.execute(
                    "INSERT INTO dedup (dedup_id, message_id, expires_at) VALUES (?1, ?2, ?3)",
                    params![dedup_id, id, now.saturating_add(window)],
                )
                .map_err(db_error)?;
                tx.commit().map_err(db_error)?;
                Ok(id)
            })
            .await?;
        self.notify.notify_waiters();
        Ok(id)
    }
}

#[async_trait]
impl QueueConsumer for LocalQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        let max = max.max(1);
        loop {
            // Registered before looking, so a send between the look and the wait is not missed.
            let notified = self.notify.notified();
            let options = self.options.clone();
            let got = self
                .with_db(move |conn, now| Self::take_visible(conn, now, max, &options))
                .await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL), notified).await;
        }
    }

    /// Acknowledging a message that is already gone (acked before, or dead) succeeds, as in SQS.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.with_db(move |conn, _| {
            conn.execute("DELETE FROM messages WHERE receipt = ?1", params![receipt])
                .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    /// Visible again after `delay`; a message that used up its receives becomes a dead letter now
    /// rather than after one more wasted delivery.
    async fn release(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        let max_receives = self.options.max_receives;
        let delay = millis(delay);
        self.with_db(move |conn, now| {
            let tx = conn.transaction().map_err(db_error)?;
            let count: Option<u32> = tx
                .query_row(
                    "SELECT receive_count FROM messages WHERE receipt = ?1",
                    params![receipt],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_error)?;
            let Some(count) = count else {
                return Err(QueueError::Invalid(
                    "receipt is not in flight (acknowledged, dead, or received again)".into(),
                ));
            };
            if count >= max_receives {
                tx.execute(
                    "INSERT INTO dead_letters
                         (message_id, group_id, dedup_id, body, receive_count, died_at)
                     SELECT message_id, group_id, dedup_id, body, receive_count, ?1
                     FROM messages WHERE receipt = ?2",
                    params![now, receipt],
                )
                .map_err(db_error)?;
                tx.execute("DELETE FROM messages WHERE receipt = ?1", params![receipt])
                    .map_err(db_error)?;
            } else {
                // The receipt goes with the hold: a released message is no longer in anyone's hands,
                // which is what [`LocalQueue::recover_in_flight`] tells apart from a delayed retry.
                tx.execute(
                    "UPDATE messages SET visible_at = ?1, receipt = NULL WHERE receipt = ?2",
                    params![now.saturating_add(delay), receipt],
                )
                .map_err(db_error)?;
            }
            tx.commit().map_err(db_error)?;
            Ok(())
        })
        .await?;
        self.notify.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::queue::{Change, message::MESSAGE_VERSION};

    fn msg(event_id: &str, work_item: u64) -> ChangeMessage {
        ChangeMessage {
            version: MESSAGE_VERSION,
            event_id: event_id.into(),
            event_type: "workitem.updated".into(),
            publisher_id: "tfs".into(),
            subscription_id: None,
            created_date: None,
            project_id: None,
            base_url: None,
            change: Change::WorkItem {
                id: work_item,
                deleted: false,
                snapshot: None,
            },
        }
    }

    fn event_id(r: &Received) -> String {
        serde_json::from_str::<ChangeMessage>(&r.body)
            .unwrap()
            .event_id
    }

    /// A queue on a hand-moved clock, so windows and timeouts are tested without sleeping.
    fn queue(options: LocalQueueOptions) -> (LocalQueue, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(1_000_000));
        let clock = now.clone();
        let q = LocalQueue::in_memory_with_clock(
            options,
            Arc::new(move || clock.load(Ordering::SeqCst)),
        );
        (q, now)
    }

    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test]
    async fn a_sent_message_is_received_once_and_gone_after_ack() {
        let (q, _) = queue(LocalQueueOptions::default());
        let id = q.send(&msg("e1", 1)).await.unwrap();
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message_id, id);
        assert_eq!(got[0].receive_count, 1);
        assert_eq!(
            serde_json::from_str::<ChangeMessage>(&got[0].body).unwrap(),
            msg("e1", 1)
        );
        assert!(
            q.receive(10, NO_WAIT).await.unwrap().is_empty(),
            "in flight"
        );
        q.ack(&got[0].receipt).await.unwrap();
        assert!(q.is_empty().await.unwrap());
        q.ack(&got[0].receipt).await.unwrap();
    }

    #[tokio::test]
    async fn a_redelivered_event_is_dropped_for_the_dedup_window_even_after_delivery() {
        let (q, now) = queue(LocalQueueOptions::default());
        let first = q.send(&msg("e1", 1)).await.unwrap();
        assert_eq!(q.send(&msg("e1", 1)).await.unwrap(), first);
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 1);
        q.ack(&got[0].receipt).await.unwrap();

        now.fetch_add(299_000, Ordering::SeqCst);
        q.send(&msg("e1", 1)).await.unwrap();
        assert!(
            q.is_empty().await.unwrap(),
            "still inside the 5-minute window"
        );

        now.fetch_add(2_000, Ordering::SeqCst);
        let again = q.send(&msg("e1", 1)).await.unwrap();
        assert_ne!(again, first);
        assert_eq!(q.receive(10, NO_WAIT).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_group_delivers_in_order_and_waits_for_its_message_in_flight() {
        let (q, _) = queue(LocalQueueOptions::default());
        q.send(&msg("a1", 1)).await.unwrap();
        q.send(&msg("a2", 1)).await.unwrap();
        q.send(&msg("b1", 2)).await.unwrap();

        let first = q.receive(1, NO_WAIT).await.unwrap();
        assert_eq!(event_id(&first[0]), "a1");
        // a2 is next in line, but its group has a1 in flight: only b1 flows.
        let second = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(second.iter().map(event_id).collect::<Vec<_>>(), ["b1"]);

        q.ack(&first[0].receipt).await.unwrap();
        let third = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(third.iter().map(event_id).collect::<Vec<_>>(), ["a2"]);
    }

    #[tokio::test]
    async fn one_receive_returns_a_groups_messages_in_order() {
        let (q, _) = queue(LocalQueueOptions::default());
        for e in ["a1", "b1", "a2", "a3"] {
            q.send(&msg(e, if e.starts_with('a') { 1 } else { 2 }))
                .await
                .unwrap();
        }
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(
            got.iter().map(event_id).collect::<Vec<_>>(),
            ["a1", "b1", "a2", "a3"]
        );
    }

    #[tokio::test]
    async fn an_unacknowledged_message_comes_back_after_the_visibility_timeout() {
        let (q, now) = queue(LocalQueueOptions {
            visibility_timeout: Duration::from_secs(30),
            ..Default::default()
        });
        q.send(&msg("e1", 1)).await.unwrap();
        let first = q.receive(1, NO_WAIT).await.unwrap();
        now.fetch_add(29_000, Ordering::SeqCst);
        assert!(q.receive(1, NO_WAIT).await.unwrap().is_empty());
        now.fetch_add(1_000, Ordering::SeqCst);
        let again = q.receive(1, NO_WAIT).await.unwrap();
        assert_eq!(again[0].receive_count, 2);
        assert_ne!(again[0].receipt, first[0].receipt);
        assert!(
            q.release(&first[0].receipt, NO_WAIT).await.is_err(),
            "the old receipt no longer holds the message"
        );
    }

    #[tokio::test]
    async fn release_makes_a_message_visible_after_the_delay() {
        let (q, now) = queue(LocalQueueOptions::default());
        q.send(&msg("e1", 1)).await.unwrap();
        let got = q.receive(1, NO_WAIT).await.unwrap();
        q.release(&got[0].receipt, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(q.receive(1, NO_WAIT).await.unwrap().is_empty());
        now.fetch_add(5_000, Ordering::SeqCst);
        assert_eq!(q.receive(1, NO_WAIT).await.unwrap()[0].receive_count, 2);
    }

    #[tokio::test]
    async fn a_message_released_max_receives_times_is_a_dead_letter_and_can_be_replayed() {
        let (q, _) = queue(LocalQueueOptions {
            max_receives: 2,
            ..Default::default()
        });
        q.send(&msg("bad", 1)).await.unwrap();
        q.send(&msg("next", 1)).await.unwrap();
        for _ in 0..2 {
            let got = q.receive(1, NO_WAIT).await.unwrap();
            assert_eq!(event_id(&got[0]), "bad");
            q.release(&got[0].receipt, NO_WAIT).await.unwrap();
        }
        let dead = q.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].dedup_id.clone(), dead[0].receive_count),
            (msg("bad", 1).dedup_id(), 2)
        );
        // The dead letter no longer holds its group back.
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(got.iter().map(event_id).collect::<Vec<_>>(), ["next"]);
        q.ack(&got[0].receipt).await.unwrap();

        assert_eq!(q.replay_dead_letters(None).await.unwrap(), 1);
        assert!(q.dead_letters().await.unwrap().is_empty());
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(got.iter().map(event_id).collect::<Vec<_>>(), ["bad"]);
        assert_eq!(got[0].receive_count, 1);
    }

    #[tokio::test]
    async fn replay_with_a_max_moves_the_oldest_dead_letters_and_keeps_the_rest() {
        let (q, _) = queue(LocalQueueOptions {
            max_receives: 1,
            ..Default::default()
        });
        for (e, wi) in [("d1", 1), ("d2", 2), ("d3", 3)] {
            q.send(&msg(e, wi)).await.unwrap();
            let got = q.receive(1, NO_WAIT).await.unwrap();
            q.release(&got[0].receipt, NO_WAIT).await.unwrap();
        }
        assert_eq!(q.dead_letters().await.unwrap().len(), 3);

        assert_eq!(q.replay_dead_letters(Some(2)).await.unwrap(), 2);
        let left: Vec<String> = q
            .dead_letters()
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.dedup_id)
            .collect();
        assert_eq!(left, [msg("d3", 3).dedup_id()]);
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(got.iter().map(event_id).collect::<Vec<_>>(), ["d1", "d2"]);

        assert_eq!(q.replay_dead_letters(Some(0)).await.unwrap(), 0);
        assert_eq!(q.replay_dead_letters(None).await.unwrap(), 1);
        assert_eq!(q.replay_dead_letters(None).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn messages_in_flight_at_a_crash_come_back_at_once_while_delayed_retries_wait() {
        let (q, now) = queue(LocalQueueOptions::default());
        q.send(&msg("taken", 1)).await.unwrap();
        q.send(&msg("retry", 2)).await.unwrap();
        let got = q.receive(10, NO_WAIT).await.unwrap();
        let retry = got.iter().find(|r| event_id(r) == "retry").unwrap();
        q.release(&retry.receipt, Duration::from_secs(30))
            .await
            .unwrap();
        // The process holding "taken" dies here; a new one starts on the same file.
        assert_eq!(q.recover_in_flight().await.unwrap(), 1);
        let again = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(again.iter().map(event_id).collect::<Vec<_>>(), ["taken"]);
        assert_eq!(again[0].receive_count, 2, "the crash counts as a receive");
        now.fetch_add(30_000, Ordering::SeqCst);
        let later = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(later.iter().map(event_id).collect::<Vec<_>>(), ["retry"]);
    }

    #[tokio::test]
    async fn open_existing_refuses_a_missing_file_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        assert!(matches!(
            LocalQueue::open_existing(&path, LocalQueueOptions::default()),
            Err(QueueError::Invalid(_))
        ));
        assert!(!path.exists());
        LocalQueue::open(&path, LocalQueueOptions::default()).unwrap();
        LocalQueue::open_existing(&path, LocalQueueOptions::default()).unwrap();
    }

    #[tokio::test]
    async fn a_message_whose_timeout_ran_out_too_often_dies_on_the_next_receive() {
        let (q, now) = queue(LocalQueueOptions {
            max_receives: 1,
            visibility_timeout: Duration::from_secs(1),
            ..Default::default()
        });
        q.send(&msg("crash", 1)).await.unwrap();
        assert_eq!(q.receive(1, NO_WAIT).await.unwrap().len(), 1);
        now.fetch_add(1_000, Ordering::SeqCst);
        assert!(q.receive(1, NO_WAIT).await.unwrap().is_empty());
        assert_eq!(q.dead_letters().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_waiting_receive_wakes_up_on_send() {
        let (q, _) = queue(LocalQueueOptions::default());
        let q = Arc::new(q);
        let rx = {
            let q = q.clone();
            tokio::spawn(async move { q.receive(1, Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.send(&msg("e1", 1)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), rx)
            .await
            .expect("woken well before the wait ends")
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn messages_dedup_ids_and_dead_letters_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        {
            let q = LocalQueue::open(
                &path,
                LocalQueueOptions {
                    max_receives: 1,
                    ..Default::default()
                },
            )
            .unwrap();
            q.send(&msg("queued", 1)).await.unwrap();
            q.send(&msg("dies", 2)).await.unwrap();
            let got = q.receive(1, NO_WAIT).await.unwrap();
            assert_eq!(event_id(&got[0]), "queued");
            let got = q.receive(1, NO_WAIT).await.unwrap();
            q.release(&got[0].receipt, NO_WAIT).await.unwrap();
        }
        let q = LocalQueue::open(&path, LocalQueueOptions::default()).unwrap();
        assert_eq!(
            q.len().await.unwrap(),
            1,
            "the message in flight is still queued"
        );
        assert_eq!(
            q.dead_letters().await.unwrap()[0].dedup_id,
            msg("dies", 2).dedup_id()
        );
        q.send(&msg("dies", 2)).await.unwrap();
        q.send(&msg("fresh", 3)).await.unwrap();
        let got = q.receive(10, NO_WAIT).await.unwrap();
        assert_eq!(
            got.iter().map(event_id).collect::<Vec<_>>(),
            ["fresh"],
            "the dedup id outlived the restart; the message in flight stays hidden"
        );
    }

    #[tokio::test]
    async fn oversized_messages_are_refused_as_invalid() {
        let (q, _) = queue(LocalQueueOptions::default());
        let mut m = msg("big", 1);
        m.change = Change::WorkItem {
            id: 1,
            deleted: true,
            snapshot: Some(serde_json::json!({ "x": "y".repeat(MAX_MESSAGE_BYTES) })),
        };
        assert!(matches!(q.send(&m).await, Err(QueueError::Invalid(_))));
    }
}
