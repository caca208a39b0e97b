//! The async transport: the same requests and parser as the blocking one,
//! over a tokio `TcpStream`.
//!
//! This module owns moving [`ApiRequest`] bytes to the API and reading an
//! [`ApiResponse`] back, on one keep-alive connection, without a read
//! timeout (the `/event/next` long poll). Cancelling [`AsyncTransport::send`]
//! (for example when a signal wins a `select!`) drops the connection, so the
//! next call starts on a fresh one and never reads a stale answer.

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::TcpStream;

use crate::endpoint::Endpoint;
use crate::error::{Error, Op};
use crate::http::{ApiRequest, ApiResponse, ResponseParser};

/// An async HTTP/1.1 client for one API endpoint, reusing one connection.
#[derive(Debug)]
pub(crate) struct AsyncTransport {
    endpoint: Endpoint,
    conn: Option<TcpStream>,
    write_buf: Vec<u8>,
    read_buf: Vec<u8>,
}

enum Exchange {
    Stale,
    Failed(Error),
}

impl AsyncTransport {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            conn: None,
            write_buf: Vec::with_capacity(512),
            read_buf: Vec::with_capacity(4096),
        }
    }

    async fn connect(&self, op: Op) -> Result<TcpStream, Error> {
        let mut last = None;
        for addr in self.endpoint.addrs() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some((*addr, e)),
            }
        }
        match last {
            Some((addr, source)) => Err(Error::Connect { op, addr, source }),
            None => Err(Error::Protocol {
                op,
                reason: "no address to connect to".into(),
            }),
        }
    }

    /// Sends one request and reads its response; an idle keep-alive
    /// connection closed by the server is replaced once.
    pub(crate) async fn send(&mut self, op: Op, req: &ApiRequest) -> Result<ApiResponse, Error> {
        req.encode(self.endpoint.authority(), &mut self.write_buf);
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            // Taken out for the exchange: if this future is dropped midway,
            // the connection goes with it.
            let mut stream = match self.conn.take() {
                Some(s) => s,
                None => self.connect(op).await?,
            };
            match self.exchange(op, &mut stream).await {
                Ok(response) => {
                    if !response.close {
                        self.conn = Some(stream);
                    }
                    return Ok(response);
                }
                Err(Exchange::Stale) if reused && attempt == 0 => {
                    tracing::debug!(%op, "keep-alive connection was closed; reconnecting");
                }
                Err(Exchange::Stale) => break,
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Protocol {
            op,
            reason: "connection closed before any response".into(),
        })
    }

    async fn exchange(&mut self, op: Op, stream: &mut TcpStream) -> Result<ApiResponse, Exchange> {
        if let Err(e) = stream.write_all(&self.write_buf).await {
            return Err(if is_stale(&e) {
                Exchange::Stale
            } else {
                Exchange::Failed(Error::Io { op, source: e })
            });
        }
        self.read_buf.clear();
        let mut parser = ResponseParser::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) if self.read_buf.is_empty() && is_stale(&e) => return Err(Exchange::Stale),
                Err(e) => return Err(Exchange::Failed(Error::Io { op, source: e })),
            };
            if n == 0 {
                if self.read_buf.is_empty() {
                    return Err(Exchange::Stale);
                }
                return parser.finish(&self.read_buf).map_err(|e| {
                    Exchange::Failed(Error::Protocol {
                        op,
                        reason: e.to_string(),
                    })
                });
            }
            self.read_buf.extend_from_slice(&chunk[..n]);
            match parser.parse(&self.read_buf) {
                Ok(Some((mut response, used))) => {
                    if used != self.read_buf.len() {
                        response.close = true;
                    }
                    return Ok(response);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Exchange::Failed(Error::Protocol {
                        op,
                        reason: e.to_string(),
                    }))
                }
            }
        }
    }
}

fn is_stale(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
}
