//! `rust-runtime-api-proxy`: a Runtime API proxy extension, the pattern
//! behind AWS's `*-lambda-runtime-api-proxy-extension` samples, Datadog's
//! extension and the Lambda Web Adapter.
//!
//! The extension listens on its own port (`127.0.0.1:9009`, or
//! `LEXT_PROXY_PORT`) before it registers. A wrapper script in the same
//! layer, named by `AWS_LAMBDA_EXEC_WRAPPER=/opt/proxy-wrapper`, points the
//! runtime's `AWS_LAMBDA_RUNTIME_API` at that port and execs the runtime:
//!
//! ```sh
//! #!/bin/sh
//! export AWS_LAMBDA_RUNTIME_API="127.0.0.1:${LEXT_PROXY_PORT:-9009}"
//! exec "$@"
//! ```
//!
//! Every runtime request is forwarded to the real Runtime API (the
//! extension's own `AWS_LAMBDA_RUNTIME_API`) and its answer passed back, and
//! each is logged: `[rust-runtime-api-proxy] GET
//! /2018-06-01/runtime/invocation/next -> 200 (request 8476a536-...)`. A
//! real proxy would read or change the event or the response here.
//!
//! It registers for SHUTDOWN only: the invokes reach it through the runtime's
//! own calls, so it is never on the invoke path as an extension. Run with
//! `lext run --layer LAYER --env AWS_LAMBDA_EXEC_WRAPPER=/opt/proxy-wrapper
//! --function CMD`.

// Its log lines go to standard output, which Lambda captures as the
// extension's log: printing is the point.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lext_extension::{Extension, NextEvent, RunEnd};

/// AWS's proxy samples listen on this port.
const DEFAULT_PORT: u16 = 9009;

fn main() -> ExitCode {
    let name = lext_extension::default_name().unwrap_or_else(|_| "rust-runtime-api-proxy".into());
    let say = |line: &str| println!("[{name}] {line}");
    let Ok(upstream) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        say("Error: AWS_LAMBDA_RUNTIME_API is not set");
        return ExitCode::FAILURE;
    };
    let port = std::env::var("LEXT_PROXY_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT);
    // Bound before registering: once every extension has registered, the
    // runtime starts and connects at once.
    let listener = match std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))) {
        Ok(listener) => listener,
        Err(e) => {
            say(&format!("Error: cannot listen on 127.0.0.1:{port}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let prefix = format!("[{name}]");
    std::thread::spawn(move || serve(listener, upstream, prefix));
    say(&format!("proxying the Runtime API on 127.0.0.1:{port}"));
    let registered = match Extension::builder()
        .name(name.clone())
        .events([lext_extension::EventType::Shutdown])
        .register()
    {
        Ok(registered) => registered,
        Err(e) => {
            say(&format!("Error: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match registered.run(|event| {
        if let NextEvent::Shutdown(shutdown) = event {
            say(&format!("SHUTDOWN ({})", shutdown.shutdown_reason));
        }
        Ok(())
    }) {
        Ok(RunEnd::Shutdown(_) | RunEnd::Signal(_)) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("Error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Serves the proxy on a current-thread runtime of this thread's own.
fn serve(listener: std::net::TcpListener, upstream: String, prefix: String) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return println!("{prefix} Error: {e}"),
    };
    runtime.block_on(async move {
        let _ = listener.set_nonblocking(true);
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        while let Ok((stream, _)) = listener.accept().await {
            let (upstream, prefix) = (upstream.clone(), prefix.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    forward(request, upstream.clone(), prefix.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Sends `request` to the real Runtime API and returns its answer (a 502
/// when the API cannot be reached), logging the call.
async fn forward(
    request: Request<Incoming>,
    upstream: String,
    prefix: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let line = format!("{} {}", request.method(), request.uri());
    let answer = async {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let stream = tokio::net::TcpStream::connect(&upstream).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::from_parts(parts, Full::new(body));
        if let Ok(host) = upstream.parse() {
            request.headers_mut().insert(hyper::header::HOST, host);
        }
        let (parts, body) = sender.send_request(request).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Response::from_parts(
            parts,
            Full::new(body),
        ))
    };
    match answer.await {
        Ok(response) => {
            let id = response
                .headers()
                .get("lambda-runtime-aws-request-id")
                .and_then(|v| v.to_str().ok())
                .map(|id| format!(" (request {id})"))
                .unwrap_or_default();
            println!("{prefix} {line} -> {}{id}", response.status().as_u16());
            Ok(response)
        }
        Err(e) => {
            println!("{prefix} {line} -> 502 ({e})");
            let mut response = Response::new(Full::new(Bytes::from(e.to_string())));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(response)
        }
    }
}
