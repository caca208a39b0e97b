//! End-to-end tests of `lext check` and `lext run --layer` against layers
//! built to break them: special files in a directory layer, zips whose
//! headers lie, ELF-looking bombs, duplicate names. Each test runs the built
//! `lext` binary with a deadline and asserts what a user sees: the exit
//! code, the line printed, and lext's peak RSS.

// A failed unwrap is a failed test: that is what tests are for.
#![allow(clippy::unwrap_used)]

#[path = "../crates/lext-layer/tests/support/mod.rs"]
mod support;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Every run of lext here must end within this.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs a program with a deadline (SIGKILL when it passes) and writes
/// `<exit code or -signal> <ru_maxrss KiB> <timed out 0|1>` to a report
/// file. The peak RSS comes from `os.wait4` in this small process because
/// a child of the test process cannot be measured: at `exec` Linux keeps
/// the high-water RSS of the process that spawned it (with `posix_spawn`,
/// the whole multi-threaded test binary) as the child's `ru_maxrss`. Here
/// that floor is the interpreter's own (some 14 MiB, measured with
/// /bin/true), and a figure above it is lext's own peak.
const MEASURE: &str = r#"
import os, signal, sys, time
report, deadline, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
pid = os.posix_spawn(argv[0], argv, os.environ)
end = time.monotonic() + deadline
timed_out = False
while True:
    got, status, usage = os.wait4(pid, os.WNOHANG)
    if got == pid:
        break
    if time.monotonic() > end and not timed_out:
        timed_out = True
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.005)
with open(report, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {int(timed_out)}\n")
"#;

/// What a run of lext left for its user.
#[derive(Debug)]
struct Outcome {
    /// The exit code; `None` when a signal ended it (or the deadline did).
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident set size in KiB (see [`MEASURE`]).
    max_rss_kib: u64,
    elapsed: Duration,
    timed_out: bool,
}

impl Outcome {
    fn dump(&self) -> String {
        format!(
            "exit {:?} after {:?} (timed out: {}), peak RSS {} KiB\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.elapsed, self.timed_out, self.max_rss_kib, self.stdout, self.stderr
        )
    }

    /// Asserts that lext ended in time, failed with exit code 1, did not
    /// panic, and printed a line containing every one of `needles`.
    #[track_caller]
    fn assert_refused_with(&self, needles: &[&str]) {
        assert!(!self.timed_out, "lext hung:\n{}", self.dump());
        assert_eq!(self.code, Some(1), "{}", self.dump());
        assert!(!self.stderr.contains("panicked"), "{}", self.dump());
        let all = format!("{}{}", self.stdout, self.stderr);
        assert!(
            all.lines().any(|l| needles.iter().all(|n| l.contains(n))),
            "no line containing all of {needles:?}:\n{}",
            self.dump()
        );
    }
}

/// Runs `lext ARGS` in `dir` under [`MEASURE`]: killed at [`DEADLINE`].
fn lext(dir: &Path, args: &[&str]) -> Outcome {
    let report = tempfile::NamedTempFile::new().unwrap();
    let start = Instant::now();
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(MEASURE)
        .arg(report.path())
        .arg(DEADLINE.as_secs().to_string())
        .arg(env!("CARGO_BIN_EXE_lext"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3 (a test peer, as for the sandbox tests)");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    // The wrapper kills lext at the deadline; this is only its own net.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE + Duration::from_secs(10) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let report = fs::read_to_string(report.path()).unwrap();
    let fields: Vec<i64> = report
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    assert!(
        status.success() && fields.len() == 3,
        "the measuring wrapper failed ({status}): {report:?}\n{stderr}"
    );
    // The figures, for `cargo test -- --nocapture`.
    eprintln!(
        "lext {}: exit {} in {elapsed:?}, peak RSS {} KiB{}",
        args.join(" "),
        fields[0],
        fields[1],
        if fields[2] == 1 {
            " (killed at the deadline)"
        } else {
            ""
        }
    );
    Outcome {
        code: (fields[0] >= 0).then_some(fields[0] as i32),
        stdout,
        stderr,
        max_rss_kib: fields[1] as u64,
        elapsed,
        timed_out: fields[2] == 1,
    }
}

/// A directory layer with a good script extension and a FIFO.
fn layer_with_fifo(root: &Path, fifo: &str) -> std::path::PathBuf {
    let layer = root.join("layer");
    fs::create_dir_all(layer.join("extensions")).unwrap();
    fs::create_dir_all(layer.join("lib")).unwrap();
    let ok = layer.join("extensions/ok");
    fs::write(&ok, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&ok, fs::Permissions::from_mode(0o755)).unwrap();
    let status = Command::new("mkfifo")
        .arg(layer.join(fifo))
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
    layer
}

#[test]
fn a_fifo_in_a_directory_layer_is_refused_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    for fifo in ["extensions/x", "lib/pipe"] {
        let scene = tmp.path().join(fifo.replace('/', "-"));
        fs::create_dir_all(&scene).unwrap();
        let layer = layer_with_fifo(&scene, fifo);
        let layer_arg = layer.display().to_string();
        let line = format!("{fifo}: a FIFO, not a regular file");

        let check = lext(&scene, &["check", &layer_arg]);
        check.assert_refused_with(&[&line, "Lambda layers are zip archives"]);

        let run = lext(&scene, &["run", "--layer", &layer_arg, "--invoke", "1"]);
        run.assert_refused_with(&["error: ", &line]);
        assert!(
            !run.stdout.contains("START"),
            "nothing ran:\n{}",
            run.dump()
        );
    }
}

#[test]
fn a_fifo_given_as_the_layer_itself_is_refused_not_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("layer.zip");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let arg = fifo.display().to_string();
    lext(tmp.path(), &["check", &arg]).assert_refused_with(&["layer.zip", "a FIFO"]);
    lext(tmp.path(), &["run", "--layer", &arg, "--invoke", "1"])
        .assert_refused_with(&["layer.zip", "a FIFO"]);
}

use support::{
    big_elf, declared_crc, deflated_zip, patch_crc, patch_declared_size, streamed, Part,
};

const MIB: u64 = 1024 * 1024;

/// The peak RSS lext may reach on a layer, whatever its entries hold: the
/// listing keeps one bounded prefix of each file and the ELF tables it
/// parses (each capped), never a whole file.
const MAX_RSS_KIB: u64 = 64 * 1024;

/// A `#!` script entry followed by `zeros` zero bytes.
fn script_then_zeros(zeros: u64) -> Vec<Part> {
    vec![Part::Bytes(b"#!/bin/sh\n".to_vec()), Part::Zeros(zeros)]
}

/// Writes `bytes` as `name` in `dir` and returns its path as an argument.
fn write_zip(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

/// `lext check ZIP` and `lext run --layer ZIP --invoke 1`, both refused
/// in bounded memory, with a line holding every one of `in_check`, and an
/// `error: unpacking the layer` line holding every one of `in_run`.
fn assert_both_refuse(
    dir: &Path,
    zip: &str,
    in_check: &[&str],
    in_run: &[&str],
) -> (Outcome, Outcome) {
    let check = lext(dir, &["check", zip]);
    check.assert_refused_with(in_check);
    assert_eq!(
        check.stdout.lines().count(),
        1,
        "one problem:\n{}",
        check.dump()
    );
    let run = lext(dir, &["run", "--layer", zip, "--invoke", "1"]);
    let mut needles: Vec<&str> = vec!["error: unpacking the layer"];
    needles.extend_from_slice(in_run);
    run.assert_refused_with(&needles);
    assert!(
        !run.stdout.contains("START"),
        "nothing ran:\n{}",
        run.dump()
    );
    for outcome in [&check, &run] {
        assert!(
            outcome.max_rss_kib < MAX_RSS_KIB,
            "lext peaked at {} KiB (bound {MAX_RSS_KIB}):\n{}",
            outcome.max_rss_kib,
            outcome.dump()
        );
    }
    (check, run)
}

#[test]
fn an_entry_holding_more_than_its_header_declares_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Declares 1 KiB, holds 300 MiB: both stop reading after 1 KiB.
    let mut zip = deflated_zip(&[streamed(
        "extensions/x",
        0o755,
        script_then_zeros(300 * MIB),
    )]);
    patch_declared_size(&mut zip, "extensions/x", 1024);
    let zip = write_zip(tmp.path(), "lie.zip", &zip);
    let (check, run) = assert_both_refuse(
        tmp.path(),
        &zip,
        &["extensions/x: declares 1024 bytes, holds more (a corrupt or crafted zip)"],
        &["extensions/x: declares 1024 bytes, holds more (a corrupt or crafted zip)"],
    );
    for outcome in [check, run] {
        assert!(
            outcome.elapsed < Duration::from_secs(10),
            "read past the declared size:\n{}",
            outcome.dump()
        );
    }
}

#[test]
fn an_entry_holding_less_than_declared_or_with_a_bad_crc_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Declares 10 MiB, holds 4 KiB (and its CRC is of those 4 KiB).
    let mut zip = deflated_zip(&[streamed("extensions/x", 0o755, script_then_zeros(4096))]);
    patch_declared_size(&mut zip, "extensions/x", 10 << 20);
    let short = write_zip(tmp.path(), "short.zip", &zip);
    assert_both_refuse(
        tmp.path(),
        &short,
        &["extensions/x: declares 10485760 bytes, holds 4106 (a corrupt or crafted zip)"],
        &["extensions/x: declares 10485760 bytes, holds 4106 (a corrupt or crafted zip)"],
    );

    // The sizes are right, the CRC is not: the data was altered.
    let mut zip = deflated_zip(&[streamed("extensions/x", 0o755, script_then_zeros(4096))]);
    let crc = declared_crc(&zip, "extensions/x");
    patch_crc(&mut zip, "extensions/x", crc ^ 1);
    let altered = write_zip(tmp.path(), "crc.zip", &zip);
    assert_both_refuse(
        tmp.path(),
        &altered,
        &["extensions/x: its bytes do not match the CRC-32 its header declares (a corrupt or crafted zip)"],
&["extensions/x: its bytes do not match the CRC-32 its header declares (a corrupt or crafted zip)"],
    );
}

#[test]
fn an_elf_bomb_is_not_read_into_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // 0.5 MB of zip: the ELF magic, then 512 MiB of zeros.
    let zip = deflated_zip(&[streamed(
        "extensions/x",
        0o755,
        vec![Part::Bytes(b"\x7fELF".to_vec()), Part::Zeros(512 * MIB)],
    )]);
    assert!(zip.len() < 4 * MIB as usize, "{} bytes", zip.len());
    let zip = write_zip(tmp.path(), "bomb.zip", &zip);
    // Its size is the problem; lext check stops reading after 250 MiB.
    let (check, run) = assert_both_refuse(
        tmp.path(),
        &zip,
        &[&format!(
            "unzipped size is {} bytes, over the 262144000-byte (250 MiB) limit",
            512 * MIB + 4
        )],
        &[
            "bomb.zip: the layers unpack to more than 262144000 bytes (250 MiB), Lambda's \
          unzipped limit of a function with its layers",
        ],
    );
    for outcome in [check, run] {
        assert!(
            outcome.elapsed < DEADLINE / 2,
            "too slow:\n{}",
            outcome.dump()
        );
    }
}

#[test]
fn a_big_real_looking_elf_is_checked_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // 200 MiB, its section headers at the very end, needing GLIBC_2.28:
    // the glibc check must still see the tables, without the whole file.
    let zip = deflated_zip(&[streamed(
        "extensions/big",
        0o755,
        big_elf(&["GLIBC_2.2.5", "GLIBC_2.28"], 200 * MIB),
    )]);
    let zip = write_zip(tmp.path(), "big.zip", &zip);
    let check = lext(tmp.path(), &["check", &zip]);
    check.assert_refused_with(&["extensions/big: needs GLIBC_2.28, provided.al2 has glibc 2.26"]);
    assert!(
        check.max_rss_kib < MAX_RSS_KIB,
        "lext check peaked at {} KiB (bound {MAX_RSS_KIB}):\n{}",
        check.max_rss_kib,
        check.dump()
    );
    // On provided.al2023 (glibc 2.34) the same layer passes.
    let ok = lext(tmp.path(), &["check", &zip, "--runtime", "provided.al2023"]);
    assert_eq!(ok.code, Some(0), "{}", ok.dump());
    assert!(
        ok.stdout.contains("ok for provided.al2023 (x86_64)"),
        "{}",
        ok.dump()
    );
    assert!(ok.max_rss_kib < MAX_RSS_KIB, "{}", ok.dump());
}

#[test]
fn two_entries_with_one_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let zip = deflated_zip(&[
        streamed(
            "extensions/x",
            0o755,
            vec![Part::Bytes(b"#!/bin/sh\necho one\n".to_vec())],
        ),
        streamed(
            "extensions/x",
            0o755,
            vec![Part::Bytes(b"#!/bin/sh\necho two\n".to_vec())],
        ),
    ]);
    let zip = write_zip(tmp.path(), "dup.zip", &zip);
    assert_both_refuse(
        tmp.path(),
        &zip,
        &["extensions/x: two entries with this name; Lambda would keep one of them"],
        &["extensions/x: two entries with this name; Lambda would keep one of them"],
    );
}
