//! Init: launching the extensions and the runtime, the Extensions API calls
//! Init waits for, and the end of Init.
//!
//! Init has three parts, in this order: extensions, runtime, function code.
//! It ends when the runtime and every extension have called their `next`
//! (AWS: Lambda execution environment lifecycle, "Init phase"). rapid runs
//! it in `doRuntimeDomainInit` and `doInitExtensions` (RIE:
//! internal/lambda/rapid/handlers.go). The pages and the repository are
//! listed in the module docs of `lifecycle`.

use lext_protocol::error::sanitize_runtime_error_type;
use lext_protocol::extensions::EventType;
use lext_protocol::telemetry::{Api, Phase, SubscribeRequest};

use super::{
    Effect, Extension, ExtensionId, ExtensionState, Fault, InitCtx, Kind, LaunchFailure, Lifecycle,
    Now, PendingInvoke, Refusal, RuntimeState, Stage, Step,
};

impl Lifecycle {
    /// Starts an Init: `Phase: init` when the driver starts, `Phase: invoke`
    /// when an invoke finds the environment down (after a reset, or before
    /// any Init) and Init re-runs inside it.
    pub(super) fn start_init(
        &mut self,
        phase: Phase,
        pending: Option<PendingInvoke>,
        now: Now,
    ) -> Vec<Effect> {
        if !matches!(self.stage, Stage::Down) {
            // Already initialized or on the way: nothing to do. Init runs
            // once per environment, and again only once a reset has taken
            // every process away (rapid's `reinitialize` clears `initDone`,
            // RIE: internal/lambda/rapid/handlers.go).
            return Vec::new();
        }
        // A new generation, like rapid's `runtimeDomainGeneration`: exits
        // of the previous Init's processes, which may still arrive, no
        // longer count.
        self.generation += 1;
        // The first fatal error is per Init (rapid's `reinitialize` deletes
        // it), and identifiers die with the environment: an extension of the
        // previous Init must register again.
        self.fatal = None;
        self.fault_detail = None;
        self.by_id.clear();
        self.runtime = RuntimeState::NotStarted;
        self.runtime_alive = false;
        // Open until the runtime's first /next.
        self.registration_open = true;
        self.frozen = false;
        // Init is limited to 10 s. When that is not enough, Lambda retries
        // Init at the first invoke under the function timeout (AWS: Lambda
        // execution environment lifecycle, "Init phase"), so a re-run has no
        // limit of its own: it shares the invoke's, counted from the
        // invoke's arrival.
        let deadline = match (&pending, &phase) {
            (Some(p), Phase::Invoke) => p.started.instant + self.config.function_timeout,
            _ => now.instant + self.config.init_timeout,
        };
        self.stage = Stage::Init(InitCtx {
            phase: phase.clone(),
            started: now.instant,
            deadline,
            pending_invoke: pending,
        });
        // Every file of /opt/extensions is an external extension named after
        // its file (RIE: internal/lambda/rapid/handlers.go
        // `doInitExtensions` uses `path.Base`); the driver lists them in name
        // order, the order rapid reads the directory in.
        self.extensions = self
            .config
            .extensions
            .iter()
            .map(|name| Extension {
                name: name.clone(),
                kind: Kind::External,
                id: None,
                state: ExtensionState::Started,
                invoke: false,
                shutdown: false,
                alive: false,
                launch_failure: None,
                shutdown_pending: false,
                shutdown_sent: false,
            })
            .collect();
        let mut fx = vec![Effect::InitStarted { phase }];
        let mut too_many = false;
        for (index, ext) in self.extensions.iter_mut().enumerate() {
            if index < lext_protocol::MAX_EXTENSIONS {
                ext.alive = true;
                fx.push(Effect::LaunchExtension { index });
            } else {
                // At most 10 extensions (AWS: Extensions API): an 11th file
                // is never started; rapid marks it LaunchError with the
                // error type TooManyExtensions (RIE:
                // internal/lambda/rapid/handlers.go `doInitExtensions`,
                // internal/lambda/core/registrations.go `MaxAgentsAllowed`).
                ext.state = ExtensionState::LaunchError;
                ext.launch_failure = Some(LaunchFailure::TooManyExtensions);
                too_many = true;
            }
        }
        if too_many {
            // A launch error fails Init as Extension.LaunchError (rapid's
            // `agentLaunchError` stores it as the first fatal error).
            fx.extend(self.fatal_error(Fault::ExtensionLaunch, now));
        } else {
            // With no external extension there is nobody to wait for: the
            // runtime starts at once.
            fx.extend(self.maybe_start_runtime());
        }
        fx
    }

    /// External extensions could not be started: Init fails with
    /// Extension.LaunchError, and each extension's own line shows why
    /// (PermissionDenied, UnknownError) (RIE: internal/lambda/rapid/handlers.go
    /// `agentLaunchError`, internal/lambda/core/registrations.go
    /// `MapErrorToAgentInfoErrorType`). Every failure of the batch is marked
    /// before Init fails, so its summary shows each as LaunchError.
    pub(super) fn launch_failed(
        &mut self,
        failures: Vec<(usize, LaunchFailure)>,
        now: Now,
    ) -> Vec<Effect> {
        let mut any = false;
        for (index, failure) in failures {
            let Some(ext) = self.extensions.get_mut(index) else {
                continue;
            };
            if ext.state != ExtensionState::Started {
                // It did start and register: the report is stale.
                continue;
            }
            ext.state = ExtensionState::LaunchError;
            ext.launch_failure = Some(failure);
            // No process was ever started: nothing to wait for or to kill.
            ext.alive = false;
            any = true;
        }
        if !any {
            return Vec::new();
        }
        match self.stage {
            Stage::Init(_) => self.fatal_error(Fault::ExtensionLaunch, now),
            // A second extension that failed to launch, reported after the
            // first one's failure started the reset: that reset must not
            // wait for a process that never existed.
            Stage::Shutdown(_) => self.maybe_finish_shutdown(),
            _ => Vec::new(),
        }
    }

    /// The runtime could not be started (no bootstrap, or not executable):
    /// Init fails with Runtime.InvalidEntrypoint (RIE:
    /// internal/lambda/rapid/handlers.go `doRuntimeDomainInit`).
    pub(super) fn runtime_launch_failed(&mut self, message: String, now: Now) -> Vec<Effect> {
        // The fault line carries the OS error; during Init `fatal_error`
        // prints no fault line of its own, so this is the only one.
        let mut fx = vec![Effect::FaultLine {
            message,
            fault: Fault::RuntimeLaunch,
        }];
        self.runtime = RuntimeState::Exited;
        fx.extend(self.fatal_error(Fault::RuntimeLaunch, now));
        fx
    }

    /// Starts the runtime once no external extension is still `Started`.
    fn maybe_start_runtime(&mut self) -> Vec<Effect> {
        // Once per Init, and only while Init runs.
        if self.runtime != RuntimeState::NotStarted || !matches!(self.stage, Stage::Init(_)) {
            return Vec::new();
        }
        // "After each extension registers, Lambda starts the Runtime init
        // phase" (AWS: Extensions API); rapid waits in
        // `AwaitExternalAgentsRegistered` (RIE:
        // internal/lambda/rapid/handlers.go `doInitExtensions`). There is no
        // limit per extension: only the Init limit bounds the wait.
        let waiting = self
            .extensions
            .iter()
            .any(|e| e.kind == Kind::External && e.state == ExtensionState::Started);
        if waiting {
            return Vec::new();
        }
        self.runtime = RuntimeState::Started;
        self.runtime_alive = true;
        vec![Effect::StartRuntime]
    }

    /// `POST /extension/register`.
    pub(super) fn register(
        &mut self,
        id: ExtensionId,
        name: String,
        events: Vec<EventType>,
    ) -> Step {
        // Only INVOKE and SHUTDOWN reach here; the router refuses the rest.
        let invoke = events.contains(&EventType::Invoke);
        let shutdown = events.contains(&EventType::Shutdown);
        // The name an external extension registers with must be its file
        // name (AWS: Extensions API): that is how rapid tells which launched
        // file is calling (RIE: internal/lambda/rapi/handler/agentregister.go).
        let external = self
            .extensions
            .iter()
            .position(|e| e.kind == Kind::External && e.name == name);
        if let Some(index) = external {
            let ext = &mut self.extensions[index];
            // Only a Started extension may register, and only during Init:
            // a second register, or one after a reset began, is a refused
            // transition to Registered (RIE:
            // internal/lambda/core/externalagent_states.go).
            if ext.state != ExtensionState::Started || !matches!(self.stage, Stage::Init(_)) {
                return Err(Refusal::ExtensionState {
                    from: ext.state,
                    to: ExtensionState::Registered,
                    who: name,
                });
            }
            ext.state = ExtensionState::Registered;
            ext.id = Some(id);
            ext.invoke = invoke;
            ext.shutdown = shutdown;
            self.by_id.insert(id, index);
            // It may have been the last one the runtime was waiting for.
            return Ok(self.maybe_start_runtime());
        }
        // No launched file has this name: rapid takes the caller for an
        // internal extension, one that runs inside the runtime process
        // (RIE: internal/lambda/rapi/handler/agentregister.go).
        //
        // Internal extensions register while the runtime initialises:
        // registration closes at the runtime's first /next (AWS: Extensions
        // API; RIE: internal/lambda/core/registrations.go `TurnOff`, called
        // by internal/lambda/rapid/handlers.go `doRuntimeDomainInit`).
        if !self.registration_open || !matches!(self.stage, Stage::Init(_)) {
            return Err(Refusal::RegistrationClosed);
        }
        // An internal extension ends with the runtime process, so it cannot
        // be sent SHUTDOWN (AWS: Extensions API; RIE:
        // internal/lambda/core/agentutil.go).
        if shutdown {
            return Err(Refusal::ShutdownForInternal);
        }
        // Names identify extensions in platform lines and subscriptions: a
        // second one is refused (RIE: internal/lambda/core/registrations.go
        // `CreateInternalAgent`, internal/lambda/core/agentsmap.go).
        if self.extensions.iter().any(|e| e.name == name) {
            return Err(Refusal::NameTaken);
        }
        // The limit of 10 counts internal and external extensions together
        // (AWS: Extensions API; RIE: internal/lambda/core/registrations.go).
        if self.extensions.len() >= lext_protocol::MAX_EXTENSIONS {
            return Err(Refusal::TooManyExtensions);
        }
        // No process of its own: nothing to signal, nothing to reap.
        self.by_id.insert(id, self.extensions.len());
        self.extensions.push(Extension {
            name,
            kind: Kind::Internal,
            id: Some(id),
            state: ExtensionState::Registered,
            invoke,
            shutdown: false,
            alive: false,
            launch_failure: None,
            shutdown_pending: false,
            shutdown_sent: false,
        });
        Ok(Vec::new())
    }

    /// The extension behind an identifier, for `event/next` and the
    /// subscribe endpoints (`Unknown extension <id>`, RIE:
    /// internal/lambda/rapi/handler/agentnext.go).
    fn known(&self, id: ExtensionId) -> Result<usize, Refusal> {
        self.by_id
            .get(&id)
            .copied()
            .ok_or(Refusal::UnknownExtension(id))
    }

    /// [`known`](Self::known) for `init/error` and `exit/error`, which
    /// answer an unknown identifier with their own message
    /// (`Unknown Lambda-Extension-Identifier`, RIE:
    /// internal/lambda/rapi/handler/agentiniterror.go and
    /// agentexiterror.go).
    pub(super) fn known_reporter(&self, id: ExtensionId) -> Result<usize, Refusal> {
        self.by_id
            .get(&id)
            .copied()
            .ok_or(Refusal::UnknownIdentifier)
    }

    /// `GET /extension/event/next`: the extension is done with Init or with
    /// its event, and waits for the next one.
    pub(super) fn extension_next(&mut self, id: ExtensionId, now: Now) -> Step {
        let index = self.known(id)?;
        let ext = &mut self.extensions[index];
        // Ready is reached from Registered (end of its Init) or Running (end
        // of an event); from Ready itself it is a second concurrent call,
        // and after init/exit error the extension is expected to exit, not
        // to wait (RIE: internal/lambda/core/externalagent_states.go).
        if !matches!(
            ext.state,
            ExtensionState::Registered | ExtensionState::Running
        ) {
            return Err(Refusal::ExtensionState {
                from: ext.state,
                to: ExtensionState::Ready,
                who: id.to_string(),
            });
        }
        ext.state = ExtensionState::Ready;
        if ext.shutdown_pending {
            // SHUTDOWN waited for this extension to finish its invoke: its
            // next /event/next is the first one that can carry the event,
            // with the deadline the shutdown started with.
            ext.shutdown_pending = false;
            ext.shutdown_sent = true;
            ext.state = ExtensionState::Running;
            if let Stage::Shutdown(s) = &self.stage {
                return Ok(vec![Effect::DeliverShutdown {
                    id,
                    reason: s.reason.clone(),
                    deadline_ms: s.deadline_ms,
                }]);
            }
        }
        // This next may be the last one Init or the invoke waits for.
        Ok(match self.stage {
            Stage::Init(_) => self.maybe_finish_init(now),
            Stage::Invoke(_) => self.maybe_finish_invoke(now),
            _ => Vec::new(),
        })
    }

    /// `POST /extension/init/error`: the extension could not initialise.
    pub(super) fn extension_init_error(&mut self, id: ExtensionId, now: Now) -> Step {
        let index = self.known_reporter(id)?;
        let ext = &mut self.extensions[index];
        match ext.state {
            // A repeated init/error changes nothing: the first one already
            // failed Init (RIE: internal/lambda/core/externalagent_states.go
            // allows InitError from InitError).
            ExtensionState::InitError => Ok(Vec::new()),
            // Only before its first /event/next, during Init: that is the
            // Init it reports on. Init fails with Extension.InitError, and
            // the extension should then exit (AWS: Extensions API; RIE:
            // internal/lambda/rapi/handler/agentiniterror.go).
            ExtensionState::Registered if matches!(self.stage, Stage::Init(_)) => {
                ext.state = ExtensionState::InitError;
                Ok(self.fatal_error(Fault::ExtensionInit, now))
            }
            from => Err(Refusal::ExtensionState {
                from,
                to: ExtensionState::InitError,
                who: id.to_string(),
            }),
        }
    }

    /// `PUT /telemetry` or `PUT /logs` with a valid body.
    pub(super) fn subscribe(
        &mut self,
        id: ExtensionId,
        api: Api,
        request: Result<Box<SubscribeRequest>, String>,
    ) -> Step {
        let index = self.known(id)?;
        // Subscriptions are accepted during Init only (AWS: Telemetry API):
        // rapid turns both subscription APIs off when Init ends (RIE:
        // internal/lambda/rapid/handlers.go `doRuntimeDomainInit`) and then
        // answers the closed refusal (internal/lambda/rapi/handler/runtimelogs.go).
        if !matches!(self.stage, Stage::Init(_)) {
            return Err(Refusal::SubscriptionClosed(api));
        }
        // Only then the body: a known caller in Init with a bad request
        // gets the API's validation error.
        Ok(vec![Effect::Subscribe {
            name: self.extensions[index].name.clone(),
            api,
            request: request
                .and_then(|r| self.managed_schema(r))
                .map_err(|message| Refusal::Validation { api, message })?,
        }])
    }

    /// `POST /runtime/init/error`: the runtime could not initialise.
    pub(super) fn runtime_init_error(&mut self, error_type: Option<String>, now: Now) -> Step {
        // Only from Started, before its first /next: after that the
        // runtime's Init is over (RIE: internal/lambda/core/states.go,
        // only `RuntimeStartedState` has `InitError`).
        if self.runtime != RuntimeState::Started || !matches!(self.stage, Stage::Init(_)) {
            return Err(Refusal::RuntimeState {
                from: self.runtime,
                to: RuntimeState::InitError,
            });
        }
        self.runtime = RuntimeState::InitError;
        // The type is recorded as rapid records it: sanitised, with
        // Runtime.Unknown for a missing or malformed one (RIE:
        // internal/lambda/rapi/handler/initerror.go,
        // internal/lambda/fatalerror/fatalerror.go).
        let t = sanitize_runtime_error_type(error_type.as_deref().unwrap_or("")).to_owned();
        Ok(self.fatal_error(Fault::RuntimeInit(t), now))
    }

    /// Ends Init when the runtime and every extension are ready.
    pub(super) fn maybe_finish_init(&mut self, now: Now) -> Vec<Effect> {
        let Stage::Init(init) = &self.stage else {
            return Vec::new();
        };
        // Init is over when the runtime and every extension, internal ones
        // included, have called next (AWS: Lambda execution environment
        // lifecycle, "Init phase"); rapid waits for the runtime's first
        // /next, then for every registered extension (RIE:
        // internal/lambda/rapid/handlers.go `doRuntimeDomainInit`). A failed
        // Init must not complete as well.
        if self.runtime != RuntimeState::Ready || self.fatal.is_some() {
            return Vec::new();
        }
        if self
            .extensions
            .iter()
            .any(|e| e.state != ExtensionState::Ready)
        {
            return Vec::new();
        }
        let duration = now.instant.saturating_duration_since(init.started);
        if self.is_managed() {
            // Managed Instances: serving from now on, nothing frozen, no
            // invoke pending (Init ran eagerly at start).
            self.stage = Stage::Serving;
            return vec![Effect::InitDone {
                duration,
                extensions: self.extensions.iter().map(Extension::summary).collect(),
            }];
        }
        let pending = match std::mem::replace(&mut self.stage, Stage::Idle) {
            Stage::Init(init) => init.pending_invoke,
            _ => None,
        };
        // The first REPORT after this Init shows it as Init Duration.
        self.cold_start = Some(duration);
        let mut fx = vec![Effect::InitDone {
            duration,
            extensions: self.extensions.iter().map(Extension::summary).collect(),
        }];
        match pending {
            // A phase-invoke Init goes straight on to the invoke that
            // started it (RIE: internal/lambda/rapid/handlers.go `doInvoke`
            // runs the Init inline): no idle moment, so no freeze.
            Some(p) => fx.extend(self.start_invoke(p, now)),
            // Lambda freezes the environment once the runtime and every
            // extension are done and no event is pending (AWS: Lambda
            // execution environment lifecycle).
            None => fx.extend(self.freeze()),
        }
        fx
    }
}
