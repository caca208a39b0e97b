//! `lext run --watch`: build the Cargo project here as `lext build` does,
//! run its extensions, and on every change to its sources rebuild and
//! start the environment again (a spindown, then a new Init) on the same
//! `--serve` address, so that clients keep working. A build that fails
//! prints cargo's diagnostics and leaves the previous environment serving.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use lext_layer::build::{self, BuildOptions};

use super::run::{plan, Args};

/// How often the sources are looked at.
const POLL: Duration = Duration::from_millis(300);

/// Runs `lext run --watch` until a signal stops it.
pub(crate) async fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let project = lext_layer::project::Project::load(None)
        .context("--watch builds the Cargo project of the current directory")?;
    let dir = project
        .manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let first = rebuild().await?;
    let base = args.extensions.clone();
    args.extensions = base.iter().cloned().chain(first).collect();
    let mut signals: Option<super::signals::Current> = None;
    let mut stamp = fingerprint(&dir);
    loop {
        let env = start(&args).await?;
        // Later environments keep the address the first one got (a port 0
        // is chosen once).
        args.serve = env.invoke_api_addr().or(args.serve);
        match &signals {
            Some(current) => current.set(env.handle()),
            None => signals = Some(super::signals::watch(env.handle())),
        }
        if signals
            .as_ref()
            .is_some_and(super::signals::Current::stopping)
        {
            env.shutdown();
        }
        let handle = env.handle();
        loop {
            tokio::select! {
                summary = handle.stopped() => {
                    // Stopped by a signal, not by a reload.
                    env.stopped().await?;
                    note!("lext: {} invoke(s) served", summary.invokes);
                    return Ok(ExitCode::SUCCESS);
                }
                () = tokio::time::sleep(POLL) => {}
            }
            let now = fingerprint(&dir);
            if now == stamp {
                continue;
            }
            stamp = now;
            let started = Instant::now();
            match rebuild().await {
                Ok(built) => {
                    args.extensions = base.iter().cloned().chain(built).collect();
                    env.shutdown();
                    env.stopped().await?;
                    note!(
                        "lext: rebuilt in {:.1} s; restarting the environment",
                        started.elapsed().as_secs_f64()
                    );
                    break;
                }
                Err(error) => note!(
                    "lext: the build failed ({error:#}); the previous environment keeps serving"
                ),
            }
        }
    }
}

/// Builds the project (on a blocking thread: the environment keeps serving
/// meanwhile) and returns its extensions.
async fn rebuild() -> anyhow::Result<Vec<PathBuf>> {
    let built = tokio::task::spawn_blocking(|| build::build(&BuildOptions::default()))
        .await
        .context("the build task")??;
    Ok(built.binaries.into_iter().map(|b| b.path).collect())
}

/// Starts an environment for `args`, retrying while its address is still
/// being released by the previous one (bounded: 2 s).
async fn start(args: &Args) -> anyhow::Result<lext_sandbox::RunningEnvironment> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let plan = plan(args.clone())?;
        match plan.environment.start().await {
            Ok(env) => {
                for notice in env.notices() {
                    note!("{notice}");
                }
                if let Some(addr) = env.invoke_api_addr() {
                    note!(
                        "lext: serving the Invoke API on http://{addr} (function {}); Ctrl-C to stop",
                        plan.function_name
                    );
                }
                return Ok(env);
            }
            Err(lext_sandbox::EnvironmentError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// What the sources look like now: the number of files, their total size
/// and the newest modification, over the project's `.rs` files,
/// `Cargo.toml` and `Cargo.lock` (not `target/` or hidden directories).
fn fingerprint(dir: &Path) -> (usize, u64, SystemTime) {
    let mut seen = (0, 0, SystemTime::UNIX_EPOCH);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(entry.path());
                }
                continue;
            }
            if name.ends_with(".rs") || name == "Cargo.toml" || name == "Cargo.lock" {
                seen.0 += 1;
                seen.1 += meta.len();
                if let Ok(modified) = meta.modified() {
                    seen.2 = seen.2.max(modified);
                }
            }
        }
    }
    seen
}
