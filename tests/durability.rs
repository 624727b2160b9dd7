//! Durability beyond SIGKILL: what the kernel is asked to do, read from the system calls of a
//! real replay (strace). A crash test shows that a killed process loses nothing; only the order
//! of writes, fsyncs and renames shows that a power cut loses nothing either.
//!
//! The replay takes a photo by gesture, uploads it to the loopback fake (which rewrites its
//! sidecar) and binds its session to a relay-minted scene. Then, from the trace:
//! - every file in the spool is written under a temporary name, fsynced, renamed into place,
//!   and its directory fsynced after the rename; a photo's directory fsync comes before its
//!   `photo_saved` event, so a shopper is never told about a photo a power cut can take back;
//! - every directory the run creates (the state directory, the spool and its subdirectories)
//!   is followed by an fsync of its parent before the first event;
//! - every binding record is one write to the log, fdatasynced before the next record and
//!   before the session's `qr_minted` event; the log's creation is made durable by an fsync of
//!   its directory. (The log is append-only: records are never renamed into place.)
//!
//! Needs `strace` (Debian package `strace`, installed by `scripts/setup-test.sh`) and the shared
//! footage; without them the test prints a skip line, and fails under `CI=true`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use mirrorsight_fake_backend::{FAKE_DEVICE_TOKEN, FakeServer};

/// One traced system call of one thread.
#[derive(Debug, Clone)]
struct Call {
    time: f64,
    name: String,
    /// The path of the first argument's file descriptor (`strace -y`), if it is one.
    fd_path: Option<String>,
    /// The quoted strings among the arguments (file names), in order.
    paths: Vec<String>,
    /// The first 160 bytes of a written buffer, unescaped as far as ASCII goes.
    data: String,
    result: i64,
    line: String,
}

/// Parses `strace -ttt -y -s 160` lines: `1700000000.123456 name(args) = result`.
fn parse_line(line: &str) -> Option<Call> {
    let (time, rest) = line.split_once(' ')?;
    let time: f64 = time.parse().ok()?;
    let open = rest.find('(')?;
    let name = rest[..open].to_string();
    let close = rest.rfind(") = ")?;
    let args = &rest[open + 1..close];
    let result = rest[close + 4..]
        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .next()?
        .parse()
        .ok()?;
    let fd_path = args
        .split_once('<')
        .filter(|(fd, _)| fd.chars().all(|c| c.is_ascii_digit()) && !fd.is_empty())
        .and_then(|(_, tail)| tail.split_once('>'))
        .map(|(path, _)| path.to_string());
    let mut paths = Vec::new();
    let mut chars = args.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            let mut escaped = false;
            for (_, c) in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    (_, c) => {
                        s.push(c);
                        escaped = false;
                    }
                }
            }
            let _ = i;
            paths.push(s);
        }
    }
    let data = if name == "write" {
        paths.first().cloned().unwrap_or_default()
    } else {
        String::new()
    };
    Some(Call {
        time,
        name,
        fd_path,
        paths,
        data,
        result,
        line: line.to_string(),
    })
}

/// Every thread's calls, in order, from `strace -ff -o <prefix>` files.
fn read_traces(dir: &Path) -> Vec<Vec<Call>> {
    let mut threads = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        threads.push(text.lines().filter_map(parse_line).collect());
    }
    threads
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn is_fsync(call: &Call, path: &str) -> bool {
    matches!(call.name.as_str(), "fsync" | "fdatasync")
        && call.fd_path.as_deref() == Some(path)
        && call.result == 0
}

fn is_rename(call: &Call) -> bool {
    call.name.starts_with("rename") && call.paths.len() >= 2
}

/// The time of the first event line of `event_type` naming `id` written to stdout.
fn event_time(threads: &[Vec<Call>], event_type: &str, id: &str) -> f64 {
    let wanted = format!("{{\"type\":\"{event_type}\"");
    threads
        .iter()
        .flatten()
        .filter(|c| c.name == "write" && c.data.starts_with(&wanted) && c.data.contains(id))
        .map(|c| c.time)
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn every_photo_and_binding_record_is_on_disk_before_it_is_announced() {
    let test = "every_photo_and_binding_record_is_on_disk_before_it_is_announced";
    let Some(strace) =
        mirrorsight_testkit::require(test, mirrorsight_testkit::tool("strace", "strace"))
    else {
        return;
    };
    let Some(clip) = footage("mediapipe_gesture_recognizer_test_video.mp4") else {
        return;
    };
    let fake = FakeServer::start_blocking().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let traces = dir.path().join("trace");
    std::fs::create_dir(&traces).unwrap();
    let out = run_ok(
        std::process::Command::new(strace)
            .args(["-f", "-ff", "--seccomp-bpf", "-ttt", "-y", "-s", "160"])
            .args(["-e", "trace=%file,fsync,fdatasync,write"])
            .arg("-o")
            .arg(traces.join("t"))
            .arg(env!("CARGO_BIN_EXE_mirrorsight"))
            .arg("replay")
            .arg(&clip)
            .args(["--set", "qr.kind=\"relay\"", "--set"])
            .arg(format!("backend.url=\"{}\"", fake.url()))
            .arg("--set")
            .arg(format!("storage.dir=\"{}\"", state.display()))
            .env("MIRRORSIGHT_DEVICE_TOKEN", FAKE_DEVICE_TOKEN),
    );
    let events = parse_events(&out.stdout);
    let threads = read_traces(&traces);
    let spool = state.join("spool").display().to_string();
    let log = state.join("bindings.jsonl").display().to_string();

    // Every file that lands in the spool: temp file → write → fsync → rename → fsync of the
    // directory, all in the thread that wrote it.
    let mut renamed: BTreeMap<String, f64> = BTreeMap::new();
    for calls in &threads {
        for (i, call) in calls.iter().enumerate() {
            if !is_rename(call) || !call.paths[1].starts_with(&spool) || call.result != 0 {
                continue;
            }
            let (tmp, target) = (&call.paths[0], &call.paths[1]);
            if target.ends_with("/write-probe") {
                // The start-up check that the spool is writable; deleted at once, never relied on.
                continue;
            }
            let name = tmp.rsplit('/').next().unwrap_or_default();
            assert!(
                name.starts_with(".tmp-"),
                "renamed from a temp file: {}",
                call.line
            );
            let before = &calls[..i];
            let written: i64 = before
                .iter()
                .filter(|c| c.name == "write" && c.fd_path.as_deref() == Some(tmp))
                .map(|c| c.result)
                .sum();
            assert!(written > 0, "{tmp} was written before the rename");
            let last_write = before
                .iter()
                .rposition(|c| c.name == "write" && c.fd_path.as_deref() == Some(tmp))
                .unwrap();
            assert!(
                before[last_write..].iter().any(|c| is_fsync(c, tmp)),
                "{tmp} fsynced after its last write and before the rename:\n{}",
                call.line
            );
            let dir_synced = calls[i..]
                .iter()
                .find(|c| is_fsync(c, parent(target)))
                .unwrap_or_else(|| panic!("no fsync of {} after {}", parent(target), call.line));
            // A file rewritten later (the sidecar after its upload) counts from its first
            // durable arrival: that is the one the announcement depends on.
            let first = renamed.entry(target.clone()).or_insert(f64::INFINITY);
            *first = first.min(dir_synced.time);
        }
    }

    // Every directory this run created (the state directory, the spool and the spool's own
    // directories) is made durable in its parent, in the thread that created it, before
    // anything is announced: a file's fsync keeps nothing if its directory's entry is lost.
    let root = dir.path().display().to_string();
    let first_event = threads
        .iter()
        .flatten()
        .filter(|c| c.name == "write" && c.data.starts_with("{\"type\":\""))
        .map(|c| c.time)
        .fold(f64::INFINITY, f64::min);
    let mut created_dirs = Vec::new();
    for calls in &threads {
        for (i, call) in calls.iter().enumerate() {
            if !call.name.starts_with("mkdir") || call.result != 0 {
                continue;
            }
            let Some(created) = call.paths.last().filter(|p| p.starts_with(&root)) else {
                continue;
            };
            let synced = calls[i..]
                .iter()
                .find(|c| is_fsync(c, parent(created)))
                .unwrap_or_else(|| panic!("{created} created, its parent never fsynced"));
            assert!(
                synced.time <= first_event,
                "{created}'s parent fsynced at {} after the first event at {first_event}",
                synced.time
            );
            created_dirs.push(created.strip_prefix(&root).unwrap_or(created).to_string());
        }
    }
    created_dirs.sort();
    assert_eq!(
        created_dirs,
        [
            "/state",
            "/state/clips",
            "/state/spool",
            "/state/spool/quarantine",
            "/state/spool/sessions"
        ],
        "the state directory, the clip spool, the photo spool, sessions/ and quarantine/, each created once"
    );

    // Every photo announced: both its files went through the sequence above, the jpg before the
    // sidecar that describes it, and the directory was fsynced before the event went out.
    let saved = of_type(&events, "photo_saved");
    assert!(
        !saved.is_empty(),
        "the clip's thumbs up takes a photo: {events:?}"
    );
    for event in saved {
        let mirrorsight::events::EventKind::PhotoSaved { photo, path, .. } = &event.kind else {
            unreachable!()
        };
        let jpg = renamed
            .get(path)
            .unwrap_or_else(|| panic!("{path} never renamed into place durably"));
        let sidecar = renamed
            .get(&format!("{spool}/{photo}.json"))
            .unwrap_or_else(|| panic!("sidecar of {photo} never renamed into place durably"));
        let announced = event_time(&threads, "photo_saved", photo);
        assert!(
            jpg.max(*sidecar) <= announced,
            "photo_saved for {photo} at {announced} before its directory fsync at {}",
            jpg.max(*sidecar)
        );
    }
    assert!(
        !of_type(&events, "photo_uploaded").is_empty(),
        "the upload rewrote the sidecar (traced above too): {events:?}"
    );

    // Every binding record: one write, then fdatasync before anything else is written to the
    // log, and before the session's code is announced.
    let minted = of_type(&events, "qr_minted");
    assert!(!minted.is_empty());
    let mut records = 0;
    for calls in &threads {
        for (i, call) in calls.iter().enumerate() {
            if call.name != "write" || call.fd_path.as_deref() != Some(log.as_str()) {
                continue;
            }
            records += 1;
            assert!(
                call.result > 0 && call.data.starts_with("{\"session\":\""),
                "one whole record per write: {}",
                call.line
            );
            let synced = calls[i + 1..]
                .iter()
                .take_while(|c| !(c.name == "write" && c.fd_path.as_deref() == Some(log.as_str())))
                .find(|c| is_fsync(c, &log))
                .unwrap_or_else(|| {
                    panic!("binding record not synced before the next: {}", call.line)
                });
            let session = call
                .data
                .split("\"session\":\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or_else(|| panic!("a binding names its session: {}", call.line));
            let announced = event_time(&threads, "qr_minted", session);
            assert!(
                synced.time <= announced,
                "qr_minted for {session} at {announced} before its binding was synced at {}",
                synced.time
            );
        }
    }
    assert_eq!(records, minted.len(), "one record per code shown");
    let created = threads.iter().any(|calls| {
        calls.iter().enumerate().any(|(i, c)| {
            c.name.starts_with("open")
                && c.paths.iter().any(|p| p == &log)
                && c.line.contains("O_CREAT")
                && calls[i..]
                    .iter()
                    .any(|d| is_fsync(d, &state.display().to_string()))
        })
    });
    assert!(
        created,
        "the log's creation is followed by an fsync of {}",
        state.display()
    );
}
