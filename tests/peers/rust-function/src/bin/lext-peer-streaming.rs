//! Test peer: a streaming function on `lambda_runtime`'s `streaming`
//! module. The event asks for `chunks` lines `gap_ms` apart, then `size`
//! bytes; the response is streamed as it is written
//! (`Lambda-Runtime-Function-Response-Mode: streaming`).

use lambda_runtime::streaming::{channel, Body, Response};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

async fn handler(event: LambdaEvent<Value>) -> Result<Response<Body>, Error> {
    let number = |key: &str| event.payload.get(key).and_then(Value::as_u64).unwrap_or(0);
    let (chunks, gap_ms, size) = (number("chunks"), number("gap_ms"), number("size"));
    let (mut tx, rx) = channel();
    tokio::spawn(async move {
        for i in 0..chunks {
            if i > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(gap_ms)).await;
            }
            if tx.send_data(format!("chunk {i}\n").into()).await.is_err() {
                return;
            }
        }
        let block = vec![b'x'; 64 * 1024];
        let mut left = size as usize;
        while left > 0 {
            let n = left.min(block.len());
            if tx.send_data(block[..n].to_vec().into()).await.is_err() {
                return;
            }
            left -= n;
        }
    });
    Ok(Response::from(rx))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
