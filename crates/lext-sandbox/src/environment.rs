//! The front door: [`Environment`] builds an execution environment from
//! layers, extensions, a runtime and the function's settings, and
//! [`RunningEnvironment`] is the environment once started.
//!
//! Everything between the two is here, so that no caller has to know the
//! parts: layers are unpacked into a directory of the environment's own
//! (removed when it ends), extensions are listed in name order as Lambda
//! launches them and refused when two share a name, the private mount
//! namespace is set up when the kernel allows it, every process's output is
//! routed to the telemetry hub and to the sinks, and the Invoke API is
//! served when asked for.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lext_protocol::telemetry::{LogRecord, Record};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{FunctionConfig, Logging};
use crate::driver::{Engine, EngineConfig, Handle, NotRun, QueueLimit, Summary};
use crate::env::{self, EnvConfig, EnvError};
use crate::host::{ExtensionSpec, ProcessHost, RuntimeSpec};
use crate::invocation::{InvokeRequest, InvokeResponse};
use crate::isolation::{self, Decision, Isolation, IsolationError};
use crate::process::{OutputLine, OutputLines, Source};
use crate::sink::{Fanout, LineSource, LogLine, Sink};
use crate::telemetry::{Hub, HubConfig};

/// The echo runtime, compiled by `build.rs` from `echo/main.rs`.
const ECHO_RUNTIME: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/echo-runtime"));

/// The function runtime of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Runtime {
    /// The built-in echo runtime: a small program of its own that answers
    /// every invoke with its payload.
    #[default]
    Echo,
    /// A command line (`lext run --function CMD`): run directly when it is
    /// plain words (a program and its arguments, as Lambda execs
    /// `bootstrap`), else with `/bin/sh -c`.
    Shell(String),
    /// A program and its arguments, run directly.
    Program {
        /// The executable.
        program: PathBuf,
        /// Its arguments.
        args: Vec<OsString>,
    },
}

/// An execution environment to start: the builder.
///
/// ```no_run
/// # async fn example() -> Result<(), lext_sandbox::EnvironmentError> {
/// use lext_sandbox::{ConsoleSink, Environment, InvokeRequest};
///
/// let env = Environment::new()
///     .layer("extension.zip")
///     .sink(ConsoleSink::new())
///     .start()
///     .await?;
/// let response = env.invoke(InvokeRequest::new(r#"{"hello":"world"}"#)).await?;
/// assert!(response.is_success());
/// env.stop().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Environment {
    layers: Vec<PathBuf>,
    extensions: Vec<PathBuf>,
    runtime: Runtime,
    function: FunctionConfig,
    env: Vec<(String, String)>,
    freeze: bool,
    api_addr: SocketAddr,
    invoke_api: Option<SocketAddr>,
    queue: QueueLimit,
    stream_rate_limit: bool,
    cpu_share: bool,
    code: Option<PathBuf>,
    tenant: Option<Arc<str>>,
    ephemeral_storage_mb: u32,
    user: Option<(u32, u32)>,
    sinks: Vec<Arc<dyn Sink>>,
    /// [`Environment::managed_instances`].
    managed: Option<u32>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("layers", &self.layers)
            .field("extensions", &self.extensions)
            .field("runtime", &self.runtime)
            .field("function", &self.function)
            .field("freeze", &self.freeze)
            .field("api_addr", &self.api_addr)
            .field("invoke_api", &self.invoke_api)
            .field("tenant", &self.tenant)
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Default for Environment {
    fn default() -> Self {
        Self::new()
    }
}

/// The environment could not be started, or stopped serving.
///
/// Each variant's message names the step; the cause, when there is one, is
/// its [`source`](std::error::Error::source) (print the chain, as `{:#}` of
/// `anyhow` does, to see both).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironmentError {
    /// A function environment variable Lambda would refuse.
    #[error("--env")]
    Env(#[from] EnvError),
    /// The environment's own temporary directory.
    #[error("creating a temporary directory")]
    TempDir(#[source] io::Error),
    /// A layer could not be read or unpacked.
    #[error("{what} {}", path.display())]
    Layer {
        /// `unpacking the layer` or `copying the layer directory`.
        what: &'static str,
        /// The layer.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An extension path that is not a file.
    #[error("--extension {}: {reason}", path.display())]
    Extension {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Two extensions with one name (in `/opt/extensions` two files cannot
    /// share a name; a direct extension can collide with a layer's, and the
    /// second would never register).
    #[error("two extensions are named {name:?} ({} and {}); names must be unique, as file names in /opt/extensions are", first.display(), second.display())]
    DuplicateExtension {
        /// The name.
        name: String,
        /// One path.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A listener could not be bound.
    #[error("binding the {api} on {addr}")]
    Bind {
        /// `Runtime API` or `Invoke API`.
        api: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The private `/opt` could not be prepared.
    #[error("preparing the sandbox's /opt")]
    Isolation(#[from] IsolationError),
    /// The echo runtime could not be written to the environment's directory.
    #[error("writing the echo runtime")]
    EchoRuntime(#[source] io::Error),
    /// The environment has stopped.
    #[error("the execution environment has stopped")]
    Stopped,
    /// The invoke queue is full: the Invoke API answers 429
    /// `TooManyRequestsException`, as Lambda answers a function over its
    /// concurrency.
    #[error("the invoke queue is full ({} invokes or {} bytes of payloads wait)", limit.invokes, limit.bytes)]
    QueueFull {
        /// The bound that was reached.
        limit: QueueLimit,
    },
    /// A [`Function`](crate::Function) with reserved concurrency is at it
    /// (at 0, always): the Invoke API answers 429 with the reason
    /// `ReservedFunctionConcurrentInvocationLimitExceeded`.
    #[error("the function is at its reserved concurrency")]
    ReservedConcurrency,
    /// An invoke without a tenant id for a [`Function`](crate::Function)
    /// with tenant isolation, or with one for a function without it: Lambda
    /// refuses both (`InvalidParameterValueException`).
    #[error("{}", if *isolated { "the function has tenant isolation: the invoke needs a tenant id" } else { "the function has no tenant isolation: the invoke must not name a tenant" })]
    Tenant {
        /// Whether the function has tenant isolation.
        isolated: bool,
    },
    /// Lambda Managed Instances: the invoke was rejected at once (HTTP 400
    /// through the Invoke API): `Runtime.Unavailable` when no runtime
    /// worker was idle, `Client.DuplicatedInvokeId` when its request id is
    /// one still running, `Client.ExecutionEnvironmentShutDown` while
    /// shutting down.
    #[error("the invoke was rejected: {error_type}")]
    Rejected {
        /// The `errorType`.
        error_type: &'static str,
    },
    /// A new environment of a [`Function`](crate::Function) could not
    /// start.
    #[error("a new execution environment could not start: {message}")]
    StartFailed {
        /// Why, with its causes.
        message: String,
    },
    /// The first Init failed (its `INIT_REPORT` line and
    /// `platform.initReport` say why).
    #[error("Init failed")]
    InitFailed,
    /// Serving the Runtime API failed.
    #[error("serving the Runtime API")]
    Serve(#[source] io::Error),
    /// [`Environment::user`] without root.
    #[error("--user {uid}:{gid} needs lext to run as root")]
    User {
        /// The uid asked for.
        uid: u32,
        /// The gid asked for.
        gid: u32,
    },
    /// An ephemeral storage size Lambda refuses.
    #[error("ephemeral storage of {mb} MB: Lambda allows 512 to 10240 MB")]
    EphemeralStorage {
        /// The size asked for.
        mb: u32,
    },
}

impl Environment {
    /// An environment with Lambda's defaults: the echo runtime, no
    /// extensions, [`FunctionConfig::default`], processes frozen between
    /// invokes, the APIs on `127.0.0.1` on a free port, and no sink.
    pub fn new() -> Self {
        Self {
            layers: Vec::new(),
            extensions: Vec::new(),
            runtime: Runtime::Echo,
            function: FunctionConfig::default(),
            env: Vec::new(),
            freeze: true,
            managed: None,
            api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            invoke_api: None,
            queue: QueueLimit::default(),
            stream_rate_limit: true,
            cpu_share: false,
            code: None,
            tenant: None,
            ephemeral_storage_mb: crate::tmp::MIN_MB,
            user: None,
            sinks: Vec::new(),
        }
    }

    /// Adds a layer (a zip file or a directory), unpacked at `/opt`. Later
    /// layers overwrite earlier ones, as in Lambda. Executables in its
    /// `extensions/` are launched as external extensions.
    pub fn layer(mut self, path: impl Into<PathBuf>) -> Self {
        self.layers.push(path.into());
        self
    }

    /// Adds an extension executable; its file name is its name.
    pub fn extension(mut self, path: impl Into<PathBuf>) -> Self {
        self.extensions.push(path.into());
        self
    }

    /// Adds several layers, in order; see [`layer`](Self::layer).
    pub fn layers(mut self, paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.layers.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds several extension executables; see [`extension`](Self::extension).
    pub fn extensions(mut self, paths: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.extensions.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds several function environment variables; see [`env`](Self::env).
    pub fn envs(
        mut self,
        vars: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
    ) -> Self {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the function runtime (default: [`Runtime::Echo`]).
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    /// Sets the function's settings.
    pub fn function(mut self, function: FunctionConfig) -> Self {
        self.function = function;
        self
    }

    /// Adds a function environment variable. Reserved keys are refused at
    /// [`start`](Self::start), as Lambda refuses them.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the environment as Lambda Managed Instances do, with at most
    /// `max_concurrency` runtime workers (at least 1): Init runs at once
    /// (up to max(130 s, the function timeout)), invokes run concurrently
    /// on the workers that wait in `/next` and are rejected with
    /// `Runtime.Unavailable` when none does, each has its own timeout,
    /// nothing is frozen, extensions may register for SHUTDOWN only,
    /// Telemetry subscriptions must use schema `2025-01-29`, there is no
    /// Logs API, and logs are JSON. The runtime sees
    /// `AWS_LAMBDA_MAX_CONCURRENCY`; everyone sees
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=lambda-managed-instances`.
    pub fn managed_instances(mut self, max_concurrency: u32) -> Self {
        self.managed = Some(max_concurrency.max(1));
        self
    }

    /// Whether to freeze the processes between invokes, as Lambda does
    /// (default `true`).
    pub fn freeze(mut self, freeze: bool) -> Self {
        self.freeze = freeze;
        self
    }

    /// The address of the Runtime, Extensions, Telemetry and Logs APIs
    /// (`AWS_LAMBDA_RUNTIME_API`); default `127.0.0.1:0`, a free port.
    pub fn api_addr(mut self, addr: SocketAddr) -> Self {
        self.api_addr = addr;
        self
    }

    /// Also serve the Lambda Invoke API on `addr`, for `aws lambda invoke
    /// --endpoint-url` and the SDKs, until the environment stops.
    pub fn serve_invoke_api(mut self, addr: SocketAddr) -> Self {
        self.invoke_api = Some(addr);
        self
    }

    /// Bounds the invokes waiting behind the running one (default
    /// [`QueueLimit::default`]). Past the bound an invoke is refused with
    /// [`EnvironmentError::QueueFull`], and the Invoke API answers 429.
    pub fn queue_limit(mut self, limit: QueueLimit) -> Self {
        self.queue = limit;
        self
    }

    /// Whether streamed responses (`InvokeWithResponseStream`) follow
    /// Lambda's bandwidth rule: the first 6 MB at full speed, then about
    /// 2 MB/s (default on). Off, they go as fast as the runtime writes.
    pub fn stream_rate_limit(mut self, on: bool) -> Self {
        self.stream_rate_limit = on;
        self
    }

    /// The function's code (a directory, or a zip file as deployed), shown
    /// read-only at `/var/task`, which is also the runtime's working
    /// directory and `LAMBDA_TASK_ROOT`. Default: the current directory.
    /// Without isolation the runtime runs in the directory itself.
    pub fn code(mut self, path: impl Into<PathBuf>) -> Self {
        self.code = Some(path.into());
        self
    }

    /// Gives the environment CPU in proportion to its memory, as Lambda
    /// does: one vCPU at 1,769 MB, at most 6 (default `false`: all the
    /// machine's CPUs). Needs the environment's cgroup.
    pub fn cpu_share(mut self, on: bool) -> Self {
        self.cpu_share = on;
        self
    }

    /// Makes this an environment of one tenant, as Lambda's tenant
    /// isolation does (AWS: Tenant isolation): the runtime gets the id in
    /// `Lambda-Runtime-Aws-Tenant-Id` on every `/next`, and `tenantId` is
    /// on `platform.start`, `platform.runtimeDone` and `platform.report`,
    /// and on the JSON format's wrapped log lines. The environment serves
    /// this tenant only: a [`Function`](crate::Function) with tenant
    /// isolation never routes another tenant's invoke to it.
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant = Some(Arc::from(tenant_id.into()));
        self
    }

    /// The size of the environment's private `/tmp`, MB: Lambda's
    /// ephemeral storage, 512 (the default) to 10,240; another size is
    /// refused at [`start`](Self::start). Writing past it fails with
    /// `ENOSPC`. Enforced where lext runs as root (a file system of its
    /// own); elsewhere `/tmp` is a private directory without a limit, and
    /// [`RunningEnvironment::notices`] says so.
    pub fn ephemeral_storage(mut self, mb: u32) -> Self {
        self.ephemeral_storage_mb = mb;
        self
    }

    /// Runs the runtime and the extensions as `uid` and `gid` (no
    /// supplementary groups), not as lext's own user, as Lambda runs them
    /// as an unprivileged user of its own. Needs root; refused at
    /// [`start`](Self::start) otherwise. The files they run and read must
    /// be readable by that user.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Adds a sink for the log lines and telemetry events. Every sink gets
    /// everything.
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Starts the environment: checks the configuration, unpacks the
    /// layers, binds the APIs, and begins Init (the extensions are launched
    /// at once). Returns as soon as the environment runs; await
    /// [`RunningEnvironment::ready`] for the end of Init.
    ///
    /// Must be called within a tokio runtime with I/O and time enabled.
    pub async fn start(mut self) -> Result<RunningEnvironment, EnvironmentError> {
        env::validate_user_env(&self.env)?;
        let mb = self.ephemeral_storage_mb;
        if !(crate::tmp::MIN_MB..=crate::tmp::MAX_MB).contains(&mb) {
            return Err(EnvironmentError::EphemeralStorage { mb });
        }
        if let Some((uid, gid)) = self.user {
            if !rustix::process::geteuid().is_root() {
                return Err(EnvironmentError::User { uid, gid });
            }
        }
        if let Some(n) = self.managed {
            self.function.managed_instances = Some(n);
        }
        if self.function.managed_instances.is_some() {
            // "Lambda Managed Instances only support JSON log format" (AWS:
            // LMI runtimes), and nothing is frozen (AWS: LMI execution
            // environment).
            self.function.logging.format = crate::config::LogFormat::Json;
            self.freeze = false;
        }
        let state = StateDir(crate::state::create().map_err(EnvironmentError::TempDir)?);
        if self.user.is_some() {
            // The echo runtime in it must be reachable by the user.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o711))
                .map_err(EnvironmentError::TempDir)?;
        }
        // First: the formatting of /tmp runs while the rest is prepared.
        let tmp = crate::tmp::begin(state.path(), mb).map_err(EnvironmentError::TempDir)?;
        let layers_dir = state.path().join("opt");
        std::fs::create_dir_all(&layers_dir).map_err(EnvironmentError::TempDir)?;
        // One budget for all the layers: Lambda's 250 MB unzipped limit
        // holds for the function and its layers together (AWS: Lambda
        // quotas), counted as really unpacked, not as the zips declare.
        let mut budget = lext_layer::Budget::lambda();
        for layer in &self.layers {
            add_layer(layer, &layers_dir, &mut budget)?;
        }
        let code = code_dir(self.code.as_deref(), state.path(), &mut budget)?;
        let listener = bind("Runtime API", self.api_addr).await?;
        let api_addr = listener.local_addr().map_err(EnvironmentError::Serve)?;
        let invoke_listener = match self.invoke_api {
            Some(addr) => Some(bind("Invoke API", addr).await?),
            None => None,
        };
        let mut notices = Vec::new();
        let isolation = match isolation::detect().await {
            Decision::Isolate(mode) => {
                let isolation = Isolation::new(mode, &layers_dir, state.path())?;
                Some(with_task(isolation, code.as_deref(), &mut notices))
            }
            decision @ Decision::Rewrite { .. } => {
                notices.extend(decision.fallback_line());
                None
            }
        };
        let in_task = isolation.as_ref().is_some_and(|i| i.has_task());
        // The environment's cgroup: its memory limit, freezer and kill.
        let limits = crate::cgroup::Limits {
            memory_mb: self.function.memory_mb,
            cpu_share: self.cpu_share,
        };
        let mut cgroup = match crate::cgroup::Cgroup::create(limits) {
            Ok(cgroup) => Some(cgroup),
            Err(why) => {
                notices.push(why.line());
                None
            }
        };
        // The PID namespace's init is the cgroup's guard too; without a
        // namespace the guard runs alone.
        let pid_ns = pid_namespace(isolation.is_some(), cgroup.as_ref(), state.path());
        if let (None, Some(cgroup)) = (&pid_ns, cgroup.as_mut()) {
            cgroup.guard(state.path());
        }
        let cgroup = cgroup.map(Arc::new);
        let isolation = match (isolation, &pid_ns) {
            (Some(isolation), Some(_)) => Some(isolation.with_proc()),
            (isolation, _) => isolation,
        };
        let opt_root = match isolation {
            Some(_) => PathBuf::from(isolation::OPT),
            None => layers_dir.clone(),
        };
        let extensions = list_extensions(&layers_dir, &opt_root, &self.extensions)?;
        let mut runtime = runtime_spec(&self.runtime, state.path())?;
        // The runtime starts in /var/task, or (without it) in the code
        // directory itself, which is then its LAMBDA_TASK_ROOT.
        runtime.in_task = in_task;
        if !in_task {
            runtime.cwd = code.clone();
        }
        let runtime = wrapped(runtime, &self.env, &opt_root);
        let (isolation, tmpdir) = match isolation {
            Some(isolation) => {
                let named = std::iter::once(runtime.program.as_os_str())
                    .chain(runtime.args.iter().map(|a| a.as_os_str()))
                    .chain(extensions.iter().map(|e| e.path.as_os_str()))
                    .chain(self.env.iter().map(|(_, v)| std::ffi::OsStr::new(v)));
                let keep = crate::tmp::host_paths(named, state.path());
                let prepared = tmp.finish(&keep).await;
                notices.extend(prepared.notice);
                (
                    Some(Arc::new(isolation.with_tmp(prepared.tmp, &keep))),
                    None,
                )
            }
            None => {
                let dir = tmp.into_dir();
                notices.push(format!(
                    "lext: no private /tmp (no private mount namespace); the processes get \
                     TMPDIR={} instead, and /tmp is the host's",
                    dir.display()
                ));
                (None, Some(dir))
            }
        };

        let mut env = EnvConfig::new(api_addr.to_string(), self.function.name.clone());
        env.handler = self.function.handler.clone();
        env.region = self.function.region.clone();
        env.memory_mb = self.function.memory_mb;
        env.logging = self.function.logging;
        env.managed_instances = self.function.managed_instances;
        if let (false, Some(code)) = (in_task, &code) {
            env.task_root = code.display().to_string();
        }
        env.user = self.env;
        let mut runtime_env = env::runtime_env(&env);
        let mut extension_env = env::extension_env(&env);
        if let Some(dir) = tmpdir {
            for vars in [&mut runtime_env, &mut extension_env] {
                if !vars.iter().any(|(k, _)| k == "TMPDIR") {
                    vars.push(("TMPDIR".to_owned(), dir.display().to_string()));
                }
            }
        }

        // The Invoke API's `X-Amz-Log-Type: Tail` reads the log through a
        // sink of its own.
        let tails = self.invoke_api.map(|_| crate::tail::Tails::default());
        let mut sinks = self.sinks;
        if let Some(tails) = &tails {
            sinks.push(Arc::new(tails.clone()));
        }
        let sink: Arc<dyn Sink> = Arc::new(Fanout::new(sinks));
        let hub = Hub::new(
            HubConfig {
                sequence_id: self.function.managed_instances.is_some(),
                ..HubConfig::default()
            },
            sink.clone(),
        );
        let lines = output_lines(
            hub.clone(),
            sink.clone(),
            self.function.logging,
            self.tenant.clone(),
        );
        let names = extensions.iter().map(|e| e.name.clone()).collect();
        let host = ProcessHost::new(
            extensions,
            runtime,
            runtime_env,
            extension_env,
            isolation,
            cgroup,
            lines,
        )
        .with_pid_namespace(pid_ns)
        .with_user(self.user);
        let config = EngineConfig {
            function: self.function.clone(),
            extensions: names,
            freeze: self.freeze,
            queue: self.queue,
            stream_rate_limit: self.stream_rate_limit,
            tenant: self.tenant,
        };
        let engine =
            Engine::start(listener, config, host, hub, sink).map_err(EnvironmentError::Serve)?;
        let handle = engine.handle();
        tracing::info!(api = %api_addr, "Runtime API listening");
        let (invoke_addr, invoke_server) = match (invoke_listener, tails) {
            (Some(listener), Some(tails)) => {
                let backend = crate::invoke::Backend::Environment(handle.clone());
                let (addr, server) = serve_invoke_api(listener, backend, &self.function, tails)?;
                (Some(addr), Some(server))
            }
            _ => (None, None),
        };
        Ok(RunningEnvironment {
            engine,
            handle: EnvironmentHandle { inner: handle },
            invoke_addr,
            invoke_server,
            notices,
            _state: state,
        })
    }
}

impl Environment {
    /// The bound on invokes waiting.
    pub(crate) fn queue_limit_setting(&self) -> QueueLimit {
        self.queue
    }

    /// The function's settings.
    pub(crate) fn function_config(&self) -> &FunctionConfig {
        &self.function
    }

    /// This builder without its Invoke API, and the address it had.
    pub(crate) fn without_invoke_api(mut self) -> (Self, Option<SocketAddr>) {
        let addr = self.invoke_api.take();
        (self, addr)
    }

    /// Takes the sinks out of the builder.
    pub(crate) fn take_sinks(&mut self) -> Vec<Arc<dyn Sink>> {
        std::mem::take(&mut self.sinks)
    }

    /// Adds a sink that is already shared.
    pub(crate) fn sink_arc(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sinks.push(sink);
        self
    }
}

pub(crate) async fn bind(
    api: &'static str,
    addr: SocketAddr,
) -> Result<TcpListener, EnvironmentError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| EnvironmentError::Bind { api, addr, source })
}

/// The function's code directory: `code` itself when it is a directory,
/// or unpacked from a zip (within the 250 MB budget it shares with the
/// layers) into the environment's own directory; the current directory
/// when none is given. `None` when there is none to show.
fn code_dir(
    code: Option<&Path>,
    state: &Path,
    budget: &mut lext_layer::Budget,
) -> Result<Option<PathBuf>, EnvironmentError> {
    let Some(code) = code else {
        return Ok(std::env::current_dir().ok());
    };
    let error = |what, source: Box<dyn std::error::Error + Send + Sync>| EnvironmentError::Layer {
        what,
        path: code.to_owned(),
        source,
    };
    let meta = std::fs::metadata(code).map_err(|e| error("--code", Box::new(e)))?;
    if meta.is_dir() {
        return std::fs::canonicalize(code)
            .map(Some)
            .map_err(|e| error("--code", Box::new(e)));
    }
    let dest = state.join("task");
    std::fs::create_dir_all(&dest).map_err(EnvironmentError::TempDir)?;
    lext_layer::extract_within(code, &dest, budget)
        .map_err(|e| error("unpacking the code", Box::new(e)))?;
    Ok(Some(dest))
}

/// The environment's PID namespace, as root with a private mount namespace
/// (for its `/proc`); its init also guards `cgroup`. `None` elsewhere, or
/// when the kernel refuses (said at debug level: the cgroup guard then
/// does the kill).
fn pid_namespace(
    isolated: bool,
    cgroup: Option<&crate::cgroup::Cgroup>,
    state: &Path,
) -> Option<Arc<crate::pidns::PidNamespace>> {
    if !isolated || !rustix::process::geteuid().is_root() {
        return None;
    }
    let made = crate::cgroup::guard_program(state)
        .map_err(|e| format!("writing its init: {e}"))
        .and_then(|guard| {
            let dirs = cgroup.map(|c| c.guard_dirs()).unwrap_or_default();
            crate::pidns::PidNamespace::create(&guard, &dirs)
        });
    match made {
        Ok(ns) => Some(Arc::new(ns)),
        Err(why) => {
            tracing::debug!(%why, "no PID namespace for the environment");
            None
        }
    }
}

/// `isolation` showing `code` at `/var/task`, or, where `/var/task` cannot
/// be a mount point here, without it (and a notice that says why).
fn with_task(isolation: Isolation, code: Option<&Path>, notices: &mut Vec<String>) -> Isolation {
    let Some(code) = code else {
        return isolation;
    };
    match isolation.with_task(code) {
        Ok(isolation) => isolation,
        Err((isolation, why)) => {
            notices.push(format!(
                "lext: no /var/task for the function ({why}); the runtime runs in {} instead",
                code.display()
            ));
            isolation
        }
    }
}

/// Unpacks (zip) or copies (directory) one layer into `dest`, with
/// lext-layer's path-safety rules (no traversal, no link out of the layer).
fn add_layer(
    layer: &Path,
    dest: &Path,
    budget: &mut lext_layer::Budget,
) -> Result<(), EnvironmentError> {
    let meta = std::fs::metadata(layer).map_err(|source| EnvironmentError::Layer {
        what: "--layer",
        path: layer.to_owned(),
        source: Box::new(source),
    })?;
    let (what, result) = if meta.is_dir() {
        (
            "copying the layer directory",
            lext_layer::copy_layer_dir_within(layer, dest, budget).map(drop),
        )
    } else {
        (
            "unpacking the layer",
            lext_layer::extract_within(layer, dest, budget).map(drop),
        )
    };
    result.map_err(|source| EnvironmentError::Layer {
        what,
        path: layer.to_owned(),
        source: Box::new(source),
    })
}

/// The external extensions, in the order Lambda launches them: the files
/// of the layers' `extensions/` (seen at `opt_root`) and the extensions
/// given directly, sorted by name. Two with one name are refused.
fn list_extensions(
    layers_dir: &Path,
    opt_root: &Path,
    direct: &[PathBuf],
) -> Result<Vec<ExtensionSpec>, EnvironmentError> {
    let mut extensions = Vec::new();
    if let Ok(entries) = std::fs::read_dir(layers_dir.join("extensions")) {
        for entry in entries.flatten() {
            // Directories are skipped, as rapid does; every file is an
            // extension (no exec-bit check at listing time).
            if entry.file_type().is_ok_and(|t| !t.is_dir()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = opt_root.join("extensions").join(&name);
                extensions.push(ExtensionSpec { name, path });
            }
        }
    }
    for path in direct {
        let name = path
            .file_name()
            .ok_or_else(|| EnvironmentError::Extension {
                path: path.clone(),
                reason: "not a file path".to_owned(),
            })?
            .to_string_lossy()
            .into_owned();
        let path = std::fs::canonicalize(path).map_err(|_| EnvironmentError::Extension {
            path: path.clone(),
            reason: "no such file".to_owned(),
        })?;
        extensions.push(ExtensionSpec { name, path });
    }
    // Lambda starts them in name order.
    extensions.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = extensions.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(EnvironmentError::DuplicateExtension {
            name: pair[0].name.clone(),
            first: pair[0].path.clone(),
            second: pair[1].path.clone(),
        });
    }
    Ok(extensions)
}

/// What to start as the runtime. The echo runtime is written into the
/// environment's own directory first.
fn runtime_spec(runtime: &Runtime, state: &Path) -> Result<RuntimeSpec, EnvironmentError> {
    Ok(match runtime {
        Runtime::Echo => {
            let program = state.join("echo-runtime");
            crate::embedded::write_program(&program, ECHO_RUNTIME)
                .map_err(EnvironmentError::EchoRuntime)?;
            RuntimeSpec {
                program,
                args: Vec::new(),
                cwd: None,
                in_task: false,
            }
        }
        Runtime::Shell(command) => match plain_words(command) {
            // No shell in between: its fork and start cost about 0.7 ms of
            // Init, and Lambda starts the bootstrap itself.
            Some(mut words) => RuntimeSpec {
                program: PathBuf::from(words.remove(0)),
                args: words.into_iter().map(OsString::from).collect(),
                cwd: None,
                in_task: false,
            },
            None => RuntimeSpec {
                program: PathBuf::from("/bin/sh"),
                args: vec![OsString::from("-c"), OsString::from(command)],
                cwd: None,
                in_task: false,
            },
        },
        Runtime::Program { program, args } => RuntimeSpec {
            program: program.clone(),
            args: args.clone(),
            cwd: None,
            in_task: false,
        },
    })
}

/// The words of `command` when a shell would run it as just a program and
/// its arguments: only characters no shell treats specially, no variable
/// assignment in front, and a first word that is no shell builtin or
/// keyword. `None` when it needs `sh -c`.
fn plain_words(command: &str) -> Option<Vec<&str>> {
    const SHELL_WORDS: &[&str] = &[
        ".", ":", "alias", "break", "case", "cd", "command", "continue", "eval", "exec", "exit",
        "export", "for", "if", "read", "readonly", "return", "set", "shift", "source", "trap",
        "ulimit", "umask", "unset", "until", "wait", "while",
    ];
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+,".contains(c);
    if !command.chars().all(|c| plain(c) || c == ' ' || c == '\t') {
        return None;
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let first = *words.first()?;
    if SHELL_WORDS.contains(&first) {
        return None;
    }
    Some(words)
}

/// `AWS_LAMBDA_EXEC_WRAPPER`: with it set, the runtime starts as `wrapper
/// <runtime command...>` (AWS: Modifying the runtime environment, "Wrapper
/// scripts"). Lambda does this for its managed runtimes, not for the
/// OS-only `provided` ones; lext cannot tell which runtime a command is, so
/// it honours the variable whenever it is set (docs/fidelity.md). A wrapper
/// under `/opt` is found there, or in the unpacked layers without
/// isolation.
fn wrapped(runtime: RuntimeSpec, env: &[(String, String)], opt_root: &Path) -> RuntimeSpec {
    let Some((_, wrapper)) = env
        .iter()
        .rev()
        .find(|(k, v)| k == "AWS_LAMBDA_EXEC_WRAPPER" && !v.is_empty())
    else {
        return runtime;
    };
    let wrapper = match Path::new(wrapper).strip_prefix(crate::isolation::OPT) {
        Ok(rest) => opt_root.join(rest),
        Err(_) => PathBuf::from(wrapper),
    };
    let mut args = vec![runtime.program.into_os_string()];
    args.extend(runtime.args);
    RuntimeSpec {
        program: wrapper,
        args,
        cwd: runtime.cwd,
        in_task: runtime.in_task,
    }
}

/// Where the processes' output lines go: to the telemetry hub (`function`
/// and `extension` records) and to the sinks.
///
/// In JSON format each line becomes a JSON object (as written, or wrapped
/// with the current invoke's request id), below the application level it is
/// dropped, and subscribers get the object as the record (see
/// [`crate::jsonlog`]).
fn output_lines(
    hub: Hub,
    sink: Arc<dyn Sink>,
    logging: Logging,
    tenant: Option<Arc<str>>,
) -> crate::process::LineSink {
    Arc::new(move |batch: OutputLines| {
        let source = match &batch.source {
            Source::Function => LineSource::Function,
            Source::Extension(name) => LineSource::Extension(name.clone()),
        };
        if !logging.is_json() {
            hub.record_lines(&batch);
            let time = batch.time;
            sink.lines(
                batch
                    .lines
                    .into_iter()
                    .map(|text| LogLine {
                        time,
                        source: source.clone(),
                        text,
                        environment: None,
                    })
                    .collect(),
            );
            return;
        }
        for line in batch.into_lines() {
            json_line(
                &hub,
                &*sink,
                logging,
                tenant.as_deref(),
                source.clone(),
                line,
            );
        }
    })
}

/// One line in the JSON log format: a JSON object (as written, or wrapped
/// with the current invoke's request id), dropped below the application
/// level.
fn json_line(
    hub: &Hub,
    sink: &dyn Sink,
    logging: Logging,
    tenant: Option<&str>,
    source: LineSource,
    line: OutputLine,
) {
    let request_id = hub.current_request();
    let min = logging.application_level;
    let Some((value, text)) =
        crate::jsonlog::output_line(&line.line, line.time, request_id.as_deref(), tenant, min)
    else {
        return;
    };
    let record = match line.source {
        Source::Function => Record::Function(LogRecord::Json(value)),
        Source::Extension(_) => Record::ExtensionLog(LogRecord::Json(value)),
    };
    hub.record_at(line.time, record);
    sink.line(LogLine {
        time: line.time,
        source,
        text,
        environment: None,
    });
}

/// Serves the Invoke API until the environment (or function) stops.
pub(crate) fn serve_invoke_api(
    listener: TcpListener,
    backend: crate::invoke::Backend,
    function: &FunctionConfig,
    tails: crate::tail::Tails,
) -> Result<(SocketAddr, JoinHandle<io::Result<()>>), EnvironmentError> {
    let addr = listener.local_addr().map_err(EnvironmentError::Serve)?;
    let target = crate::invoke::InvokeTarget {
        name: function.name.clone(),
        arn: function.arn(),
        version: function.version.clone(),
        timeout: function.timeout,
    };
    let router = crate::invoke::router(backend.clone(), target, tails);
    let server = tokio::spawn(crate::api::serve(listener, router, async move {
        backend.stopped().await;
    }));
    Ok((addr, server))
}

/// A started execution environment.
///
/// Invoke it, wait for it, and stop it. Dropping it without
/// [`stop`](Self::stop) or [`stopped`](Self::stopped) leaves its tasks to
/// stop the processes as the runtime shuts down; await one of them for an
/// orderly spindown.
#[derive(Debug)]
pub struct RunningEnvironment {
    engine: Engine,
    handle: EnvironmentHandle,
    invoke_addr: Option<SocketAddr>,
    invoke_server: Option<JoinHandle<io::Result<()>>>,
    notices: Vec<String>,
    /// Unpacked layers, the hosts file, the echo runtime: removed when the
    /// environment is dropped.
    _state: StateDir,
}

/// The environment's directory, removed (and forgotten by the registry of
/// [`crate::state`]) when dropped.
#[derive(Debug)]
struct StateDir(tempfile::TempDir);

impl StateDir {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        crate::state::forget(self.0.path());
    }
}

/// A cloneable handle to a running environment: invoke it, wait for it,
/// shut it down. (For a task that handles Ctrl-C, say.)
/// The public error for an invoke that did not run.
impl From<NotRun> for EnvironmentError {
    fn from(why: NotRun) -> Self {
        match why {
            NotRun::Stopped => EnvironmentError::Stopped,
            NotRun::QueueFull(limit) => EnvironmentError::QueueFull { limit },
            NotRun::ReservedConcurrency => EnvironmentError::ReservedConcurrency,
            NotRun::Failed(message) => EnvironmentError::StartFailed {
                message: message.to_string(),
            },
            NotRun::Tenant { isolated } => EnvironmentError::Tenant { isolated },
            NotRun::Rejected(error_type) => EnvironmentError::Rejected { error_type },
        }
    }
}

#[derive(Debug, Clone)]
pub struct EnvironmentHandle {
    inner: Handle,
}

impl EnvironmentHandle {
    /// Invokes the function and waits for its answer. Invokes queue: one
    /// runs at a time, as in Lambda.
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, EnvironmentError> {
        self.inner.invoke(request).await.map_err(Into::into)
    }

    /// Queues an asynchronous invoke (invocation type `Event`), and returns
    /// its request id. An `Event` invoke still queued when the environment
    /// shuts down never runs; each is reported by its request id.
    pub fn invoke_async(&self, request: InvokeRequest) -> Result<String, EnvironmentError> {
        self.inner.invoke_async(request).map_err(Into::into)
    }

    /// Asks for a spindown shutdown: invokes still queued are dropped, the
    /// running one finishes, then SHUTDOWN goes to the extensions. Returns
    /// at once; [`stopped`](Self::stopped) waits for the end.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Waits for the end of the first Init: `Ok` when it succeeded (the
    /// environment is ready for invokes), [`EnvironmentError::InitFailed`]
    /// when it failed (the next invoke re-runs it, as Lambda does), and
    /// [`EnvironmentError::Stopped`] when the environment stopped first.
    pub async fn ready(&self) -> Result<(), EnvironmentError> {
        let p = self
            .inner
            .wait_for(|p| p.inits > 0 || p.summary.init_failures > 0 || p.stopped)
            .await;
        if p.inits > 0 {
            Ok(())
        } else if p.summary.init_failures > 0 {
            Err(EnvironmentError::InitFailed)
        } else {
            Err(EnvironmentError::Stopped)
        }
    }

    /// Waits until nothing runs and nothing waits: no Init, invoke or
    /// shutdown, and no invoke queued. After an invoke returns, its `END`,
    /// `REPORT` and `platform.report` come when every extension is done
    /// with it; after `idle`, they have been emitted. Under Managed
    /// Instances: no invoke in flight and a runtime worker waits in
    /// `/next` (so that the next invoke is not rejected).
    pub async fn idle(&self) {
        self.inner.wait_for(|p| p.quiet || p.stopped).await;
    }

    /// Waits until the environment has stopped, and returns what happened.
    pub async fn stopped(&self) -> Summary {
        self.inner.wait_for(|p| p.stopped).await.summary
    }
}

impl RunningEnvironment {
    /// The address of the Runtime API (`AWS_LAMBDA_RUNTIME_API`).
    pub fn api_addr(&self) -> SocketAddr {
        self.engine.api_addr()
    }

    /// The address of the Invoke API, when it is served.
    pub fn invoke_api_addr(&self) -> Option<SocketAddr> {
        self.invoke_addr
    }

    /// What the environment could not do as Lambda does on this machine,
    /// one line each, for the user (for example no private `/opt`).
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// A cloneable handle.
    pub fn handle(&self) -> EnvironmentHandle {
        self.handle.clone()
    }

    /// The driver's own handle, for a [`Function`](crate::Function).
    pub(crate) fn driver_handle(&self) -> &Handle {
        &self.handle.inner
    }

    /// Invokes the function; see [`EnvironmentHandle::invoke`].
    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, EnvironmentError> {
        self.handle.invoke(request).await
    }

    /// Queues an asynchronous invoke; see [`EnvironmentHandle::invoke_async`].
    pub fn invoke_async(&self, request: InvokeRequest) -> Result<String, EnvironmentError> {
        self.handle.invoke_async(request)
    }

    /// Asks for a spindown; see [`EnvironmentHandle::shutdown`].
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }

    /// Waits for the end of the first Init; see [`EnvironmentHandle::ready`].
    pub async fn ready(&self) -> Result<(), EnvironmentError> {
        self.handle.ready().await
    }

    /// Waits until nothing runs; see [`EnvironmentHandle::idle`].
    pub async fn idle(&self) {
        self.handle.idle().await;
    }

    /// Waits until the environment has stopped (after a
    /// [`shutdown`](Self::shutdown) from anywhere), then releases it: the
    /// servers are closed and its directory removed.
    pub async fn stopped(self) -> Result<Summary, EnvironmentError> {
        let summary = self.engine.wait().await.map_err(EnvironmentError::Serve)?;
        if let Some(server) = self.invoke_server {
            server.abort();
        }
        Ok(summary)
    }

    /// Shuts the environment down (spindown) and waits until it has
    /// stopped.
    pub async fn stop(self) -> Result<Summary, EnvironmentError> {
        self.shutdown();
        self.stopped().await
    }
}

/// Kills every process every environment of this process has started
/// (SIGKILL to each process group, and to everything in each environment's
/// cgroup) and removes the environments' directories and cgroups, at once:
/// for a process about to exit without stopping its environments (a second
/// Ctrl-C). Returns how many process groups and processes were signalled.
pub fn kill_all_processes() -> usize {
    let killed = crate::process::kill_all() + crate::cgroup::kill_all();
    crate::state::remove_all();
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_commands_run_without_a_shell() {
        assert_eq!(
            plain_words("python3 -m awslambdaric app.handler"),
            Some(vec!["python3", "-m", "awslambdaric", "app.handler"])
        );
        assert_eq!(plain_words("./bootstrap"), Some(vec!["./bootstrap"]));
        for shell in [
            "exit 3",
            "cd /x && ./run",
            "A=1 ./run",
            "./run > log",
            "echo $HOME",
            "sleep 1; ./run",
            "./run 'quoted arg'",
            "exec ./run",
            "",
        ] {
            assert_eq!(plain_words(shell), None, "{shell}");
        }
    }
}
