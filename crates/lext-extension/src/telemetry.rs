//! Telemetry API subscriptions: what both flavours' listeners share.
//!
//! This module owns the subscription settings ([`TelemetryConfig`]), the
//! batch type extensions receive ([`TelemetryBatch`]), the subscribe request
//! and the reading of its answer, turning a delivered body into a batch, and
//! the rules of waiting for the last `platform.report` after SHUTDOWN
//! ([`REPORT_WAIT_MARGIN`], [`ReportWatch`]), which both flavours'
//! `wait_for_report` follow.
//! The listeners themselves live with their flavour: `blocking::telemetry`
//! (std threads) and `tokio::telemetry` (tokio tasks), on the same request
//! parser and answers. Both follow the rules listed
//! on [`TelemetryConfig`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lext_protocol::extensions::ShutdownEvent;
use lext_protocol::telemetry::{
    decode_batch, BatchFailure, Buffering, LogType, Record, SubscribeRequest, TelemetryEvent,
    DEFAULT_TELEMETRY_SCHEMA, SANDBOX_HOST,
};

use crate::error::Error;
use crate::http::{ApiRequest, ApiResponse};
use crate::request::{self, ExtensionId, SubscribeOutcome};

/// Largest batch body accepted: Lambda sends up to about twice `maxBytes`
/// (at most 1 MiB) plus envelope overhead; 8 MiB leaves a wide margin.
pub(crate) const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// How long a delivery connection may stay idle before it is closed.
pub(crate) const IDLE: Duration = Duration::from_secs(60);

/// What a listener's read buffer grows by when it is full and the next
/// request's size is not known yet.
const READ_CHUNK: usize = 64 * 1024;

/// Makes room in a listener's read buffer for the next read, which goes
/// straight into it (no intermediate chunk): a full buffer grows by
/// [`READ_CHUNK`]; one that `http::take_request` sized for the rest of a
/// request is left as it is.
pub(crate) fn make_room(buf: &mut Vec<u8>) {
    if buf.capacity() == buf.len() {
        buf.reserve(READ_CHUNK);
    }
}

/// Both listeners' answer to a delivery, the connection kept open.
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";

/// Both listeners' answer to a delivery after which they close the
/// connection (the client asked to, or the stream could not be parsed).
pub(crate) const ANSWER_AND_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nOK";

/// The answer to a delivery: 200 whatever the batch held (see
/// [`TelemetryConfig`]), closing the connection if the client asked to.
pub(crate) fn answer(close: bool) -> &'static [u8] {
    if close {
        ANSWER_AND_CLOSE
    } else {
        ANSWER
    }
}

/// What to subscribe to and where to listen.
///
/// Given to `subscribe_telemetry` of either flavour
/// ([`Registered::subscribe_telemetry`](crate::Registered::subscribe_telemetry)
/// or `tokio::AsyncRegistered::subscribe_telemetry`), whose listeners follow
/// the same rules:
///
/// - bind first (by default to the address of `sandbox.localdomain`, as
///   AWS's samples bind that name: Lambda delivers to it, and binding it
///   rather than `0.0.0.0` keeps the port off other interfaces; the address
///   is read from `/etc/hosts`, else asked of the system resolver, else, as
///   on a development machine where nothing defines the name, 127.0.0.1),
///   start serving, and only then subscribe with the URI
///   `http://sandbox.localdomain:<port>`, so events Lambda delivers at once
///   (the init replay) find a listener, and a port clash is an error returned
///   to the caller before anything is subscribed;
/// - decode each batch into lext-protocol's typed events (unknown event types
///   are kept by the protocol's catch-all);
/// - answer 200 once the batch is handed over, even when it could not be
///   parsed: a non-2xx answer makes Lambda redeliver the same batch again and
///   again (the official crate answers 400 here). An unparsable batch is not
///   dropped silently; it arrives as [`TelemetryBatch::Unparsed`];
/// - hand batches over through a bounded channel (see
///   [`TelemetryConfig::capacity`]): while the extension is not reading, the
///   answer waits, and Lambda's own buffering and drop reporting
///   (`platform.logsDropped`) take over, as AWS designed it.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    types: Vec<LogType>,
    buffering: Option<Buffering>,
    schema_version: String,
    /// `None`: the address of `sandbox.localdomain`, looked up at bind time.
    bind: Option<IpAddr>,
    port: u16,
    pub(crate) capacity: usize,
}

impl Default for TelemetryConfig {
    /// `platform` and `function` events, Lambda's default buffering, the
    /// newest schema version, the address of `sandbox.localdomain`
    /// (`/etc/hosts` first, then the system resolver, 127.0.0.1 where neither
    /// defines it) on an ephemeral port (the URI sent carries whatever port
    /// was bound), room for 64 undelivered batches.
    fn default() -> Self {
        Self {
            types: vec![LogType::Platform, LogType::Function],
            buffering: None,
            schema_version: DEFAULT_TELEMETRY_SCHEMA.to_owned(),
            bind: None,
            port: 0,
            capacity: 64,
        }
    }
}

impl TelemetryConfig {
    /// The event types to receive (`platform`, `function`, `extension`).
    pub fn types(mut self, types: impl IntoIterator<Item = LogType>) -> Self {
        self.types = types.into_iter().collect();
        self
    }

    /// Batching limits (validated against Lambda's ranges at subscribe).
    pub fn buffering(mut self, buffering: Buffering) -> Self {
        self.buffering = Some(buffering);
        self
    }

    /// The `schemaVersion` to subscribe with.
    pub fn schema_version(mut self, version: impl Into<String>) -> Self {
        self.schema_version = version.into();
        self
    }

    /// The address to bind, instead of the address of `sandbox.localdomain`
    /// (which is then not looked up at all). Use `0.0.0.0` only where the platform delivers from
    /// outside the environment (SAM local).
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.bind = Some(ip);
        self
    }

    /// The port to listen on (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// How many batches may wait for the extension before the listener
    /// holds its answers back (at least 1).
    pub fn capacity(mut self, batches: usize) -> Self {
        self.capacity = batches.max(1);
        self
    }
}

/// Where the name `sandbox.localdomain` is looked up first.
const HOSTS_FILE: &str = "/etc/hosts";

/// The IPv4 address of `sandbox.localdomain`: from `/etc/hosts`, else from
/// the system resolver, else 127.0.0.1.
///
/// Lambda delivers batches to the subscriber's URI host, `sandbox.localdomain`,
/// so a listener bound to that name's address receives them wherever the
/// platform points the name (AWS's samples bind the name for this reason).
/// Inside `lext run` the name is loopback in the environment's own
/// `/etc/hosts`. Where nothing defines it, loopback is the address a local
/// emulator delivers to.
///
/// The file is read directly first: where it names the host (as in `lext
/// run`), that costs no resolver modules and no DNS query. Where it does
/// not, or cannot be read, the system resolver (`getaddrinfo`, search
/// domains included) is asked, as an environment may define the name there
/// instead; on a machine where nothing defines it, that costs a DNS query
/// (and its timeouts where no name server answers) before loopback.
fn sandbox_address() -> IpAddr {
    let hosts = std::fs::read_to_string(HOSTS_FILE).unwrap_or_else(|err| {
        tracing::debug!(error = %err, "cannot read {HOSTS_FILE}; asking the resolver");
        String::new()
    });
    sandbox_address_from(&hosts, |host| {
        use std::net::ToSocketAddrs;
        match (host, 0).to_socket_addrs() {
            Ok(addrs) => addrs.map(|addr| addr.ip()).collect(),
            Err(err) => {
                tracing::debug!(host, error = %err, "does not resolve");
                Vec::new()
            }
        }
    })
}

/// The fallback order of [`sandbox_address`], given the contents of the
/// hosts file and a resolver (the addresses it gives a name, none where it
/// does not resolve): the file's IPv4 address for `sandbox.localdomain`;
/// else, and only then asked, the resolver's first IPv4 address; else
/// 127.0.0.1.
fn sandbox_address_from(hosts: &str, resolve: impl FnOnce(&str) -> Vec<IpAddr>) -> IpAddr {
    if let Some(addr) = hosts_address(hosts, SANDBOX_HOST) {
        return addr;
    }
    resolve(SANDBOX_HOST)
        .into_iter()
        .find(IpAddr::is_ipv4)
        .unwrap_or_else(|| {
            tracing::debug!(host = SANDBOX_HOST, "not defined; binding 127.0.0.1");
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        })
}

/// The first IPv4 address that `hosts` (in the format of `/etc/hosts`:
/// an address, then names, `#` to the end of a line a comment) gives `name`.
fn hosts_address(hosts: &str, name: &str) -> Option<IpAddr> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let addr: Ipv4Addr = fields.next()?.parse().ok()?;
        fields
            .any(|alias| alias.eq_ignore_ascii_case(name))
            .then_some(IpAddr::V4(addr))
    })
}

/// One POSTed batch, as the extension receives it.
#[derive(Debug)]
#[non_exhaustive]
pub enum TelemetryBatch {
    /// A JSON array of events. Elements that did not decode are listed in
    /// `failures` with their raw JSON; the others are in `events`.
    Events {
        /// The decoded events, in order.
        events: Vec<TelemetryEvent>,
        /// Elements that did not decode.
        failures: Vec<BatchFailure>,
    },
    /// A body that is not a JSON array (or could not be read). It was
    /// answered with 200 so that Lambda does not redeliver it forever.
    Unparsed {
        /// Why it could not be parsed.
        error: String,
        /// The raw body (empty if it could not be read).
        body: Vec<u8>,
    },
}

impl TelemetryConfig {
    /// The address to bind.
    pub(crate) fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind.unwrap_or_else(sandbox_address), self.port)
    }

    /// The subscription body for a listener bound to `port`.
    pub(crate) fn subscribe_request(&self, port: u16) -> SubscribeRequest {
        let mut body = SubscribeRequest::http(self.types.clone(), port);
        body.schema_version = Some(self.schema_version.clone());
        body.buffering = self.buffering;
        body
    }

    /// The subscribe request for extension `id` with a listener bound to
    /// `port`, and the destination URI it carries
    /// (`http://sandbox.localdomain:<port>`), built before the listener
    /// starts serving so an invalid subscription starts nothing.
    ///
    /// # Errors
    /// [`Error::Config`] if the subscription is outside Lambda's limits.
    pub(crate) fn subscription(
        &self,
        id: &ExtensionId,
        port: u16,
    ) -> Result<(ApiRequest, String), Error> {
        let body = self.subscribe_request(port);
        let uri = body.destination.uri.clone().unwrap_or_default();
        Ok((request::subscribe_telemetry(id, &body)?, uri))
    }
}

/// The error for a listener that could not be bound at `addr`.
pub(crate) fn listener_error(addr: SocketAddr) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Listener {
        addr: addr.to_string(),
        source,
    }
}

/// Interprets Lambda's answer to the subscription; a local emulator that
/// has no Telemetry API is a warning, not an error.
///
/// # Errors
/// As [`request::subscribed`]: [`Error::Api`] if Lambda refuses.
pub(crate) fn subscribed(answer: &ApiResponse) -> Result<SubscribeOutcome, Error> {
    let outcome = request::subscribed(answer)?;
    if let SubscribeOutcome::NotSupported(message) = &outcome {
        tracing::warn!(%message, "the Telemetry API is not supported here (local emulator)");
    }
    Ok(outcome)
}

/// Turns a delivered body (or the reason it could not be read) into the
/// batch handed to the extension, logging what was not decoded.
pub(crate) fn to_batch(body: Result<Vec<u8>, String>) -> TelemetryBatch {
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "telemetry batch could not be read; reporting it");
            return TelemetryBatch::Unparsed {
                error,
                body: Vec::new(),
            };
        }
    };
    // The common case, every element an event: one pass from the bytes to
    // the typed events. Only a batch that fails it is decoded again, element
    // by element through a JSON tree (lext-protocol's `decode_batch`), so
    // that one bad element does not spoil the others. Both decode each
    // element with the same `Deserialize`, so a batch that passes gives the
    // same events either way; the tree costs about as much again in time,
    // and memory for a copy of every string.
    if let Ok(events) = serde_json::from_slice::<Vec<TelemetryEvent>>(&bytes) {
        return TelemetryBatch::Events {
            events,
            failures: Vec::new(),
        };
    }
    match decode_batch(&bytes) {
        Ok(decoded) => {
            if !decoded.failures.is_empty() {
                tracing::warn!(
                    failed = decoded.failures.len(),
                    "telemetry batch: some events did not decode"
                );
            }
            TelemetryBatch::Events {
                events: decoded.events,
                failures: decoded.failures,
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "telemetry batch is not a JSON array; reporting it");
            TelemetryBatch::Unparsed {
                error: e.to_string(),
                body: bytes,
            }
        }
    }
}

/// Time kept back from the SHUTDOWN deadline by `wait_for_report` (either
/// flavour's): Lambda kills the extension at the deadline, and after the wait
/// it still has to flush what it collected and exit.
pub const REPORT_WAIT_MARGIN: Duration = Duration::from_millis(300);

/// The instant `margin` before the SHUTDOWN event's deadline (`deadlineMs`,
/// Unix epoch milliseconds), on the monotonic clock; now if that has passed.
pub(crate) fn give_up_at(shutdown: &ShutdownEvent, margin: Duration) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_millis(shutdown.deadline_ms).saturating_sub(now);
    Instant::now() + left.saturating_sub(margin)
}

/// Which invoke's `platform.report` a subscription has seen last: every
/// batch handed to the extension passes through [`ReportWatch::saw`], so a
/// wait for a report that arrived before SHUTDOWN returns at once.
///
/// Lambda emits an invoke's `platform.report` once the invoke is over, that
/// is once every extension is back in `/event/next`, and delivers it with
/// the next batch: for the last invoke that batch can leave after SHUTDOWN
/// has been sent, within the shutdown budget in which extensions are
/// expected to flush what they collected
/// (<https://docs.aws.amazon.com/lambda/latest/dg/telemetry-api.html>).
#[derive(Debug, Default)]
pub(crate) struct ReportWatch {
    last: Option<String>,
}

impl ReportWatch {
    /// Notes the request id of the last `platform.report` in `batch`.
    pub(crate) fn saw(&mut self, batch: &TelemetryBatch) {
        if let TelemetryBatch::Events { events, .. } = batch {
            let last = events.iter().rev().find_map(|event| match &event.record {
                Record::Report(report) => Some(&report.request_id),
                _ => None,
            });
            if let Some(id) = last {
                self.last = Some(id.clone());
            }
        }
    }

    /// Whether the report of `request_id` has been seen (the last one seen).
    pub(crate) fn has(&self, request_id: &str) -> bool {
        self.last.as_deref() == Some(request_id)
    }

    /// The request id of the last `platform.report` seen.
    pub(crate) fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }
}

/// Logs the warning of a wait that gave up, and returns `false`.
pub(crate) fn gave_up(request_id: &str, why: &str) -> bool {
    tracing::warn!(
        request_id,
        "no platform.report for the last invoke {why}; its telemetry is incomplete"
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_in_one_pass_and_a_bad_element_spoils_only_itself() {
        let good = br#"[{"time":"2026-11-25T07:38:00.000Z","type":"platform.start","record":{"requestId":"r1","version":"$LATEST","extraField":1}},{"time":"2026-11-25T07:38:00.001Z","type":"function","record":"hello"},{"time":"2026-11-25T07:38:00.002Z","type":"platform.future","record":{"x":[1,2]}}]"#;
        let TelemetryBatch::Events { events, failures } = to_batch(Ok(good.to_vec())) else {
            panic!("not events");
        };
        assert!(failures.is_empty());
        // The same events as the element-by-element decoding gives.
        assert_eq!(events, decode_batch(good).unwrap().events);
        assert_eq!(events.len(), 3);

        let one_bad = br#"[{"time":"t","type":"function","record":"a"},{"time":7,"type":"function","record":"b"},{"time":"t","type":"function","record":"c"}]"#;
        let TelemetryBatch::Events { events, failures } = to_batch(Ok(one_bad.to_vec())) else {
            panic!("not events");
        };
        assert_eq!(events.len(), 2);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].index, 1);

        assert!(matches!(
            to_batch(Ok(b"{}".to_vec())),
            TelemetryBatch::Unparsed { .. }
        ));
    }

    #[test]
    fn the_sandbox_address_comes_from_the_hosts_file() {
        let lambda_like = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n# 10.0.0.9 sandbox.localdomain\n169.254.100.1  sandbox.localdomain sandbox # the host\n";
        assert_eq!(
            hosts_address(lambda_like, SANDBOX_HOST),
            Some(IpAddr::V4(Ipv4Addr::new(169, 254, 100, 1)))
        );
        // Aliases match in any case; IPv6 lines are skipped.
        let mixed = "::1 SANDBOX.localdomain\n127.0.0.1 other Sandbox.LocalDomain\n";
        assert_eq!(
            hosts_address(mixed, SANDBOX_HOST),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        // Not named (or only as a comment, or as a prefix): no address.
        for hosts in [
            "",
            "127.0.0.1 localhost\n",
            "#127.0.0.1 sandbox.localdomain\n",
            "127.0.0.1 sandbox.localdomain.example\n",
            "not-an-address sandbox.localdomain\n",
        ] {
            assert_eq!(hosts_address(hosts, SANDBOX_HOST), None, "{hosts:?}");
        }
    }

    #[test]
    fn the_hosts_file_comes_first_then_the_resolver_then_loopback() {
        let in_file = IpAddr::V4(Ipv4Addr::new(169, 254, 100, 1));
        let resolved = IpAddr::V4(Ipv4Addr::new(169, 254, 79, 129));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let named = "127.0.0.1 localhost\n169.254.100.1 sandbox.localdomain sandbox\n";
        let unnamed = "127.0.0.1 localhost\n";

        // Named in the file: the resolver is never asked.
        let addr = sandbox_address_from(named, |_| panic!("the resolver was asked"));
        assert_eq!(addr, in_file);

        // Not in the file (or no file): the resolver, asked for the sandbox
        // host, gives its first IPv4 address; IPv6 ones are skipped.
        for hosts in [unnamed, ""] {
            let mut asked = Vec::new();
            let addr = sandbox_address_from(hosts, |host| {
                asked.push(host.to_owned());
                vec![v6, resolved, IpAddr::V4(Ipv4Addr::LOCALHOST)]
            });
            assert_eq!(addr, resolved, "{hosts:?}");
            assert_eq!(asked, [SANDBOX_HOST]);
        }

        // Neither defines an IPv4 address: loopback.
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(sandbox_address_from(unnamed, |_| Vec::new()), loopback);
        assert_eq!(sandbox_address_from(unnamed, |_| vec![v6]), loopback);
    }
}
