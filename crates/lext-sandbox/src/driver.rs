//! The driver: one task that owns the [`Lifecycle`] and carries out its
//! effects.
//!
//! Everything that can change the environment's state arrives here as a
//! message: API calls from the [`api`] router, invokes from a
//! [`SandboxHandle`], process exits from the [`Host`], and the next
//! deadline of the lifecycle as a timer. The driver feeds each one to
//! [`Lifecycle::transition`], then performs the effects in order: answering
//! long polls, launching and signalling processes through the [`Host`],
//! printing platform lines and publishing telemetry. Because one task owns
//! the state there are no locks on the hot path: an invoke is a handful of
//! channel hops and no timer polling (the only timer is the lifecycle's own
//! next deadline).
//!
//! Follow-up inputs produced while carrying out effects (a launch that
//! failed) are queued and fed after the current batch, never re-entrantly,
//! so a batch of effects is always carried out as the lifecycle ordered it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use bytes::Bytes;
use lext_protocol::extensions::{
    EventType, InvokeEvent, NextEvent, RegisterResponse, ShutdownEvent,
};
use lext_protocol::telemetry::{Api, Record, SubscribeRequest};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::{self, ApiCall, ApiReply, ApiRequest, Invocation};
use crate::lifecycle::{
    Effect, ExitStatus, ExtensionId, InitPhase, Input, LaunchFailure, Lifecycle, LifecycleConfig,
    Now, Outcome, Proc, Report, Signal, Status,
};
use crate::logline;
use crate::refusal::Refusal;

/// Who wrote a line of the environment's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineSource {
    /// The platform (`START`, `REPORT`, ...).
    Platform,
    /// The function runtime.
    Function,
    /// An extension, by name.
    Extension(String),
}

/// One line of the environment's log, for the [`Output`].
#[derive(Debug, Clone)]
pub struct LogLine {
    /// When it was written.
    pub time: SystemTime,
    /// Who wrote it.
    pub source: LineSource,
    /// The text, without a newline.
    pub text: String,
}

/// Where log lines go (the CLI prints them). Called from several tasks; it
/// must not block for long.
pub type Output = Arc<dyn Fn(LogLine) + Send + Sync>;

/// Where telemetry goes: the platform records the driver makes and the
/// subscriptions the lifecycle accepted. [`Hub`](crate::telemetry::Hub)
/// implements it; tests of the lifecycle and the router use [`NoTelemetry`].
pub trait Telemetry: Send + 'static {
    /// Records a platform event (the hub stamps the time). Must not block.
    fn record(&mut self, record: Record);
    /// Adds a subscriber the lifecycle has accepted.
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
    /// Sends what is batched now (before SHUTDOWN, so that extensions get
    /// the last records while they still listen).
    fn flush_now(&mut self);
    /// The environment is about to be frozen (`true`) or was just thawed:
    /// deliveries to frozen listeners wait instead of timing out.
    fn freeze(&mut self, frozen: bool);
    /// Flushes within `deadline` and forgets the subscribers (their
    /// processes are gone). Awaited by the driver.
    fn finish(&mut self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Telemetry that goes nowhere, for tests of the lifecycle and the router.
#[derive(Debug, Default)]
pub struct NoTelemetry;

impl Telemetry for NoTelemetry {
    fn record(&mut self, _record: Record) {}
    fn subscribe(&mut self, _: &str, _: Api, _: &SubscribeRequest) -> Result<(), Refusal> {
        Ok(())
    }
    fn close_subscriptions(&mut self) {}
    fn begin_init(&mut self) {}
    fn flush_now(&mut self) {}
    fn freeze(&mut self, _frozen: bool) {}
    fn finish(&mut self, _deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async {})
    }
}

impl Telemetry for crate::telemetry::Hub {
    fn record(&mut self, record: Record) {
        crate::telemetry::Hub::record(self, record);
    }

    fn subscribe(
        &mut self,
        extension: &str,
        api: Api,
        request: &SubscribeRequest,
    ) -> Result<(), Refusal> {
        use crate::telemetry::SubscribeError;
        crate::telemetry::Hub::subscribe(self, api, extension, request).map_err(|e| match e {
            SubscribeError::Closed(api) => Refusal::SubscriptionClosed(api),
            // Mixing the two APIs: Lambda's answer is UNCONFIRMED; a 400
            // validation error tells the extension what is wrong.
            other => Refusal::Validation {
                api,
                message: other.to_string(),
            },
        })
    }

    fn close_subscriptions(&mut self) {
        crate::telemetry::Hub::close_subscriptions(self);
    }

    fn begin_init(&mut self) {
        crate::telemetry::Hub::begin_init(self);
    }

    fn flush_now(&mut self) {
        crate::telemetry::Hub::flush_now(self);
    }

    fn freeze(&mut self, frozen: bool) {
        if frozen {
            crate::telemetry::Hub::freeze(self);
        } else {
            crate::telemetry::Hub::thaw(self);
        }
    }

    fn finish(&mut self, deadline: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let hub = self.clone();
        Box::pin(async move {
            let report = hub.shutdown(deadline).await;
            for lost in &report.undelivered {
                tracing::warn!(
                    extension = %lost.extension,
                    records = lost.dropped_records,
                    bytes = lost.dropped_bytes,
                    "telemetry not delivered"
                );
            }
        })
    }
}

/// The processes of the environment, as the driver sees them. The real one
/// is [`ProcessHost`](crate::host::ProcessHost); tests use fakes.
pub trait Host: Send + 'static {
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
}

/// Where a [`Host`] reports process exits.
#[derive(Debug, Clone)]
pub struct Exits(mpsc::UnboundedSender<Control>);

impl Exits {
    /// Reports that `proc` of `generation` ended.
    pub fn report(&self, generation: u64, proc: Proc, status: ExitStatus) {
        // A driver that is gone no longer cares.
        let _ = self.0.send(Control::Exited {
            generation,
            proc,
            status,
        });
    }
}

/// Messages to the driver other than API calls.
#[derive(Debug)]
pub enum Control {
    /// An invoke; `reply` is `None` for an asynchronous (`Event`) invoke.
    Invoke(InvokeRequest, Option<oneshot::Sender<InvokeReply>>),
    /// A process ended.
    Exited {
        /// Its Init generation.
        generation: u64,
        /// Which.
        proc: Proc,
        /// How.
        status: ExitStatus,
    },
    /// Spindown and stop.
    Shutdown,
}

/// An invoke, as a caller makes it.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    /// The payload (JSON by convention, passed through as bytes).
    pub payload: Bytes,
    /// `X-Amzn-Trace-Id`, passed to the runtime and the extensions.
    pub trace_id: Option<String>,
    /// Client context JSON (already base64-decoded).
    pub client_context: Option<String>,
}

/// What the caller gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeResult {
    /// The runtime's response.
    Response {
        /// The body.
        body: Bytes,
        /// The runtime's content type, if it sent one.
        content_type: Option<String>,
    },
    /// The runtime's `/error` body (`X-Amz-Function-Error: Unhandled`).
    FunctionError {
        /// The body, unchanged.
        body: Bytes,
    },
    /// A platform error: timeout, crash, oversized response, ...
    PlatformError {
        /// `errorType`.
        error_type: String,
        /// `errorMessage`.
        message: String,
    },
}

/// The answer to an invoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeReply {
    /// The request id.
    pub request_id: String,
    /// The result.
    pub result: InvokeResult,
}

/// The environment cannot take the request any more.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The environment has stopped.
    #[error("the execution environment has stopped")]
    Stopped,
    /// Binding or serving the API listener failed.
    #[error("serving the Runtime API on {addr}: {source}")]
    Api {
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The function's configuration, as far as the driver needs it.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    /// Function name.
    pub name: String,
    /// `$LATEST` or a number.
    pub version: String,
    /// Memory, MB.
    pub memory_mb: u32,
    /// Function timeout.
    pub timeout: Duration,
    /// Region, for the ARN.
    pub region: String,
    /// Account id, for the ARN and the `accountId` feature.
    pub account_id: String,
    /// `_HANDLER`.
    pub handler: String,
    /// The Init limit (10 s in Lambda).
    pub init_timeout: Duration,
    /// Freeze the processes between invokes.
    pub freeze: bool,
}

impl FunctionConfig {
    /// The unqualified function ARN.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.name
        )
    }
}

/// A cloneable handle to invoke the environment and to stop it.
#[derive(Debug, Clone)]
pub struct SandboxHandle {
    ctl: mpsc::UnboundedSender<Control>,
}

impl SandboxHandle {
    /// Invokes the function and waits for its answer. Invokes queue: one
    /// runs at a time, as in Lambda.
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeReply, SandboxError> {
        let (tx, rx) = oneshot::channel();
        self.ctl
            .send(Control::Invoke(request, Some(tx)))
            .map_err(|_| SandboxError::Stopped)?;
        rx.await.map_err(|_| SandboxError::Stopped)
    }

    /// Queues an asynchronous invoke (invocation type `Event`).
    pub fn invoke_async(&self, request: InvokeRequest) -> Result<(), SandboxError> {
        self.ctl
            .send(Control::Invoke(request, None))
            .map_err(|_| SandboxError::Stopped)
    }

    /// Completes when the environment has stopped.
    pub async fn closed(&self) {
        self.ctl.closed().await;
    }

    /// Asks for a spindown shutdown; [`Sandbox::wait`] returns when it is over.
    pub fn shutdown(&self) {
        let _ = self.ctl.send(Control::Shutdown);
    }
}

/// A running execution environment.
#[derive(Debug)]
pub struct Sandbox {
    api_addr: SocketAddr,
    router: axum::Router,
    handle: SandboxHandle,
    driver: JoinHandle<Summary>,
    server: JoinHandle<std::io::Result<()>>,
}

/// What happened during the environment's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Invokes that ended (with any status).
    pub invokes: u64,
    /// Inits that failed.
    pub init_failures: u64,
    /// Resets (shutdowns after a timeout or a failure).
    pub resets: u64,
    /// Processes that were still alive 2 s after SIGKILL.
    pub unreaped: usize,
}

impl Sandbox {
    /// Starts an environment: serves the APIs on `listener`, runs Init at
    /// once, and returns. `extensions` are the external extensions' names in
    /// launch order; `host` runs their processes.
    pub fn start(
        listener: TcpListener,
        function: FunctionConfig,
        extensions: Vec<String>,
        host: impl Host,
        telemetry: impl Telemetry,
        output: Output,
    ) -> Result<Self, SandboxError> {
        let api_addr = listener.local_addr().map_err(|source| SandboxError::Api {
            addr: "listener".into(),
            source,
        })?;
        // The bounded API channel gives back-pressure against a flood of
        // requests; control messages (exits, invokes) must never be lost.
        let (api_tx, api_rx) = mpsc::channel::<ApiCall>(1024);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let router = api::router(api_tx);
        let server = tokio::spawn(api::serve(listener, router.clone(), async move {
            let _ = stop_rx.await;
        }));
        let lifecycle = Lifecycle::new(LifecycleConfig {
            extensions,
            function_timeout: function.timeout,
            init_timeout: function.init_timeout,
        });
        let driver = Driver {
            arn: function.arn(),
            function,
            lc: lifecycle,
            host,
            telemetry,
            output,
            exits: Exits(ctl_tx.clone()),
            ext_waiters: HashMap::new(),
            runtime_waiter: None,
            queue: VecDeque::new(),
            current: None,
            stash: None,
            subscriptions: HashMap::new(),
            summary: Summary::default(),
            finishing: None,
            stop_requested: false,
            freeze_at: None,
            frozen: false,
        };
        let driver = tokio::spawn(driver.run(api_rx, ctl_rx, stop_tx));
        Ok(Self {
            api_addr,
            router,
            handle: SandboxHandle { ctl: ctl_tx },
            driver,
            server,
        })
    }

    /// The address of the Runtime API (`AWS_LAMBDA_RUNTIME_API`).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The API router, wired to this environment's driver: requests sent
    /// to it (for example with `tower::ServiceExt::oneshot`) are served
    /// exactly as over the listener.
    pub fn api_router(&self) -> axum::Router {
        self.router.clone()
    }

    /// A handle to invoke and stop the environment.
    pub fn handle(&self) -> SandboxHandle {
        self.handle.clone()
    }

    /// Waits until the environment has stopped (after
    /// [`SandboxHandle::shutdown`]) and the API server has closed.
    pub async fn wait(self) -> Result<Summary, SandboxError> {
        let summary = self.driver.await.unwrap_or_default();
        match self.server.await {
            Ok(Err(source)) => Err(SandboxError::Api {
                addr: self.api_addr.to_string(),
                source,
            }),
            _ => Ok(summary),
        }
    }
}

/// The invoke being served.
#[derive(Debug)]
struct Current {
    request_id: String,
    /// The X-Ray trace header of this invoke (the caller's, or a new one).
    trace: String,
    /// Size of the runtime's response, for `platform.runtimeDone`.
    produced_bytes: Option<u64>,
    request: InvokeRequest,
    reply: Option<oneshot::Sender<InvokeReply>>,
}

/// A body the runtime sent, kept until the lifecycle says where it goes.
#[derive(Debug)]
enum Stash {
    Response(Bytes, Option<HeaderValue>),
    Error(Bytes),
}

struct Driver<H, T> {
    function: FunctionConfig,
    arn: String,
    lc: Lifecycle,
    host: H,
    telemetry: T,
    output: Output,
    exits: Exits,
    ext_waiters: HashMap<ExtensionId, oneshot::Sender<ApiReply>>,
    runtime_waiter: Option<oneshot::Sender<ApiReply>>,
    queue: VecDeque<(InvokeRequest, Option<oneshot::Sender<InvokeReply>>)>,
    current: Option<Current>,
    stash: Option<Stash>,
    /// Subscription requests accepted by the router, by extension name,
    /// until the lifecycle confirms them.
    subscriptions: HashMap<String, (Api, Box<SubscribeRequest>)>,
    summary: Summary,
    /// A spindown was asked for; it runs once no invoke or Init is running.
    stop_requested: bool,
    /// When the pending freeze lands (see `Effect::Freeze`).
    freeze_at: Option<tokio::time::Instant>,
    /// The processes are stopped (SIGSTOP sent, no SIGCONT yet).
    frozen: bool,
    /// The telemetry flush of a finished shutdown, awaited by the loop.
    finishing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

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

impl<H: Host, T: Telemetry> Driver<H, T> {
    async fn run(
        mut self,
        mut api_rx: mpsc::Receiver<ApiCall>,
        mut ctl_rx: mpsc::UnboundedReceiver<Control>,
        stop_server: oneshot::Sender<()>,
    ) -> Summary {
        self.feed(Input::Init);
        while !self.lc.is_stopped() {
            let deadline = self.lc.next_deadline().map(tokio::time::Instant::from_std);
            let freeze_at = self.freeze_at;
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let freeze = async {
                match freeze_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((request, reply)) = api_rx.recv() => self.api(request, reply),
                msg = ctl_rx.recv() => match msg {
                    Some(Control::Invoke(request, reply)) => self.queue.push_back((request, reply)),
                    Some(Control::Exited { generation, proc, status }) => {
                        self.feed(Input::Exited { generation, proc, status })
                    }
                    Some(Control::Shutdown) => {
                        // Invokes still queued will never run. The one
                        // running finishes first (its timeout bounds it):
                        // Lambda never spins an environment down mid-invoke.
                        self.queue.clear();
                        self.stop_requested = true;
                    }
                    // Every handle is gone: nobody can invoke or stop us
                    // any more, so stop now.
                    None => self.feed(Input::Shutdown),
                },
                () = sleep => self.feed(Input::Tick),
                () = freeze => self.freeze_now(),
            }
            if let Some(finishing) = self.finishing.take() {
                // Subscribers of the old environment get what is left
                // before a new Init may record anything.
                finishing.await;
            }
            self.pump();
        }
        // Long polls still open get a 500 from the router when their
        // senders drop here; then the server stops.
        self.ext_waiters.clear();
        self.runtime_waiter = None;
        if let Some(finishing) = self.finishing.take() {
            finishing.await;
        }
        let _ = stop_server.send(());
        self.summary
    }

    /// Feeds the next queued invoke when the environment can take it.
    fn pump(&mut self) {
        if self.stop_requested {
            // Only a running invoke defers the spindown (its timeout
            // bounds the wait); an Init without an invoke is cut short.
            if self.current.is_none() && !self.lc.is_stopped() {
                self.feed(Input::Shutdown);
            }
            return;
        }
        while self.lc.accepts_invoke() && self.current.is_none() {
            let Some((request, reply)) = self.queue.pop_front() else {
                return;
            };
            if reply.as_ref().is_some_and(|r| r.is_closed()) {
                // The caller went away while queued.
                continue;
            }
            let request_id = crate::ids::uuid().to_string();
            let trace = request.trace_id.clone().unwrap_or_else(new_trace_id);
            self.current = Some(Current {
                request_id: request_id.clone(),
                trace,
                produced_bytes: None,
                request,
                reply,
            });
            self.feed(Input::Invoke { request_id });
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

    fn apply_all(&mut self, effects: Vec<Effect>) {
        let mut followups = VecDeque::new();
        for effect in effects {
            self.apply(effect, &mut followups);
        }
        while let Some(input) = followups.pop_front() {
            match self.lc.transition(input, now()) {
                Ok(effects) => {
                    for effect in effects {
                        self.apply(effect, &mut followups);
                    }
                }
                Err(refusal) => tracing::debug!(%refusal, "follow-up input refused"),
            }
        }
    }

    fn line(&self, source: LineSource, text: String) {
        (self.output)(LogLine {
            time: SystemTime::now(),
            source,
            text,
        });
    }

    fn platform(&self, text: String) {
        self.line(LineSource::Platform, text);
    }

    // ----- API calls --------------------------------------------------------

    fn api(&mut self, request: ApiRequest, reply: oneshot::Sender<ApiReply>) {
        let now = now();
        match request {
            ApiRequest::Register {
                name,
                events,
                account_id,
            } => {
                let id = ExtensionId(crate::ids::uuid());
                match self
                    .lc
                    .transition(Input::Register { id, name, events }, now)
                {
                    Ok(effects) => {
                        let response = RegisterResponse {
                            function_name: self.function.name.clone(),
                            function_version: self.function.version.clone(),
                            handler: self.function.handler.clone(),
                            account_id: account_id.then(|| self.function.account_id.clone()),
                        };
                        let _ = reply.send(ApiReply::Registered { id, response });
                        self.apply_all(effects);
                    }
                    Err(r) => {
                        let _ = reply.send(ApiReply::Refused(r));
                    }
                }
            }
            ApiRequest::ExtensionNext { id } => {
                match self.lc.transition(Input::ExtensionNext { id }, now) {
                    Ok(effects) => {
                        // The answer comes with an INVOKE or SHUTDOWN effect,
                        // maybe in this very batch.
                        self.ext_waiters.insert(id, reply);
                        self.apply_all(effects);
                    }
                    Err(r) => {
                        let _ = reply.send(ApiReply::Refused(r));
                    }
                }
            }
            ApiRequest::ExtensionError {
                id,
                init,
                error_type,
            } => {
                let input = if init {
                    Input::ExtensionInitError { id }
                } else {
                    Input::ExtensionExitError { id }
                };
                let name = self.lc.extension(id).map(|(_, n, _)| n.to_owned());
                self.respond_then_apply(input, now, reply, ApiReply::Accepted);
                if let Some(name) = name {
                    tracing::info!(extension = %name, %error_type, init, "extension reported an error");
                }
            }
            ApiRequest::Subscribe { id, api, request } => {
                // The lifecycle decides first (unknown id, closed), then the
                // hub (mixed APIs); the TELEMETRY line follows acceptance.
                let effects = match self.lc.transition(Input::Subscribe { id, api }, now) {
                    Ok(effects) => effects,
                    Err(r) => {
                        let _ = reply.send(ApiReply::Refused(r));
                        return;
                    }
                };
                let name = self
                    .lc
                    .extension(id)
                    .map(|(_, n, _)| n.to_owned())
                    .unwrap_or_default();
                if let Err(r) = self.telemetry.subscribe(&name, api, &request) {
                    let _ = reply.send(ApiReply::Refused(r));
                    return;
                }
                self.subscriptions.insert(name, (api, request));
                let _ = reply.send(ApiReply::Subscribed);
                self.apply_all(effects);
            }
            ApiRequest::RuntimeNext => match self.lc.transition(Input::RuntimeNext, now) {
                Ok(effects) => {
                    self.runtime_waiter = Some(reply);
                    self.apply_all(effects);
                }
                Err(r) => {
                    let _ = reply.send(ApiReply::Refused(r));
                }
            },
            ApiRequest::RuntimeResponse {
                request_id,
                body,
                content_type,
                too_large,
            } => {
                self.stash = Some(Stash::Response(body, content_type));
                self.respond_then_apply(
                    Input::RuntimeResponse {
                        request_id,
                        too_large,
                    },
                    now,
                    reply,
                    ApiReply::Accepted,
                );
                self.stash = None;
            }
            ApiRequest::RuntimeError {
                request_id,
                error_type,
                body,
            } => {
                self.stash = Some(Stash::Error(body));
                self.respond_then_apply(
                    Input::RuntimeError {
                        request_id,
                        error_type,
                    },
                    now,
                    reply,
                    ApiReply::Accepted,
                );
                self.stash = None;
            }
            ApiRequest::RuntimeInitError { error_type } => {
                self.respond_then_apply(
                    Input::RuntimeInitError { error_type },
                    now,
                    reply,
                    ApiReply::Accepted,
                );
            }
        }
    }

    /// For calls answered at once: the refusal, or `ok` then the effects.
    fn respond_then_apply(
        &mut self,
        input: Input,
        now: Now,
        reply: oneshot::Sender<ApiReply>,
        ok: ApiReply,
    ) {
        match self.lc.transition(input, now) {
            Ok(effects) => {
                let _ = reply.send(ok);
                self.apply_all(effects);
            }
            Err(r) => {
                let _ = reply.send(ApiReply::Refused(r));
            }
        }
    }

    // ----- Effects ----------------------------------------------------------

    fn apply(&mut self, effect: Effect, followups: &mut VecDeque<Input>) {
        match effect {
            Effect::InitStarted { phase } => {
                self.subscriptions.clear();
                if self.lc.generation() > 1 {
                    self.telemetry.begin_init();
                }
                tracing::info!(phase = ?phase, "init started");
                self.telemetry
                    .record(crate::platform::init_start(&self.function, phase));
            }
            Effect::LaunchExtension { index } => {
                let generation = self.lc.generation();
                if let Err(failure) = self.host.launch_extension(index, generation, &self.exits) {
                    followups.push_back(Input::LaunchFailed { index, failure });
                }
            }
            Effect::StartRuntime => {
                let generation = self.lc.generation();
                if let Err(message) = self.host.start_runtime(generation, &self.exits) {
                    followups.push_back(Input::RuntimeLaunchFailed { message });
                }
            }
            Effect::Subscribed { name, api } => {
                if let Some((_, request)) = self.subscriptions.get(&name) {
                    let types: Vec<&str> = request.types.iter().map(|t| t.as_str()).collect();
                    let text = match api {
                        Api::Telemetry => logline::telemetry_subscription(&name, &types),
                        Api::Logs => logline::logs_subscription(&name, &types),
                    };
                    // The hub records platform.telemetrySubscription itself.
                    self.platform(text);
                }
            }
            Effect::InitDone {
                duration,
                extensions,
            } => {
                for ext in &extensions {
                    self.extension_line(ext);
                }
                for event in crate::platform::init_done(duration, &extensions) {
                    self.telemetry.record(event);
                }
                self.telemetry.close_subscriptions();
            }
            Effect::InitFailed {
                phase,
                duration,
                status,
                error_type,
                extensions,
            } => {
                self.summary.init_failures += 1;
                for ext in &extensions {
                    self.extension_line(ext);
                }
                let outcome = match (status, &error_type) {
                    (Status::Timeout, _) => logline::Outcome::Timeout,
                    (_, Some(t)) => logline::Outcome::Error(t.clone()),
                    (_, None) => logline::Outcome::Error(
                        lext_protocol::error::error_type::SANDBOX_FAILURE.into(),
                    ),
                };
                let lphase = match phase {
                    InitPhase::Init => logline::InitPhase::Init,
                    InitPhase::Invoke => logline::InitPhase::Invoke,
                };
                // Before the reset's signals take the processes away.
                let _ = self.host.peak_memory_mb();
                self.platform(logline::init_report(ms(duration), lphase, &outcome));
                // initRuntimeDone reports the failure too (RIE sends it with
                // the error status), then initReport closes the failed Init.
                self.telemetry.record(crate::platform::init_runtime_done(
                    phase,
                    status,
                    error_type.as_deref(),
                ));
                self.telemetry.record(crate::platform::init_report(
                    phase,
                    duration,
                    status,
                    error_type.as_deref(),
                ));
            }
            Effect::InvokeStarted { request_id } => {
                self.platform(logline::start(&request_id, &self.function.version));
                let trace = self.trace();
                self.telemetry.record(crate::platform::start(
                    &request_id,
                    &self.function.version,
                    trace,
                ));
            }
            Effect::DeliverInvoke {
                id,
                request_id,
                deadline_ms,
            } => {
                let tracing = self.trace();
                let event = NextEvent::Invoke(InvokeEvent {
                    deadline_ms,
                    request_id,
                    invoked_function_arn: self.arn.clone(),
                    tracing: tracing.map(|value| lext_protocol::extensions::Tracing {
                        kind: "X-Amzn-Trace-Id".to_owned(),
                        value,
                    }),
                });
                self.answer_extension(id, event);
            }
            Effect::DeliverToRuntime {
                request_id,
                deadline_ms,
            } => {
                let (payload, trace_id, client_context) = match &self.current {
                    Some(c) => (
                        c.request.payload.clone(),
                        Some(c.trace.clone()),
                        c.request.client_context.clone(),
                    ),
                    None => (Bytes::new(), None, None),
                };
                let invocation = Invocation {
                    request_id,
                    deadline_ms,
                    invoked_function_arn: self.arn.clone(),
                    trace_id,
                    client_context,
                    payload,
                };
                match self.runtime_waiter.take() {
                    Some(w) => {
                        let _ = w.send(ApiReply::Invocation(invocation));
                    }
                    None => tracing::warn!("the runtime is not waiting in /next"),
                }
            }
            Effect::Respond {
                request_id,
                outcome,
            } => {
                let result = match outcome {
                    Outcome::Response => match self.stash.take() {
                        Some(Stash::Response(body, ct)) => {
                            if let Some(c) = self.current.as_mut() {
                                c.produced_bytes = Some(body.len() as u64);
                            }
                            InvokeResult::Response {
                                body,
                                content_type: ct.and_then(|v| v.to_str().ok().map(str::to_owned)),
                            }
                        }
                        _ => InvokeResult::Response {
                            body: Bytes::new(),
                            content_type: None,
                        },
                    },
                    Outcome::FunctionError { .. } => match self.stash.take() {
                        Some(Stash::Error(body)) => InvokeResult::FunctionError { body },
                        _ => InvokeResult::FunctionError { body: Bytes::new() },
                    },
                    Outcome::PlatformError {
                        error_type,
                        message,
                    } => InvokeResult::PlatformError {
                        error_type,
                        message,
                    },
                };
                if let Some(reply) = self.current.as_mut().and_then(|c| c.reply.take()) {
                    let _ = reply.send(InvokeReply { request_id, result });
                }
            }
            Effect::RuntimeDone {
                request_id,
                status,
                error_type,
                duration,
            } => {
                let trace = self.trace();
                let produced = self.current.as_ref().and_then(|c| c.produced_bytes);
                self.telemetry.record(crate::platform::runtime_done(
                    &request_id,
                    status,
                    error_type.as_deref(),
                    trace,
                    duration,
                    produced,
                ));
            }
            Effect::TimedOut { request_id, after } => {
                let _ = self.host.peak_memory_mb();
                self.line(
                    LineSource::Platform,
                    logline::task_timed_out(SystemTime::now(), &request_id, after.as_secs_f64()),
                );
            }
            Effect::Fault {
                request_id,
                message,
                error_type,
            } => {
                let _ = request_id;
                self.telemetry
                    .record(crate::platform::fault(message.clone()));
                self.platform(message);
                self.platform(error_type);
            }
            Effect::InvokeEnded(report) => self.invoke_ended(report),
            Effect::Freeze => {
                if self.function.freeze {
                    // Lambda freezes at once. SIGSTOP and SIGCONT cost two
                    // context switches per process, which would halve the
                    // invoke rate of back-to-back invokes, so the freeze
                    // lands FREEZE_DELAY later and is cancelled if the next
                    // event comes first (docs/fidelity.md).
                    self.freeze_at = Some(tokio::time::Instant::now() + FREEZE_DELAY);
                }
            }
            Effect::Thaw => {
                // A pending freeze never happened: nothing to thaw.
                if self.freeze_at.take().is_none() && self.frozen {
                    self.frozen = false;
                    self.host.freeze(false);
                    self.telemetry.freeze(false);
                }
            }
            Effect::Signal { proc, signal } => self.host.signal(proc, signal),
            Effect::DeliverShutdown {
                id,
                reason,
                deadline_ms,
            } => {
                // Last records first, while the extension still listens.
                self.telemetry.flush_now();
                let event = NextEvent::Shutdown(ShutdownEvent {
                    deadline_ms,
                    shutdown_reason: reason,
                });
                self.answer_extension(id, event);
            }
            Effect::ShutdownDone {
                reason,
                stopped,
                unreaped,
            } => {
                tracing::info!(%reason, stopped, unreaped, "shutdown done");
                self.summary.unreaped += unreaped;
                if !stopped {
                    self.summary.resets += 1;
                }
                // The old processes are gone; so are their long polls.
                self.freeze_at = None;
                self.frozen = false;
                self.ext_waiters.clear();
                self.runtime_waiter = None;
                self.finishing = Some(self.telemetry.finish(Duration::ZERO));
                if let Some(current) = self.current.take() {
                    if let Some(reply) = current.reply {
                        let _ = reply.send(InvokeReply {
                            request_id: current.request_id,
                            result: InvokeResult::PlatformError {
                                error_type: lext_protocol::error::error_type::SANDBOX_FAILURE
                                    .into(),
                                message: "The execution environment shut down".into(),
                            },
                        });
                    }
                }
            }
        }
    }

    /// The current invoke's trace header.
    fn trace(&self) -> Option<String> {
        self.current.as_ref().map(|c| c.trace.clone())
    }

    /// Carries out a pending freeze (its delay ran out with no new event).
    fn freeze_now(&mut self) {
        if self.freeze_at.take().is_some() && !self.frozen {
            self.frozen = true;
            self.telemetry.freeze(true);
            self.host.freeze(true);
        }
    }

    fn answer_extension(&mut self, id: ExtensionId, event: NextEvent) {
        match self.ext_waiters.remove(&id) {
            Some(w) => {
                let _ = w.send(ApiReply::Event(event));
            }
            None => tracing::warn!(extension = %id, "the extension is not waiting in /event/next"),
        }
    }

    fn extension_line(&self, ext: &crate::lifecycle::ExtensionSummary) {
        let events: Vec<&str> = ext.events.iter().map(EventType::as_str).collect();
        self.platform(logline::extension(
            &ext.name,
            &ext.state.to_string(),
            &events,
            ext.error_type,
        ));
    }

    fn invoke_ended(&mut self, report: Report) {
        self.summary.invokes += 1;
        let max_memory = self.host.peak_memory_mb();
        self.platform(logline::end(&report.request_id));
        // REPORT carries Status only for timeouts and failures that reset
        // the environment; a handled function error shows none (it is in
        // platform.report's status).
        let outcome = match (report.status, &report.error_type) {
            (Status::Timeout, _) => logline::Outcome::Timeout,
            (Status::Error, Some(t)) if !self.is_function_error(t) => {
                logline::Outcome::Error(t.clone())
            }
            _ => logline::Outcome::Success,
        };
        self.platform(logline::report(&logline::Report {
            request_id: &report.request_id,
            duration_ms: ms(report.duration),
            memory_size_mb: self.function.memory_mb,
            max_memory_used_mb: max_memory,
            init_duration_ms: report.init_duration.map(ms),
            outcome,
        }));
        let trace = self.trace();
        self.telemetry.record(crate::platform::report(
            &report,
            self.function.memory_mb,
            max_memory,
            trace,
        ));
        self.telemetry
            .record(crate::platform::end(&report.request_id));
        if let Some(current) = self.current.take() {
            if let Some(reply) = current.reply {
                // The invoke ended before the runtime answered (a phase-invoke
                // Init that failed is answered by its own Respond effect).
                let _ = reply.send(InvokeReply {
                    request_id: current.request_id,
                    result: InvokeResult::PlatformError {
                        error_type: lext_protocol::error::error_type::SANDBOX_FAILURE.into(),
                        message: "The invoke ended without an answer".into(),
                    },
                });
            }
        }
    }

    /// Whether a REPORT error type is a handled function error (reported by
    /// the runtime with `/error`), rather than a platform failure.
    fn is_function_error(&self, error_type: &str) -> bool {
        use lext_protocol::error::error_type as t;
        !(error_type.starts_with("Extension.")
            || error_type.starts_with("Sandbox.")
            || error_type == t::RUNTIME_EXIT_ERROR
            || error_type == t::RUNTIME_INVALID_ENTRYPOINT
            || error_type == t::FUNCTION_RESPONSE_SIZE_TOO_LARGE
            || error_type == t::RUNTIME_OUT_OF_MEMORY)
    }
}

/// How long after an invoke (or Init) ends the processes are frozen, unless
/// the next event comes first.
pub const FREEZE_DELAY: Duration = Duration::from_millis(2);

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

/// A duration in milliseconds, as the platform prints it.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
