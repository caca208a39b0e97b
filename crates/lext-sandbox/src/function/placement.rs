//! Where an invoke runs: the rules by which a function's environments are
//! reused, started and reclaimed. Pure: the time comes in as an argument.
//!
//! - An invoke goes to an idle environment of its tenant (the one idle the
//!   shortest, so that the others can spin down), or to a new environment
//!   while fewer than the concurrency run; otherwise it waits (AWS: Lambda
//!   function scaling, "Understanding Lambda function scaling": one
//!   environment serves one request at a time, and a request with none free
//!   gets a new one, up to the function's concurrency).
//! - With tenant isolation an environment serves one tenant for its whole
//!   life (AWS: Tenant isolation), and at most 2.5 environments per unit of
//!   concurrency exist, busy or idle (AWS: Troubleshooting tenant isolation,
//!   "2,500 for every 1,000 concurrent executions"). At that bound the idle
//!   environment unused the longest is reclaimed for the new tenant
//!   (docs/fidelity.md).
//! - An environment idle for the idle timeout is reclaimed (spindown).

use std::sync::Arc;
use std::time::{Duration, Instant};

/// An environment of the function, by its number (`env-N`).
pub(crate) type Slot = u64;

/// Where an invoke goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// To this idle environment.
    Reuse(Slot),
    /// To a new environment, after `evict` (an idle one of another tenant)
    /// is spun down to make room.
    Start {
        /// The new environment.
        slot: Slot,
        /// The environment reclaimed for it.
        evict: Option<Slot>,
    },
    /// Nowhere yet: the function runs as many invokes as its concurrency.
    Wait,
}

#[derive(Debug)]
struct Env {
    slot: Slot,
    tenant: Option<Arc<str>>,
    busy: bool,
    /// When it last became idle (or started).
    since: Instant,
}

/// The function's environments and what each is doing.
#[derive(Debug)]
pub(crate) struct Placement {
    /// Invokes that may run at once.
    concurrency: usize,
    /// Environments that may exist at once, busy or idle.
    cap: usize,
    envs: Vec<Env>,
    next: Slot,
}

impl Placement {
    /// `concurrency` (at least 1) invokes at once; with `tenants`, up to
    /// 2.5 environments per unit of it.
    pub(crate) fn new(concurrency: usize, tenants: bool) -> Self {
        let concurrency = concurrency.max(1);
        let cap = if tenants {
            // ceil(2.5 × concurrency)
            (concurrency * 5).div_ceil(2)
        } else {
            concurrency
        };
        Self {
            concurrency,
            cap,
            envs: Vec::new(),
            next: 1,
        }
    }

    /// Places an invoke of `tenant`. A `Reuse` or `Start` makes the
    /// environment busy until [`done`](Self::done).
    pub(crate) fn place(&mut self, tenant: Option<&str>, now: Instant) -> Place {
        if self.busy() >= self.concurrency {
            return Place::Wait;
        }
        let reuse = self
            .envs
            .iter_mut()
            .filter(|e| !e.busy && e.tenant.as_deref() == tenant)
            .max_by_key(|e| e.since);
        if let Some(env) = reuse {
            env.busy = true;
            return Place::Reuse(env.slot);
        }
        let evict = if self.envs.len() >= self.cap {
            // Fewer are busy than the concurrency, which is at most the
            // cap: one at least is idle, and of another tenant.
            let oldest = self
                .envs
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.busy)
                .min_by_key(|(_, e)| e.since)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => Some(self.envs.remove(i).slot),
                None => return Place::Wait,
            }
        } else {
            None
        };
        let slot = self.next;
        self.next += 1;
        self.envs.push(Env {
            slot,
            tenant: tenant.map(Arc::from),
            busy: true,
            since: now,
        });
        Place::Start { slot, evict }
    }

    /// `slot` finished its invoke and is idle from `now`.
    pub(crate) fn done(&mut self, slot: Slot, now: Instant) {
        if let Some(env) = self.envs.iter_mut().find(|e| e.slot == slot) {
            env.busy = false;
            env.since = now;
        }
    }

    /// `slot` is gone (it stopped, or could not start).
    pub(crate) fn gone(&mut self, slot: Slot) {
        self.envs.retain(|e| e.slot != slot);
    }

    /// Removes and returns the environments idle for `timeout` or longer.
    pub(crate) fn expired(&mut self, now: Instant, timeout: Duration) -> Vec<Slot> {
        let mut out = Vec::new();
        self.envs.retain(|e| {
            let expired = !e.busy && now.saturating_duration_since(e.since) >= timeout;
            if expired {
                out.push(e.slot);
            }
            !expired
        });
        out
    }

    /// When the next idle environment expires.
    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.envs
            .iter()
            .filter(|e| !e.busy)
            .map(|e| e.since + timeout)
            .min()
    }

    /// Environments running an invoke (or starting for one).
    pub(crate) fn busy(&self) -> usize {
        self.envs.iter().filter(|e| e.busy).count()
    }

    /// Environments alive, busy or idle.
    pub(crate) fn len(&self) -> usize {
        self.envs.len()
    }

    /// Every environment, for the shutdown; none is left.
    pub(crate) fn drain(&mut self) -> Vec<Slot> {
        self.envs.drain(..).map(|e| e.slot).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn invokes_reuse_idle_environments_and_start_new_ones_up_to_the_concurrency() {
        let t = Instant::now();
        let mut p = Placement::new(3, false);
        let starts: Vec<_> = (0..3).map(|_| p.place(None, t)).collect();
        assert_eq!(
            starts,
            [1, 2, 3].map(|slot| Place::Start { slot, evict: None })
        );
        assert_eq!(p.place(None, t), Place::Wait, "a fourth waits");
        p.done(2, at(t, 10));
        p.done(1, at(t, 20));
        // The one idle the shortest is reused.
        assert_eq!(p.place(None, at(t, 30)), Place::Reuse(1));
        assert_eq!(p.place(None, at(t, 30)), Place::Reuse(2));
        assert_eq!(p.place(None, at(t, 30)), Place::Wait);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn an_environment_serves_one_tenant_only() {
        let t = Instant::now();
        let mut p = Placement::new(2, true);
        assert_eq!(
            p.place(Some("blue"), t),
            Place::Start {
                slot: 1,
                evict: None
            }
        );
        p.done(1, t);
        // Green never gets blue's idle environment.
        assert_eq!(
            p.place(Some("green"), t),
            Place::Start {
                slot: 2,
                evict: None
            }
        );
        assert_eq!(p.place(Some("blue"), t), Place::Reuse(1));
        assert_eq!(p.place(Some("blue"), t), Place::Wait, "concurrency 2");
    }

    #[test]
    fn at_two_and_a_half_environments_per_unit_the_oldest_idle_one_is_reclaimed() {
        let t = Instant::now();
        // Concurrency 2: at most 5 environments.
        let mut p = Placement::new(2, true);
        for (i, tenant) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            assert!(matches!(
                p.place(Some(tenant), at(t, i as u64)),
                Place::Start { evict: None, .. }
            ));
            p.done(i as u64 + 1, at(t, i as u64));
        }
        assert_eq!(p.len(), 5);
        assert_eq!(
            p.place(Some("f"), at(t, 10)),
            Place::Start {
                slot: 6,
                evict: Some(1)
            },
            "a's environment was idle the longest"
        );
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn idle_environments_expire_and_busy_ones_never_do() {
        let t = Instant::now();
        let timeout = Duration::from_secs(60);
        let mut p = Placement::new(2, false);
        p.place(None, t);
        p.place(None, t);
        p.done(1, at(t, 1_000));
        assert_eq!(p.next_expiry(timeout), Some(at(t, 61_000)));
        assert!(p.expired(at(t, 60_999), timeout).is_empty());
        assert_eq!(p.expired(at(t, 61_000), timeout), vec![1]);
        assert!(p.expired(at(t, 999_000), timeout).is_empty(), "2 is busy");
        assert_eq!(p.next_expiry(timeout), None);
        assert_eq!(p.len(), 1);
        p.gone(2);
        assert_eq!(p.len(), 0);
    }
}
