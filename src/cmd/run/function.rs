//! `lext run` with several environments: the plan's environment becomes the
//! template of a [`Function`]'s environments.

use std::process::ExitCode;
use std::time::Duration;

use lext_sandbox::{Function, InvokeRequest, RunningFunction};

use super::{outcome, Plan};

/// The function's settings (`--concurrency`, `--reserved-concurrency`,
/// `--idle-timeout`, `--tenant-isolation`, `--tenant-id`).
#[derive(Debug)]
pub(super) struct Pool {
    concurrency: u32,
    reserved: Option<u32>,
    idle_timeout: Option<Duration>,
    tenant_isolation: bool,
    tenant_id: Option<String>,
}

impl Pool {
    /// `None` when the flags ask for one environment, as before they
    /// existed.
    pub(super) fn from_args(
        concurrency: u32,
        reserved: Option<u32>,
        idle_timeout: Option<u64>,
        tenant_isolation: bool,
        tenant_id: Option<String>,
    ) -> Option<Self> {
        let several =
            concurrency > 1 || reserved.is_some() || idle_timeout.is_some() || tenant_isolation;
        several.then(|| Self {
            concurrency,
            reserved,
            idle_timeout: idle_timeout.map(Duration::from_secs),
            tenant_isolation,
            tenant_id,
        })
    }
}

pub(super) async fn execute(plan: Plan, pool: Pool) -> anyhow::Result<ExitCode> {
    if pool.tenant_isolation && !plan.serve && pool.tenant_id.is_none() {
        anyhow::bail!(
            "--tenant-isolation: the invokes need a tenant (--tenant-id ID), as Lambda refuses \
             an invoke of a tenant-isolated function without one"
        );
    }
    let mut function = Function::new(plan.environment)
        .concurrency(pool.concurrency as usize)
        .tenant_isolation(pool.tenant_isolation);
    if let Some(reserved) = pool.reserved {
        function = function.reserved_concurrency(reserved as usize);
    }
    if let Some(timeout) = pool.idle_timeout {
        function = function.idle_timeout(timeout);
    }
    let function = function.start().await?;
    for notice in function.notices() {
        note!("{notice}");
    }
    let _signals = super::super::signals::watch(function.handle());
    let failed = if plan.serve {
        if let Some(addr) = function.invoke_api_addr() {
            note!(
                "lext: serving the Invoke API on http://{addr} (function {}, up to {} \
                 environments{}); Ctrl-C to stop",
                plan.function_name,
                pool.reserved
                    .map_or(pool.concurrency, |r| r.min(pool.concurrency)),
                if pool.tenant_isolation {
                    ", one tenant each"
                } else {
                    ""
                }
            );
        }
        0
    } else {
        let failed = invoke_n(
            &function,
            &plan.payload,
            plan.invokes,
            pool.concurrency.max(1),
            pool.tenant_id.as_deref(),
        )
        .await;
        function.shutdown();
        failed
    };
    let summary = function.stopped().await?;
    if plan.serve {
        note!(
            "lext: {} invoke(s) served by {} environment(s)",
            summary.invokes,
            summary.environments
        );
    }
    Ok(super::exit_code(plan.serve, failed, &summary))
}

/// Runs `count` invokes, `at_once` at a time; returns how many failed.
async fn invoke_n(
    function: &RunningFunction,
    payload: &[u8],
    count: u32,
    at_once: u32,
    tenant: Option<&str>,
) -> u32 {
    let request = || InvokeRequest {
        tenant_id: tenant.map(str::to_owned),
        ..InvokeRequest::new(payload.to_vec())
    };
    let mut failed = 0;
    let mut running = tokio::task::JoinSet::new();
    let mut started = 0;
    let mut n = 0;
    loop {
        while started < count && running.len() < at_once as usize {
            let handle = function.handle();
            let request = request();
            running.spawn(async move { handle.invoke(request).await });
            started += 1;
        }
        let Some(reply) = running.join_next().await else {
            break;
        };
        n += 1;
        // An error: Ctrl-C during the invokes.
        let Ok(Ok(reply)) = reply else {
            failed += 1;
            continue;
        };
        failed += u32::from(!reply.is_success());
        note!("lext: invoke {n}: {}", outcome(&reply));
    }
    failed
}
