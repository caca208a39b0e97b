//! The driver: one task that owns the [`Lifecycle`] and carries out its
//! effects.
//!
//! Everything that can change the environment's state arrives here as a
//! message: API calls from the [`api`](crate::api) router ([`calls`]),
//! invokes and shutdown requests from a [`Handle`], process exits from the
//! [`Host`], and the lifecycle's next deadline as a timer. The driver feeds
//! each one to [`Lifecycle::transition`], then carries out the effects in
//! order ([`effects`]): answering long polls, launching and signalling
//! processes through the [`Host`], and telling each event as a platform line
//! and a telemetry record ([`crate::events`]). Because one task owns the
//! state there are no locks on the hot path: an invoke is a handful of
//! channel hops and no timer polling (the only timers are the lifecycle's
//! next deadline and a pending freeze).
//!
//! Follow-up inputs produced while carrying out effects (a launch that
//! failed) are queued and fed after the current batch, never re-entrantly,
//! so a batch of effects is always carried out as the lifecycle ordered it.
//!
//! After every message the driver publishes a [`Progress`] snapshot on a
//! watch channel: the environment's waits (`ready`, `idle`, `stopped`) read
//! it, and a watch channel cannot miss a wake-up (a waiter checks the
//! current value before it sleeps).

mod calls;
mod effects;
mod queue;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::{self, ApiCall, ApiReply};
use crate::config::FunctionConfig;
use crate::invocation::{InvokeRequest, InvokeResponse};
use crate::lifecycle::{ExtensionId, Input, Lifecycle, LifecycleConfig, Now, Proc};
use crate::ports::{Exited, Exits, Host, Telemetry};
use crate::sink::Sink;
use crate::stream::{Answer, StreamError, StreamItem};

pub use queue::QueueLimit;
use queue::Queued;
pub(crate) use queue::{Budget, Ticket};

/// How long after an invoke (or Init) ends the processes are frozen, unless
/// the next event comes first (docs/fidelity.md).
pub(crate) const FREEZE_DELAY: Duration = Duration::from_millis(2);

/// Managed Instances: how long the telemetry flush before SHUTDOWN may
/// take (RIE `internal/lambda-managed-instances/rapid/shutdown.go` flushes
/// telemetry, up to 1 s, before it sends SHUTDOWN).
const FLUSH_BEFORE_SHUTDOWN: Duration = Duration::from_secs(1);

/// How many API calls may wait for the driver before the router's senders
/// wait too: back-pressure against a flood of requests.
const API_QUEUE: usize = 1024;

/// Messages to the driver other than API calls and process exits.
#[derive(Debug)]
enum Control {
    /// An invoke, with its place in the queue.
    Invoke(Queued),
    /// Spindown and stop.
    Shutdown,
}

/// What happened during the environment's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Invokes that ended (with any status).
    pub invokes: u64,
    /// Invokes that ended with an error or a timeout (their `REPORT` or
    /// `platform.report` says so), whatever their caller got: an extension
    /// that crashes after the response fails the invoke too.
    pub failed_invokes: u64,
    /// Inits that failed.
    pub init_failures: u64,
    /// Resets (shutdowns after a timeout or a failure).
    pub resets: u64,
    /// Processes that were still alive 2 s after SIGKILL.
    pub unreaped: usize,
    /// Execution environments that were started: 1 for an
    /// [`Environment`](crate::Environment), each one of a
    /// [`Function`](crate::Function).
    pub environments: u64,
}

impl Summary {
    /// The counts of `self` and `other` together.
    pub(crate) fn add(&mut self, other: &Summary) {
        self.invokes += other.invokes;
        self.failed_invokes += other.failed_invokes;
        self.init_failures += other.init_failures;
        self.resets += other.resets;
        self.unreaped += other.unreaped;
        self.environments += other.environments;
    }
}

/// Where the environment is, published after every message the driver
/// handles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Inits that completed.
    pub(crate) inits: u64,
    /// The counts so far.
    pub(crate) summary: Summary,
    /// Nothing runs and nothing waits: no Init, invoke or shutdown, and no
    /// invoke queued.
    pub(crate) quiet: bool,
    /// Stopped for good.
    pub(crate) stopped: bool,
}

/// Why an invoke did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotRun {
    /// The environment stopped (or was stopping) before it ran.
    Stopped,
    /// The queue was full ([`QueueLimit`]).
    QueueFull(QueueLimit),
    /// A function at its reserved concurrency (or with none).
    ReservedConcurrency,
    /// The environment for it could not start; why.
    Failed(Arc<str>),
    /// A tenant id for a function without tenant isolation, or none for
    /// one with it.
    Tenant {
        /// Whether the function has tenant isolation.
        isolated: bool,
    },
    /// Managed Instances: rejected at once, with this `errorType`
    /// (`Runtime.Unavailable`, `Client.DuplicatedInvokeId`, ...).
    Rejected(&'static str),
}

/// A cloneable handle to invoke the environment and to stop it.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    ctl: mpsc::UnboundedSender<Control>,
    progress: watch::Receiver<Progress>,
    queue: Arc<Budget>,
    limit: QueueLimit,
    /// Managed Instances: the caller's request id is the invoke id.
    managed: bool,
}

/// A synchronous answer, or why the invoke was rejected.
fn whole(answer: Answer) -> Result<Answer, NotRun> {
    match answer {
        Answer::Rejected(error_type) => Err(NotRun::Rejected(error_type)),
        answer => Ok(answer),
    }
}

impl Handle {
    /// Invokes the function and waits for its answer. Invokes queue: one
    /// runs at a time, as in Lambda.
    pub(crate) async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, NotRun> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(request, Some(tx), false, None)?;
        match whole(rx.await.map_err(|_| NotRun::Stopped)?)? {
            Answer::Whole(response) => Ok(response),
            // A streaming function invoked with `Invoke`: its response,
            // whole, under the buffered limit (docs/fidelity.md).
            Answer::Stream(streamed) => Ok(streamed.collect().await),
            Answer::Rejected(error_type) => Err(NotRun::Rejected(error_type)),
        }
    }

    /// Invokes the function for a caller that reads a stream
    /// (`InvokeWithResponseStream`).
    pub(crate) async fn invoke_stream(&self, request: InvokeRequest) -> Result<Answer, NotRun> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(request, Some(tx), true, None)?;
        whole(rx.await.map_err(|_| NotRun::Stopped)?)
    }

    /// Queues an asynchronous invoke (invocation type `Event`), and returns
    /// its request id.
    pub(crate) fn invoke_async(&self, request: InvokeRequest) -> Result<String, NotRun> {
        self.enqueue(request, None, false, None)
    }

    /// Queues an asynchronous invoke that already has its request id (a
    /// [`Function`](crate::Function) gives it when it accepts the invoke).
    pub(crate) fn invoke_async_as(
        &self,
        request: InvokeRequest,
        request_id: String,
    ) -> Result<String, NotRun> {
        self.enqueue(request, None, false, Some(request_id))
    }

    fn enqueue(
        &self,
        mut request: InvokeRequest,
        reply: Option<oneshot::Sender<Answer>>,
        streaming: bool,
        request_id: Option<String>,
    ) -> Result<String, NotRun> {
        let ticket = self
            .queue
            .take(request.payload.len())
            .ok_or(NotRun::QueueFull(self.limit))?;
        // Under Managed Instances the caller's `X-Amzn-RequestId` becomes
        // the invoke id (RIE `aws-lambda-rie/internal/invoke/rie_invoke_request.go`);
        // on-demand Lambda always makes its own.
        let given = request.request_id.take().filter(|_| self.managed);
        let request_id = request_id
            .or(given)
            .unwrap_or_else(|| crate::ids::uuid().to_string());
        self.ctl
            .send(Control::Invoke(Queued {
                request_id: request_id.clone(),
                request,
                reply,
                streaming,
                ticket,
            }))
            .map_err(|_| NotRun::Stopped)?;
        Ok(request_id)
    }

    /// Asks for a spindown shutdown.
    pub(crate) fn shutdown(&self) {
        let _ = self.ctl.send(Control::Shutdown);
    }

    /// Waits until `done` holds for the environment's progress, and returns
    /// the progress then. Returns at once when it already holds.
    pub(crate) async fn wait_for(&self, done: impl FnMut(&Progress) -> bool) -> Progress {
        let mut progress = self.progress.clone();
        let waited = progress.wait_for(done).await.map(|p| *p);
        // The driver is gone: it published `stopped` before it ended.
        waited.unwrap_or_else(|_| *progress.borrow())
    }
}

/// A running environment's engine: the API server and the driver task.
#[derive(Debug)]
pub(crate) struct Engine {
    api_addr: SocketAddr,
    #[cfg(test)]
    router: axum::Router,
    handle: Handle,
    driver: JoinHandle<Summary>,
    server: JoinHandle<std::io::Result<()>>,
}

/// What the engine needs to start, besides its host and telemetry.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// The function.
    pub(crate) function: FunctionConfig,
    /// External extension names, in launch (name) order.
    pub(crate) extensions: Vec<String>,
    /// Freeze the processes between invokes.
    pub(crate) freeze: bool,
    /// The bound on invokes waiting.
    pub(crate) queue: QueueLimit,
    /// Pace streamed responses past their first 6 MiB (Lambda's
    /// bandwidth rule).
    pub(crate) stream_rate_limit: bool,
    /// The tenant this environment serves, under tenant isolation.
    pub(crate) tenant: Option<Arc<str>>,
}

impl Engine {
    /// Starts an environment: serves the APIs on `listener`, runs Init at
    /// once, and returns. `host` runs the processes, `telemetry` delivers
    /// records, `sink` receives the platform lines.
    pub(crate) fn start(
        listener: TcpListener,
        config: EngineConfig,
        host: impl Host,
        telemetry: impl Telemetry,
        sink: Arc<dyn Sink>,
    ) -> std::io::Result<Self> {
        let api_addr = listener.local_addr()?;
        // The bounded API channel gives back-pressure against a flood of
        // requests; control messages (exits, invokes) must never be lost.
        let (api_tx, api_rx) = mpsc::channel::<ApiCall>(API_QUEUE);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (progress_tx, progress_rx) = watch::channel(Progress::default());
        let router = api::router(api_tx, config.function.managed_instances.is_none());
        let server = tokio::spawn(api::serve(listener, router.clone(), async move {
            let _ = stop_rx.await;
        }));
        let lifecycle = Lifecycle::new(LifecycleConfig {
            extensions: config.extensions,
            function_timeout: config.function.timeout,
            init_timeout: config.function.init_timeout,
            managed: config.function.managed_instances,
        });
        let managed = config.function.managed_instances.is_some();
        let driver = Driver {
            arn: config.function.arn(),
            tenant: config.tenant,
            function: config.function,
            freeze: config.freeze,
            stream_rate_limit: config.stream_rate_limit,
            pending_stream: None,
            lc: lifecycle,
            host,
            telemetry,
            sink,
            exits: Exits(exit_tx),
            ext_waiters: HashMap::new(),
            runtime_waiters: VecDeque::new(),
            managed,
            inflight: HashMap::new(),
            queue: VecDeque::new(),
            current: None,
            summary: Summary {
                environments: 1,
                ..Summary::default()
            },
            inits: 0,
            finishing: None,
            flush: ShutdownFlush::default(),
            stop_requested: false,
            freeze_at: None,
            frozen: false,
            progress: progress_tx,
            published: Progress::default(),
        };
        let driver = tokio::spawn(driver.run(api_rx, ctl_rx, exit_rx, stop_tx));
        Ok(Self {
            api_addr,
            #[cfg(test)]
            router,
            handle: Handle {
                ctl: ctl_tx,
                progress: progress_rx,
                queue: Budget::new(config.queue),
                limit: config.queue,
                managed,
            },
            driver,
            server,
        })
    }

    /// The address of the Runtime API (`AWS_LAMBDA_RUNTIME_API`).
    pub(crate) fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The API router, wired to this environment's driver: requests sent
    /// to it with `tower::ServiceExt::oneshot` are served exactly as over
    /// the listener.
    #[cfg(test)]
    pub(crate) fn api_router(&self) -> axum::Router {
        self.router.clone()
    }

    /// A handle to invoke and stop the environment.
    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Waits until the environment has stopped (after
    /// [`Handle::shutdown`]) and the API server has closed.
    pub(crate) async fn wait(self) -> std::io::Result<Summary> {
        let summary = self.driver.await.unwrap_or_default();
        match self.server.await {
            Ok(Err(error)) => Err(error),
            _ => Ok(summary),
        }
    }
}

/// The invoke being served: who to answer, and its trace header.
#[derive(Debug)]
struct Current {
    request_id: String,
    /// The X-Ray trace header of this invoke (the caller's, or a new one).
    trace: String,
    /// Size of the runtime's response, for `platform.runtimeDone`.
    produced_bytes: Option<u64>,
    reply: Option<oneshot::Sender<Answer>>,
    /// The caller reads a stream.
    streaming: bool,
    /// For a streamed response: the invoke's fault, told when it ends.
    verdict: Option<oneshot::Sender<Option<StreamError>>>,
}

struct Driver<H, T> {
    /// The tenant of this environment (tenant isolation), if any.
    tenant: Option<Arc<str>>,
    function: FunctionConfig,
    arn: String,
    freeze: bool,
    stream_rate_limit: bool,
    /// The caller's side of a streamed response whose start the lifecycle
    /// is about to answer (`Outcome::Stream`).
    pending_stream: Option<tokio::sync::mpsc::Receiver<StreamItem>>,
    lc: Lifecycle,
    host: H,
    telemetry: T,
    sink: Arc<dyn Sink>,
    exits: Exits,
    /// Long polls waiting for their answer.
    ext_waiters: HashMap<ExtensionId, oneshot::Sender<ApiReply>>,
    /// The runtime's long polls: one on-demand, one per idle worker under
    /// Managed Instances (bounded by the lifecycle's worker limit).
    runtime_waiters: VecDeque<oneshot::Sender<ApiReply>>,
    /// Managed Instances: many invokes in flight.
    managed: bool,
    /// Managed Instances: the invokes in flight other than `current`, by
    /// request id. Each effect about an invoke brings its entry into
    /// `current` first (`focus`), so the effects code serves both modes.
    inflight: HashMap<String, Current>,
    queue: VecDeque<Queued>,
    current: Option<Current>,
    summary: Summary,
    inits: u64,
    /// A spindown was asked for; it runs once no invoke or Init is running.
    stop_requested: bool,
    /// When the pending freeze lands (see `Effect::Freeze`).
    freeze_at: Option<tokio::time::Instant>,
    /// The processes are stopped (SIGSTOP sent, no SIGCONT yet).
    frozen: bool,
    /// The telemetry flush of a finished shutdown, awaited by the loop.
    finishing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Managed Instances: the telemetry flush that SHUTDOWN waits for, and
    /// the SHUTDOWNs held until it is done (at most one per extension).
    flush: ShutdownFlush,
    progress: watch::Sender<Progress>,
    /// The last progress sent on `progress`.
    published: Progress,
}

/// The current time on both clocks the lifecycle needs.
fn now() -> Now {
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Now {
        // tokio's clock, so that tests with paused time drive deadlines.
        instant: tokio::time::Instant::now().into_std(),
        epoch_ms,
    }
}

/// Managed Instances: SHUTDOWN goes out once telemetry is flushed.
#[derive(Default)]
struct ShutdownFlush {
    /// The flush has started (once: Managed Instances never re-run Init).
    started: bool,
    /// The flush, while it runs.
    running: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// It has ended (or was given up on).
    done: bool,
    /// SHUTDOWN events waiting for it.
    held: Vec<(ExtensionId, lext_protocol::extensions::ShutdownReason, u64)>,
}

/// Awaits `future`, or forever without one.
async fn until_done(future: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>) {
    match future {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<H: Host, T: Telemetry> Driver<H, T> {
    async fn run(
        mut self,
        mut api_rx: mpsc::Receiver<ApiCall>,
        mut ctl_rx: mpsc::UnboundedReceiver<Control>,
        mut exit_rx: mpsc::UnboundedReceiver<Exited>,
        stop_server: oneshot::Sender<()>,
    ) -> Summary {
        self.feed(Input::Init);
        // Init may end in its first batch (an extension that cannot be
        // launched fails it at once, and the reset has nothing to wait
        // for): then nothing else happens until an invoke, and `ready`
        // must hear of the failure now.
        self.publish();
        while !self.lc.is_stopped() {
            let deadline = self.lc.next_deadline().map(tokio::time::Instant::from_std);
            // Taken out for the select, so that the handlers may use `self`.
            let mut flushing = self.flush.running.take();
            tokio::select! {
                Some((input, reply)) = api_rx.recv() => self.api(input, reply),
                Some(exit) = exit_rx.recv() => self.exited(exit),
                msg = ctl_rx.recv() => self.control(msg),
                () = sleep_until(deadline) => self.feed(Input::Tick),
                () = sleep_until(self.freeze_at) => self.freeze_now(),
                () = until_done(&mut flushing) => {
                    flushing = None;
                    self.flushed();
                }
            }
            if flushing.is_some() {
                self.flush.running = flushing;
            }
            if let Some(finishing) = self.finishing.take() {
                // Subscribers of the old environment get what is left
                // before a new Init may record anything.
                finishing.await;
            }
            self.pump();
            self.publish();
        }
        self.queue.drain(..).for_each(drop_queued);
        let forgotten = self.lc.timed_out_forgotten();
        if forgotten > 0 {
            tracing::warn!(
                "{forgotten} timed-out request id(s) were forgotten to keep their bound; \
                 late answers for them got InvalidRequestID instead of 410"
            );
        }
        // Long polls still open get a 500 from the router when their
        // senders drop here; then the server stops.
        self.ext_waiters.clear();
        self.runtime_waiters.clear();
        if let Some(finishing) = self.finishing.take() {
            finishing.await;
        }
        self.sink.flush();
        self.publish();
        let _ = stop_server.send(());
        self.summary
    }

    fn exited(&mut self, exit: Exited) {
        crate::marks::tell(
            &*self.sink,
            &self.lc,
            exit.proc,
            crate::marks::exited(exit.status),
        );
        if let (Proc::Extension(index), true) = (exit.proc, exit.generation == self.lc.generation())
        {
            if let Some(name) = self.lc.extension_name(index) {
                self.telemetry.extension_exited(name);
            }
        }
        self.feed(Input::Exited {
            generation: exit.generation,
            proc: exit.proc,
            status: exit.status,
        });
    }

    fn control(&mut self, msg: Option<Control>) {
        match msg {
            Some(Control::Invoke(queued)) if self.stop_requested => drop_queued(queued),
            Some(Control::Invoke(queued)) => self.queue.push_back(queued),
            Some(Control::Shutdown) => {
                // Invokes still queued will never run. The one running
                // finishes first (its timeout bounds it): Lambda never
                // spins an environment down mid-invoke.
                self.queue.drain(..).for_each(drop_queued);
                self.stop_requested = true;
            }
            // Every handle is gone: nobody can invoke or stop us any more,
            // so stop now.
            None => self.feed(Input::Shutdown),
        }
    }

    /// Publishes where the environment is, if that changed.
    fn publish(&mut self) {
        let progress = Progress {
            inits: self.inits,
            summary: self.summary,
            quiet: self.lc.is_quiet()
                && self.current.is_none()
                && self.inflight.is_empty()
                && self.queue.is_empty(),
            stopped: self.lc.is_stopped(),
        };
        // Compared with the last one sent, kept here: most messages change
        // nothing, and then the watch channel's lock is not taken.
        if progress != self.published {
            self.published = progress;
            self.progress.send_replace(progress);
        }
    }

    /// Feeds the next queued invoke when the environment can take it.
    fn pump(&mut self) {
        if self.stop_requested {
            // Only a running invoke defers the spindown (its timeout
            // bounds the wait); an Init without an invoke is cut short.
            if self.current.is_none() && self.inflight.is_empty() && !self.lc.is_stopped() {
                self.feed(Input::Shutdown);
            }
            return;
        }
        while self.lc.accepts_invoke() && self.current.is_none() {
            let Some(Queued {
                request_id,
                request,
                reply,
                streaming,
                ticket,
            }) = self.queue.pop_front()
            else {
                return;
            };
            // Running, it no longer waits.
            drop(ticket);
            if reply.as_ref().is_some_and(|r| r.is_closed()) {
                // The caller went away while queued.
                continue;
            }
            let trace = request.trace_id.unwrap_or_else(new_trace_id);
            self.current = Some(Current {
                request_id: request_id.clone(),
                trace,
                produced_bytes: None,
                reply,
                streaming,
                verdict: None,
            });
            self.feed(Input::Invoke {
                request_id,
                invocation_id: crate::ids::uuid().to_string(),
                payload: request.payload,
                client_context: request.client_context,
            });
        }
    }

    /// Feeds one input and carries out its effects. A refusal here is a
    /// driver-made input the lifecycle did not want; it is logged.
    fn feed(&mut self, input: Input) {
        match self.lc.transition(input, now()) {
            Ok(effects) => self.apply_all(effects),
            Err(refusal) => tracing::debug!(%refusal, "internal input refused"),
        }
    }

    /// Carries out a batch of effects, then the follow-up inputs they
    /// produced, each batch in the lifecycle's order.
    fn apply_all(&mut self, effects: Vec<crate::lifecycle::Effect>) {
        let mut followups = VecDeque::new();
        for effect in effects {
            self.focus(&effect);
            self.apply(effect, &mut followups);
        }
        while let Some(input) = followups.pop_front() {
            match self.lc.transition(input, now()) {
                Ok(effects) => {
                    for effect in effects {
                        self.focus(&effect);
                        self.apply(effect, &mut followups);
                    }
                }
                Err(refusal) => tracing::debug!(%refusal, "follow-up input refused"),
            }
        }
        self.unfocus();
    }

    /// Managed Instances: makes the invoke `effect` is about the `current`
    /// one, putting the previous one back among those in flight.
    fn focus(&mut self, effect: &crate::lifecycle::Effect) {
        if !self.managed {
            return;
        }
        let Some(id) = effect.request_id() else {
            return;
        };
        if self.current.as_ref().is_some_and(|c| c.request_id == id) {
            return;
        }
        self.unfocus();
        self.current = self.inflight.remove(id);
    }

    /// Managed Instances: puts `current` back among the invokes in flight
    /// (between batches no invoke is `current`).
    fn unfocus(&mut self) {
        if !self.managed {
            return;
        }
        if let Some(c) = self.current.take() {
            self.inflight.insert(c.request_id.clone(), c);
        }
    }
}

/// Drops an invoke that will never run. A synchronous caller learns it
/// from its dropped reply; an `Event` invoke has no caller left to tell, so
/// it is reported here, by its request id (the 202's `X-Amzn-RequestId`).
fn drop_queued(queued: Queued) {
    if queued.reply.is_none() {
        tracing::warn!(
            "Event invoke {} was dropped: the environment shut down before it ran",
            queued.request_id
        );
    }
}

/// A new X-Ray trace header, as Lambda makes one for every invoke (not
/// sampled): `Root=1-<epoch s, 8 hex>-<24 hex>;Parent=<16 hex>;Sampled=0`.
fn new_trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        crate::ids::hex(24),
        crate::ids::hex(16)
    )
}

#[cfg(test)]
mod tests {
    //! The driver against fake processes, through its API router with no
    //! socket: every row of the refusal tables, and no request sequence
    //! that panics it or wedges it.
    mod fuzz;
    mod router;

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::config::FunctionConfig;
    use crate::lifecycle::{ExitStatus, LaunchFailure, Proc, Signal};
    use crate::ports::{Exits, Host};

    /// Processes that exist only as entries: they "die" when signalled.
    #[derive(Clone, Default)]
    pub(super) struct FakeHost {
        pub(super) log: Arc<Mutex<Vec<String>>>,
        exits: Arc<Mutex<Option<(Exits, u64)>>>,
    }

    impl Host for FakeHost {
        fn launch_extension(
            &mut self,
            index: usize,
            generation: u64,
            exits: &Exits,
        ) -> Result<(), LaunchFailure> {
            self.log.lock().unwrap().push(format!("launch {index}"));
            *self.exits.lock().unwrap() = Some((exits.clone(), generation));
            Ok(())
        }
        fn start_runtime(&mut self, generation: u64, exits: &Exits) -> Result<(), String> {
            self.log.lock().unwrap().push("runtime".into());
            *self.exits.lock().unwrap() = Some((exits.clone(), generation));
            Ok(())
        }
        fn signal(&mut self, proc: Proc, signal: Signal) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{signal:?} {proc:?}"));
            if let Some((exits, generation)) = self.exits.lock().unwrap().clone() {
                exits.report(generation, proc, ExitStatus::Signal(9));
            }
        }
        fn freeze(&mut self, _frozen: bool) {}
        fn peak_memory_mb(&mut self) -> u64 {
            1
        }
        fn sweep(&mut self) -> usize {
            0
        }
    }

    pub(super) fn function() -> FunctionConfig {
        FunctionConfig {
            name: "fn".into(),
            version: "$LATEST".into(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            handler: "h".into(),
            init_timeout: Duration::from_secs(10),
            runtime_version: None,
            logging: crate::config::Logging::default(),
            managed_instances: None,
        }
    }
}
