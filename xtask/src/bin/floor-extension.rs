//! The benchmark's floor: the least an extension can do, with std only.
//!
//! A hand-written HTTP/1.1 client on one keep-alive connection: register for
//! INVOKE and SHUTDOWN, then long-poll `/event/next` until SHUTDOWN. No JSON
//! parser, no signal handling, no output. It is built with the workspace's
//! release profile, like the extension it is compared with, so the
//! difference between the two is the cost of the SDK and the port's work.
//! Not for use as an extension: it trusts the server completely.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor-extension: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> std::io::Result<()> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(std::io::Error::other)?;
    let name = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_owned))
        .unwrap_or_default();
    // Same socket options as the SDK, so the comparison is of code, not of
    // TCP settings.
    let mut stream = TcpStream::connect(api.as_str())?;
    stream.set_nodelay(true)?;
    let body = br#"{"events":["INVOKE","SHUTDOWN"]}"#;
    let mut req = Vec::with_capacity(256);
    req.extend_from_slice(b"POST /2020-01-01/extension/register HTTP/1.1\r\nHost: ");
    req.extend_from_slice(api.as_bytes());
    req.extend_from_slice(b"\r\nLambda-Extension-Name: ");
    req.extend_from_slice(name.as_bytes());
    req.extend_from_slice(b"\r\nContent-Length: 32\r\n\r\n");
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    let mut buf = Vec::with_capacity(4096);
    let (head, _body) = read_response(&mut stream, &mut buf)?;
    let id = header(&head, "lambda-extension-identifier")
        .ok_or_else(|| std::io::Error::other("no identifier"))?;

    // The poll request never changes: encode it once.
    let mut next = Vec::with_capacity(256);
    next.extend_from_slice(b"GET /2020-01-01/extension/event/next HTTP/1.1\r\nHost: ");
    next.extend_from_slice(api.as_bytes());
    next.extend_from_slice(b"\r\nLambda-Extension-Identifier: ");
    next.extend_from_slice(id.as_bytes());
    next.extend_from_slice(b"\r\n\r\n");
    loop {
        stream.write_all(&next)?;
        let (_head, body) = read_response(&mut stream, &mut buf)?;
        // No JSON parser: the floor only needs to know when to stop.
        if body.windows(10).any(|w| w == b"\"SHUTDOWN\"") {
            return Ok(());
        }
    }
}

/// Reads one Content-Length-framed response; returns its head and body.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(String, Vec<u8>)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::Error::other("closed"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok((head, buf[end + 4..end + 4 + len].to_vec()));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}
