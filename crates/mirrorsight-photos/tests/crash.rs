//! SIGKILL in the middle of a spool write and of an upload, then restart: no partial photo is
//! ever uploaded, no saved photo is lost, the backend never sees two bodies under one id.
//! The work runs in `spool-crash-helper`, a separate process the test kills.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

const HELPER: &str = env!("CARGO_BIN_EXE_spool-crash-helper");

struct Helper {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Helper {
    fn spawn(dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(HELPER)
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn helper");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one starts with `prefix` (returned) or the helper exits.
    fn until(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    assert!(!line.starts_with("ERROR"), "helper: {line}");
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return Some(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!(
                        "helper timed out waiting for {prefix}; said {:?}",
                        self.seen
                    )
                }
            }
        }
    }

    fn sigkill(mut self) -> Vec<String> {
        // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no shutdown runs.
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
        self.seen.extend(self.lines.try_iter());
        self.seen
    }

    fn finish(mut self, timeout: Duration) -> Vec<String> {
        assert!(
            self.until("DRAINED", timeout).is_some() || self.seen.iter().any(|l| l == "DRAINED"),
            "helper ended without draining: {:?}",
            self.seen
        );
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "helper exit {status}: {:?}", self.seen);
        self.seen.extend(self.lines.try_iter());
        self.seen
    }
}

/// `SAVED <id> <sha>` lines → id → sha.
fn saved(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("SAVED "))
        .map(|rest| {
            let (id, sha) = rest.split_once(' ').expect("SAVED id sha");
            (id.to_string(), sha.to_string())
        })
        .collect()
}

fn drain(dir: &Path, b: &TestBackend) -> Vec<String> {
    let url = b.url();
    Helper::spawn(dir, &["upload", "--backend", &url, "--token", TOKEN])
        .finish(Duration::from_secs(60))
}

/// Everything the test was told was saved is at the backend, byte-identical to the spool copy
/// and to the digest reported at save time; everything at the backend is a complete spooled
/// photo; no id ever carried two bodies.
fn assert_delivered(dir: &Path, b: &TestBackend, saved: &BTreeMap<String, String>) {
    let stored = b.stored();
    let on_disk = spooled_jpgs(dir);
    for (id, sha) in saved {
        let (_, body) = stored
            .get(id)
            .unwrap_or_else(|| panic!("saved photo {id} never reached the backend"));
        assert_eq!(
            &sha_hex(body),
            sha,
            "{id}: backend body differs from what was saved"
        );
        assert_eq!(
            body, &on_disk[id],
            "{id}: backend body differs from the spool copy"
        );
    }
    for (id, (_, body)) in &stored {
        let disk = on_disk
            .get(id)
            .unwrap_or_else(|| panic!("backend holds {id}, which is not a complete spooled photo"));
        assert_eq!(body, disk);
        let sidecar: mirrorsight_photos::Sidecar =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{id}.json"))).unwrap())
                .unwrap();
        assert_eq!(sidecar.sha256, sha_hex(body));
        assert_eq!(sidecar.state, mirrorsight_photos::PhotoState::Uploaded);
    }
    b.assert_no_conflicting_bodies();
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
    assert_private(dir);
}

#[test]
fn sigkill_mid_write_never_uploads_a_partial_photo() {
    let tmp = tempfile::tempdir().unwrap();
    let stages = [
        "jpeg-partly-written",
        "jpeg-in-place",
        "sidecar-partly-written",
        "sidecar-in-place",
    ];
    for (i, stage) in stages.iter().enumerate() {
        let b = TestBackend::start();
        let dir = tmp.path().join(stage);
        let seed = (100 + i).to_string();
        let mut h = Helper::spawn(
            &dir,
            &[
                "save",
                "--seed",
                &seed,
                "--count",
                "3",
                "--hang-stage",
                stage,
                "--hang-at",
                "2",
            ],
        );
        h.until("HANG", Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{stage}: helper never reached the stage"));
        let lines = h.sigkill();
        let ok = saved(&lines);
        assert_eq!(ok.len(), 2, "{stage}: {lines:?}");

        // What the kill left on disk, before any recovery.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        let temps = names.iter().filter(|n| n.starts_with(".tmp-")).count();
        let jpgs = names
            .iter()
            .filter(|n| n.ends_with(".jpg") && !n.starts_with('.'))
            .count();
        let jsons = names
            .iter()
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .count();
        match *stage {
            "jpeg-partly-written" => assert_eq!((temps, jpgs, jsons), (1, 2, 2), "{names:?}"),
            "jpeg-in-place" => assert_eq!((temps, jpgs, jsons), (0, 3, 2), "{names:?}"),
            "sidecar-partly-written" => assert_eq!((temps, jpgs, jsons), (1, 3, 2), "{names:?}"),
            _ => assert_eq!((temps, jpgs, jsons), (0, 3, 3), "{names:?}"),
        }
        if *stage == "jpeg-partly-written" {
            let tmpfile = names.iter().find(|n| n.starts_with(".tmp-")).unwrap();
            let partial = std::fs::metadata(dir.join(tmpfile)).unwrap().len();
            let full = std::fs::metadata(dir.join(format!("{}.jpg", ok.keys().next().unwrap())))
                .unwrap()
                .len();
            assert!(partial < full, "the temp file really is partial");
        }

        let before = b.stored().len();
        drain(&dir, &b);
        assert_delivered(&dir, &b, &ok);
        let new = b.stored().len() - before;
        // The interrupted photo was never reported saved; once both of its files were in
        // place it is complete and verified, so it may go too. Before that it must not.
        let expected = if *stage == "sidecar-in-place" { 3 } else { 2 };
        assert_eq!(new, expected, "{stage}");
        let quarantined = std::fs::read_dir(dir.join("quarantine")).unwrap().count();
        let expected_q = if matches!(*stage, "jpeg-in-place" | "sidecar-partly-written") {
            1
        } else {
            0
        };
        assert_eq!(
            quarantined, expected_q,
            "{stage}: a jpg without sidecar is kept aside"
        );
    }
}

#[test]
fn sigkill_mid_upload_resends_idempotently_after_restart() {
    let b = TestBackend::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let lines = Helper::spawn(&dir, &["save", "--seed", "200", "--count", "3"]);
    let lines = {
        let mut h = lines;
        let mut out = Vec::new();
        while let Some(l) = h.until("SAVED", Duration::from_secs(60)) {
            out.push(l);
        }
        assert!(h.child.wait().unwrap().success());
        out
    };
    let ok = saved(&lines);
    assert_eq!(ok.len(), 3);

    // The backend stores the first photo and then the helper dies before the answer.
    b.push_faults([Fault::StallAfterStore(Duration::from_secs(30))]);
    let url = b.url();
    let h = Helper::spawn(&dir, &["upload", "--backend", &url, "--token", TOKEN]);
    b.wait_for(
        "the first upload to be stored",
        Duration::from_secs(30),
        |s| s.stored.len() == 1,
    );
    h.sigkill();
    let first = b.stored().keys().next().unwrap().clone();
    let sidecar: mirrorsight_photos::Sidecar =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{first}.json"))).unwrap()).unwrap();
    assert_eq!(
        sidecar.state,
        mirrorsight_photos::PhotoState::Pending,
        "not marked uploaded without a confirmation"
    );

    drain(&dir, &b);
    assert_delivered(&dir, &b, &ok);
    assert_eq!(b.stored().len(), 3);
    // Sent twice, stored once: the second answer was the "already have it" 200.
    let statuses: Vec<u16> = b
        .log()
        .iter()
        .filter(|s| s.photo.as_deref() == Some(first.as_str()) && s.status != 0)
        .map(|s| s.status)
        .collect();
    assert_eq!(statuses, vec![200], "{:?}", b.log());
}

#[test]
fn random_sigkills_while_saving_and_uploading_lose_and_duplicate_nothing() {
    let b = TestBackend::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let url = b.url();
    let mut all_saved = BTreeMap::new();
    // Deterministic "random" kill times, spread over saving, fsync and request phases.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for round in 0..8u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(150 + x % 500);
        let seed = (300 + round).to_string();
        let mut h = Helper::spawn(
            &dir,
            &[
                "both",
                "--backend",
                &url,
                "--token",
                TOKEN,
                "--seed",
                &seed,
                "--count",
                "1000",
                "--interval-ms",
                "2",
            ],
        );
        // Wait for the helper to be up (its first save), then kill it after the delay.
        h.until("SAVED", Duration::from_secs(60));
        std::thread::sleep(delay);
        let lines = h.sigkill();
        all_saved.extend(saved(&lines));
    }
    assert!(all_saved.len() >= 8, "{}", all_saved.len());
    drain(&dir, &b);
    assert_delivered(&dir, &b, &all_saved);
    println!(
        "{} photos saved across 8 kills, {} stored at the backend, {} POSTs",
        all_saved.len(),
        b.stored().len(),
        b.log().len()
    );
}
