//! The flags of `lext run`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Run extensions and a function locally, in an environment that behaves
/// like Lambda's: Init, invokes, shutdown, Telemetry API, platform log lines.
///
/// With no `--extension` and no `--layer`, inside the lext repository, it
/// builds and runs examples/rust-example-extension. With no `--function`,
/// the built-in echo runtime answers each invoke with its payload. With
/// neither `--invoke` nor `--serve`, it runs one invoke of `{}`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct Args {
    /// A layer (zip file or directory), unpacked at /opt. Repeatable; later
    /// layers overwrite earlier ones. Executables in its extensions/ are
    /// launched as external extensions.
    #[arg(long = "layer", value_name = "ZIP|DIR")]
    pub layers: Vec<PathBuf>,
    /// An extension executable (its file name is its name). Repeatable.
    #[arg(long = "extension", value_name = "PATH")]
    pub extensions: Vec<PathBuf>,
    /// The function runtime, speaking the Runtime API at
    /// $AWS_LAMBDA_RUNTIME_API: a program and its arguments (run directly),
    /// or any shell command line (run with `sh -c`).
    #[arg(long, value_name = "CMD")]
    pub function: Option<String>,
    /// The function's code (directory or zip), read-only at /var/task, the
    /// runtime's working directory. Default: the current directory.
    #[arg(long, value_name = "DIR|ZIP")]
    pub code: Option<PathBuf>,
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
    /// The function's region (its AWS_REGION, and the region in its ARN);
    /// taken from AWS_REGION when not given, as lext publish does.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// The handler (`_HANDLER`).
    #[arg(long, default_value = "bootstrap")]
    pub handler: String,
    /// The log format: `text`, or `json` (platform records instead of the
    /// START/END/REPORT lines, output lines as JSON objects, levels applied).
    #[arg(long, value_name = "text|json", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// With JSON: function and extension lines below this level are dropped.
    #[arg(long, value_name = "LEVEL", default_value = "INFO", value_parser = parse_level)]
    pub application_log_level: lext_sandbox::LogLevel,
    /// With JSON: platform records below this level are dropped (DEBUG, INFO, WARN).
    #[arg(long, value_name = "LEVEL", default_value = "INFO", value_parser = parse_level)]
    pub system_log_level: lext_sandbox::LogLevel,
    /// The runtime version the INIT_START line names, as Lambda prints it.
    #[arg(long, value_name = "VERSION", default_value = lext_sandbox::DEFAULT_RUNTIME_VERSION)]
    pub runtime_version: String,
    /// A function environment variable. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Write every event a Telemetry API subscriber to all types receives
    /// (platform, function, extension) to FILE, as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub telemetry_out: Option<PathBuf>,
    /// Address of the Runtime/Extensions/Telemetry APIs
    /// (AWS_LAMBDA_RUNTIME_API). Default: 127.0.0.1 on a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub api: SocketAddr,
    /// CPU in proportion to memory, as Lambda gives it (one vCPU at
    /// 1,769 MB, at most 6): `auto`, or `off` for all of the machine's.
    #[arg(long, value_name = "auto|off", default_value = "off", value_parser = ["auto", "off"])]
    pub cpu_share: String,
    /// Build the Cargo project here (as lext build does) and run its
    /// extensions; rebuild and restart the environment on every source
    /// change, on the same --serve address. A failed build keeps the
    /// previous environment serving.
    #[arg(long, requires = "serve", conflicts_with_all = ["concurrency", "reserved_concurrency", "idle_timeout", "tenant_isolation"])]
    pub watch: bool,
    /// Run as Lambda Managed Instances: Init at once, invokes concurrently
    /// on the runtime's workers (each `/next` is one; with none idle an
    /// invoke gets 400 Runtime.Unavailable), a timeout per invoke, nothing
    /// frozen, extensions on SHUTDOWN only, Telemetry schema 2025-01-29, no
    /// Logs API, JSON logs.
    #[arg(long, conflicts_with_all = ["concurrency", "reserved_concurrency", "idle_timeout", "tenant_isolation", "watch", "report", "report_json"])]
    pub managed_instances: bool,
    /// With --managed-instances: the most runtime workers
    /// (AWS_LAMBDA_MAX_CONCURRENCY, the runtime's alone).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "managed_instances", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_concurrency: u32,
    /// Do not freeze the processes between invokes (Lambda does).
    #[arg(long)]
    pub no_freeze: bool,
    /// Stream responses (InvokeWithResponseStream) at full speed, without
    /// Lambda's bandwidth rule (6 MB at full speed, then about 2 MB/s).
    #[arg(long)]
    pub no_stream_rate_limit: bool,
    /// How many invokes may wait behind the running one; past it, the
    /// Invoke API answers 429 TooManyRequestsException.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued_invokes: u32,
    /// How many MiB of payloads may wait; past it, 429 too.
    #[arg(long, value_name = "MiB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued_mb: u32,
    /// Up to N environments at once, as Lambda scales a function: an invoke
    /// goes to an idle environment, or to a new one (its own processes,
    /// extensions, Init and telemetry) while fewer than N exist; otherwise
    /// it waits (see --max-queued-invokes). With --invoke, N invokes run at
    /// a time.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: u32,
    /// Reserved concurrency, as Lambda means it: at most N environments at
    /// once (with --concurrency, the smaller), and 0 throttles every invoke
    /// (429, ReservedFunctionConcurrentInvocationLimitExceeded).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub reserved_concurrency: Option<u32>,
    /// An environment idle this many seconds spins down (SHUTDOWN
    /// `spindown`), as Lambda reclaims idle environments. Default: 300.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: Option<u64>,
    /// Tenant isolation: every invoke names its tenant (`aws lambda invoke
    /// --tenant-id`), and each tenant gets environments of its own.
    #[arg(long)]
    pub tenant_isolation: bool,
    /// The tenant of --invoke's invokes (with --tenant-isolation).
    #[arg(long, value_name = "ID", requires = "tenant_isolation")]
    pub tenant_id: Option<String>,
    /// Measure what the extensions cost the function and write the figures
    /// and a timeline as one HTML page: the same invokes (--invoke, default
    /// 10) run with no extension (the baseline), with every extension, and,
    /// with several, with each one alone. With -v the table is printed too.
    #[arg(long, value_name = "FILE.html", conflicts_with_all = REPORT_CONFLICTS)]
    pub report: Option<PathBuf>,
    /// Write the report's figures to FILE as JSON (docs/report.md gives
    /// the shape); alone, or with --report.
    #[arg(long, value_name = "FILE", conflicts_with_all = REPORT_CONFLICTS)]
    pub report_json: Option<PathBuf>,
    /// `-v`, from the global flag (set by main).
    #[arg(skip)]
    pub verbose: u8,
    /// The size of the environment's private /tmp, MB (Lambda's ephemeral
    /// storage, 512 to 10240). Writing past it fails with ENOSPC; enforced
    /// as root, elsewhere /tmp is a private directory without a limit.
    #[arg(long, value_name = "MB", default_value_t = 512, value_parser = clap::value_parser!(u32).range(512..=10240))]
    pub ephemeral_storage: u32,
    /// Run the runtime and the extensions as this user (UID, or UID:GID;
    /// GID defaults to UID), as Lambda runs them as an unprivileged user.
    /// Needs root.
    #[arg(long, value_name = "UID[:GID]", value_parser = parse_user)]
    pub user: Option<(u32, u32)>,
    /// Init time limit in seconds (Lambda: 10).
    #[arg(long, default_value_t = 10, hide = true)]
    pub init_timeout: u64,
}

/// What a report cannot be made with: it runs its own invokes, in one
/// environment per run.
const REPORT_CONFLICTS: [&str; 6] = [
    "serve",
    "watch",
    "concurrency",
    "reserved_concurrency",
    "idle_timeout",
    "tenant_isolation",
];

/// The end of `lext run --help`.
const EXIT_CODES: &str = "Exit codes: 0 when the Init and every invoke succeeded (with --serve: \
    when Ctrl-C or SIGTERM stopped it); 1 when an Init or an invoke failed (whatever REPORT \
    shows as failed, even after the response was sent) or the environment could not start; \
    2 for a bad command line; 130 after a second Ctrl-C.";

pub(super) fn parse_level(s: &str) -> Result<lext_sandbox::LogLevel, String> {
    lext_sandbox::LogLevel::parse(s)
        .ok_or_else(|| format!("{s:?} is no log level: TRACE, DEBUG, INFO, WARN, ERROR or FATAL"))
}

pub(super) fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let number = |n: &str| {
        n.parse::<u32>()
            .map_err(|_| format!("expected UID or UID:GID (numbers), got {s:?}"))
    };
    match s.split_once(':') {
        Some((uid, gid)) => Ok((number(uid)?, number(gid)?)),
        None => number(s).map(|uid| (uid, uid)),
    }
}

pub(super) fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
