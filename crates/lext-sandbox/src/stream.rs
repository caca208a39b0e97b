//! Response streaming: a streamed response's bytes go from the Runtime API
//! handler to the Invoke API's caller through one bounded channel, outside
//! the driver, which only sees the response start and end.
//!
//! The Runtime API side ([`StreamSink::forward`]) reads the runtime's
//! chunked body frame by frame, applies the streaming limit and the
//! bandwidth rule, and reads the error trailers. The caller's side is a
//! [`Streamed`]: the chunks, and a verdict from the driver for an invoke that
//! fails without the stream's own end (a timeout, a crash).
//!
//! Limits (AWS: Response streaming,
//! <https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html>):
//! 200 MB per response, the first 6 MB at full speed and the rest at up to
//! 2 MB/s. lext counts MiB, as it does for the 6 MiB buffered limit.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::invocation::{InvokeResponse, InvokeResult};

/// The largest streamed response (200 MiB).
pub(crate) const MAX_STREAM_SIZE: usize = 200 * 1024 * 1024;

/// How much of a stream goes at full speed (6 MiB).
pub(crate) const BURST_BYTES: u64 = 6 * 1024 * 1024;

/// The bandwidth after the burst (2 MiB/s).
pub(crate) const RATE_BYTES_PER_SEC: u64 = 2 * 1024 * 1024;

/// Chunks in flight between the runtime and the caller: the runtime's
/// writes wait (back-pressure through its TCP connection) once the caller
/// is this far behind.
pub(crate) const CHUNKS_IN_FLIGHT: usize = 16;

/// How much of a body past the limit is read and thrown away, so that the
/// runtime finishes its write and gets its answer.
const DRAIN_LIMIT: u64 = 256 * 1024 * 1024;

/// The trailers a runtime reports a mid-stream error with (AWS: Custom
/// runtimes, "Response streaming",
/// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html#runtimes-custom-response-streaming>).
pub(crate) const TRAILER_ERROR_TYPE: &str = "Lambda-Runtime-Function-Error-Type";
/// The base64-encoded error body trailer.
pub(crate) const TRAILER_ERROR_BODY: &str = "Lambda-Runtime-Function-Error-Body";

/// An error that ends a stream: `InvokeComplete`'s `ErrorCode` and
/// `ErrorDetails`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamError {
    /// `ErrorCode`.
    pub(crate) code: String,
    /// `ErrorDetails`.
    pub(crate) details: String,
}

/// One piece of a streamed response.
#[derive(Debug)]
pub(crate) enum StreamItem {
    /// Bytes, as the runtime wrote them.
    Chunk(Bytes),
    /// The end of the body, with its error if any.
    End(Option<StreamError>),
}

/// What the Runtime API handler of a streamed response gets from the
/// driver: where the bytes go, and the rules for them.
#[derive(Debug)]
pub(crate) struct StreamSink {
    /// To the caller.
    pub(crate) tx: mpsc::Sender<StreamItem>,
    /// The most bytes the caller gets: 200 MiB for a streaming caller,
    /// the buffered limit for a buffered one.
    pub(crate) limit: usize,
    /// Pace the bytes past the burst.
    pub(crate) rate_limited: bool,
}

/// How a forwarded body ended.
#[derive(Debug)]
pub(crate) struct Forwarded {
    /// Bytes the runtime wrote (`producedBytes`).
    pub(crate) produced: u64,
    /// The `Lambda-Runtime-Function-Error-Type` trailer.
    pub(crate) error_type: Option<String>,
    /// Past the limit.
    pub(crate) too_large: bool,
}

impl StreamSink {
    /// Forwards `body` to the caller chunk by chunk, then its end. `None`
    /// when the body broke off (the runtime went away): the driver's
    /// verdict tells the caller why.
    pub(crate) async fn forward(self, mut body: Body) -> Option<Forwarded> {
        let mut produced = 0u64;
        let mut caller = true;
        let mut too_large = false;
        let mut trailers = None;
        let mut pace = Pace::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.ok()?;
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                    continue;
                }
            };
            produced += data.len() as u64;
            if too_large || produced > self.limit as u64 {
                // Past the limit nothing more goes to the caller; the rest
                // is read (up to DRAIN_LIMIT) so the runtime gets its 413.
                too_large = true;
                if produced - self.limit as u64 > DRAIN_LIMIT {
                    break;
                }
                continue;
            }
            if caller && self.tx.send(StreamItem::Chunk(data)).await.is_err() {
                // The caller went away: the runtime still writes to the
                // end, as it would in Lambda.
                caller = false;
            }
            if caller && self.rate_limited {
                pace.after(produced).await;
            }
        }
        let header = |name: &str| {
            trailers
                .as_ref()
                .and_then(|t: &axum::http::HeaderMap| t.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let error_type = header(TRAILER_ERROR_TYPE).filter(|t| !t.is_empty());
        let error = if too_large {
            Some(StreamError {
                code: lext_protocol::error::error_type::FUNCTION_RESPONSE_SIZE_TOO_LARGE.to_owned(),
                details: format!(
                    "Response payload size exceeded maximum allowed payload size ({} bytes).",
                    self.limit
                ),
            })
        } else {
            error_type.as_ref().map(|code| StreamError {
                code: code.clone(),
                details: header(TRAILER_ERROR_BODY)
                    .map(|b| decode_error_body(&b))
                    .unwrap_or_default(),
            })
        };
        if caller {
            let _ = self.tx.send(StreamItem::End(error)).await;
        }
        Some(Forwarded {
            produced,
            error_type,
            too_large,
        })
    }
}

/// The error body trailer: base64 as the runtime clients send it; text that
/// is not base64 is passed on as it is.
fn decode_error_body(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| text.to_owned())
}

/// The bandwidth rule: free up to [`BURST_BYTES`], then
/// [`RATE_BYTES_PER_SEC`] from the moment the burst was used up.
#[derive(Debug, Default)]
struct Pace {
    burst_end: Option<tokio::time::Instant>,
}

impl Pace {
    /// Waits until `sent` bytes are within the rule.
    async fn after(&mut self, sent: u64) {
        if sent <= BURST_BYTES {
            return;
        }
        let since = *self.burst_end.get_or_insert_with(tokio::time::Instant::now);
        let due = Duration::from_secs_f64((sent - BURST_BYTES) as f64 / RATE_BYTES_PER_SEC as f64);
        tokio::time::sleep_until(since + due).await;
    }
}

/// A streamed response, on the caller's side.
#[derive(Debug)]
pub(crate) struct Streamed {
    /// The request id.
    pub(crate) request_id: String,
    /// The runtime's `Content-Type`.
    pub(crate) content_type: Option<String>,
    /// The bytes, then the end.
    pub(crate) chunks: mpsc::Receiver<StreamItem>,
    /// The driver's word when the invoke ends: the fault of an invoke
    /// whose stream did not end by itself.
    pub(crate) verdict: oneshot::Receiver<Option<StreamError>>,
}

/// What the caller of an invoke gets from the driver.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The whole answer (a buffered response, an error).
    Whole(InvokeResponse),
    /// A streamed response, still coming.
    Stream(Streamed),
    /// Managed Instances: the invoke was rejected at once, with this
    /// `errorType`.
    Rejected(&'static str),
}

impl Streamed {
    /// The next item: a chunk, or the end with its error. A stream whose
    /// body broke off ends with the driver's verdict (a timeout, a crash).
    pub(crate) async fn next(&mut self) -> StreamItem {
        let mut verdict_open = true;
        loop {
            tokio::select! {
                // Chunks first: the verdict of an invoke that ended well
                // comes after its last chunk was queued.
                biased;
                item = self.chunks.recv() => match item {
                    Some(item) => return item,
                    None => break,
                },
                verdict = &mut self.verdict, if verdict_open => match verdict {
                    Ok(Some(error)) => return StreamItem::End(Some(error)),
                    Ok(None) | Err(_) => verdict_open = false,
                },
            }
        }
        if !verdict_open {
            return StreamItem::End(None);
        }
        // The body broke off: the invoke ends with its fault (a crash is
        // seen at once; a hang is bounded by the function timeout).
        match (&mut self.verdict).await {
            Ok(Some(error)) => StreamItem::End(Some(error)),
            _ => StreamItem::End(Some(StreamError {
                code: lext_protocol::error::error_type::SANDBOX_FAILURE.to_owned(),
                details: "The response stream ended early".to_owned(),
            })),
        }
    }

    /// The whole response, for a buffered caller (`Invoke` of a streaming
    /// function). The runtime side enforces the buffered limit, so what is
    /// held here is bounded by it.
    pub(crate) async fn collect(mut self) -> InvokeResponse {
        let mut body = Vec::new();
        let result = loop {
            match self.next().await {
                StreamItem::Chunk(b) => body.extend_from_slice(&b),
                StreamItem::End(None) => {
                    break InvokeResult::Response {
                        body: Bytes::from(body),
                        content_type: self.content_type.take(),
                    }
                }
                StreamItem::End(Some(e)) => {
                    break InvokeResult::PlatformError {
                        error_type: e.code,
                        message: e.details,
                    }
                }
            }
        };
        InvokeResponse {
            request_id: self.request_id,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_base64_or_text() {
        assert_eq!(decode_error_body("Ym9vbQ=="), "boom");
        assert_eq!(decode_error_body("not base64!"), "not base64!");
    }

    #[tokio::test(start_paused = true)]
    async fn pace_lets_the_burst_through_then_two_mib_a_second() {
        let mut pace = Pace::default();
        let start = tokio::time::Instant::now();
        pace.after(BURST_BYTES).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        pace.after(BURST_BYTES + 4 * 1024 * 1024).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
