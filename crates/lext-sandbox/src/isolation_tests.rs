//! Unit tests of [`crate::isolation`]: the fallback line, the prepared
//! plan, host paths; and isolation on this machine: a process launched
//! through it sees the layer at /opt (read-only) and resolves
//! sandbox.localdomain and sandbox to 127.0.0.1 (getent and Python), in
//! both modes, without touching the host.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Mutex;

use super::*;
use crate::process::{self, LineSink, Source, Spec};

#[test]
fn fallback_line_names_reason_and_fix() {
    assert_eq!(Decision::Isolate(Mode::UserNamespace).fallback_line(), None);
    let line = Decision::Rewrite {
        reason: "no user namespaces".into(),
        fix: "sudo sysctl -w kernel.unprivileged_userns_clone=1".into(),
    }
    .fallback_line()
    .unwrap();
    assert!(line.contains("(no user namespaces)"), "{line}");
    assert!(
        line.ends_with("Fix: sudo sysctl -w kernel.unprivileged_userns_clone=1"),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

#[test]
fn preparation_writes_the_hosts_file_and_rejects_nul() {
    let dir = tempfile::tempdir().unwrap();
    let iso = Isolation::new(Mode::MountNamespace, dir.path(), dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(iso.hosts_file()).unwrap(),
        HOSTS_CONTENT
    );
    assert!(HOSTS_CONTENT.contains("127.0.0.1\tsandbox.localdomain sandbox\n"));
    assert_eq!(iso.layers_dir(), dir.path());
    assert_eq!(iso.mode(), Mode::MountNamespace);
    let bad = PathBuf::from(std::ffi::OsStr::from_bytes(b"a\0b"));
    assert!(matches!(
        Isolation::new(Mode::MountNamespace, &bad, dir.path()),
        Err(IsolationError::Io { .. }) | Err(IsolationError::NulInPath(_))
    ));
}

#[test]
fn mode_follows_the_effective_user() {
    let want = if rustix::process::geteuid().is_root() {
        Mode::MountNamespace
    } else {
        Mode::UserNamespace
    };
    assert_eq!(Mode::for_current_user(), want);
}

// ----- Isolation on this machine -----

async fn run_isolated(mode: Mode) -> Vec<String> {
    let python = crate::test_support::python();
    let layers = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // A layer as `lext run --layer` unpacks it: a file under its own
    // directory and an executable under extensions/.
    std::fs::create_dir_all(layers.path().join("my-layer")).unwrap();
    std::fs::write(
        layers.path().join("my-layer/hello.txt"),
        "hello from the layer\n",
    )
    .unwrap();
    std::fs::create_dir_all(layers.path().join("extensions")).unwrap();
    let script = layers.path().join("extensions/probe");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             cat /opt/my-layer/hello.txt\n\
             echo \"getent $(getent hosts sandbox.localdomain)\"\n\
             {python} -c \"import socket; print('python', socket.gethostbyname('sandbox.localdomain'), socket.gethostbyname('sandbox'))\"\n\
             if touch /opt/written 2>/dev/null; then echo writable; else echo read-only; fi\n\
             echo \"uid $(id -u)\"\n",
            python = python.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let isolation = Isolation::new(mode, layers.path(), state.path()).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink_lines = lines.clone();
    let sink: LineSink = Arc::new(move |batch: process::OutputLines| {
        sink_lines.lock().unwrap().extend(batch.lines);
    });
    // The program is named by its path inside the sandbox.
    let mut spec = Spec::new(
        "/opt/extensions/probe",
        vec![("PATH".into(), "/usr/bin:/bin".into())],
        Source::Extension("probe".into()),
    );
    spec.isolation = Some(Arc::new(isolation));
    let mut p = process::spawn(spec, sink).unwrap();
    let exit = p.wait().await.unwrap();
    let lines = lines.lock().unwrap().clone();
    assert!(exit.success(), "{exit:?} {lines:?}");
    assert!(!layers.path().join("written").exists());
    lines
}

fn check(lines: &[String]) {
    assert_eq!(lines[0], "hello from the layer", "{lines:?}");
    let getent: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        getent,
        ["getent", "127.0.0.1", "sandbox.localdomain", "sandbox"],
        "{lines:?}"
    );
    assert_eq!(lines[2], "python 127.0.0.1 127.0.0.1", "{lines:?}");
    assert_eq!(lines[3], "read-only", "{lines:?}");
    let uid = rustix_uid();
    assert_eq!(lines[4], format!("uid {uid}"), "the process keeps its uid");
    // The host is untouched.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(
        !hosts.contains("sandbox.localdomain"),
        "host /etc/hosts changed"
    );
    assert!(!Path::new("/opt/my-layer").exists(), "host /opt changed");
}

fn rustix_uid() -> u32 {
    // The uid of this test process, from /proc (no extra dependency).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_finds_isolation_on_this_machine() {
    let decision = detect().await;
    assert_eq!(
        decision,
        Decision::Isolate(Mode::for_current_user()),
        "isolation should work here (`unshare -Urm true` does): {:?}",
        decision.fallback_line()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_namespace_mode_shows_layers_and_hosts() {
    check(&run_isolated(Mode::UserNamespace).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_namespace_mode_shows_layers_and_hosts() {
    if !Mode::for_current_user().eq(&Mode::MountNamespace) {
        // Not root: a mount namespace alone must be refused, and say why.
        let layers = tempfile::tempdir().unwrap();
        let isolation = Isolation::new(Mode::MountNamespace, layers.path(), layers.path()).unwrap();
        let mut spec = Spec::new("/bin/true", vec![], Source::Function);
        spec.isolation = Some(Arc::new(isolation));
        assert!(process::spawn(spec, Arc::new(|_| {})).is_err());
        return;
    }
    check(&run_isolated(Mode::MountNamespace).await);
}
