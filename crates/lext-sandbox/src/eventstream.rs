//! AWS's event stream encoding (`application/vnd.amazon.eventstream`), the
//! body of `InvokeWithResponseStream`: each message is a prelude (total
//! length, headers length, CRC32 of those 8 bytes), headers, the payload,
//! and the CRC32 of everything before it, all integers big-endian. Headers
//! here are strings (type 7, 16-bit length). Source: AWS: Event stream
//! encoding, <https://docs.aws.amazon.com/lexv2/latest/dg/event-stream-encoding.html>
//! (the same framing for every service), and botocore's `eventstream.py`,
//! which boto3 parses it with. The event names and shapes are botocore's
//! Lambda model (`InvokeWithResponseStreamResponseEvent`).

use bytes::{BufMut as _, Bytes, BytesMut};

/// The content type of an event stream response.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// Header value type: string.
const STRING: u8 = 7;

/// One `event` message with these `:event-type` and `:content-type`.
fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    let headers = [
        (":event-type", event_type),
        (":content-type", content_type),
        (":message-type", "event"),
    ];
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| 1 + name.len() + 1 + 2 + value.len())
        .sum();
    let total = 12 + headers_len + payload.len() + 4;
    let mut buf = BytesMut::with_capacity(total);
    buf.put_u32(total as u32);
    buf.put_u32(headers_len as u32);
    let prelude_crc = crc32fast::hash(&buf[..8]);
    buf.put_u32(prelude_crc);
    for (name, value) in headers {
        buf.put_u8(name.len() as u8);
        buf.put_slice(name.as_bytes());
        buf.put_u8(STRING);
        buf.put_u16(value.len() as u16);
        buf.put_slice(value.as_bytes());
    }
    buf.put_slice(payload);
    let message_crc = crc32fast::hash(&buf);
    buf.put_u32(message_crc);
    buf.freeze()
}

/// A `PayloadChunk` event (`InvokeResponseStreamUpdate`, its `Payload` the
/// event's payload).
pub(crate) fn payload_chunk(bytes: &[u8]) -> Bytes {
    event("PayloadChunk", "application/octet-stream", bytes)
}

/// The `InvokeComplete` event (`InvokeWithResponseStreamCompleteEvent`):
/// JSON with `ErrorCode`, `ErrorDetails` and `LogResult`, each only when
/// present.
pub(crate) fn invoke_complete(
    error: Option<&crate::stream::StreamError>,
    log_result: Option<&str>,
) -> Bytes {
    let mut doc = serde_json::Map::new();
    if let Some(e) = error {
        doc.insert("ErrorCode".into(), e.code.clone().into());
        doc.insert("ErrorDetails".into(), e.details.clone().into());
    }
    if let Some(log) = log_result {
        doc.insert("LogResult".into(), log.into());
    }
    let json = serde_json::Value::Object(doc).to_string();
    event("InvokeComplete", "application/json", json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_has_its_lengths_and_crcs() {
        let m = payload_chunk(b"hello");
        let total = u32::from_be_bytes(m[0..4].try_into().unwrap()) as usize;
        let headers = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, m.len());
        assert_eq!(
            u32::from_be_bytes(m[8..12].try_into().unwrap()),
            crc32fast::hash(&m[..8])
        );
        assert_eq!(&m[12 + headers..total - 4], b"hello");
        assert_eq!(
            u32::from_be_bytes(m[total - 4..].try_into().unwrap()),
            crc32fast::hash(&m[..total - 4])
        );
        // The first header: `:event-type` = PayloadChunk.
        assert_eq!(m[12] as usize, ":event-type".len());
        assert_eq!(&m[13..24], b":event-type");
        assert_eq!(m[24], STRING);
        assert_eq!(&m[27..39], b"PayloadChunk");
    }

    #[test]
    fn invoke_complete_omits_absent_fields() {
        let m = invoke_complete(None, None);
        let headers = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(&m[12 + headers..m.len() - 4], b"{}");
    }
}
