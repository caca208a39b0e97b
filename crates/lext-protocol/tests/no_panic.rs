//! No input makes a decoder panic: arbitrary bytes, and arbitrary JSON
//! built from the shapes the decoders expect.

use lext_protocol::error::{ErrorRequest, ErrorResponse};
use lext_protocol::extensions::{NextEvent, RegisterRequest, RegisterResponse};
use lext_protocol::telemetry::{decode_batch, Api, SubscribeRequest, TelemetryEvent};
use proptest::prelude::*;
use serde_json::Value;

fn decode_everything(bytes: &[u8]) {
    let _ = serde_json::from_slice::<NextEvent>(bytes);
    let _ = serde_json::from_slice::<RegisterRequest>(bytes);
    let _ = serde_json::from_slice::<RegisterResponse>(bytes);
    let _ = serde_json::from_slice::<ErrorResponse>(bytes);
    let _ = serde_json::from_slice::<ErrorRequest>(bytes);
    let _ = serde_json::from_slice::<TelemetryEvent>(bytes);
    if let Ok(req) = serde_json::from_slice::<SubscribeRequest>(bytes) {
        let _ = req.validate(Api::Telemetry);
        let _ = req.validate(Api::Logs);
        let _ = req.destination_port();
    }
    if let Ok(batch) = decode_batch(bytes) {
        for event in &batch.events {
            // Whatever decoded must encode again.
            assert!(serde_json::to_vec(event).is_ok());
        }
    }
}

/// Arbitrary JSON values, biased towards the field names the decoders know.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("eventType".to_owned()),
        Just("deadlineMs".to_owned()),
        Just("shutdownReason".to_owned()),
        Just("requestId".to_owned()),
        Just("type".to_owned()),
        Just("time".to_owned()),
        Just("record".to_owned()),
        Just("metrics".to_owned()),
        Just("durationMs".to_owned()),
        Just("status".to_owned()),
        Just("destination".to_owned()),
        Just("URI".to_owned()),
        Just("buffering".to_owned()),
        Just("maxItems".to_owned()),
        "[a-zA-Z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("INVOKE".to_owned()),
            Just("SHUTDOWN".to_owned()),
            Just("platform.report".to_owned()),
            Just("platform.start".to_owned()),
            Just("function".to_owned()),
            Just("HTTP".to_owned()),
            Just("http://sandbox:99999".to_owned()),
            Just("http://sandbox.localdomain:1/".to_owned()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        decode_everything(&bytes);
        let wrapped = serde_json::to_vec(&Value::Array(vec![value])).unwrap();
        decode_everything(&wrapped);
    }
}
