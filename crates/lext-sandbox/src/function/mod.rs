//! A function: as many execution environments as its invokes need, as
//! Lambda runs them.
//!
//! [`Function`] wraps an [`Environment`] builder, the template of every
//! environment it starts. Each environment is a whole [`Environment`]: its
//! own processes, Runtime API port, directory and cgroup, its own copy of
//! every extension with its own Init, telemetry subscriptions and SHUTDOWN.
//! An invoke goes to an idle environment, or to a new one while fewer than
//! the concurrency run; otherwise it waits in a bounded queue, and past the
//! bound gets 429 (the rules are in `placement`). An environment idle for
//! the idle timeout spins down. With tenant isolation, environments are
//! keyed by tenant and never shared.
//!
//! One task (the dispatcher) owns the placement and the queue; each
//! environment has a task of its own that runs the invokes handed to it,
//! waits until its extensions are done with each (the environment is busy
//! until then, as in Lambda), and says so. Lines and events of each
//! environment reach the sinks marked with its label (`env-2`), as
//! CloudWatch keeps one log stream per environment.

mod placement;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::driver::{Budget, NotRun, QueueLimit, Summary, Ticket};
use crate::environment::{Environment, EnvironmentError, RunningEnvironment};
use crate::invocation::{InvokeRequest, InvokeResponse};
use crate::sink::{Fanout, Sink, Tagged};
use crate::stream::Answer;
use placement::{Place, Placement, Slot};

/// How long an idle environment lives before it spins down, by default:
/// 5 minutes. Lambda does not document it; idle environments are commonly
/// seen reclaimed after 5 to 15 minutes (docs/fidelity.md).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A function of several execution environments, to start: the builder.
///
/// ```no_run
/// # async fn example() -> Result<(), lext_sandbox::EnvironmentError> {
/// use lext_sandbox::{ConsoleSink, Environment, Function, InvokeRequest};
///
/// let function = Function::new(Environment::new().layer("extension.zip").sink(ConsoleSink::new()))
///     .concurrency(3)
///     .start()
///     .await?;
/// // Three at once: three environments, three Inits.
/// let (a, b, c) = tokio::join!(
///     function.invoke(InvokeRequest::new("1")),
///     function.invoke(InvokeRequest::new("2")),
///     function.invoke(InvokeRequest::new("3")),
/// );
/// assert!(a?.is_success() && b?.is_success() && c?.is_success());
/// function.stop().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Function {
    template: Environment,
    concurrency: usize,
    reserved: Option<usize>,
    idle_timeout: Duration,
    tenant_isolation: bool,
    queue: QueueLimit,
}

impl Function {
    /// A function whose environments are built as `environment` is
    /// (its sinks get every environment's lines and events, marked with
    /// the environment's label), with a concurrency of 1, the
    /// [`DEFAULT_IDLE_TIMEOUT`] and no tenant isolation.
    ///
    /// Each environment takes a Runtime API port of its own: give
    /// `environment` no fixed [`api_addr`](Environment::api_addr) port
    /// when the concurrency is above 1. The Invoke API, when
    /// [`serve_invoke_api`](Environment::serve_invoke_api) is set on
    /// `environment`, is the function's, in front of all of them.
    pub fn new(environment: Environment) -> Self {
        Self {
            queue: environment.queue_limit_setting(),
            template: environment,
            concurrency: 1,
            reserved: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            tenant_isolation: false,
        }
    }

    /// How many environments may run invokes at once (at least 1): the
    /// function's share of the account's concurrency.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Reserved concurrency, with Lambda's meaning (AWS: Configuring
    /// reserved concurrency): at most `n` environments run at once, and at
    /// 0 every invoke is throttled (429 with the reason
    /// `ReservedFunctionConcurrentInvocationLimitExceeded`).
    pub fn reserved_concurrency(mut self, n: usize) -> Self {
        self.reserved = Some(n);
        self
    }

    /// How long an environment may stay idle before it spins down
    /// (SHUTDOWN `spindown` to its extensions).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Tenant isolation (AWS: Tenant isolation): every invoke must name a
    /// tenant ([`InvokeRequest::tenant_id`]), and each tenant gets
    /// environments of its own, never shared.
    pub fn tenant_isolation(mut self, on: bool) -> Self {
        self.tenant_isolation = on;
        self
    }

    /// The bound on invokes waiting for an environment (default: the
    /// template's [`queue_limit`](Environment::queue_limit)); past it, 429.
    pub fn queue_limit(mut self, limit: QueueLimit) -> Self {
        self.queue = limit;
        self
    }

    /// Starts the function. Without tenant isolation its first
    /// environment starts at once, so that a configuration Lambda would
    /// refuse is an error here; the others start as invokes need them.
    /// With tenant isolation none starts before its tenant's first invoke.
    pub async fn start(self) -> Result<RunningFunction, EnvironmentError> {
        let concurrency = match self.reserved {
            Some(reserved) => self.concurrency.min(reserved),
            None => self.concurrency,
        };
        let (ctl, rx) = mpsc::unbounded_channel();
        let (progress_tx, progress) = watch::channel(Progress::default());
        let budget = Budget::new(self.queue);
        let handle = FunctionHandle {
            ctl: ctl.clone(),
            progress,
            budget,
            limit: self.queue,
            tenants: self.tenant_isolation,
            reserved: self.reserved,
        };
        // The Invoke API is the function's: the environments serve none.
        let function = self.template.function_config().clone();
        let (mut template, invoke_api) = self.template.without_invoke_api();
        let invoke_listener = match invoke_api {
            Some(addr) => Some(crate::environment::bind("Invoke API", addr).await?),
            None => None,
        };
        let tails = invoke_listener
            .as_ref()
            .map(|_| crate::tail::Tails::default());
        if let Some(tails) = &tails {
            template = template.sink(tails.clone());
        }
        let sinks = Arc::new(Fanout::new(template.take_sinks())) as Arc<dyn Sink>;
        let mut dispatcher = Dispatcher {
            template,
            sinks,
            placement: Placement::new(concurrency.max(1), self.tenant_isolation),
            idle_timeout: self.idle_timeout,
            jobs: HashMap::new(),
            waiting: VecDeque::new(),
            ctl,
            progress: progress_tx,
            summary: Summary::default(),
            stopping: 0,
            shutting_down: false,
        };
        let mut notices = Vec::new();
        if !self.tenant_isolation && concurrency > 0 {
            let (slot, env) = dispatcher.first();
            let running = env.start().await?;
            notices = running.notices().to_vec();
            dispatcher.serve(slot, running);
        }
        let task = tokio::spawn(dispatcher.run(rx));
        let (invoke_addr, invoke_server) = match (invoke_listener, tails) {
            (Some(listener), Some(tails)) => {
                let (addr, server) = crate::environment::serve_invoke_api(
                    listener,
                    crate::invoke::Backend::Function(handle.clone()),
                    &function,
                    tails,
                )?;
                (Some(addr), Some(server))
            }
            _ => (None, None),
        };
        Ok(RunningFunction {
            handle,
            task,
            invoke_addr,
            invoke_server,
            notices,
        })
    }
}

/// What the function is doing, published after every message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Environments alive.
    pub(crate) environments: usize,
    /// Environments running an invoke (or its extensions' part).
    pub(crate) busy: usize,
    /// Invokes waiting for an environment.
    pub(crate) waiting: usize,
    /// Stopped for good.
    pub(crate) stopped: bool,
}

/// Who waits for an invoke's answer.
enum Reply {
    Sync(oneshot::Sender<Result<InvokeResponse, NotRun>>),
    /// An `Event` invoke, with the request id its 202 gave.
    Event(String),
    Stream(oneshot::Sender<Result<Answer, NotRun>>),
}

/// An invoke for the function.
struct Job {
    request: InvokeRequest,
    reply: Reply,
    /// Its place in the function's queue, given back once an environment
    /// takes it.
    ticket: Option<Ticket>,
}

impl Job {
    fn tenant(&self) -> Option<&str> {
        self.request.tenant_id.as_deref()
    }

    /// The invoke will not run.
    fn refuse(self, why: NotRun) {
        match self.reply {
            Reply::Sync(tx) => {
                let _ = tx.send(Err(why));
            }
            Reply::Stream(tx) => {
                let _ = tx.send(Err(why));
            }
            Reply::Event(request_id) => {
                let why = match why {
                    NotRun::Failed(message) => {
                        format!("its new execution environment could not start: {message}")
                    }
                    _ => "the function shut down before it ran".to_owned(),
                };
                tracing::warn!("Event invoke {request_id} was dropped: {why}");
            }
        }
    }

    /// The caller went away while it waited.
    fn abandoned(&self) -> bool {
        match &self.reply {
            Reply::Sync(tx) => tx.is_closed(),
            Reply::Stream(tx) => tx.is_closed(),
            Reply::Event(_) => false,
        }
    }
}

enum Msg {
    Invoke(Job),
    /// The environment is done with its invoke: idle.
    Done(Slot),
    /// The environment could not start.
    Failed(Slot),
    /// The environment stopped.
    Stopped(Slot, Summary),
    Shutdown,
}

/// The task that owns the placement and the queue.
struct Dispatcher {
    /// The environments' builder, without its sinks.
    template: Environment,
    sinks: Arc<dyn Sink>,
    placement: Placement,
    idle_timeout: Duration,
    /// Where each live environment takes its invokes.
    jobs: HashMap<Slot, mpsc::Sender<Job>>,
    waiting: VecDeque<Job>,
    ctl: mpsc::UnboundedSender<Msg>,
    progress: watch::Sender<Progress>,
    summary: Summary,
    /// Environments asked to spin down that have not stopped yet.
    stopping: usize,
    shutting_down: bool,
}

impl Dispatcher {
    /// The first environment, started before the function is returned: an
    /// idle one of no tenant.
    fn first(&mut self) -> (Slot, Environment) {
        let Place::Start { slot, .. } = self.placement.place(None, Instant::now().into_std())
        else {
            unreachable!("an empty function places its first invoke on a new environment");
        };
        self.placement.done(slot, Instant::now().into_std());
        (slot, self.environment(slot, None))
    }

    /// The builder of environment `slot`.
    fn environment(&self, slot: Slot, tenant: Option<&str>) -> Environment {
        let label: Arc<str> = Arc::from(format!("env-{slot}"));
        let mut env = self
            .template
            .clone()
            .sink_arc(Arc::new(Tagged::new(self.sinks.clone(), label)));
        if let Some(tenant) = tenant {
            env = env.tenant(tenant);
        }
        env
    }

    /// Runs the environment's task: invokes in, `Done` out, and `Stopped`
    /// once its sender is dropped.
    fn serve(&mut self, slot: Slot, running: RunningEnvironment) {
        let (tx, rx) = mpsc::channel(1);
        self.jobs.insert(slot, tx);
        tokio::spawn(serve_environment(slot, running, rx, self.ctl.clone()));
    }

    /// Starts environment `slot` for its first invoke.
    fn start(&mut self, slot: Slot, job: Job) {
        let env = self.environment(slot, job.tenant());
        let (tx, rx) = mpsc::channel(1);
        // Room for one: the first invoke waits in the channel while the
        // environment starts.
        let _ = tx.try_send(job);
        self.jobs.insert(slot, tx);
        let ctl = self.ctl.clone();
        tokio::spawn(async move {
            match env.start().await {
                Ok(running) => serve_environment(slot, running, rx, ctl).await,
                Err(error) => {
                    let message: Arc<str> = Arc::from(error_chain(&error));
                    tracing::error!("environment env-{slot} could not start: {message}");
                    let mut rx = rx;
                    rx.close();
                    while let Ok(job) = rx.try_recv() {
                        job.refuse(NotRun::Failed(message.clone()));
                    }
                    let _ = ctl.send(Msg::Failed(slot));
                }
            }
        });
    }

    /// Spins environment `slot` down: it stops once it has no invoke.
    fn spin_down(&mut self, slot: Slot) {
        if self.jobs.remove(&slot).is_some() {
            self.stopping += 1;
        }
    }

    /// Places `job`: on an environment, or at the back of the queue.
    fn dispatch(&mut self, job: Job) {
        if !self.waiting.is_empty() {
            // First come, first served.
            self.waiting.push_back(job);
            return;
        }
        if let Some(job) = self.place(job) {
            self.waiting.push_back(job);
        }
    }

    /// Hands `job` to an environment, or gives it back to wait.
    fn place(&mut self, mut job: Job) -> Option<Job> {
        match self
            .placement
            .place(job.tenant(), Instant::now().into_std())
        {
            Place::Wait => Some(job),
            Place::Reuse(slot) => {
                job.ticket = None;
                let Some(tx) = self.jobs.get(&slot) else {
                    self.placement.gone(slot);
                    return Some(job);
                };
                match tx.try_send(job) {
                    Ok(()) => None,
                    Err(e) => {
                        // Not idle after all (cannot happen: an idle
                        // environment's channel is empty): that one spins
                        // down, and the invoke is placed afresh.
                        self.placement.gone(slot);
                        self.spin_down(slot);
                        Some(e.into_inner())
                    }
                }
            }
            Place::Start { slot, evict } => {
                if let Some(old) = evict {
                    self.spin_down(old);
                }
                job.ticket = None;
                self.start(slot, job);
                None
            }
        }
    }

    /// Places the waiting invokes, in order, while environments are free.
    fn pump(&mut self) {
        while let Some(job) = self.waiting.pop_front() {
            if job.abandoned() {
                continue;
            }
            if let Some(job) = self.place(job) {
                self.waiting.push_front(job);
                break;
            }
        }
    }

    fn publish(&self) {
        let p = Progress {
            environments: self.placement.len(),
            busy: self.placement.busy(),
            waiting: self.waiting.len(),
            stopped: false,
        };
        self.progress.send_if_modified(|old| {
            let changed = *old != p;
            *old = p;
            changed
        });
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) -> Summary {
        loop {
            self.publish();
            if self.shutting_down && self.placement.len() == 0 && self.stopping == 0 {
                break;
            }
            let expiry = self.placement.next_expiry(self.idle_timeout);
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                () = sleep_until(expiry), if expiry.is_some() => {
                    for slot in self.placement.expired(Instant::now().into_std(), self.idle_timeout) {
                        tracing::info!("environment env-{slot} spins down after being idle");
                        self.spin_down(slot);
                    }
                    continue;
                }
            };
            match msg {
                // Every handle is gone: nobody can invoke or wait.
                None => self.shut_down(),
                Some(Msg::Invoke(job)) if self.shutting_down => job.refuse(NotRun::Stopped),
                Some(Msg::Invoke(job)) => self.dispatch(job),
                Some(Msg::Done(slot)) => {
                    self.placement.done(slot, Instant::now().into_std());
                    self.pump();
                }
                Some(Msg::Failed(slot)) => self.gone(slot),
                Some(Msg::Stopped(slot, summary)) => {
                    self.summary.add(&summary);
                    self.gone(slot);
                }
                Some(Msg::Shutdown) => self.shut_down(),
            }
        }
        self.sinks.flush();
        self.progress.send_modify(|p| {
            *p = Progress {
                stopped: true,
                ..Progress::default()
            }
        });
        self.summary
    }

    /// Environment `slot` has stopped, or could not start: spun down
    /// (then it was counted as stopping) or not.
    fn gone(&mut self, slot: Slot) {
        if self.jobs.remove(&slot).is_none() {
            self.stopping = self.stopping.saturating_sub(1);
        }
        self.placement.gone(slot);
        self.pump();
    }

    /// Ctrl-C: the waiting invokes are dropped, and every environment
    /// spins down at once, each within its own shutdown budget.
    fn shut_down(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        for job in self.waiting.drain(..) {
            job.refuse(NotRun::Stopped);
        }
        for slot in self.placement.drain() {
            self.spin_down(slot);
        }
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// One environment's task: runs each invoke handed to it, waits until the
/// environment is idle again (its extensions are done with the invoke),
/// and says so; spins down when its sender is dropped.
async fn serve_environment(
    slot: Slot,
    running: RunningEnvironment,
    mut jobs: mpsc::Receiver<Job>,
    ctl: mpsc::UnboundedSender<Msg>,
) {
    let handle = running.driver_handle();
    while let Some(job) = jobs.recv().await {
        // The environment is busy until this invoke has ended (its REPORT,
        // once every extension is done with it) and nothing else runs: an
        // `Event` invoke is only queued when `invoke_async_as` returns.
        let ended = handle.wait_for(|_| true).await.summary.invokes;
        match job.reply {
            Reply::Sync(tx) => {
                let answer = handle.invoke(job.request).await;
                let _ = tx.send(answer);
            }
            Reply::Stream(tx) => {
                let answer = handle.invoke_stream(job.request).await;
                let _ = tx.send(answer);
            }
            Reply::Event(request_id) => {
                if let Err(why) = handle.invoke_async_as(job.request, request_id.clone()) {
                    tracing::warn!("Event invoke {request_id} was dropped: {why:?}");
                }
            }
        }
        handle
            .wait_for(|p| p.stopped || (p.quiet && p.summary.invokes > ended))
            .await;
        if ctl.send(Msg::Done(slot)).is_err() {
            break;
        }
    }
    let summary = match running.stop().await {
        Ok(summary) => summary,
        Err(error) => {
            tracing::error!("environment env-{slot}: {}", error_chain(&error));
            Summary::default()
        }
    };
    let _ = ctl.send(Msg::Stopped(slot, summary));
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A cloneable handle to a running function: invoke it, wait for it, shut
/// it down.
#[derive(Debug, Clone)]
pub struct FunctionHandle {
    ctl: mpsc::UnboundedSender<Msg>,
    progress: watch::Receiver<Progress>,
    budget: Arc<Budget>,
    limit: QueueLimit,
    tenants: bool,
    reserved: Option<usize>,
}

impl FunctionHandle {
    /// Whether invokes must name a tenant.
    pub(crate) fn tenant_isolation(&self) -> bool {
        self.tenants
    }

    fn send(&self, request: InvokeRequest, reply: Reply) -> Result<(), NotRun> {
        if request.tenant_id.is_some() != self.tenants {
            return Err(NotRun::Tenant {
                isolated: self.tenants,
            });
        }
        if self.reserved == Some(0) {
            return Err(NotRun::ReservedConcurrency);
        }
        let ticket = self
            .budget
            .take(request.payload.len())
            .ok_or(match self.reserved {
                Some(_) => NotRun::ReservedConcurrency,
                None => NotRun::QueueFull(self.limit),
            })?;
        self.ctl
            .send(Msg::Invoke(Job {
                request,
                reply,
                ticket: Some(ticket),
            }))
            .map_err(|_| NotRun::Stopped)
    }

    pub(crate) async fn invoke_inner(
        &self,
        request: InvokeRequest,
    ) -> Result<InvokeResponse, NotRun> {
        let (tx, rx) = oneshot::channel();
        self.send(request, Reply::Sync(tx))?;
        rx.await.map_err(|_| NotRun::Stopped)?
    }

    pub(crate) async fn invoke_stream(&self, request: InvokeRequest) -> Result<Answer, NotRun> {
        let (tx, rx) = oneshot::channel();
        self.send(request, Reply::Stream(tx))?;
        rx.await.map_err(|_| NotRun::Stopped)?
    }

    pub(crate) fn invoke_async_inner(&self, request: InvokeRequest) -> Result<String, NotRun> {
        let request_id = crate::ids::uuid().to_string();
        self.send(request, Reply::Event(request_id.clone()))?;
        Ok(request_id)
    }

    /// Invokes the function and waits for its answer, from an idle
    /// environment of the invoke's tenant or a new one.
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, EnvironmentError> {
        self.invoke_inner(request).await.map_err(Into::into)
    }

    /// Queues an asynchronous invoke (invocation type `Event`), and returns
    /// its request id.
    pub fn invoke_async(&self, request: InvokeRequest) -> Result<String, EnvironmentError> {
        self.invoke_async_inner(request).map_err(Into::into)
    }

    /// Asks every environment to spin down: invokes still waiting are
    /// dropped, running ones finish. Returns at once.
    pub fn shutdown(&self) {
        let _ = self.ctl.send(Msg::Shutdown);
    }

    /// Waits until no invoke runs or waits, in any environment.
    pub async fn idle(&self) {
        self.wait_for(|p| p.stopped || (p.busy == 0 && p.waiting == 0))
            .await;
    }

    /// How many environments are alive now (busy or idle).
    pub fn environments(&self) -> usize {
        self.progress.borrow().environments
    }

    pub(crate) async fn wait_for(&self, mut done: impl FnMut(&Progress) -> bool) -> Progress {
        let mut progress = self.progress.clone();
        let waited = progress.wait_for(|p| done(p)).await.map(|p| *p);
        waited.unwrap_or_else(|_| *progress.borrow())
    }
}

/// A started function.
#[derive(Debug)]
pub struct RunningFunction {
    handle: FunctionHandle,
    task: JoinHandle<Summary>,
    invoke_addr: Option<SocketAddr>,
    invoke_server: Option<JoinHandle<std::io::Result<()>>>,
    notices: Vec<String>,
}

impl RunningFunction {
    /// The address of the Invoke API, when it is served.
    pub fn invoke_api_addr(&self) -> Option<SocketAddr> {
        self.invoke_addr
    }

    /// What the first environment could not do as Lambda does here (see
    /// [`RunningEnvironment::notices`]).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// A cloneable handle.
    pub fn handle(&self) -> FunctionHandle {
        self.handle.clone()
    }

    /// Invokes the function; see [`FunctionHandle::invoke`].
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, EnvironmentError> {
        self.handle.invoke(request).await
    }

    /// Queues an asynchronous invoke; see [`FunctionHandle::invoke_async`].
    pub fn invoke_async(&self, request: InvokeRequest) -> Result<String, EnvironmentError> {
        self.handle.invoke_async(request)
    }

    /// Asks for the shutdown of every environment; see
    /// [`FunctionHandle::shutdown`].
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }

    /// Waits until no invoke runs or waits; see [`FunctionHandle::idle`].
    pub async fn idle(&self) {
        self.handle.idle().await;
    }

    /// Waits until every environment has stopped (after a
    /// [`shutdown`](Self::shutdown) from anywhere), and returns the counts
    /// of all of them.
    pub async fn stopped(self) -> Result<Summary, EnvironmentError> {
        let summary = self.task.await.map_err(|e| {
            EnvironmentError::Serve(std::io::Error::other(format!("the function's task: {e}")))
        })?;
        if let Some(server) = self.invoke_server {
            server.abort();
        }
        Ok(summary)
    }

    /// Shuts every environment down and waits until they have stopped.
    pub async fn stop(self) -> Result<Summary, EnvironmentError> {
        self.shutdown();
        self.stopped().await
    }
}
