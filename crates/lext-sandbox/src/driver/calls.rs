//! API calls: each well-formed request from the router is an [`Input`] and
//! a channel for its answer. The lifecycle decides; the driver answers.
//!
//! Three kinds of answer:
//! - **at once**: `202`/`200` (or the refusal) before the effects run, so
//!   that the caller is not held up by what its call set off;
//! - **later**: the long polls (`/event/next`, `/invocation/next`), whose
//!   answer is an INVOKE, a SHUTDOWN or an invocation delivered by a later
//!   effect, maybe in this very batch;
//! - **after the hub**: a subscription the lifecycle accepted may still be
//!   refused by the telemetry hub (an extension mixing the two APIs).

use lext_protocol::extensions::RegisterResponse;
use tokio::sync::oneshot;

use super::Driver;
use crate::api::ApiReply;
use crate::events;
use crate::lifecycle::{Effect, ExtensionId, Input, Proc, Refusal};
use crate::marks::MarkKind;
use crate::ports::{Host, Telemetry};
use crate::stream;

type Reply = oneshot::Sender<ApiReply>;

impl<H: Host, T: Telemetry> Driver<H, T> {
    /// Handles one API call.
    pub(super) fn api(&mut self, input: Input, reply: Reply) {
        match input {
            Input::Register { id, account_id, .. } => {
                let response = self.register_response(account_id);
                self.answer_now(input, reply, ApiReply::Registered { id, response });
            }
            Input::ExtensionNext { id } => self.long_poll(input, reply, Waiter::Extension(id)),
            Input::RuntimeNext => self.long_poll(input, reply, Waiter::Runtime),
            Input::ExtensionInitError { id, ref error_type }
            | Input::ExtensionExitError { id, ref error_type } => {
                let init = matches!(input, Input::ExtensionInitError { .. });
                if let Some((_, name, _)) = self.lc.extension(id) {
                    tracing::info!(extension = ?name, %error_type, init, "extension reported an error");
                }
                self.answer_now(input, reply, ApiReply::Accepted);
            }
            Input::Subscribe { .. } => self.subscribe(input, reply),
            Input::RuntimeResponse { too_large, .. } => {
                // An oversized response: the lifecycle fails the invoke (the
                // caller gets Function.ResponseSizeTooLarge) and the runtime
                // itself gets 413 (RIE `internal/lambda/rapi/handler/invocationresponse.go`).
                let ok = if too_large {
                    ApiReply::Refused(Refusal::PayloadTooLarge)
                } else {
                    ApiReply::Accepted
                };
                self.answer_now(input, reply, ok);
            }
            Input::RuntimeStreamStart { .. } => self.stream_start(input, reply),
            Input::RuntimeStreamEnd {
                too_large,
                produced_bytes,
                ..
            } => {
                // Past the limit the runtime gets 413, as for a buffered
                // response; the caller's stream already ended with
                // Function.ResponseSizeTooLarge.
                let ok = if too_large {
                    ApiReply::Refused(Refusal::PayloadTooLarge)
                } else {
                    ApiReply::Accepted
                };
                if let Some(c) = self.current.as_mut() {
                    c.produced_bytes = Some(produced_bytes);
                }
                self.answer_now(input, reply, ok);
            }
            Input::RuntimeError { .. } | Input::RuntimeInitError { .. } => {
                self.answer_now(input, reply, ApiReply::Accepted);
            }
            // The router makes only the inputs above.
            other => {
                tracing::warn!(input = ?other, "not an API call");
                let _ = reply.send(ApiReply::Refused(Refusal::Internal));
            }
        }
    }

    /// The body of a successful registration.
    fn register_response(&self, account_id: bool) -> RegisterResponse {
        RegisterResponse {
            function_name: self.function.name.clone(),
            function_version: self.function.version.clone(),
            handler: self.function.handler.clone(),
            account_id: account_id.then(|| self.function.account_id.clone()),
        }
    }

    /// For calls answered at once: the refusal, or `ok` then the effects.
    fn answer_now(&mut self, input: Input, reply: Reply, ok: ApiReply) {
        match self.lc.transition(input, super::now()) {
            // A refused call that still changes the environment.
            Ok(mut effects) if matches!(effects.first(), Some(Effect::Refuse(_))) => {
                if let Effect::Refuse(r) = effects.remove(0) {
                    let _ = reply.send(ApiReply::Refused(r));
                }
                self.apply_all(effects);
            }
            Ok(effects) => {
                let _ = reply.send(ok);
                self.apply_all(effects);
            }
            Err(r) => {
                let _ = reply.send(ApiReply::Refused(r));
            }
        }
    }

    /// A streamed response starts: if the lifecycle accepts it, the channel
    /// to the caller is made, its sending end goes to the handler with the
    /// rules for this caller, and its receiving end to the caller (by the
    /// `Outcome::Stream` the effects carry).
    fn stream_start(&mut self, input: Input, reply: Reply) {
        match self.lc.transition(input, super::now()) {
            Ok(effects) => {
                let streaming = self.current.as_ref().is_some_and(|c| c.streaming);
                let (tx, rx) = tokio::sync::mpsc::channel(stream::CHUNKS_IN_FLIGHT);
                self.pending_stream = Some(rx);
                let _ = reply.send(ApiReply::Stream(stream::StreamSink {
                    tx,
                    // A buffered caller (`Invoke`) gets at most the
                    // buffered limit; the bandwidth rule is the streaming
                    // API's.
                    limit: if streaming {
                        stream::MAX_STREAM_SIZE
                    } else {
                        lext_protocol::MAX_PAYLOAD_SIZE
                    },
                    rate_limited: streaming && self.stream_rate_limit,
                }));
                self.apply_all(effects);
                self.pending_stream = None;
            }
            Err(r) => {
                let _ = reply.send(ApiReply::Refused(r));
            }
        }
    }

    /// For long polls: the refusal, or the waiter is parked and the effects
    /// run (one of them may answer it at once).
    fn long_poll(&mut self, input: Input, reply: Reply, waiter: Waiter) {
        match self.lc.transition(input, super::now()) {
            Ok(effects) => {
                match waiter {
                    Waiter::Extension(id) => {
                        crate::marks::tell_extension(&*self.sink, &self.lc, id, MarkKind::Next);
                        self.ext_waiters.insert(id, reply);
                    }
                    Waiter::Runtime => {
                        crate::marks::tell(&*self.sink, &self.lc, Proc::Runtime, MarkKind::Next);
                        self.runtime_waiters.push_back(reply);
                    }
                }
                self.apply_all(effects);
            }
            Err(r) => {
                let _ = reply.send(ApiReply::Refused(r));
            }
        }
    }

    /// A subscription: the lifecycle decides first (unknown id, closed),
    /// then the hub (mixed APIs); the `TELEMETRY` line follows acceptance.
    fn subscribe(&mut self, input: Input, reply: Reply) {
        let effects = match self.lc.transition(input, super::now()) {
            Ok(effects) => effects,
            Err(r) => {
                let _ = reply.send(ApiReply::Refused(r));
                return;
            }
        };
        let mut rest = Vec::with_capacity(effects.len());
        for effect in effects {
            let Effect::Subscribe { name, api, request } = effect else {
                rest.push(effect);
                continue;
            };
            if let Err(r) = self.telemetry.subscribe(&name, api, &request) {
                let _ = reply.send(ApiReply::Refused(r));
                return;
            }
            let out = &mut super::effects::out(
                &self.sink,
                &mut self.telemetry,
                self.function.logging,
                self.tenant.as_deref(),
                self.managed,
            );
            events::subscribed(out, &name, api, &request.types);
        }
        let _ = reply.send(ApiReply::Subscribed);
        self.apply_all(rest);
    }
}

/// Who waits in a long poll.
enum Waiter {
    Extension(ExtensionId),
    Runtime,
}
