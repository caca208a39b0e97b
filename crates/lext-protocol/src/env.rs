//! Names of the environment variables Lambda sets in an execution
//! environment, and the lists that decide which of them an extension sees.
//!
//! Sources: the variables, AWS:
//! <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>
//! and RIE: internal/lambda/rapidcore/env/constants.go; the ones hidden from
//! extensions, AWS:
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html>
//! and RIE: internal/lambda/rapidcore/env/environment.go (`AgentExecEnv`), in
//! github.com/aws/aws-lambda-runtime-interface-emulator.

/// `host:port` of the Runtime, Extensions and Telemetry APIs.
pub const AWS_LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";
/// The configured handler (runtime only).
pub const HANDLER: &str = "_HANDLER";
/// The region.
pub const AWS_REGION: &str = "AWS_REGION";
/// The region, again.
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// `AWS_Lambda_<runtime>`; not set for `provided*` runtimes.
pub const AWS_EXECUTION_ENV: &str = "AWS_EXECUTION_ENV";
/// The function's name.
pub const AWS_LAMBDA_FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";
/// Configured memory, MB.
pub const AWS_LAMBDA_FUNCTION_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";
/// `$LATEST` or a version number.
pub const AWS_LAMBDA_FUNCTION_VERSION: &str = "AWS_LAMBDA_FUNCTION_VERSION";
/// `on-demand`, `provisioned-concurrency`, `snap-start` or `lambda-managed-instances`.
pub const AWS_LAMBDA_INITIALIZATION_TYPE: &str = "AWS_LAMBDA_INITIALIZATION_TYPE";
/// `/aws/lambda/<function>`.
pub const AWS_LAMBDA_LOG_GROUP_NAME: &str = "AWS_LAMBDA_LOG_GROUP_NAME";
/// `YYYY/MM/DD/[$LATEST]<32 hex>`.
pub const AWS_LAMBDA_LOG_STREAM_NAME: &str = "AWS_LAMBDA_LOG_STREAM_NAME";
/// Execution-role credentials.
pub const AWS_ACCESS_KEY: &str = "AWS_ACCESS_KEY";
/// Execution-role credentials.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// Execution-role credentials.
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Execution-role credentials.
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// `/var/task`.
pub const LAMBDA_TASK_ROOT: &str = "LAMBDA_TASK_ROOT";
/// `/var/runtime`.
pub const LAMBDA_RUNTIME_DIR: &str = "LAMBDA_RUNTIME_DIR";
/// X-Ray setting.
pub const AWS_XRAY_CONTEXT_MISSING: &str = "AWS_XRAY_CONTEXT_MISSING";
/// X-Ray daemon address.
pub const AWS_XRAY_DAEMON_ADDRESS: &str = "AWS_XRAY_DAEMON_ADDRESS";
/// Managed Instances only.
pub const AWS_LAMBDA_MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";

/// The `AWS_LAMBDA_INITIALIZATION_TYPE` of Lambda Managed Instances, where
/// external extensions may subscribe to SHUTDOWN only.
pub const INITIALIZATION_TYPE_MANAGED_INSTANCES: &str = "lambda-managed-instances";

/// Variables of the function that extensions do **not** get (D-EXT).
pub const HIDDEN_FROM_EXTENSIONS: &[&str] = &[
    AWS_EXECUTION_ENV,
    AWS_LAMBDA_LOG_GROUP_NAME,
    AWS_LAMBDA_LOG_STREAM_NAME,
    AWS_XRAY_CONTEXT_MISSING,
    AWS_XRAY_DAEMON_ADDRESS,
    LAMBDA_RUNTIME_DIR,
    LAMBDA_TASK_ROOT,
    "_AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_PORT",
    HANDLER,
];

/// Whether an extension sees the function's variable `name`.
pub fn visible_to_extensions(name: &str) -> bool {
    !HIDDEN_FROM_EXTENSIONS.contains(&name)
}
