//! A bounded queue in front of a writer thread, for output that must never
//! hold up the environment: standard output ([`ConsoleSink`]) and the
//! `--telemetry-out` file ([`JsonLinesSink`]).
//!
//! The environment's tasks push; one thread of the spool's own writes. The
//! queue holds at most a fixed number of bytes. When the writer falls behind
//! (a terminal nobody scrolls, a pipe nobody reads, a FIFO whose reader
//! stopped), what does not fit is dropped and counted, never waited for: a
//! push takes a lock for a `VecDeque` push and nothing else. The writer
//! drains everything waiting in one go and writes it as one batch, so a burst
//! of lines costs one `write`, not one per line.
//!
//! The writer is woken only from idle. After a batch it lets the next lines
//! gather for [`GATHER`] before it writes again, and pushes in that time wake
//! nobody: a line after a quiet spell is written at once, and a steady stream
//! (four lines an invoke at thousands of invokes a second) costs one wake-up
//! and one `write` per [`GATHER`], not three of each per invoke, each a
//! switch away from the environment's own threads. A flush cuts the wait
//! short.
//!
//! [`ConsoleSink`]: crate::sink::ConsoleSink
//! [`JsonLinesSink`]: crate::sink::JsonLinesSink

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a flush waits for a writer that was already stuck at the last.
const STALLED_GLANCE: Duration = Duration::from_millis(200);

/// How long the writer lets lines gather after a batch (see the module
/// documentation): well below what a reader of the console can see.
const GATHER: Duration = Duration::from_millis(2);

/// What each item costs beyond its own bytes (its queue slot and header):
/// a flood of empty lines is bounded too.
const ITEM_OVERHEAD: usize = 32;

/// What a spool dropped, and what it could not write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Losses {
    /// Items dropped because the queue was full.
    pub(crate) dropped: u64,
    /// Their bytes.
    pub(crate) dropped_bytes: u64,
    /// Items still queued or being written when a flush gave up waiting.
    pub(crate) unwritten: u64,
}

/// The queue and its writer thread. Dropping it closes the queue; the thread
/// writes what is queued and ends.
#[derive(Debug)]
pub(crate) struct Spool<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when items arrive or the queue closes.
    work: Condvar,
    /// Signalled when a batch has been written and flushed.
    written: Condvar,
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<(T, usize)>,
    /// Bytes queued (with [`ITEM_OVERHEAD`] each).
    bytes: usize,
    /// Items ever accepted, and ever written (and flushed).
    accepted: u64,
    written: u64,
    dropped: u64,
    dropped_bytes: u64,
    /// What `written` was when a flush last gave up waiting: while it still
    /// is, the writer is stuck and the next flush does not wait again.
    stalled: Option<u64>,
    /// The writer failed: nothing more is accepted (and nothing counted as
    /// dropped, since the failure was reported).
    failed: bool,
    closed: bool,
    /// What the writer is doing, so that only an idle one is woken.
    writer: Writer,
    /// A flush is waiting: the writer does not let lines gather.
    hurry: bool,
    /// [`GATHER`] (longer in a test that watches the gathering).
    gather: Duration,
}

/// The writer thread's state, as pushers and flushes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Waiting for work: a push wakes it.
    Idle,
    /// Woken, or writing: it looks at the queue before it waits again.
    Busy,
    /// Letting lines gather after a batch: only a flush or the close wakes it.
    Gathering,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding the lock; poisoned data is still right.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Send + 'static> Spool<T> {
    /// Starts the writer thread on `out`, holding at most `capacity` bytes
    /// queued. `write` formats one item into the buffer; `on_error` is
    /// called once, with the first write error, after which the spool takes
    /// nothing more.
    pub(crate) fn start<W, F, E>(
        name: &str,
        out: W,
        capacity: usize,
        mut write: F,
        on_error: E,
    ) -> io::Result<Self>
    where
        W: Write + Send + 'static,
        F: FnMut(&mut BufWriter<W>, T) -> io::Result<()> + Send + 'static,
        E: FnOnce(io::Error) + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bytes: 0,
                accepted: 0,
                written: 0,
                dropped: 0,
                dropped_bytes: 0,
                stalled: None,
                failed: false,
                closed: false,
                writer: Writer::Busy,
                hurry: false,
                gather: GATHER,
            }),
            work: Condvar::new(),
            written: Condvar::new(),
            capacity,
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(64 * 1024, out);
                if let Err(error) = worker.serve(&mut out, &mut write) {
                    // Reported before the flag is set, so a flush that
                    // returns because of the failure finds it reported.
                    on_error(error);
                    lock(&worker.state).failed = true;
                    worker.written.notify_all();
                }
            })?;
        Ok(Self { shared })
    }

    /// Queues `item`, of `size` bytes. Returns whether it was taken: `false`
    /// when it did not fit (it is counted) or the writer has failed.
    pub(crate) fn push(&self, item: T, size: usize) -> bool {
        self.push_all([(item, size)]) == 0
    }

    /// Queues `items` (each with its size) under one lock, with one
    /// wake-up. Returns how many were not taken (counted as [`push`]
    /// counts them).
    ///
    /// [`push`]: Self::push
    pub(crate) fn push_all(&self, items: impl IntoIterator<Item = (T, usize)>) -> usize {
        let mut state = lock(&self.shared.state);
        let mut refused = 0;
        for (item, size) in items {
            let size = size.saturating_add(ITEM_OVERHEAD);
            if state.failed {
                refused += 1;
                continue;
            }
            if state.bytes.saturating_add(size) > self.shared.capacity {
                state.dropped += 1;
                state.dropped_bytes += (size - ITEM_OVERHEAD) as u64;
                refused += 1;
                continue;
            }
            state.queue.push_back((item, size));
            state.bytes += size;
            state.accepted += 1;
        }
        let wake = state.writer == Writer::Idle && !state.queue.is_empty();
        if wake {
            state.writer = Writer::Busy;
        }
        drop(state);
        if wake {
            self.shared.work.notify_one();
        }
        refused
    }

    /// Waits until everything accepted so far is written and flushed, or
    /// `timeout` passes, and returns what was lost so far.
    pub(crate) fn flush(&self, timeout: Duration) -> Losses {
        let mut state = lock(&self.shared.state);
        // A writer that was stuck at the last flush and has written nothing
        // since gets a glance, not the whole timeout again.
        let timeout = if state.stalled == Some(state.written) {
            timeout.min(STALLED_GLANCE)
        } else {
            timeout
        };
        let deadline = Instant::now() + timeout;
        let target = state.accepted;
        if state.written < target {
            state.hurry = true;
            if state.writer == Writer::Gathering {
                self.shared.work.notify_one();
            }
        }
        while state.written < target && !state.failed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                state.stalled = Some(state.written);
                break;
            }
            state = self
                .shared
                .written
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Losses {
            dropped: state.dropped,
            dropped_bytes: state.dropped_bytes,
            unwritten: if state.failed {
                0
            } else {
                target.saturating_sub(state.written)
            },
        }
    }

    /// What was dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        lock(&self.shared.state).dropped
    }
}

impl<T> Shared<T> {
    /// The writer thread's loop: take everything waiting, write it, flush,
    /// report it written, let the next lines gather; until the queue is
    /// closed and empty.
    fn serve<W: Write>(
        &self,
        out: &mut BufWriter<W>,
        write: &mut impl FnMut(&mut BufWriter<W>, T) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut batch = VecDeque::new();
        let mut wrote = false;
        loop {
            {
                let mut state = lock(&self.state);
                if wrote {
                    state = self.gather(state);
                }
                while state.queue.is_empty() && !state.closed {
                    state.writer = Writer::Idle;
                    state = self
                        .work
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                state.writer = Writer::Busy;
                state.hurry = false;
                if state.queue.is_empty() {
                    return out.flush();
                }
                std::mem::swap(&mut batch, &mut state.queue);
                // The bytes stay counted until written: a writer stuck in
                // `write` keeps the bound.
            }
            let mut size = 0;
            let count = batch.len() as u64;
            for (item, item_size) in batch.drain(..) {
                size += item_size;
                write(out, item)?;
            }
            out.flush()?;
            let mut state = lock(&self.state);
            state.bytes -= size;
            state.written += count;
            drop(state);
            self.written.notify_all();
            wrote = true;
        }
    }

    /// Waits [`GATHER`] for more lines to arrive, unless a flush is waiting
    /// or the queue is closed.
    fn gather<'a>(&self, mut state: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
        state.writer = Writer::Gathering;
        let until = Instant::now() + state.gather;
        while !state.hurry && !state.closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .work
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.writer = Writer::Busy;
        state
    }
}

impl<T: Send + 'static> Drop for Spool<T> {
    fn drop(&mut self) {
        lock(&self.shared.state).closed = true;
        self.shared.work.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A writer that blocks while `stuck` is set, and records what it got.
    #[derive(Clone)]
    struct Gate {
        stuck: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            while self.stuck.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            lock(&self.got).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn gate() -> Gate {
        Gate {
            stuck: Arc::new(AtomicBool::new(false)),
            got: Arc::default(),
        }
    }

    fn spool(out: Gate, capacity: usize) -> Spool<Vec<u8>> {
        Spool::start(
            "test",
            out,
            capacity,
            |out, item: Vec<u8>| out.write_all(&item),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn everything_pushed_is_written_in_order() {
        let out = gate();
        let spool = spool(out.clone(), 1 << 20);
        for i in 0..1000 {
            assert!(spool.push(format!("{i}\n").into_bytes(), 4));
        }
        assert_eq!(spool.flush(Duration::from_secs(10)), Losses::default());
        let text = String::from_utf8(lock(&out.got).clone()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "999");
    }

    /// Counts the writes it gets, one per batch (the spool's `BufWriter`
    /// holds a batch and writes it at its flush).
    #[derive(Clone, Default)]
    struct Counted {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Write for Counted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.writes).push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_after_a_batch_gather_into_one_write_and_a_flush_cuts_the_wait_short() {
        let out = Counted::default();
        let spool = Spool::start(
            "test",
            out.clone(),
            1 << 20,
            |out, item: Vec<u8>| out.write_all(&item),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Far longer than the test: what is seen below is the gathering.
        lock(&spool.shared.state).gather = Duration::from_secs(600);
        // A line after a quiet spell wakes the idle writer: written without
        // a flush.
        assert!(spool.push(b"first\n".to_vec(), 6));
        let deadline = Instant::now() + Duration::from_secs(60);
        while lock(&out.writes).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(*lock(&out.writes), [b"first\n".to_vec()]);
        // The writer now lets lines gather: pushes wake nobody.
        for i in 0..100 {
            assert!(spool.push(format!("{i}\n").into_bytes(), 3));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(lock(&out.writes).len(), 1, "written while gathering");
        // A flush does not wait for the gathering to end, and the hundred
        // lines are one write.
        assert_eq!(spool.flush(Duration::from_secs(60)), Losses::default());
        let writes = lock(&out.writes).clone();
        assert_eq!(writes.len(), 2);
        let text = String::from_utf8(writes[1].clone()).unwrap_or_default();
        assert_eq!(text.lines().count(), 100);
        assert_eq!(text.lines().last(), Some("99"));
    }

    #[test]
    fn a_stuck_writer_makes_pushes_drop_and_count_not_wait() {
        let out = gate();
        out.stuck.store(true, Ordering::SeqCst);
        let spool = spool(out.clone(), 10 * (100 + ITEM_OVERHEAD));
        let started = Instant::now();
        let taken = (0..100_000)
            .filter(|_| spool.push(vec![b'x'; 100], 100))
            .count();
        // Pushing never waits for the writer (a generous bound: it is a
        // hang that this catches, not a speed).
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(taken <= 10, "{taken} taken");
        assert_eq!(spool.dropped() + taken as u64, 100_000);
        // A flush gives up at its timeout and says what is still unwritten.
        let losses = spool.flush(Duration::from_millis(50));
        assert_eq!(losses.dropped, 100_000 - taken as u64);
        assert_eq!(losses.dropped_bytes, losses.dropped * 100);
        assert_eq!(losses.unwritten, taken as u64);
        // The next one does not wait again for a writer still stuck.
        let started = Instant::now();
        assert_eq!(spool.flush(Duration::from_secs(60)), losses);
        assert!(started.elapsed() < Duration::from_secs(30));
        // Once the reader is back, what was taken arrives.
        out.stuck.store(false, Ordering::SeqCst);
        assert_eq!(spool.flush(Duration::from_secs(10)).unwritten, 0);
        assert_eq!(lock(&out.got).len(), taken * 100);
    }

    #[test]
    fn a_failed_writer_reports_once_and_takes_nothing_more() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
        }
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&errors);
        let spool = Spool::start(
            "test",
            Broken,
            1 << 20,
            |out, item: Vec<u8>| out.write_all(&item),
            move |e| lock(&seen).push(e.kind()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(spool.push(b"a\n".to_vec(), 2));
        let _ = spool.flush(Duration::from_secs(10));
        assert!(!spool.push(b"b\n".to_vec(), 2));
        assert_eq!(*lock(&errors), [io::ErrorKind::BrokenPipe]);
    }
}
