//! The ports: what the driver needs from the world, as traits, so that the
//! driver can be run against fakes in tests.
//!
//! - [`Host`]: the environment's processes (launch, signal, freeze, peak
//!   memory). The real one is [`ProcessHost`](crate::host::ProcessHost).
//! - [`Telemetry`]: where platform records and accepted subscriptions go.
//!   The real one is the delivery [`Hub`](crate::telemetry::Hub).
//! - [`Exits`]: where a host reports that a process ended.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use lext_protocol::telemetry::{Api, Record, SubscribeRequest};
use tokio::sync::mpsc;

use crate::lifecycle::{ExitStatus, LaunchFailure, Proc, Refusal, Signal};
use crate::telemetry::{Hub, SubscribeError};

/// The processes of the environment, as the driver sees them.
pub(crate) trait Host: Send + 'static {
    /// Launches external extension `index` (name order) of `generation`.
    /// Its exit must be reported through `exits`.
    fn launch_extension(
        &mut self,
        index: usize,
        generation: u64,
        exits: &Exits,
    ) -> Result<(), LaunchFailure>;
    /// Starts the runtime of `generation`; `Err` holds the OS error text.
    fn start_runtime(&mut self, generation: u64, exits: &Exits) -> Result<(), String>;
    /// Signals a process group (a process already gone is not an error).
    fn signal(&mut self, proc: Proc, signal: Signal);
    /// Freezes (SIGSTOP) or thaws (SIGCONT) every process.
    fn freeze(&mut self, frozen: bool);
    /// Peak memory of the environment's processes so far, MB.
    fn peak_memory_mb(&mut self) -> u64;
    /// After a shutdown, when every process it started is gone: kills what
    /// is left (processes that left their group), and says how many.
    fn sweep(&mut self) -> usize;
}

/// A process of the environment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exited {
    /// The Init generation it belongs to.
    pub(crate) generation: u64,
    /// Which process.
    pub(crate) proc: Proc,
    /// How it ended.
    pub(crate) status: ExitStatus,
}

/// Where a [`Host`] reports process exits.
#[derive(Debug, Clone)]
pub(crate) struct Exits(pub(crate) mpsc::UnboundedSender<Exited>);

impl Exits {
    /// Reports that `proc` of `generation` ended.
    pub(crate) fn report(&self, generation: u64, proc: Proc, status: ExitStatus) {
        // A driver that is gone no longer cares.
        let _ = self.0.send(Exited {
            generation,
            proc,
            status,
        });
    }
}

/// Where telemetry goes: the platform records the driver makes and the
/// subscriptions the lifecycle accepted.
pub(crate) trait Telemetry: Send + 'static {
    /// Records a platform event (stamped with the current time). Must not
    /// block.
    fn record(&mut self, record: Record);
    /// Adds a subscriber the lifecycle has accepted; the hub may still
    /// refuse it.
    fn subscribe(
        &mut self,
        extension: &str,
        api: Api,
        request: &SubscribeRequest,
    ) -> Result<(), Refusal>;
    /// End of Init: no more subscriptions.
    fn close_subscriptions(&mut self);
    /// A new Init begins after a reset.
    fn begin_init(&mut self);
    /// Sends what is batched now, without waiting for `timeoutMs` (when
    /// shutdown starts).
    fn flush_now(&mut self);
    /// `extension` is being sent SHUTDOWN.
    fn shutdown_sent(&mut self, extension: &str);
    /// `extension`'s process exited.
    fn extension_exited(&mut self, extension: &str);
    /// The invoke `request_id` started (`None`: it ended).
    fn current_request(&mut self, request_id: Option<&str>);
    /// The environment is about to be frozen (`true`) or was just thawed:
    /// deliveries to frozen listeners wait instead of timing out.
    fn freeze(&mut self, frozen: bool);
    /// Flushes within `deadline` and forgets the subscribers (their
    /// processes are gone). Awaited by the driver.
    fn finish(&mut self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Telemetry that goes nowhere, for tests of the driver and the router.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct NoTelemetry;

#[cfg(test)]
impl Telemetry for NoTelemetry {
    fn record(&mut self, _record: Record) {}
    fn subscribe(&mut self, _: &str, _: Api, _: &SubscribeRequest) -> Result<(), Refusal> {
        Ok(())
    }
    fn close_subscriptions(&mut self) {}
    fn begin_init(&mut self) {}
    fn flush_now(&mut self) {}
    fn shutdown_sent(&mut self, _: &str) {}
    fn extension_exited(&mut self, _: &str) {}
    fn current_request(&mut self, _: Option<&str>) {}
    fn freeze(&mut self, _frozen: bool) {}
    fn finish(&mut self, _deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

impl Telemetry for Hub {
    fn record(&mut self, record: Record) {
        Hub::record(self, record);
    }

    fn subscribe(
        &mut self,
        extension: &str,
        api: Api,
        request: &SubscribeRequest,
    ) -> Result<(), Refusal> {
        Hub::subscribe(self, api, extension, request).map_err(|e| match e {
            SubscribeError::Closed(api) => Refusal::SubscriptionClosed(api),
            // Mixing the two APIs: Lambda's answer is UNCONFIRMED; a 400
            // validation error tells the extension what is wrong
            // (docs/fidelity.md).
            other => Refusal::Validation {
                api,
                message: other.to_string(),
            },
        })
    }

    fn close_subscriptions(&mut self) {
        Hub::close_subscriptions(self);
    }

    fn begin_init(&mut self) {
        Hub::begin_init(self);
    }

    fn flush_now(&mut self) {
        Hub::flush_now(self);
    }

    fn shutdown_sent(&mut self, extension: &str) {
        Hub::shutdown_sent(self, extension);
    }

    fn extension_exited(&mut self, extension: &str) {
        Hub::extension_exited(self, extension);
    }

    fn current_request(&mut self, request_id: Option<&str>) {
        Hub::set_current_request(self, request_id);
    }

    fn freeze(&mut self, frozen: bool) {
        if frozen {
            Hub::freeze(self);
        } else {
            Hub::thaw(self);
        }
    }

    fn finish(&mut self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let hub = self.clone();
        // What was lost is told by `Hub::shutdown`, one line an extension.
        Box::pin(async move {
            hub.shutdown(deadline).await;
        })
    }
}
