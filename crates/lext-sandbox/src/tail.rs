//! The log tail of an invoke, for `X-Amz-Log-Type: Tail`.
//!
//! With that header the Invoke API answers with `X-Amz-Log-Result`: the
//! base64 of the last 4 KB of the invoke's log, from its `START` line to
//! its `REPORT` line (AWS: Lambda API Reference, Invoke, `LogType`: "Set to
//! Tail to include the execution log in the response. Applies to
//! synchronously invoked functions only."; `LogResult`: "The last 4 KB of
//! the execution log, which is base64-encoded."). The lines are the log's
//! own text, without the console's timestamps, as CloudWatch stores them.
//!
//! [`Tails`] is a [`Sink`]: it follows the platform lines, keeps what is
//! written between one invoke's `START` and its `REPORT` (at most the last
//! 4 KB of it), and hands the finished tail to whoever waits for it. Invokes
//! run one at a time, so every line in between is that invoke's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::sink::{LineSource, LogLine, Sink};

/// How much of the log `X-Amz-Log-Result` carries.
pub(crate) const TAIL_BYTES: usize = 4 * 1024;

/// Finished tails kept for callers that have not asked yet.
const KEPT: usize = 64;

/// The tails of the environment's invokes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tails {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Bumped at every finished tail, to wake the waiters.
    finished: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// The invoke being written, and its log so far (at most about twice
    /// [`TAIL_BYTES`]; trimmed to the last [`TAIL_BYTES`] when finished).
    current: Option<(String, String)>,
    done: HashMap<String, String>,
    order: VecDeque<String>,
}

fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The request id of a platform line that starts with `prefix`.
fn request_id<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?;
    rest.split(['\t', ' ']).next()
}

/// The last `TAIL_BYTES` of `log`, cut at a character boundary.
fn last_bytes(log: &str) -> &str {
    let mut start = log.len().saturating_sub(TAIL_BYTES);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

impl Tails {
    /// Waits for the tail of `request_id` (its `REPORT` line), and takes it.
    /// `None` if the environment goes away first.
    pub(crate) async fn take(&self, request_id: &str) -> Option<String> {
        let mut finished = self.inner.finished.subscribe();
        loop {
            {
                let mut state = lock(&self.inner.state);
                if let Some(tail) = state.done.remove(request_id) {
                    state.order.retain(|id| id != request_id);
                    return Some(tail);
                }
            }
            finished.changed().await.ok()?;
        }
    }
}

impl Sink for Tails {
    fn line(&self, line: LogLine) {
        let mut state = lock(&self.inner.state);
        if line.source == LineSource::Platform {
            if let Some(id) = request_id(&line.text, "START RequestId: ") {
                state.current = Some((id.to_owned(), String::new()));
            }
        }
        let Some((id, log)) = state.current.as_mut() else {
            return;
        };
        log.push_str(&line.text);
        log.push('\n');
        if log.len() > 2 * TAIL_BYTES {
            *log = last_bytes(log).to_owned();
        }
        let finished = line.source == LineSource::Platform
            && request_id(&line.text, "REPORT RequestId: ") == Some(id.as_str());
        if !finished {
            return;
        }
        if let Some((id, log)) = state.current.take() {
            let tail = last_bytes(&log).to_owned();
            state.order.push_back(id.clone());
            state.done.insert(id, tail);
            while state.order.len() > KEPT {
                if let Some(old) = state.order.pop_front() {
                    state.done.remove(&old);
                }
            }
        }
        drop(state);
        self.inner.finished.send_modify(|n| *n += 1);
    }

    fn wants_events(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn line(source: LineSource, text: &str) -> LogLine {
        LogLine {
            time: SystemTime::UNIX_EPOCH,
            source,
            text: text.to_owned(),
            environment: None,
        }
    }

    #[tokio::test]
    async fn a_tail_runs_from_start_to_report_and_keeps_the_last_4_kb() {
        let tails = Tails::default();
        let p = |t: &str| line(LineSource::Platform, t);
        tails.line(line(LineSource::Function, "before any invoke"));
        tails.line(p("START RequestId: r1 Version: $LATEST"));
        tails.line(line(LineSource::Function, "hello"));
        tails.line(p("END RequestId: r1"));
        tails.line(p("REPORT RequestId: r1\tDuration: 1.00 ms"));
        assert_eq!(
            tails.take("r1").await.as_deref(),
            Some(
                "START RequestId: r1 Version: $LATEST\nhello\nEND RequestId: r1\n\
                 REPORT RequestId: r1\tDuration: 1.00 ms\n"
            )
        );
        // A long log keeps its end.
        tails.line(p("START RequestId: r2 Version: $LATEST"));
        for _ in 0..1000 {
            tails.line(line(LineSource::Extension("x".into()), "ééééééééé"));
        }
        tails.line(p("REPORT RequestId: r2\tDuration: 1.00 ms"));
        let tail = tails.take("r2").await.unwrap_or_default();
        assert!(tail.len() <= TAIL_BYTES && tail.len() > TAIL_BYTES - 4);
        assert!(tail.ends_with("REPORT RequestId: r2\tDuration: 1.00 ms\n"));
    }
}
