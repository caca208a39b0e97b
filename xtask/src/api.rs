//! A minimal Extensions API for the benchmark, on std::net.
//!
//! This module owns the server side of one benchmark run: accept the
//! extension's connection, read requests, answer register and `/event/next`,
//! and time when each request arrives. It is written for low overhead, not
//! for fidelity (that is lext-sandbox's job): one thread, requests read with
//! one `read` each in the common case, answers written with one `write`.
//! Clients that open a new connection per request are served too.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// One request as the benchmark needs it: when it was complete, and its path.
#[derive(Debug)]
pub struct Request {
    pub at: Instant,
    pub path: String,
}

/// The server end of the conversation with one extension process.
#[derive(Debug)]
pub struct Session<'a> {
    listener: &'a TcpListener,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl<'a> Session<'a> {
    pub fn new(listener: &'a TcpListener) -> Self {
        Self {
            listener,
            conn: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Waits for the next complete request, accepting a new connection if
    /// the client closed the previous one.
    pub fn next_request(&mut self) -> Result<Request> {
        loop {
            if self.conn.is_none() {
                let (stream, _) = self.listener.accept().context("accept")?;
                stream.set_nodelay(true)?;
                self.conn = Some(stream);
                self.buf.clear();
            }
            if let Some(req) = self.parse_buffered()? {
                return Ok(req);
            }
            let mut chunk = [0u8; 4096];
            let n = match self.conn.as_mut() {
                Some(stream) => stream.read(&mut chunk).unwrap_or(0),
                None => 0,
            };
            if n == 0 {
                self.conn = None;
                continue;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn parse_buffered(&mut self) -> Result<Option<Request>> {
        let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let len: usize = head
            .lines()
            .skip(1)
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if self.buf.len() < end + 4 + len {
            return Ok(None);
        }
        let at = Instant::now();
        let path = head
            .split(' ')
            .nth(1)
            .map(str::to_owned)
            .unwrap_or_default();
        self.buf.drain(..end + 4 + len);
        Ok(Some(Request { at, path }))
    }

    /// Writes a 200 answer with a JSON body and extra headers; returns the
    /// instant just before the write (when the answer is "delivered").
    pub fn respond(&mut self, extra_headers: &str, body: &str) -> Result<Instant> {
        let Some(stream) = self.conn.as_mut() else {
            bail!("no connection to answer on");
        };
        let msg = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let at = Instant::now();
        stream.write_all(msg.as_bytes()).context("write answer")?;
        Ok(at)
    }
}
