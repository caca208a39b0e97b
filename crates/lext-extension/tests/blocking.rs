//! The blocking flavour against a fake Extensions API on 127.0.0.1.

// Test helpers outside #[test] fns: a failure here is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::{lifecycle_script, registered_then, FakeApi, Recorded, Reply, ID, REGISTER_BODY};
use lext_extension::{
    Error, ErrorEndpoint, EventType, Extension, HandlerError, NextEvent, Op, RunEnd, ShutdownReason,
};

fn builder(api: &FakeApi) -> lext_extension::Builder {
    Extension::builder()
        .name("my-ext")
        .runtime_api(api.api())
        .handle_signals(false)
}

#[test]
fn a_runtime_api_with_a_base_path_is_a_base_url() {
    // `cargo lambda watch` sets AWS_LAMBDA_RUNTIME_API=127.0.0.1:9000/.rt.
    let api = FakeApi::start(common::under_base_path(lifecycle_script()));
    let registered = Extension::builder()
        .name("my-ext")
        .runtime_api(format!("{}{}", api.api(), common::BASE_PATH))
        .handle_signals(false)
        .register()
        .unwrap();
    assert_eq!(registered.id().as_str(), ID);
    let end = registered.run(|_| Ok(())).unwrap();
    assert!(matches!(end, RunEnd::Shutdown(_)), "{end:?}");
    assert_eq!(
        api.paths(),
        [
            "/.rt/2020-01-01/extension/register",
            "/.rt/2020-01-01/extension/event/next",
            "/.rt/2020-01-01/extension/event/next"
        ]
    );
}

#[test]
fn register_invoke_shutdown() {
    let api = FakeApi::start(lifecycle_script());
    let registered = builder(&api).accept_account_id(true).register().unwrap();
    assert_eq!(registered.id().as_str(), ID);
    assert_eq!(registered.response().function_name, "my-function");
    assert_eq!(registered.name(), "my-ext");
    let mut seen = Vec::new();
    let end = registered
        .run(|event| {
            seen.push(event.clone());
            Ok(())
        })
        .unwrap();
    match end {
        RunEnd::Shutdown(s) => assert_eq!(s.shutdown_reason, ShutdownReason::Spindown),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.len(), 2);
    assert!(
        matches!(&seen[0], NextEvent::Invoke(i) if i.request_id == "3da1f2dc-3222-475e-9205-e2e6c6318895")
    );
    assert!(matches!(&seen[1], NextEvent::Shutdown(_)));

    // Exactly register + two polls: nothing after SHUTDOWN.
    let reqs = api.requests();
    let paths: Vec<_> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/2020-01-01/extension/register",
            "/2020-01-01/extension/event/next",
            "/2020-01-01/extension/event/next"
        ]
    );
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].header("Lambda-Extension-Name"), Some("my-ext"));
    assert_eq!(
        reqs[0].header("Lambda-Extension-Accept-Feature"),
        Some("accountId")
    );
    assert_eq!(reqs[0].body, br#"{"events":["INVOKE","SHUTDOWN"]}"#);
    assert_eq!(reqs[0].header("Host"), Some(api.api().as_str()));
    for next in &reqs[1..] {
        assert_eq!(next.method, "GET");
        assert_eq!(next.header("Lambda-Extension-Identifier"), Some(ID));
    }
}

#[test]
fn account_id_is_returned() {
    let api = FakeApi::start(|req: &Recorded| {
        let mut body: serde_json::Value = serde_json::from_str(REGISTER_BODY).unwrap();
        if req.header("Lambda-Extension-Accept-Feature") == Some("accountId") {
            body["accountId"] = "123456789012".into();
        }
        Reply::Status(
            200,
            vec![("Lambda-Extension-Identifier", ID.into())],
            body.to_string(),
        )
    });
    let r = builder(&api).accept_account_id(true).register().unwrap();
    assert_eq!(r.response().account_id.as_deref(), Some("123456789012"));
    let r = builder(&api).register().unwrap();
    assert_eq!(r.response().account_id, None);
}

#[test]
fn events_subset_is_sent() {
    let api = FakeApi::start(lifecycle_script());
    builder(&api)
        .events([EventType::Shutdown])
        .register()
        .unwrap();
    assert_eq!(api.requests()[0].body, br#"{"events":["SHUTDOWN"]}"#);
}

#[test]
fn register_403_is_a_typed_api_error() {
    let api = FakeApi::start(|_: &Recorded| {
        Reply::json(
            403,
            "{\"errorMessage\":\"Extension limit (10) reached\",\"errorType\":\"Extension.TooManyExtensions\"}\n",
        )
    });
    match builder(&api).register() {
        Err(Error::Api {
            op: Op::Register,
            status: 403,
            error_type,
            message,
        }) => {
            assert_eq!(error_type, "Extension.TooManyExtensions");
            assert_eq!(message, "Extension limit (10) reached");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn next_500_is_a_typed_api_error() {
    let api = registered_then(Reply::json(
        500,
        r#"{"errorMessage":"Internal Server Error","errorType":"InternalServerError"}"#,
    ));
    let err = builder(&api)
        .register()
        .unwrap()
        .run(|_| Ok(()))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { op: Op::Next, status: 500, error_type, .. } if error_type == "InternalServerError"),
        "{err:?}"
    );
}

#[test]
fn garbage_answers_are_protocol_errors() {
    for garbage in [
        &b"this is not HTTP\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
        b"",
    ] {
        let api = FakeApi::start(move |_: &Recorded| Reply::Raw(garbage.to_vec()));
        let err = builder(&api).register().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Protocol {
                    op: Op::Register,
                    ..
                }
            ),
            "{garbage:?}: {err:?}"
        );
    }
    // A 200 with a body that is not an event.
    let api = registered_then(Reply::json(200, r#"{"eventType":"EXPLODE"}"#));
    let err = builder(&api)
        .register()
        .unwrap()
        .run(|_| Ok(()))
        .unwrap_err();
    assert!(
        matches!(err, Error::Protocol { op: Op::Next, .. }),
        "{err:?}"
    );
}

#[test]
fn connection_refused_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Extension::builder()
        .name("x")
        .runtime_api(format!("127.0.0.1:{port}"))
        .handle_signals(false)
        .register()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connect {
                op: Op::Register,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn init_error_is_reported_before_the_first_event() {
    let api = FakeApi::start(lifecycle_script());
    let registered = builder(&api).register().unwrap();
    let err = registered.init_error(HandlerError::new("ConfigMissing", "API_KEY is not set"));
    match err {
        Error::Handler {
            endpoint: ErrorEndpoint::InitError,
            error_type,
            report_failed: None,
            ..
        } => {
            assert_eq!(error_type, "Extension.ConfigMissing")
        }
        other => panic!("{other:?}"),
    }
    let reqs = api.requests();
    let report = &reqs[1];
    assert_eq!(report.path, "/2020-01-01/extension/init/error");
    assert_eq!(report.header("Lambda-Extension-Identifier"), Some(ID));
    assert_eq!(
        report.header("Lambda-Extension-Function-Error-Type"),
        Some("Extension.ConfigMissing")
    );
    let body: serde_json::Value = serde_json::from_slice(&report.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"errorMessage": "API_KEY is not set", "errorType": "Extension.ConfigMissing"})
    );
    assert_eq!(reqs.len(), 2, "no event was asked for");
}

#[test]
fn handler_error_after_the_first_event_uses_exit_error() {
    let api = FakeApi::start(lifecycle_script());
    let err = builder(&api)
        .register()
        .unwrap()
        .run(|_| {
            Err(HandlerError::new(
                "Flush failed\r\nInjected: x",
                "disk full",
            ))
        })
        .unwrap_err();
    match err {
        Error::Handler {
            endpoint: ErrorEndpoint::ExitError,
            error_type,
            report_failed: None,
            ..
        } => {
            assert_eq!(error_type, "Extension.FlushfailedInjectedx")
        }
        other => panic!("{other:?}"),
    }
    let paths = api.paths();
    assert_eq!(
        paths,
        [
            "/2020-01-01/extension/register",
            "/2020-01-01/extension/event/next",
            "/2020-01-01/extension/exit/error"
        ]
    );
}

#[test]
fn a_failed_report_is_kept_in_the_error() {
    let api = registered_then(Reply::json(
        403,
        r#"{"errorMessage":"State transition from Ready to InitError failed","errorType":"Extension.InvalidExtensionState"}"#,
    ));
    let err = builder(&api)
        .register()
        .unwrap()
        .init_error(HandlerError::new("X", "y"));
    match err {
        Error::Handler {
            report_failed: Some(inner),
            ..
        } => {
            assert!(matches!(
                *inner,
                Error::Api {
                    op: Op::InitError,
                    status: 403,
                    ..
                }
            ))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connection_close_answers_reconnect() {
    let mut nexts = 0;
    let api = FakeApi::start(move |req: &Recorded| {
        let close = ("Connection", "close".to_owned());
        match req.path.as_str() {
            "/2020-01-01/extension/register" => Reply::Status(
                200,
                vec![("Lambda-Extension-Identifier", ID.into()), close],
                REGISTER_BODY.into(),
            ),
            _ => {
                nexts += 1;
                let body = if nexts < 3 {
                    common::INVOKE
                } else {
                    common::SHUTDOWN
                };
                Reply::Status(200, vec![close], body.into())
            }
        }
    });
    let mut n = 0;
    let end = builder(&api)
        .register()
        .unwrap()
        .run(|_| {
            n += 1;
            Ok(())
        })
        .unwrap();
    assert!(matches!(end, RunEnd::Shutdown(_)));
    assert_eq!(n, 3);
}

#[test]
fn missing_runtime_api_is_an_env_error_not_a_panic() {
    // Only this test touches the variable; others pass runtime_api().
    // SAFETY (edition 2021: safe fn): no other thread reads this variable.
    std::env::remove_var("AWS_LAMBDA_RUNTIME_API");
    let err = Extension::builder()
        .name("x")
        .handle_signals(false)
        .register()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Env {
                var: "AWS_LAMBDA_RUNTIME_API",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("AWS_LAMBDA_RUNTIME_API"));
}
