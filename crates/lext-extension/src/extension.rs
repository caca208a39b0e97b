//! The entry point, [`Extension::builder`], and what both flavours share
//! around their event loops.
//!
//! This module owns what is common to both flavours before registration:
//! the extension's name (by default the executable's file name, which Lambda
//! requires), the events to subscribe to, the optional `accountId` feature,
//! where the API is, and whether SIGTERM/SIGINT end the loop. The builder
//! turns into a registered extension with [`Builder::register`] (blocking)
//! or `Builder::register_async` (feature `tokio`); both build the register
//! request and read its answer into a [`Registration`] here, and differ only
//! in how they send it. It also owns what both flavours' handles share
//! after registration: the [`Registration`] they dereference to (so its
//! accessors are written once) and [`RunEnd`], why their loops returned.

use lext_protocol::env::{AWS_LAMBDA_INITIALIZATION_TYPE, INITIALIZATION_TYPE_MANAGED_INSTANCES};
use lext_protocol::extensions::{EventType, RegisterResponse, ShutdownEvent};

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::http::{ApiRequest, ApiResponse};
use crate::request::{self, ExtensionId};
use crate::signal::Signal;

/// Namespace for [`Extension::builder`].
#[derive(Debug)]
pub struct Extension(());

impl Extension {
    /// Starts configuring an extension. Defaults: named after the executable,
    /// INVOKE and SHUTDOWN events (SHUTDOWN only on Lambda Managed Instances,
    /// which refuse INVOKE for external extensions), no `accountId`, the API
    /// from `AWS_LAMBDA_RUNTIME_API`, SIGTERM/SIGINT handled.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Configuration of an extension before it registers.
#[derive(Debug, Clone)]
pub struct Builder {
    pub(crate) name: Option<String>,
    pub(crate) events: Vec<EventType>,
    /// Whether `events` was set by the caller (else it follows the platform).
    pub(crate) events_set: bool,
    pub(crate) account_id: bool,
    pub(crate) runtime_api: Option<String>,
    pub(crate) handle_signals: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            name: None,
            events: vec![EventType::Invoke, EventType::Shutdown],
            events_set: false,
            account_id: false,
            runtime_api: None,
            handle_signals: true,
        }
    }
}

impl Builder {
    /// Sets the name sent as `Lambda-Extension-Name`. Lambda requires the
    /// executable's file name in `/opt/extensions`, which is the default;
    /// set it only for internal extensions or tests.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the events to receive. An empty list is allowed (the extension
    /// then only gets SIGTERM at shutdown).
    pub fn events(mut self, events: impl IntoIterator<Item = EventType>) -> Self {
        self.events = events.into_iter().collect();
        self.events_set = true;
        self
    }

    /// Asks for the `accountId` feature: the register response then carries
    /// the account id.
    pub fn accept_account_id(mut self, yes: bool) -> Self {
        self.account_id = yes;
        self
    }

    /// Uses this `host:port` (or `host:port/base-path`, see [`Endpoint`])
    /// instead of `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(mut self, host_port: impl Into<String>) -> Self {
        self.runtime_api = Some(host_port.into());
        self
    }

    /// Whether SIGTERM and SIGINT end the event loop (default: yes). Turn it
    /// off when the program handles signals itself.
    ///
    /// The blocking flavour installs its handlers without `SA_RESTART`, so
    /// that a signal ends the `/event/next` long poll without a thread: a
    /// blocking system call in the handler's own code can then also return
    /// `EINTR` (std's `read_exact`/`write_all` retry it; a bare `read`
    /// returns `ErrorKind::Interrupted`). The tokio flavour uses
    /// `tokio::signal` and has no such effect.
    pub fn handle_signals(mut self, yes: bool) -> Self {
        self.handle_signals = yes;
        self
    }

    /// Fills in what depends on the environment: the events when the caller
    /// did not choose them, then the name and the endpoint.
    pub(crate) fn resolve(&mut self) -> Result<(String, Endpoint), Error> {
        if !self.events_set {
            let init_type = std::env::var(AWS_LAMBDA_INITIALIZATION_TYPE).ok();
            self.events = default_events(init_type.as_deref());
        }
        let endpoint = match &self.runtime_api {
            Some(value) => Endpoint::parse(value)?,
            None => Endpoint::from_env()?,
        };
        let name = match &self.name {
            Some(n) => n.clone(),
            None => default_name()?,
        };
        Ok((name, endpoint))
    }

    /// Resolves the settings and builds the register request: the step
    /// before either flavour sends it. Returns the name, where to send the
    /// request, and the request.
    pub(crate) fn register_request(&mut self) -> Result<(String, Endpoint, ApiRequest), Error> {
        let (name, endpoint) = self.resolve()?;
        let req = request::register(&name, &self.events, self.account_id)?;
        tracing::debug!(extension = %name, events = ?self.events, "registering");
        Ok((name, endpoint, req))
    }
}

/// What a successful registration gave: the identifier, Lambda's answer,
/// and what was registered.
///
/// Both flavours' registered handles ([`Registered`](crate::Registered) and,
/// with feature `tokio`, `tokio::AsyncRegistered`) hold one next to their
/// transport and dereference to it, so `registered.id()`,
/// `registered.response()`, `registered.name()` and `registered.events()`
/// work on either.
///
/// # Examples
/// ```no_run
/// use lext_extension::{Extension, Registration};
/// fn describe(registration: &Registration) -> String {
///     format!("{} ({})", registration.name(), registration.response().function_name)
/// }
/// let registered = Extension::builder().register()?;
/// eprintln!("{} registered as {}", describe(&registered), registered.id());
/// # Ok::<(), lext_extension::Error>(())
/// ```
#[derive(Debug)]
pub struct Registration {
    /// The identifier Lambda assigned; every later request carries it.
    id: ExtensionId,
    /// The register response (function name, version, handler, account id).
    response: RegisterResponse,
    /// The name the extension registered with.
    name: String,
    /// The events the extension registered for.
    events: Vec<EventType>,
}

impl Registration {
    /// The identifier Lambda assigned.
    pub fn id(&self) -> &ExtensionId {
        &self.id
    }

    /// The register response (function name, version, handler, account id).
    pub fn response(&self) -> &RegisterResponse {
        &self.response
    }

    /// The name the extension registered with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The events the extension registered for.
    pub fn events(&self) -> &[EventType] {
        &self.events
    }

    /// Reads the register answer of the extension `name`, registered for
    /// `events`.
    ///
    /// # Errors
    /// As [`request::registered`]: [`Error::Api`] for a refusal,
    /// [`Error::Protocol`] for an answer without an identifier or body.
    pub(crate) fn from_answer(
        name: String,
        events: Vec<EventType>,
        answer: &ApiResponse,
    ) -> Result<Self, Error> {
        let (response, id) = request::registered(answer)?;
        tracing::debug!(extension = %name, id = %id, "registered");
        Ok(Self {
            id,
            response,
            name,
            events,
        })
    }
}

/// Why an event loop ([`Registered::run`](crate::Registered::run), or
/// `tokio::AsyncRegistered::run`) returned without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The SHUTDOWN event was received and handled.
    Shutdown(ShutdownEvent),
    /// SIGTERM or SIGINT arrived.
    Signal(Signal),
}

/// The events to register for when the caller did not choose: INVOKE and
/// SHUTDOWN, except on Lambda Managed Instances
/// (`AWS_LAMBDA_INITIALIZATION_TYPE=lambda-managed-instances`), where one
/// environment serves concurrent invokes and an external extension asking
/// for INVOKE is refused with `Extension.InvalidEventType`.
pub(crate) fn default_events(initialization_type: Option<&str>) -> Vec<EventType> {
    if initialization_type == Some(INITIALIZATION_TYPE_MANAGED_INSTANCES) {
        vec![EventType::Shutdown]
    } else {
        vec![EventType::Invoke, EventType::Shutdown]
    }
}

/// The executable's file name, as Lambda launched it: the default name.
///
/// # Errors
/// [`Error::Config`] if no file name can be found or it is not UTF-8.
///
/// `argv[0]` first: Lambda (like the Go sample's `filepath.Base(os.Args[0])`)
/// names an extension after the path it executed, and `current_exe` would
/// resolve a symlink to its target's name. `current_exe` is the fallback
/// when `argv[0]` is missing.
pub fn default_name() -> Result<String, Error> {
    let from_argv = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_os_string()));
    let raw = match from_argv {
        Some(n) if !n.is_empty() => n,
        _ => std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string()))
            .ok_or_else(|| {
                Error::Config("cannot find the executable's file name; set a name".into())
            })?,
    };
    raw.into_string().map_err(|raw| {
        Error::Config(format!(
            "the executable's file name {raw:?} is not UTF-8; rename it or set a name"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let b = Extension::builder();
        assert_eq!(b.events, vec![EventType::Invoke, EventType::Shutdown]);
        assert!(!b.account_id);
        assert!(b.handle_signals);
        // The test binary's own file name.
        let name = default_name().unwrap();
        assert!(name.starts_with("lext_extension"), "{name}");
    }

    #[test]
    fn managed_instances_default_to_shutdown_only() {
        assert_eq!(
            default_events(None),
            [EventType::Invoke, EventType::Shutdown]
        );
        assert_eq!(
            default_events(Some("on-demand")),
            [EventType::Invoke, EventType::Shutdown]
        );
        assert_eq!(
            default_events(Some("lambda-managed-instances")),
            [EventType::Shutdown]
        );
        let b = Extension::builder().events([EventType::Invoke]);
        assert!(b.events_set);
    }

    #[test]
    fn explicit_api_is_validated() {
        let mut b = Extension::builder().runtime_api("nope").name("x");
        assert!(matches!(b.resolve(), Err(Error::Env { .. })));
        let (name, ep) = Extension::builder()
            .runtime_api("127.0.0.1:1")
            .name("x")
            .resolve()
            .unwrap();
        assert_eq!((name.as_str(), ep.authority()), ("x", "127.0.0.1:1"));
    }
}
