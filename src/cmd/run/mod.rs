//! `lext run`: a local Lambda execution environment.
//!
//! A thin client of [`lext_sandbox::Environment`]: the flags become a
//! [`Plan`] (payload checked, environment configured, the example extension
//! built when none is given) before anything starts; [`execute`] starts it
//! and runs N invokes or serves the Invoke API until Ctrl-C, then spins the
//! environment down, so no process is left behind. With `--concurrency`,
//! `--reserved-concurrency`, `--idle-timeout` or `--tenant-isolation`, the
//! environment is the template of a [`lext_sandbox::Function`]'s
//! environments (`function.rs`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

mod args;
mod function;
mod report;
pub(crate) use args::Args;
use lext_sandbox::{
    ConsoleSink, Environment, FunctionConfig, InvokeRequest, InvokeResponse, InvokeResult,
    JsonLinesSink, QueueLimit, RunningEnvironment, Runtime,
};

/// What `lext run` will do, validated.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) environment: Environment,
    payload: Vec<u8>,
    invokes: u32,
    serve: bool,
    pub(super) function_name: String,
    /// Several environments: the function's settings.
    pool: Option<function::Pool>,
    /// `--managed-instances`.
    managed: bool,
}

/// Runs `lext run`.
pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    // One thread: every invoke is a ping-pong of small messages between
    // the API server, the driver and the processes, and cross-thread
    // wake-ups cost more than the work (measured: 7.9k -> 11k invokes/s
    // with rust-example-extension). It also makes the main thread, which
    // lives as long as lext, the one that forks the processes, as
    // PR_SET_PDEATHSIG needs. Output is printed on its own thread, and
    // telemetry is delivered on another (the hub's).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.watch {
        return runtime.block_on(super::watch::run(args));
    }
    if args.report.is_some() || args.report_json.is_some() {
        return runtime.block_on(report::run(args));
    }
    let plan = plan(args)?;
    runtime.block_on(execute(plan))
}

pub(super) fn plan(args: Args) -> anyhow::Result<Plan> {
    plan_with(args, true)
}

/// [`plan`], with the example extension built when no extension is given
/// only if `example` (the report's baseline runs without any).
fn plan_with(args: Args, example: bool) -> anyhow::Result<Plan> {
    let payload = match args.payload.strip_prefix('@') {
        Some(file) => {
            std::fs::read(file).with_context(|| format!("reading the payload file {file}"))?
        }
        None => args.payload.into_bytes(),
    };
    serde_json::from_slice::<serde_json::Value>(&payload)
        .context("--payload is not valid JSON (give JSON text or @FILE)")?;
    let limit = lext_sandbox::MAX_SYNC_PAYLOAD;
    let size = payload.len();
    anyhow::ensure!(size <= limit, "--payload is {size} bytes; Lambda refuses synchronous invokes over {limit} (RequestEntityTooLargeException)");
    // Managed Instances log in JSON only.
    let json = args.log_format == "json" || args.managed_instances;
    let function = FunctionConfig {
        name: args.function_name,
        memory_mb: args.memory,
        timeout: Duration::from_secs(u64::from(args.timeout)),
        region: args.region,
        handler: args.handler,
        init_timeout: Duration::from_secs(args.init_timeout),
        runtime_version: Some(args.runtime_version),
        logging: lext_sandbox::Logging {
            format: match json {
                true => lext_sandbox::LogFormat::Json,
                false => lext_sandbox::LogFormat::Text,
            },
            application_level: args.application_log_level,
            system_level: args.system_log_level,
        },
        ..FunctionConfig::default()
    };
    let function_name = function.name.clone();
    let example = match example && args.layers.is_empty() && args.extensions.is_empty() {
        true => super::example::build()?,
        false => None,
    };
    let mut environment = Environment::new()
        .function(function)
        .freeze(!args.no_freeze)
        .stream_rate_limit(!args.no_stream_rate_limit)
        .cpu_share(args.cpu_share == "auto")
        .ephemeral_storage(args.ephemeral_storage)
        .queue_limit(QueueLimit {
            invokes: args.max_queued_invokes as usize,
            bytes: (args.max_queued_mb as usize) << 20,
        })
        .api_addr(args.api)
        .sink(match json {
            true => ConsoleSink::without_times(),
            false => ConsoleSink::new(),
        })
        .envs(args.env)
        .layers(args.layers)
        .extensions(args.extensions.into_iter().chain(example));
    if let Some(code) = args.code {
        environment = environment.code(code);
    }
    if let Some((uid, gid)) = args.user {
        environment = environment.user(uid, gid);
    }
    if args.managed_instances {
        environment = environment.managed_instances(args.max_concurrency);
    }
    if let Some(path) = &args.telemetry_out {
        let sink = JsonLinesSink::create(path).with_context(|| {
            format!(
                "starting telemetry: cannot open the telemetry output file {}",
                path.display()
            )
        })?;
        environment = environment.sink(sink);
    }
    if let Some(addr) = args.serve {
        environment = environment.serve_invoke_api(addr);
    }
    if let Some(command) = args.function {
        environment = environment.runtime(Runtime::Shell(command));
    }
    let pool = function::Pool::from_args(
        args.concurrency,
        args.reserved_concurrency,
        args.idle_timeout,
        args.tenant_isolation,
        args.tenant_id,
    );
    Ok(Plan {
        environment,
        payload,
        invokes: args.invoke.unwrap_or(1),
        serve: args.serve.is_some(),
        function_name,
        pool,
        managed: args.managed_instances,
    })
}

async fn execute(mut plan: Plan) -> anyhow::Result<ExitCode> {
    if let Some(pool) = plan.pool.take() {
        return function::execute(plan, pool).await;
    }
    let env = plan.environment.start().await?;
    for notice in env.notices() {
        note!("{notice}");
    }
    let _signals = super::signals::watch(env.handle());
    let failed = if plan.serve {
        // Until Ctrl-C or SIGTERM shuts the environment down.
        if let Some(addr) = env.invoke_api_addr() {
            note!(
                "lext: serving the Invoke API on http://{addr} (function {}); Ctrl-C to stop",
                plan.function_name
            );
        }
        0
    } else {
        let failed = match plan.managed {
            // A worker may not be back in /next yet: wait for one before
            // each invoke, or it would be rejected (Runtime.Unavailable).
            true => invoke_n_managed(&env, &plan.payload, plan.invokes).await,
            false => invoke_n(&env, &plan.payload, plan.invokes, Duration::ZERO).await,
        };
        env.shutdown();
        failed
    };
    let summary = env.stopped().await?;
    if plan.serve {
        note!("lext: {} invoke(s) served", summary.invokes);
    }
    Ok(exit_code(plan.serve, failed, &summary))
}

/// The end of a run: processes that did not die are named, and the exit
/// code says whether anything failed (never with `--serve`, which a signal
/// ends). REPORT decides (`failed_invokes`), not only what the caller got.
fn exit_code(serve: bool, failed: u32, summary: &lext_sandbox::Summary) -> ExitCode {
    if !serve && summary.unreaped > 0 {
        note!(
            "lext: {} process(es) did not exit after SIGKILL",
            summary.unreaped
        );
    }
    let failed = failed > 0 || summary.failed_invokes > 0 || summary.init_failures > 0;
    if failed && !serve {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `count` invokes one after the other, `gap` apart; returns how many
/// failed.
async fn invoke_n(env: &RunningEnvironment, payload: &[u8], count: u32, gap: Duration) -> u32 {
    let mut failed = 0;
    for n in 1..=count {
        if n > 1 && !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        // An error: Ctrl-C during the invokes.
        let Ok(reply) = env.invoke(InvokeRequest::new(payload.to_vec())).await else {
            break;
        };
        failed += u32::from(!reply.is_success());
        note!("lext: invoke {n}: {}", outcome(&reply));
    }
    failed
}

/// [`invoke_n`] under Managed Instances: each invoke once the previous one
/// is over and a runtime worker waits in `/next` again.
async fn invoke_n_managed(env: &RunningEnvironment, payload: &[u8], count: u32) -> u32 {
    let mut failed = 0;
    for n in 1..=count {
        env.idle().await;
        let reply = match env.invoke(InvokeRequest::new(payload.to_vec())).await {
            Ok(reply) => reply,
            // Ctrl-C during the invokes, or the environment ended.
            Err(lext_sandbox::EnvironmentError::Stopped) => break,
            // Rejected (no worker came back), say: a failed invoke.
            Err(error) => {
                note!("lext: invoke {n}: {error}");
                failed += 1;
                continue;
            }
        };
        failed += u32::from(!reply.is_success());
        note!("lext: invoke {n}: {}", outcome(&reply));
    }
    failed
}

/// What an invoke's caller got, in one line.
fn outcome(reply: &InvokeResponse) -> String {
    match &reply.result {
        InvokeResult::Response { body, .. } => {
            format!("response {}", String::from_utf8_lossy(body))
        }
        InvokeResult::FunctionError { body } => {
            format!("function error {}", String::from_utf8_lossy(body))
        }
        InvokeResult::PlatformError {
            error_type,
            message,
        } => format!("{error_type}: {message}"),
    }
}
