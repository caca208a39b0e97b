//! The environment variables of the runtime and of the extensions.
//!
//! This module owns the translation of a function's configuration into the
//! exact variable lists Lambda gives its processes (AWS: Using Lambda
//! environment variables,
//! <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>;
//! RIE, github.com/aws/aws-lambda-runtime-interface-emulator:
//! `internal/lambda/rapidcore/env/constants.go`):
//! the reserved variables (`AWS_LAMBDA_RUNTIME_API`, `_HANDLER`, region,
//! function name, version and memory, log group and stream, task and runtime
//! directories, initialization type), the unreserved defaults (`LANG`,
//! `PATH` with `/opt/bin`, `LD_LIBRARY_PATH` with `/opt/lib`, `TZ`), and the
//! user's own variables. Extensions get the function's variables minus the
//! list the Extensions API documents as hidden from them
//! ([`lext_protocol::env::HIDDEN_FROM_EXTENSIONS`]).
//!
//! It is pure: a [`EnvConfig`] in, a `Vec<(String, String)>` out, in a
//! stable order. Nothing from the host environment is read here (the host
//! environment may hold secrets and is never passed through); the only
//! impure helper is [`new_log_stream_name`], which needs a clock and some
//! randomness.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::SystemTime;

use lext_protocol::env as names;

/// `LANG` in Lambda.
pub(crate) const DEFAULT_LANG: &str = "en_US.UTF-8";
/// `PATH` in Lambda (AWS: Using Lambda environment variables,
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>;
/// the `/usr/bin/` with a trailing slash is Lambda's own spelling).
pub(crate) const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin/:/bin:/opt/bin";
/// `TZ` in Lambda. AWS documents the time zone as UTC but not the exact
/// value (AWS: Using Lambda environment variables,
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>);
/// `:UTC` is what Lambda's own runtimes report and what glibc reads as UTC.
pub(crate) const DEFAULT_TZ: &str = ":UTC";
/// `LAMBDA_TASK_ROOT` in Lambda.
pub(crate) const DEFAULT_TASK_ROOT: &str = "/var/task";
/// `LAMBDA_RUNTIME_DIR` in Lambda.
pub(crate) const DEFAULT_RUNTIME_DIR: &str = "/var/runtime";
/// The X-Ray daemon's address in Lambda (`AWS_XRAY_DAEMON_ADDRESS`, and its
/// halves `_AWS_XRAY_DAEMON_ADDRESS` and `_AWS_XRAY_DAEMON_PORT`): a
/// link-local address the X-Ray SDKs send UDP segments to (observed in
/// Lambda; AWS: Using Lambda environment variables names the variables).
/// Nothing listens there locally; UDP is sent and lost, as the SDKs expect.
pub(crate) const XRAY_DAEMON_HOST: &str = "169.254.79.129";
/// The X-Ray daemon's port; see [`XRAY_DAEMON_HOST`].
pub(crate) const XRAY_DAEMON_PORT: &str = "2000";
/// `AWS_XRAY_CONTEXT_MISSING` in Lambda: "Lambda sets this to `LOG_ERROR`
/// to avoid throwing runtime errors from the X-Ray SDK" (AWS: Using Lambda
/// environment variables).
pub(crate) const XRAY_CONTEXT_MISSING: &str = "LOG_ERROR";
/// `AWS_LAMBDA_INITIALIZATION_TYPE` of an on-demand function.
pub(crate) const INITIALIZATION_TYPE_ON_DEMAND: &str = "on-demand";

/// Reserved keys AWS refuses in a function's configuration (AWS: Using
/// Lambda environment variables,
/// <https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>),
/// except the execution-role credentials: a local sandbox has no execution
/// role, so `--env AWS_ACCESS_KEY_ID=...` is how a user hands credentials to
/// the function, and it is accepted.
pub(crate) const RESERVED: &[&str] = &[
    names::HANDLER,
    "_X_AMZN_TRACE_ID",
    names::AWS_DEFAULT_REGION,
    names::AWS_REGION,
    names::AWS_EXECUTION_ENV,
    names::AWS_LAMBDA_FUNCTION_NAME,
    names::AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    names::AWS_LAMBDA_FUNCTION_VERSION,
    names::AWS_LAMBDA_INITIALIZATION_TYPE,
    names::AWS_LAMBDA_LOG_GROUP_NAME,
    names::AWS_LAMBDA_LOG_STREAM_NAME,
    names::AWS_LAMBDA_RUNTIME_API,
    names::LAMBDA_TASK_ROOT,
    names::LAMBDA_RUNTIME_DIR,
];

/// The configuration the variable lists are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvConfig {
    /// `host:port` of the sandbox's API server (`AWS_LAMBDA_RUNTIME_API`).
    pub runtime_api: String,
    /// The handler (`_HANDLER`, runtime only).
    pub handler: String,
    /// Region (`AWS_REGION` and `AWS_DEFAULT_REGION`).
    pub region: String,
    /// Function name.
    pub function_name: String,
    /// Function version, `$LATEST` locally.
    pub function_version: String,
    /// Configured memory in MB.
    pub memory_mb: u32,
    /// `AWS_LAMBDA_LOG_STREAM_NAME`; see [`new_log_stream_name`].
    pub log_stream_name: String,
    /// `LAMBDA_TASK_ROOT` (default `/var/task`).
    pub task_root: String,
    /// `LAMBDA_RUNTIME_DIR` (default `/var/runtime`).
    pub runtime_dir: String,
    /// `AWS_LAMBDA_LOG_FORMAT` (`Text` or `JSON`), and with JSON
    /// `AWS_LAMBDA_LOG_LEVEL` (the application log level), for the runtime
    /// and the extensions.
    pub logging: crate::config::Logging,
    /// Lambda Managed Instances with this many runtime workers: the
    /// initialization type is `lambda-managed-instances` for everyone, and
    /// the runtime alone gets `AWS_LAMBDA_MAX_CONCURRENCY`.
    pub managed_instances: Option<u32>,
    /// The user's variables (`--env KEY=VALUE`), in the order given. They
    /// override the unreserved defaults; see [`validate_user_env`] for the
    /// reserved ones.
    pub user: Vec<(String, String)>,
}

impl EnvConfig {
    /// A configuration with Lambda's defaults for everything but the API
    /// address, the function name and the log stream name.
    pub(crate) fn new(runtime_api: impl Into<String>, function_name: impl Into<String>) -> Self {
        let function_version = "$LATEST".to_owned();
        Self {
            runtime_api: runtime_api.into(),
            handler: String::new(),
            region: "us-east-1".to_owned(),
            function_name: function_name.into(),
            log_stream_name: new_log_stream_name(SystemTime::now(), &function_version),
            function_version,
            memory_mb: 128,
            task_root: DEFAULT_TASK_ROOT.to_owned(),
            runtime_dir: DEFAULT_RUNTIME_DIR.to_owned(),
            logging: crate::config::Logging::default(),
            managed_instances: None,
            user: Vec::new(),
        }
    }

    /// `AWS_LAMBDA_LOG_GROUP_NAME`: `/aws/lambda/<function>`.
    pub(crate) fn log_group_name(&self) -> String {
        format!("/aws/lambda/{}", self.function_name)
    }
}

/// A `--env` entry Lambda would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// The user set reserved keys; AWS answers `InvalidParameterValueException`.
    #[error(
        "Lambda was unable to configure your environment variables because the environment \
         variables you have provided contains reserved keys that are currently not supported \
         for modification. Reserved keys used in this request: {}",
        .0.join(", ")
    )]
    Reserved(Vec<String>),
    /// A key that is not a valid variable name (AWS requires
    /// `[a-zA-Z]([a-zA-Z0-9_])+`).
    #[error("invalid environment variable name {0:?}: it must match [a-zA-Z]([a-zA-Z0-9_])+")]
    InvalidName(String),
}

/// Check the user's variables as Lambda checks a function's configuration:
/// names must match `[a-zA-Z]([a-zA-Z0-9_])+`, and reserved keys are
/// refused (see [`RESERVED`]).
pub(crate) fn validate_user_env(user: &[(String, String)]) -> Result<(), EnvError> {
    for (key, _) in user {
        let mut chars = key.chars();
        let valid = key.len() >= 2
            && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        // The name rule would already refuse `_HANDLER`, but a reserved key
        // deserves AWS's reserved-key message, so check that first.
        if !valid && !RESERVED.contains(&key.as_str()) {
            return Err(EnvError::InvalidName(key.clone()));
        }
    }
    let reserved: Vec<String> = user
        .iter()
        .filter(|(key, _)| RESERVED.contains(&key.as_str()))
        .map(|(key, _)| key.clone())
        .collect();
    if reserved.is_empty() {
        Ok(())
    } else {
        Err(EnvError::Reserved(reserved))
    }
}

/// The runtime's environment: platform variables, then the user's.
///
/// A user variable replaces an unreserved default (`PATH`, ...) in place; a
/// user variable with a reserved name is ignored here (call
/// [`validate_user_env`] first to refuse it with AWS's message).
pub(crate) fn runtime_env(config: &EnvConfig) -> Vec<(String, String)> {
    let task = &config.task_root;
    let rt = &config.runtime_dir;
    let platform: Vec<(&str, String)> = vec![
        (names::AWS_LAMBDA_RUNTIME_API, config.runtime_api.clone()),
        (names::HANDLER, config.handler.clone()),
        (names::AWS_REGION, config.region.clone()),
        (names::AWS_DEFAULT_REGION, config.region.clone()),
        (
            names::AWS_LAMBDA_FUNCTION_NAME,
            config.function_name.clone(),
        ),
        (
            names::AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
            config.memory_mb.to_string(),
        ),
        (
            names::AWS_LAMBDA_FUNCTION_VERSION,
            config.function_version.clone(),
        ),
        (
            names::AWS_LAMBDA_INITIALIZATION_TYPE,
            match config.managed_instances {
                // RIE `internal/lambda-managed-instances/rapidcore/env/environment.go`.
                Some(_) => names::INITIALIZATION_TYPE_MANAGED_INSTANCES,
                None => INITIALIZATION_TYPE_ON_DEMAND,
            }
            .to_owned(),
        ),
        (names::AWS_LAMBDA_LOG_GROUP_NAME, config.log_group_name()),
        (
            names::AWS_LAMBDA_LOG_STREAM_NAME,
            config.log_stream_name.clone(),
        ),
        (names::LAMBDA_TASK_ROOT, task.clone()),
        (names::LAMBDA_RUNTIME_DIR, rt.clone()),
        ("LANG", DEFAULT_LANG.to_owned()),
        ("PATH", DEFAULT_PATH.to_owned()),
        (
            "LD_LIBRARY_PATH",
            format!("/lib64:/usr/lib64:{rt}:{rt}/lib:{task}:{task}/lib:/opt/lib"),
        ),
        ("TZ", DEFAULT_TZ.to_owned()),
        // Visible to the runtime only (hidden from extensions by name).
        (
            names::AWS_XRAY_CONTEXT_MISSING,
            XRAY_CONTEXT_MISSING.to_owned(),
        ),
        (
            names::AWS_XRAY_DAEMON_ADDRESS,
            format!("{XRAY_DAEMON_HOST}:{XRAY_DAEMON_PORT}"),
        ),
        ("_AWS_XRAY_DAEMON_ADDRESS", XRAY_DAEMON_HOST.to_owned()),
        ("_AWS_XRAY_DAEMON_PORT", XRAY_DAEMON_PORT.to_owned()),
    ];
    // The log format for every function (the runtime clients read it to
    // log in JSON), the level with JSON only, where it applies (AWS:
    // Configuring advanced logging controls, "Log format and level
    // environment variables").
    let mut platform = platform;
    let json = config.logging.is_json();
    platform.push((
        "AWS_LAMBDA_LOG_FORMAT",
        if json { "JSON" } else { "Text" }.to_owned(),
    ));
    if json {
        platform.push((
            "AWS_LAMBDA_LOG_LEVEL",
            config.logging.application_level.as_str().to_owned(),
        ));
    }
    // The number of workers a Managed Instances runtime starts (AWS: LMI
    // runtimes); runtime-only, `extension_env` drops it.
    if let Some(n) = config.managed_instances {
        platform.push((names::AWS_LAMBDA_MAX_CONCURRENCY, n.to_string()));
    }
    let mut vars: Vec<(String, String)> = platform
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (key, value) in &config.user {
        if RESERVED.contains(&key.as_str()) {
            continue;
        }
        match vars.iter_mut().find(|(k, _)| k == key) {
            Some(existing) => existing.1 = value.clone(),
            None => vars.push((key.clone(), value.clone())),
        }
    }
    vars
}

/// The extensions' environment: the runtime's minus the variables hidden
/// from extensions (`_HANDLER`, log group and stream, task and runtime
/// directories, X-Ray, `AWS_EXECUTION_ENV`), per the Extensions API
/// documentation. User variables with those names are hidden too, since the
/// rule is by name.
pub(crate) fn extension_env(config: &EnvConfig) -> Vec<(String, String)> {
    // `AWS_LAMBDA_MAX_CONCURRENCY` is the runtime's alone (RIE
    // `internal/lambda-managed-instances/rapidcore/env/environment.go`).
    runtime_env(config)
        .into_iter()
        .filter(|(key, _)| {
            names::visible_to_extensions(key) && key != names::AWS_LAMBDA_MAX_CONCURRENCY
        })
        .collect()
}

/// `YYYY/MM/DD/[<version>]<32 hex>`, Lambda's log stream name, for the UTC
/// date of `now` and a fresh random id.
pub(crate) fn new_log_stream_name(now: SystemTime, version: &str) -> String {
    // std's RandomState is seeded from the OS's randomness once per process
    // and then per instance: enough for a name that only has to differ
    // between runs, without a dependency on a random-number crate.
    let mut id: u128 = 0;
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        id = (id << 64) | u128::from(hasher.finish());
    }
    log_stream_name(now, version, id)
}

/// `YYYY/MM/DD/[<version>]<id as 32 hex digits>` for a given date and id.
pub(crate) fn log_stream_name(now: SystemTime, version: &str, id: u128) -> String {
    let (year, month, day) = crate::logline::utc_date(now);
    format!("{year:04}/{month:02}/{day:02}/[{version}]{id:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn config() -> EnvConfig {
        EnvConfig {
            runtime_api: "127.0.0.1:9001".into(),
            handler: "index.handler".into(),
            region: "eu-west-2".into(),
            function_name: "fn".into(),
            function_version: "$LATEST".into(),
            memory_mb: 256,
            log_stream_name: "2022/10/21/[$LATEST]00000000000000000000000000000abc".into(),
            task_root: DEFAULT_TASK_ROOT.into(),
            runtime_dir: DEFAULT_RUNTIME_DIR.into(),
            logging: crate::config::Logging::default(),
            managed_instances: None,
            user: vec![],
        }
    }

    fn get<'a>(vars: &'a [(String, String)], key: &str) -> Option<&'a str> {
        vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn runtime_gets_every_documented_variable() {
        let vars = runtime_env(&config());
        let want = [
            ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
            ("_HANDLER", "index.handler"),
            ("AWS_REGION", "eu-west-2"),
            ("AWS_DEFAULT_REGION", "eu-west-2"),
            ("AWS_LAMBDA_FUNCTION_NAME", "fn"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/fn"),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2022/10/21/[$LATEST]00000000000000000000000000000abc",
            ),
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
            ("LANG", "en_US.UTF-8"),
            ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
            (
                "LD_LIBRARY_PATH",
                "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
            ),
            ("TZ", ":UTC"),
            ("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR"),
            ("AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129:2000"),
            ("_AWS_XRAY_DAEMON_ADDRESS", "169.254.79.129"),
            ("_AWS_XRAY_DAEMON_PORT", "2000"),
            ("AWS_LAMBDA_LOG_FORMAT", "Text"),
        ];
        assert_eq!(vars.len(), want.len());
        for (key, value) in want {
            assert_eq!(get(&vars, key), Some(value), "{key}");
        }
        // Custom runtimes get no AWS_EXECUTION_ENV.
        assert_eq!(get(&vars, "AWS_EXECUTION_ENV"), None);
    }

    #[test]
    fn json_logging_sets_the_format_and_level_for_everyone() {
        let mut cfg = config();
        cfg.logging.format = crate::config::LogFormat::Json;
        cfg.logging.application_level = crate::config::LogLevel::Debug;
        for vars in [runtime_env(&cfg), extension_env(&cfg)] {
            assert_eq!(get(&vars, "AWS_LAMBDA_LOG_FORMAT"), Some("JSON"));
            assert_eq!(get(&vars, "AWS_LAMBDA_LOG_LEVEL"), Some("DEBUG"));
        }
        assert_eq!(get(&runtime_env(&config()), "AWS_LAMBDA_LOG_LEVEL"), None);
    }

    #[test]
    fn managed_instances_set_the_type_for_all_and_the_concurrency_for_the_runtime() {
        let mut c = config();
        c.managed_instances = Some(8);
        let runtime = runtime_env(&c);
        let extension = extension_env(&c);
        for vars in [&runtime, &extension] {
            assert_eq!(
                get(vars, "AWS_LAMBDA_INITIALIZATION_TYPE"),
                Some("lambda-managed-instances")
            );
        }
        assert_eq!(get(&runtime, "AWS_LAMBDA_MAX_CONCURRENCY"), Some("8"));
        assert_eq!(get(&extension, "AWS_LAMBDA_MAX_CONCURRENCY"), None);
        assert_eq!(
            get(&runtime_env(&config()), "AWS_LAMBDA_MAX_CONCURRENCY"),
            None
        );
    }

    #[test]
    fn extensions_lose_the_hidden_variables() {
        let mut cfg = config();
        cfg.user = vec![("MY_VAR".into(), "1".into())];
        let vars = extension_env(&cfg);
        for hidden in [
            "_HANDLER",
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "LAMBDA_TASK_ROOT",
            "LAMBDA_RUNTIME_DIR",
            "AWS_XRAY_CONTEXT_MISSING",
            "AWS_XRAY_DAEMON_ADDRESS",
            "_AWS_XRAY_DAEMON_ADDRESS",
            "_AWS_XRAY_DAEMON_PORT",
        ] {
            assert_eq!(get(&vars, hidden), None, "{hidden}");
        }
        assert_eq!(get(&vars, "AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9001"));
        assert_eq!(get(&vars, "AWS_LAMBDA_FUNCTION_NAME"), Some("fn"));
        assert_eq!(get(&vars, "PATH"), Some(DEFAULT_PATH));
        assert_eq!(get(&vars, "MY_VAR"), Some("1"));
        assert_eq!(vars.len(), runtime_env(&cfg).len() - 9);
    }

    #[test]
    fn user_variables_override_unreserved_and_append() {
        let mut cfg = config();
        cfg.user = vec![
            ("PATH".into(), "/custom".into()),
            ("B".into(), "2".into()),
            ("AA".into(), "1".into()),
            ("AWS_REGION".into(), "ignored".into()),
        ];
        let vars = runtime_env(&cfg);
        assert_eq!(get(&vars, "PATH"), Some("/custom"));
        assert_eq!(get(&vars, "AWS_REGION"), Some("eu-west-2"));
        // Appended in the user's order, after the platform variables.
        let n = vars.len();
        assert_eq!(vars[n - 2], ("B".into(), "2".into()));
        assert_eq!(vars[n - 1], ("AA".into(), "1".into()));
        assert_eq!(vars.iter().filter(|(k, _)| k == "PATH").count(), 1);
    }

    #[test]
    fn user_variables_are_validated_like_aws() {
        let ok = vec![
            ("MY_VAR".into(), "x".into()),
            ("AWS_ACCESS_KEY_ID".into(), "k".into()),
        ];
        assert_eq!(validate_user_env(&ok), Ok(()));
        let reserved = vec![
            ("AWS_REGION".into(), "x".into()),
            ("_HANDLER".into(), "h".into()),
        ];
        let err = validate_user_env(&reserved).unwrap_err();
        assert_eq!(
            err,
            EnvError::Reserved(vec!["AWS_REGION".into(), "_HANDLER".into()])
        );
        assert!(err
            .to_string()
            .ends_with("Reserved keys used in this request: AWS_REGION, _HANDLER"));
        for bad in ["1X", "A", "A-B", "", "É1"] {
            assert_eq!(
                validate_user_env(&[(bad.into(), String::new())]),
                Err(EnvError::InvalidName(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn log_stream_names_have_lambdas_shape() {
        let t = UNIX_EPOCH + Duration::from_secs(1_666_361_103);
        assert_eq!(
            log_stream_name(t, "$LATEST", 0xabc),
            "2022/10/21/[$LATEST]00000000000000000000000000000abc"
        );
        let a = new_log_stream_name(t, "$LATEST");
        let b = new_log_stream_name(t, "$LATEST");
        assert_ne!(a, b, "two environments get different streams");
        let (prefix, hex) = a.split_at("2022/10/21/[$LATEST]".len());
        assert_eq!(prefix, "2022/10/21/[$LATEST]");
        assert_eq!(hex.len(), 32);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(EnvConfig::new("a:1", "f").log_group_name(), "/aws/lambda/f");
    }
}
