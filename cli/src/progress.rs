//! The pass's progress on stderr: progress bars on a terminal, plain or JSON lines otherwise, and the
//! log writer and throttle-pause view that share the terminal with the bars.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use shared::resync::{KindReport, Observer};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Where the Azure DevOps client says it pauses every request, and the message it says it with.
const THROTTLE_TARGET: &str = "shared::ado::client";
const THROTTLE_MESSAGE: &str = "Azure DevOps is throttling: requests paused";

/// The terminal the bars are drawn on, set once by [`init`]: the log writer is installed before the
/// command is known, and every pass's [`Progress`] must draw on the same bars as the logs (two writers
/// on one terminal garble each other's lines).
static TERMINAL: OnceLock<Terminal> = OnceLock::new();

/// `LOG_FORMAT=json`: logs and progress lines are JSON objects, so stderr stays one format.
fn json_wanted() -> bool {
    std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json")
}

/// Colour only on a terminal, and never with `NO_COLOR` (whatever its value, per no-color.org).
fn colour_wanted(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

/// Installs the logs: warnings, and the client's throttle pauses (with their reason and end) so a
/// paused pass does not look frozen; `LOG_LEVEL` overrides. On a terminal (without `LOG_FORMAT=json`)
/// log lines are printed above the progress bars, and a throttle pause also gets a bar of its own
/// counting down to its end, whatever `LOG_LEVEL` shows.
pub(crate) fn init() {
    let json = json_wanted();
    let tty = std::io::stderr().is_terminal();
    let colour = colour_wanted(tty, std::env::var_os("NO_COLOR").is_some());
    let terminal = (tty && !json)
        .then(|| TERMINAL.get_or_init(|| Terminal::new(ProgressDrawTarget::stderr(), colour)));
    let filter = std::env::var("LOG_LEVEL")
        .ok()
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| {
            Targets::new()
                .with_default(tracing::Level::WARN)
                .with_target("shared::ado::client", tracing::Level::INFO)
        });
    let writer = match terminal {
        Some(t) => tracing_subscriber::fmt::writer::BoxMakeWriter::new(t.clone()),
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(writer);
    let logs = if json {
        logs.json().with_filter(filter).boxed()
    } else {
        logs.with_filter(filter).boxed()
    };
    let pauses = terminal.map(|t| {
        ThrottlePauses(t.clone())
            .with_filter(Targets::new().with_target(THROTTLE_TARGET, tracing::Level::INFO))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(pauses)
        .init();
}

/// The bars on stderr, shared by the logs and every pass.
#[derive(Clone)]
pub(crate) struct Terminal {
    multi: MultiProgress,
    colour: bool,
    /// The throttle pause on show and when it ends. Azure DevOps' budget is per client, so there is
    /// one pause at a time, not one per block.
    pause: Arc<Mutex<Option<(ProgressBar, Instant)>>>,
}

impl Terminal {
    fn new(target: ProgressDrawTarget, colour: bool) -> Self {
        Self {
            multi: MultiProgress::with_draw_target(target),
            colour,
            pause: Default::default(),
        }
    }

    fn pause(&self) -> MutexGuard<'_, Option<(ProgressBar, Instant)>> {
        self.pause.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shows a pause of every request for `wait`, at the top of the bars, until it ends. The client
    /// says a pause again only when it lengthens one; a shorter one would change nothing.
    fn paused(&self, wait: Duration, reason: &str) {
        let until = Instant::now() + wait;
        let mut pause = self.pause();
        if let Some((bar, current)) = pause.as_ref() {
            if *current >= until {
                return;
            }
            bar.finish_and_clear();
        }
        let reason = reason.to_owned();
        let template = if self.colour {
            "{spinner:.yellow} {pause:.yellow}"
        } else {
            "{spinner} {pause}"
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "pause",
                move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&pause_line(&reason, wait.saturating_sub(s.elapsed())));
                },
            );
        let bar = self
            .multi
            .insert(0, ProgressBar::new_spinner().with_style(style));
        bar.enable_steady_tick(Duration::from_millis(250));
        *pause = Some((bar.clone(), until));
        // Nothing else would take the bar down when the pause ends: the blocks' callbacks stop while
        // their requests wait.
        std::thread::spawn(move || {
            std::thread::sleep(wait);
            bar.finish_and_clear();
        });
    }

    fn clear_pause(&self) {
        if let Some((bar, _)) = self.pause().take() {
            bar.finish_and_clear();
        }
    }

    fn block_style(&self) -> ProgressStyle {
        let template = if self.colour {
            "{spinner:.green} {prefix:<27.bold} {msg} ({elapsed})"
        } else {
            "{spinner} {prefix:<27} {msg} ({elapsed})"
        };
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
    }
}

/// Log lines go above the bars: the bars are taken down, the line written, the bars drawn again.
pub(crate) struct AboveTheBars(MultiProgress);

impl std::io::Write for AboveTheBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole event per write.
        self.0.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Terminal {
    type Writer = AboveTheBars;

    fn make_writer(&'a self) -> Self::Writer {
        AboveTheBars(self.multi.clone())
    }
}

/// Learns of the client's throttle pauses from its log event (the client knows nothing of terminals)
/// and shows each one as a bar.
struct ThrottlePauses(Terminal);

#[derive(Default)]
struct PauseEvent {
    message: bool,
    wait_ms: Option<u64>,
    reason: Option<String>,
}

impl Visit for PauseEvent {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "wait_ms" {
            self.wait_ms = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "reason" {
            self.reason = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}") == THROTTLE_MESSAGE,
            "reason" => self.reason = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for ThrottlePauses {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut pause = PauseEvent::default();
        event.record(&mut pause);
        if let (true, Some(wait_ms), Some(reason)) = (pause.message, pause.wait_ms, pause.reason) {
            self.0.paused(Duration::from_millis(wait_ms), &reason);
        }
    }
}

/// What a pause's bar says, `left` before it ends.
fn pause_line(reason: &str, left: Duration) -> String {
    format!(
        "Azure DevOps is throttling ({reason}): requests paused, resuming in {}",
        whole_seconds(left)
    )
}

/// `42s`, `3m05s`: rounded up, so a pause never shows 0s while it lasts.
fn whole_seconds(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// What a running block's bar says after its prefix (`kind[index]`).
fn block_counts(r: &KindReport) -> String {
    let mut line = format!(
        "{} read, {} upserted, {} unchanged",
        r.items_read, r.upserted, r.unchanged
    );
    if r.failed > 0 {
        let _ = write!(line, ", {} failed", r.failed);
    }
    if r.errors > 0 {
        let _ = write!(line, ", {} errors", r.errors);
    }
    line
}

/// The line a finished block leaves, in every mode.
fn finished_line(r: &KindReport) -> String {
    format!(
        "  {}[{}]: {} read, {} upserted, {} unchanged, {} failed, {} errors in {:.2}s",
        r.kind,
        r.index,
        r.items_read,
        r.upserted,
        r.unchanged,
        r.failed,
        r.errors,
        r.duration.as_secs_f64()
    )
}

/// The pass's progress on stderr. On a terminal one bar per running block (blocks run concurrently),
/// under the pause bar when Azure DevOps throttles; otherwise a plain line when a block starts, one
/// every ten seconds with the running blocks, and one when a block finishes (JSON objects with
/// `LOG_FORMAT=json`).
pub(crate) struct Progress {
    view: View,
}

enum View {
    Bars {
        terminal: Terminal,
        /// Running blocks by index.
        running: Mutex<BTreeMap<usize, ProgressBar>>,
    },
    Lines {
        json: bool,
        state: Mutex<LinesState>,
    },
}

struct LinesState {
    last: Instant,
    /// Running blocks by index: (kind, items read, upserted).
    running: BTreeMap<usize, (String, u64, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Progress {
    pub(crate) fn new() -> Self {
        match TERMINAL.get() {
            Some(terminal) => Self::on(terminal.clone()),
            None => Self {
                view: View::Lines {
                    json: json_wanted(),
                    state: Mutex::new(LinesState {
                        last: Instant::now(),
                        running: Default::default(),
                    }),
                },
            },
        }
    }

    fn on(terminal: Terminal) -> Self {
        Self {
            view: View::Bars {
                terminal,
                running: Default::default(),
            },
        }
    }
}

impl Drop for Progress {
    /// A pause bar means nothing once the pass it held up is over.
    fn drop(&mut self) {
        if let View::Bars { terminal, .. } = &self.view {
            terminal.clear_pause();
        }
    }
}

/// One plain line, or with `LOG_FORMAT=json` one JSON object with `fields`.
fn say(json: bool, line: &str, message: &str, fields: serde_json::Value) {
    if json {
        let mut event = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": "INFO",
            "message": message,
        });
        if let (Some(event), serde_json::Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        eprintln!("{event}");
    } else {
        eprintln!("{line}");
    }
}

impl Observer for Progress {
    fn kind_started(&self, index: usize, kind: &str) {
        match &self.view {
            View::Bars { terminal, running } => {
                let bar = terminal.multi.add(
                    ProgressBar::new_spinner()
                        .with_style(terminal.block_style())
                        .with_prefix(format!("{kind}[{index}]"))
                        .with_message(block_counts(&KindReport::default())),
                );
                // A block waiting on its requests still shows it is alive, and for how long.
                bar.enable_steady_tick(Duration::from_millis(200));
                lock(running).insert(index, bar);
            }
            View::Lines { json, state } => {
                lock(state).running.insert(index, (kind.to_owned(), 0, 0));
                say(
                    *json,
                    &format!("syncing {kind}[{index}]…"),
                    "block started",
                    serde_json::json!({ "kind": kind, "index": index }),
                );
            }
        }
    }

    fn page_done(&self, r: &KindReport) {
        match &self.view {
            View::Bars { running, .. } => {
                if let Some(bar) = lock(running).get(&r.index) {
                    bar.set_message(block_counts(r));
                }
            }
            View::Lines { json, state } => {
                let mut state = lock(state);
                state
                    .running
                    .insert(r.index, (r.kind.clone(), r.items_read, r.upserted));
                if state.last.elapsed() < Duration::from_secs(10) {
                    return;
                }
                state.last = Instant::now();
                let line = state
                    .running
                    .iter()
                    .map(|(i, (kind, read, upserted))| {
                        format!("{kind}[{i}] {read} read, {upserted} upserted")
                    })
                    .collect::<Vec<_>>()
                    .join(" · ");
                let running: Vec<serde_json::Value> = state
                    .running
                    .iter()
                    .map(|(i, (kind, read, upserted))| {
                        serde_json::json!({ "kind": kind, "index": i, "read": read, "upserted": upserted })
                    })
                    .collect();
                say(
                    *json,
                    &format!("  still running: {line}"),
                    "blocks running",
                    serde_json::json!({ "running": running }),
                );
            }
        }
    }

    fn kind_finished(&self, r: &KindReport) {
        match &self.view {
            View::Bars { terminal, running } => {
                if let Some(bar) = lock(running).remove(&r.index) {
                    bar.finish_and_clear();
                    terminal.multi.remove(&bar);
                }
                // Above the bars, where it stays: a finished block's line is part of the run's record.
                if terminal.multi.println(finished_line(r)).is_err() {
                    eprintln!("{}", finished_line(r));
                }
            }
            View::Lines { json, state } => {
                lock(state).running.remove(&r.index);
                say(
                    *json,
                    &finished_line(r),
                    "block finished",
                    serde_json::json!({
                        "kind": r.kind, "index": r.index, "read": r.items_read, "upserted": r.upserted,
                        "unchanged": r.unchanged, "failed": r.failed, "errors": r.errors,
                        "seconds": r.duration.as_secs_f64(),
                    }),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(kind: &str, index: usize) -> KindReport {
        KindReport {
            kind: kind.into(),
            index,
            ..Default::default()
        }
    }

    fn hidden() -> Terminal {
        Terminal::new(ProgressDrawTarget::hidden(), false)
    }

    fn bars(progress: &Progress) -> Vec<(usize, String, String)> {
        let View::Bars { running, .. } = &progress.view else {
            panic!("not on a terminal")
        };
        lock(running)
            .iter()
            .map(|(i, bar)| (*i, bar.prefix(), bar.message()))
            .collect()
    }

    #[test]
    fn each_running_block_has_its_own_bar_with_its_counts_until_it_finishes() {
        let progress = Progress::on(hidden());
        progress.kind_started(0, "project");
        progress.kind_started(4, "work-item");
        let mut work_items = block("work-item", 4);
        work_items.items_read = 400;
        work_items.upserted = 120;
        work_items.unchanged = 270;
        work_items.failed = 2;
        progress.page_done(&work_items);
        assert_eq!(
            bars(&progress),
            vec![
                (
                    0,
                    "project[0]".into(),
                    "0 read, 0 upserted, 0 unchanged".into()
                ),
                (
                    4,
                    "work-item[4]".into(),
                    "400 read, 120 upserted, 270 unchanged, 2 failed".into()
                ),
            ]
        );
        progress.kind_finished(&block("project", 0));
        assert_eq!(
            bars(&progress)
                .into_iter()
                .map(|(i, ..)| i)
                .collect::<Vec<_>>(),
            vec![4]
        );
    }

    #[test]
    fn a_throttle_pause_says_its_reason_and_the_time_left_rounded_up() {
        assert_eq!(
            pause_line("429 Too Many Requests", Duration::from_millis(28_400)),
            "Azure DevOps is throttling (429 Too Many Requests): requests paused, resuming in 29s"
        );
        assert_eq!(whole_seconds(Duration::from_secs(185)), "3m05s");
        assert_eq!(whole_seconds(Duration::ZERO), "0s");
    }

    #[test]
    fn a_longer_pause_replaces_the_one_on_show_and_a_shorter_one_does_not() {
        let terminal = hidden();
        let until = |t: &Terminal| t.pause().as_ref().map(|(_, until)| *until);
        terminal.paused(Duration::from_secs(30), "429 Too Many Requests");
        let first = until(&terminal).unwrap();
        terminal.paused(Duration::from_secs(5), "the answer asked to wait");
        assert_eq!(until(&terminal), Some(first));
        terminal.paused(Duration::from_secs(60), "429 Too Many Requests");
        assert!(until(&terminal).unwrap() > first);
        // The pass that was held up is over: its pause goes with it.
        drop(Progress::on(terminal.clone()));
        assert_eq!(until(&terminal), None);
    }

    #[test]
    fn the_client_s_pause_event_reaches_the_pause_bar_whatever_the_log_level() {
        let terminal = hidden();
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(Targets::new());
        let pauses = ThrottlePauses(terminal.clone())
            .with_filter(Targets::new().with_target(THROTTLE_TARGET, tracing::Level::INFO));
        let subscriber = tracing_subscriber::registry().with(logs).with(pauses);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "shared::ado::client", wait_ms = 30_000u64, reason = "x", "retrying");
            assert!(
                terminal.pause().is_none(),
                "only the pause event is a pause"
            );
            tracing::info!(
                target: "shared::ado::client",
                wait_ms = 30_000u64,
                resumes_at = "2026-12-04T18:00:00Z",
                reason = "429 Too Many Requests",
                "Azure DevOps is throttling: requests paused"
            );
        });
        assert!(terminal.pause().is_some());
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_wanted(true, false));
        assert!(!colour_wanted(true, true));
        assert!(!colour_wanted(false, false));
    }
}
