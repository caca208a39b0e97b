//! `lext run`: a local Lambda execution environment.
//!
//! Stage one ([`Args`], parsed by clap) becomes a [`Plan`] in [`plan`]
//! before anything starts: payload read and checked, `--env` validated,
//! layers unpacked safely into one directory (later layers overwrite
//! earlier ones, as in Lambda), extensions listed in name order. Then
//! [`execute`] starts the sandbox (`lext_sandbox::driver::Sandbox`) and
//! either runs N invokes or serves the Invoke API until Ctrl-C; both end
//! with a spindown shutdown, so no process is left behind.

use std::ffi::OsString;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use lext_sandbox::driver::{
    FunctionConfig, InvokeRequest, InvokeResult, LineSource, LogLine, Output, Sandbox,
};
use lext_sandbox::host::{ExtensionSpec, ProcessHost, RuntimeSpec};
use lext_sandbox::isolation::{self, Decision, Isolation};
use lext_sandbox::process::{OutputLine, Source};
use lext_sandbox::telemetry::{Hub, HubConfig};

/// A message to the user on stderr. Unlike `eprintln!`, a closed stderr
/// (the terminal went away, a parent that stopped reading) is ignored
/// instead of panicking: a panic in the Ctrl-C task would leave the
/// environment running with nobody to stop it.
macro_rules! note {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// The hidden subcommand that runs the built-in echo runtime.
pub const ECHO_RUNTIME_SUBCOMMAND: &str = "__echo-runtime";

/// Run extensions and a function locally, in an environment that behaves
/// like Lambda's: Init, invokes, shutdown, Telemetry API, platform log lines.
///
/// With no `--extension` and no `--layer`, inside the lext repository, it
/// builds and runs examples/rust-example-extension. With no `--function`,
/// the built-in echo runtime answers each invoke with its payload. With
/// neither `--invoke` nor `--serve`, it runs one invoke of `{}`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A layer (zip file or directory), unpacked at /opt. Repeatable; later
    /// layers overwrite earlier ones. Executables in its extensions/ are
    /// launched as external extensions.
    #[arg(long = "layer", value_name = "ZIP|DIR")]
    pub layers: Vec<PathBuf>,
    /// An extension executable (its file name is its name). Repeatable.
    #[arg(long = "extension", value_name = "PATH")]
    pub extensions: Vec<PathBuf>,
    /// The function runtime: a shell command (run with `sh -c`) that speaks
    /// the Runtime API at $AWS_LAMBDA_RUNTIME_API.
    #[arg(long, value_name = "CMD")]
    pub function: Option<String>,
    /// Run N invokes one after the other, then shut down.
    #[arg(long, value_name = "N", conflicts_with = "serve")]
    pub invoke: Option<u32>,
    /// The payload of each invoke: JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    pub payload: String,
    /// Serve the Lambda Invoke API on ADDR (e.g. 127.0.0.1:9000) until
    /// Ctrl-C: `aws lambda invoke --endpoint-url http://ADDR ...`.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<SocketAddr>,
    /// The function's name.
    #[arg(long, default_value = "lext-function")]
    pub function_name: String,
    /// Memory size, MB (128 to 10240).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(128..=10240))]
    pub memory: u32,
    /// Function timeout, seconds (1 to 900).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=900))]
    pub timeout: u32,
    /// Region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// The handler (`_HANDLER`).
    #[arg(long, default_value = "bootstrap")]
    pub handler: String,
    /// A function environment variable. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Write every telemetry event (platform, function, extension) to FILE
    /// as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub telemetry_out: Option<PathBuf>,
    /// Address of the Runtime/Extensions/Telemetry APIs
    /// (AWS_LAMBDA_RUNTIME_API). Default: 127.0.0.1 on a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub api: SocketAddr,
    /// Do not freeze the processes between invokes (Lambda does).
    #[arg(long)]
    pub no_freeze: bool,
    /// Init time limit in seconds (Lambda: 10).
    #[arg(long, default_value_t = 10, hide = true)]
    pub init_timeout: u64,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// What `lext run` will do, validated.
#[derive(Debug)]
struct Plan {
    payload: Vec<u8>,
    invokes: u32,
    serve: Option<SocketAddr>,
    function: FunctionConfig,
    env: Vec<(String, String)>,
    api: SocketAddr,
    telemetry_out: Option<PathBuf>,
    runtime: RuntimeSpec,
    /// Merged layers (owned by `state`), if any.
    layers_dir: PathBuf,
    /// Extensions found in the layers (name) and given directly (name, path).
    layer_extensions: Vec<String>,
    direct_extensions: Vec<ExtensionSpec>,
    /// Scratch space: unpacked layers, the hosts file. Removed at exit.
    state: tempfile::TempDir,
}

/// Runs `lext run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = plan(args)?;
    // One thread: every invoke is a ping-pong of small messages between
    // the API server, the driver and the processes, and cross-thread
    // wake-ups cost more than the work (measured: 7.9k -> 11k invokes/s
    // with rust-example-extension). It also makes the main thread, which
    // lives as long as lext, the one that forks the processes, as
    // PR_SET_PDEATHSIG needs. Output is printed on its own thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(execute(plan))
}

/// Runs the built-in echo runtime (hidden subcommand).
pub fn run_echo_runtime() -> anyhow::Result<ExitCode> {
    lext_sandbox::echo::run().context("echo runtime")?;
    Ok(ExitCode::SUCCESS)
}

fn plan(args: Args) -> anyhow::Result<Plan> {
    let payload = match args.payload.strip_prefix('@') {
        Some(file) => {
            std::fs::read(file).with_context(|| format!("reading the payload file {file}"))?
        }
        None => args.payload.into_bytes(),
    };
    serde_json::from_slice::<serde_json::Value>(&payload)
        .context("--payload is not valid JSON (give JSON text or @FILE)")?;
    lext_sandbox::env::validate_user_env(&args.env).context("--env")?;
    let state = tempfile::Builder::new()
        .prefix("lext-run-")
        .tempdir()
        .context("creating a temporary directory")?;
    let layers_dir = state.path().join("opt");
    std::fs::create_dir_all(&layers_dir).context("creating the layers directory")?;
    for layer in &args.layers {
        add_layer(layer, &layers_dir)?;
    }
    let mut layer_extensions = Vec::new();
    if let Ok(entries) = std::fs::read_dir(layers_dir.join("extensions")) {
        for entry in entries.flatten() {
            // Directories are skipped, as rapid does; every file is an
            // extension (no exec-bit check at listing time).
            if entry.file_type().is_ok_and(|t| !t.is_dir()) {
                layer_extensions.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut direct_extensions = Vec::new();
    for path in &args.extensions {
        let name = path
            .file_name()
            .with_context(|| format!("--extension {}: not a file path", path.display()))?
            .to_string_lossy()
            .into_owned();
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("--extension {}: no such file", path.display()))?;
        direct_extensions.push(ExtensionSpec { name, path });
    }
    if args.layers.is_empty() && args.extensions.is_empty() {
        if let Some(built) = build_example_extension()? {
            direct_extensions.push(built);
        }
    }
    let runtime = match &args.function {
        Some(cmd) => RuntimeSpec {
            program: PathBuf::from("/bin/sh"),
            args: vec![OsString::from("-c"), OsString::from(cmd)],
            cwd: None,
        },
        None => RuntimeSpec {
            program: std::env::current_exe()
                .context("finding the lext executable for the echo runtime")?,
            args: vec![OsString::from(ECHO_RUNTIME_SUBCOMMAND)],
            cwd: None,
        },
    };
    Ok(Plan {
        payload,
        invokes: args.invoke.unwrap_or(1),
        serve: args.serve,
        function: FunctionConfig {
            name: args.function_name,
            version: "$LATEST".to_owned(),
            memory_mb: args.memory,
            timeout: Duration::from_secs(u64::from(args.timeout)),
            region: args.region,
            account_id: "123456789012".to_owned(),
            handler: args.handler,
            init_timeout: Duration::from_secs(args.init_timeout),
            freeze: !args.no_freeze,
        },
        env: args.env,
        api: args.api,
        telemetry_out: args.telemetry_out,
        runtime,
        layers_dir,
        layer_extensions,
        direct_extensions,
        state,
    })
}

/// Unpacks (zip) or copies (directory) one layer into `dest`, with
/// lext-layer's path-safety rules (no traversal, no link out of the layer);
/// later layers overwrite earlier ones.
fn add_layer(layer: &Path, dest: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(layer).with_context(|| format!("--layer {}", layer.display()))?;
    if meta.is_dir() {
        lext_layer::copy_layer_dir(layer, dest)
            .with_context(|| format!("copying the layer directory {}", layer.display()))?;
    } else {
        lext_layer::extract(layer, dest)
            .with_context(|| format!("unpacking the layer {}", layer.display()))?;
    }
    Ok(())
}

/// Inside the lext repository, builds examples/rust-example-extension and
/// returns it; elsewhere, `None`.
fn build_example_extension() -> anyhow::Result<Option<ExtensionSpec>> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let Some(root) = cwd.ancestors().find(|dir| {
        dir.join("examples/rust-example-extension/Cargo.toml")
            .is_file()
    }) else {
        note!("lext: no --extension or --layer given; running the function alone");
        return Ok(None);
    };
    note!("lext: building examples/rust-example-extension (no --extension or --layer given)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "-p",
            "rust-example-extension",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build -p rust-example-extension")?;
    if !output.status.success() {
        bail!(
            "cargo build -p rust-example-extension failed ({})",
            output.status
        );
    }
    let executable = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == "rust-example-extension"
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo did not report the rust-example-extension executable")?;
    Ok(Some(ExtensionSpec {
        name: "rust-example-extension".to_owned(),
        path: executable,
    }))
}

/// Prints the environment's log on its own thread: lines arrive from
/// several tasks (platform lines, each process's output) and are written
/// through one buffer that is flushed whenever no more lines are waiting,
/// so a burst of lines costs one write, not one per line.
struct Printer {
    tx: std::sync::mpsc::Sender<PrinterMsg>,
}

enum PrinterMsg {
    /// A line and its time; formatted on the printer thread, straight into
    /// its buffer (no per-line string on the environment's thread).
    Line(std::time::SystemTime, String),
    /// Flush, then answer.
    Sync(std::sync::mpsc::Sender<()>),
}

impl Printer {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<PrinterMsg>();
        // Detached: it ends when the last sender goes; `sync` is how the
        // end of `lext run` waits for the output.
        std::thread::spawn(move || {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            // A closed stdout must not stop the environment; the lines are
            // also in the telemetry.
            while let Ok(msg) = rx.recv() {
                let mut next = Some(msg);
                while let Some(msg) = next {
                    match msg {
                        PrinterMsg::Line(time, text) => {
                            let time = lext_sandbox::logline::iso8601_ms(time);
                            let _ = writeln!(out, "{time} {text}");
                        }
                        PrinterMsg::Sync(ack) => {
                            let _ = out.flush();
                            let _ = ack.send(());
                        }
                    }
                    next = rx.try_recv().ok();
                }
                let _ = out.flush();
            }
            let _ = out.flush();
        });
        Self { tx }
    }

    /// The [`Output`] that prints through this thread: the line with its
    /// time, the way the console shows CloudWatch.
    fn output(&self) -> Output {
        let tx = self.tx.clone();
        Arc::new(move |line: LogLine| {
            let _ = tx.send(PrinterMsg::Line(line.time, line.text));
        })
    }

    /// Waits until everything sent so far is written.
    fn sync(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        if self.tx.send(PrinterMsg::Sync(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }
}

async fn execute(plan: Plan) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(plan.api)
        .await
        .with_context(|| format!("binding the Runtime API on {}", plan.api))?;
    let api_addr = listener.local_addr()?;
    let invoke_listener = match plan.serve {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the Invoke API on {addr}"))?,
        ),
        None => None,
    };

    // /opt and sandbox.localdomain: a private mount namespace when the
    // kernel allows it; otherwise say so once, with the fix.
    let isolation = match isolation::detect().await {
        Decision::Isolate(mode) => Some(Arc::new(
            Isolation::new(mode, &plan.layers_dir, plan.state.path())
                .context("preparing the sandbox's /opt")?,
        )),
        decision @ Decision::Rewrite { .. } => {
            if let Some(line) = decision.fallback_line() {
                note!("{line}");
            }
            None
        }
    };
    let opt_root = if isolation.is_some() {
        PathBuf::from(isolation::OPT)
    } else {
        plan.layers_dir.clone()
    };
    let mut extensions: Vec<ExtensionSpec> = plan
        .layer_extensions
        .iter()
        .map(|name| ExtensionSpec {
            name: name.clone(),
            path: opt_root.join("extensions").join(name),
        })
        .chain(plan.direct_extensions.iter().cloned())
        .collect();
    // Lambda starts them in name order.
    extensions.sort_by(|a, b| a.name.cmp(&b.name));
    // In /opt/extensions two files cannot share a name; here an --extension
    // could collide with a layer's, and the second would never register.
    if let Some(pair) = extensions.windows(2).find(|w| w[0].name == w[1].name) {
        bail!(
            "two extensions are named {:?} ({} and {}); names must be unique, as file names in /opt/extensions are",
            pair[0].name,
            pair[0].path.display(),
            pair[1].path.display()
        );
    }
    let names: Vec<String> = extensions.iter().map(|e| e.name.clone()).collect();

    let mut env =
        lext_sandbox::env::EnvConfig::new(api_addr.to_string(), plan.function.name.clone());
    env.handler = plan.function.handler.clone();
    env.region = plan.function.region.clone();
    env.memory_mb = plan.function.memory_mb;
    env.user = plan.env.clone();
    let runtime_env = lext_sandbox::env::runtime_env(&env);
    let extension_env = lext_sandbox::env::extension_env(&env);

    let hub = Hub::new(HubConfig {
        telemetry_out: plan.telemetry_out.clone(),
        ..HubConfig::default()
    })
    .context("starting telemetry")?;
    let printer = Printer::start();
    let output: Output = printer.output();
    let sink_hub = hub.clone();
    let sink_output = output.clone();
    let sink = Arc::new(move |line: OutputLine| {
        let source = match &line.source {
            Source::Function => LineSource::Function,
            Source::Extension(name) => LineSource::Extension(name.clone()),
        };
        sink_hub.record_line(&line);
        sink_output(LogLine {
            time: line.time,
            source,
            text: line.line,
        });
    });
    let host = ProcessHost::new(
        extensions,
        plan.runtime.clone(),
        runtime_env,
        extension_env,
        isolation,
        sink,
    );
    let sandbox = Sandbox::start(listener, plan.function.clone(), names, host, hub, output)?;
    let handle = sandbox.handle();
    tracing::info!(api = %api_addr, "Runtime API listening");

    // Ctrl-C (or SIGTERM): a spindown shutdown. A second one kills every
    // process at once and exits.
    let signals = handle.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        note!("lext: shutting down (Ctrl-C again to kill at once)");
        signals.shutdown();
        let _ = tokio::signal::ctrl_c().await;
        lext_sandbox::process::kill_all();
        std::process::exit(130);
    });
    let term = handle.clone();
    tokio::spawn(async move {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            term.shutdown();
        }
    });

    let mut failed = 0u32;
    if let Some(listener) = invoke_listener {
        let addr = listener.local_addr()?;
        note!(
            "lext: serving the Invoke API on http://{addr} (function {}); Ctrl-C to stop",
            plan.function.name
        );
        let target = lext_sandbox::invoke::InvokeTarget {
            name: plan.function.name.clone(),
            arn: plan.function.arn(),
            version: plan.function.version.clone(),
        };
        let router = lext_sandbox::invoke::router(handle.clone(), target);
        // The Invoke API stops with the environment.
        let stopped = handle.clone();
        let server = tokio::spawn(lext_sandbox::api::serve(listener, router, async move {
            stopped.closed().await;
        }));
        let summary = sandbox.wait().await?;
        server.abort();
        note!("lext: {} invoke(s) served", summary.invokes);
    } else {
        for n in 1..=plan.invokes {
            let reply = handle
                .invoke(InvokeRequest {
                    payload: plan.payload.clone().into(),
                    ..InvokeRequest::default()
                })
                .await;
            let reply = match reply {
                Ok(r) => r,
                // Ctrl-C during the invokes.
                Err(_) => break,
            };
            match &reply.result {
                InvokeResult::Response { body, .. } => {
                    note!(
                        "lext: invoke {n}: response {}",
                        String::from_utf8_lossy(body)
                    );
                }
                InvokeResult::FunctionError { body } => {
                    failed += 1;
                    note!(
                        "lext: invoke {n}: function error {}",
                        String::from_utf8_lossy(body)
                    );
                }
                InvokeResult::PlatformError {
                    error_type,
                    message,
                } => {
                    failed += 1;
                    note!("lext: invoke {n}: {error_type}: {message}");
                }
            }
        }
        handle.shutdown();
        let summary = sandbox.wait().await?;
        if summary.unreaped > 0 {
            note!(
                "lext: {} process(es) did not exit after SIGKILL",
                summary.unreaped
            );
        }
    }
    printer.sync();
    drop(plan.state);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
