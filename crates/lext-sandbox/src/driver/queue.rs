//! The bound on invokes waiting for the environment.
//!
//! One environment runs one invoke at a time; the others wait. Without a
//! bound, a flood of 6 MB invokes holds every payload in lext's memory. The
//! bound counts invokes and their payload bytes from the moment a caller
//! hands one over (so the channel to the driver is bounded too) until it
//! starts to run or is dropped. Past it, the invoke is refused at once, and
//! the Invoke API answers as Lambda does for a function over its
//! concurrency: 429 `TooManyRequestsException`.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::invocation::InvokeRequest;
use crate::stream::Answer;

/// How many invokes, and how many bytes of their payloads, may wait behind
/// the running one (`lext run --max-queued-invokes`, `--max-queued-mb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimit {
    /// Invokes waiting (synchronous and `Event` alike).
    pub invokes: usize,
    /// Their payload bytes.
    pub bytes: usize,
}

impl Default for QueueLimit {
    /// 1,000 invokes and 64 MiB: ten 6 MB payloads, or a thousand small
    /// ones.
    fn default() -> Self {
        Self {
            invokes: 1_000,
            bytes: 64 * 1024 * 1024,
        }
    }
}

/// What is waiting now, against the limit.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: QueueLimit,
    /// Invokes and bytes held by live tickets.
    held: Mutex<(usize, usize)>,
}

impl Budget {
    pub(crate) fn new(limit: QueueLimit) -> Arc<Self> {
        Arc::new(Self {
            limit,
            held: Mutex::new((0, 0)),
        })
    }

    /// A place in the queue for `bytes` of payload, or `None` when it is
    /// full. One invoke always fits an empty queue, whatever its size.
    pub(crate) fn take(self: &Arc<Self>, bytes: usize) -> Option<Ticket> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let (invokes, queued) = *held;
        let fits = invokes == 0
            || (invokes < self.limit.invokes && queued.saturating_add(bytes) <= self.limit.bytes);
        if !fits {
            return None;
        }
        *held = (invokes + 1, queued + bytes);
        Some(Ticket {
            budget: Arc::clone(self),
            bytes,
        })
    }
}

/// A place in the queue; given back when dropped (the invoke started, or
/// was dropped).
#[derive(Debug)]
pub(crate) struct Ticket {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = self
            .budget
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.0 -= 1;
        held.1 -= self.bytes;
    }
}

/// An invoke waiting for the environment.
#[derive(Debug)]
pub(super) struct Queued {
    /// Given when the invoke was accepted (the `X-Amzn-RequestId` of an
    /// `Event` invoke's 202).
    pub(super) request_id: String,
    pub(super) request: InvokeRequest,
    /// `None` for an asynchronous (`Event`) invoke.
    pub(super) reply: Option<oneshot::Sender<Answer>>,
    /// The caller reads a stream (`InvokeWithResponseStream`): a streamed
    /// response gets the streaming limit and bandwidth rule.
    pub(super) streaming: bool,
    pub(super) ticket: Ticket,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_by_count_and_bytes_and_tickets_give_back() {
        let budget = Budget::new(QueueLimit {
            invokes: 3,
            bytes: 100,
        });
        // One invoke always fits, whatever its size.
        let big = budget.take(1_000);
        assert!(big.is_some());
        assert!(budget.take(1).is_none(), "bytes");
        drop(big);
        let a = budget.take(40);
        let b = budget.take(40);
        assert!(a.is_some() && b.is_some());
        assert!(budget.take(40).is_none(), "bytes");
        let c = budget.take(10);
        assert!(c.is_some());
        assert!(budget.take(0).is_none(), "count");
        drop((a, b, c));
        assert!(budget.take(100).is_some());
    }
}
