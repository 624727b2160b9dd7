//! The uploader against a loopback backend: delivery, faults, discard, shutdown.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mirrorsight_photos::{
    Backend, PhotoMeta, PhotoState, Secret, ShutdownReport, Spool, SpoolOptions, UploadOutcome,
    Uploader, UploaderOptions,
};
use support::*;
use tokio::sync::mpsc::UnboundedReceiver;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(dir: &Path) -> Arc<Spool> {
    let (spool, _) = Spool::open(SpoolOptions {
        dir: dir.to_path_buf(),
        quota_bytes: 64 << 20,
        retention: Duration::from_secs(3600),
    })
    .unwrap();
    Arc::new(spool)
}

fn fast() -> UploaderOptions {
    UploaderOptions {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(150),
        timeout: Duration::from_secs(5),
        sweep_interval: Duration::from_secs(1),
    }
}

fn backend(b: &TestBackend) -> Backend {
    Backend {
        base_url: b.url(),
        token: Secret::new(TOKEN),
    }
}

fn meta(session: &str, n: u64) -> PhotoMeta {
    PhotoMeta {
        session: session.into(),
        scene: format!("scene_{session}"),
        taken_at: 1_700_000_000_000 + n,
        t: n as f64 * 0.5,
        trigger: "thumbs_up".into(),
    }
}

/// Receives outcomes until `done` says so.
fn collect(
    rt: &tokio::runtime::Runtime,
    rx: &mut UnboundedReceiver<UploadOutcome>,
    timeout: Duration,
    mut done: impl FnMut(&[UploadOutcome]) -> bool,
) -> Vec<UploadOutcome> {
    let mut got = Vec::new();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&got) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(o)) => got.push(o),
                Ok(None) => break,
                Err(_) => panic!("timed out; outcomes so far: {got:#?}"),
            }
        }
    });
    got
}

fn uploaded(o: &[UploadOutcome]) -> usize {
    o.iter()
        .filter(|o| matches!(o, UploadOutcome::Uploaded { .. }))
        .count()
}

#[test]
fn photos_arrive_byte_identical_exactly_once_with_the_contract_headers() {
    let b = TestBackend::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let mut saved = Vec::new();
    for n in 0..5u64 {
        saved.push(
            spool
                .save(&meta("s1", n), &jpeg(n as u32, 640, 480), test_id(20, n))
                .unwrap(),
        );
    }
    let rt = runtime();
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    let out = collect(&rt, &mut rx, Duration::from_secs(20), |o| uploaded(o) == 5);
    assert!(
        out.iter()
            .all(|o| matches!(o, UploadOutcome::Uploaded { .. })),
        "{out:#?}"
    );

    let stored = b.stored();
    let on_disk = spooled_jpgs(tmp.path());
    assert_eq!(stored.len(), 5);
    for s in &saved {
        let (scene, body) = &stored[s.photo.as_str()];
        assert_eq!(scene, "scene_s1");
        assert_eq!(
            body,
            &on_disk[s.photo.as_str()],
            "byte-identical to the spool copy"
        );
        assert_eq!(b.posts_for(s.photo.as_str()), 1, "sent exactly once");
        assert_eq!(spool.get(&s.photo).unwrap().state, PhotoState::Uploaded);
        let sc: mirrorsight_photos::Sidecar =
            serde_json::from_slice(&std::fs::read(spool.sidecar_path(&s.photo)).unwrap()).unwrap();
        assert_eq!(
            sc.state,
            PhotoState::Uploaded,
            "sidecar records the confirmation"
        );
        assert!(sc.uploaded_at.is_some());
    }
    // Oldest first, and the headers of the contract.
    let log = b.log();
    let order: Vec<_> = log.iter().filter_map(|s| s.photo.clone()).collect();
    let expected: Vec<_> = saved.iter().map(|s| s.photo.to_string()).collect();
    assert_eq!(order, expected);
    let first = &log[0];
    assert_eq!(first.path, format!("/v1/sessions/scene_s1/photos"));
    assert_eq!(first.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(first.headers["idempotency-key"], saved[0].photo.as_str());
    assert_eq!(first.headers["x-photo-id"], saved[0].photo.as_str());
    assert_eq!(first.headers["x-session-id"], "s1");
    assert_eq!(first.headers["x-taken-at"], "1700000000000");
    assert_eq!(first.headers["x-trigger"], "thumbs_up");
    assert_eq!(first.headers["x-content-sha256"], saved[0].sha256);
    assert_eq!(first.headers["content-type"], "image/jpeg");
    b.assert_no_conflicting_bodies();

    // New photos after the queue drained wake the worker.
    spool
        .save(&meta("s1", 9), &jpeg(9, 64, 64), test_id(20, 9))
        .unwrap();
    let out = collect(&rt, &mut rx, Duration::from_secs(10), |o| uploaded(o) == 1);
    assert_eq!(
        out[0],
        UploadOutcome::Uploaded {
            photo: test_id(20, 9).to_string(),
            session: "s1".into(),
            scene: "scene_s1".into()
        }
    );
    assert_eq!(
        rt.block_on(up.shutdown(Duration::from_secs(5))),
        ShutdownReport::Finished
    );
    assert_private(tmp.path());
}

#[test]
fn backend_down_for_a_while_then_back_delivers_everything_once() {
    let b = TestBackend::start();
    b.set_sticky(Some(Fault::Down));
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    for n in 0..3u64 {
        spool
            .save(&meta("down", n), &jpeg(n as u32, 320, 240), test_id(21, n))
            .unwrap();
    }
    let rt = runtime();
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    let failures = collect(&rt, &mut rx, Duration::from_secs(20), |o| o.len() >= 6);
    for f in &failures {
        match f {
            UploadOutcome::UploadFailed {
                permanent, reason, ..
            } => {
                assert!(!permanent, "an outage is transient: {reason}");
                assert!(
                    reason.contains("backend") || reason.contains("network"),
                    "{reason}"
                );
            }
            other => panic!("nothing can be delivered while down: {other:?}"),
        }
    }
    // Attempts count up per photo.
    assert!(
        failures
            .iter()
            .any(|f| matches!(f, UploadOutcome::UploadFailed { attempt, .. } if *attempt >= 2))
    );
    assert!(b.stored().is_empty());
    // Photos taken during the outage wait too.
    spool
        .save(&meta("down", 3), &jpeg(3, 320, 240), test_id(21, 3))
        .unwrap();

    b.set_sticky(None);
    collect(&rt, &mut rx, Duration::from_secs(20), |o| uploaded(o) == 4);
    let stored = b.stored();
    let on_disk = spooled_jpgs(tmp.path());
    assert_eq!(stored.len(), 4);
    for (id, (_, body)) in &stored {
        assert_eq!(body, &on_disk[id]);
        let ok_posts = b
            .log()
            .iter()
            .filter(|s| {
                s.photo.as_deref() == Some(id.as_str()) && (s.status == 201 || s.status == 200)
            })
            .count();
        assert_eq!(ok_posts, 1, "{id} delivered once");
    }
    b.assert_no_conflicting_bodies();
    assert_eq!(spool.stats().pending, 0);
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn html_error_pages_and_captive_portals_are_retried_not_trusted() {
    let b = TestBackend::start();
    b.push_faults([
        Fault::Answer {
            status: 502,
            content_type: "text/html",
            body: "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
                .into(),
        },
        // A captive portal answering 200 with a login page: not a confirmation.
        Fault::Answer {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: "<html><title>Hotel WiFi login</title></html>".into(),
        },
        Fault::Answer {
            status: 429,
            content_type: "application/json",
            body: r#"{"error":"rate_limited","message":"slow down"}"#.into(),
        },
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let saved = spool
        .save(&meta("html", 1), &jpeg(1, 320, 240), test_id(22, 1))
        .unwrap();
    let rt = runtime();
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    let out = collect(&rt, &mut rx, Duration::from_secs(20), |o| uploaded(o) == 1);
    let reasons: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            UploadOutcome::UploadFailed {
                reason, permanent, ..
            } => {
                assert!(!permanent, "{reason}");
                Some(reason.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert!(
        reasons[0].contains("502") && reasons[0].contains("Bad Gateway"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("instead of the JSON confirmation")
            && reasons[1].contains("Hotel WiFi login"),
        "{}",
        reasons[1]
    );
    assert!(
        reasons[2].contains("429") && reasons[2].contains("rate_limited"),
        "{}",
        reasons[2]
    );
    assert_eq!(
        b.stored()[saved.photo.as_str()].1,
        std::fs::read(&saved.path).unwrap()
    );
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn client_errors_are_permanent_and_the_photo_stays_in_the_spool() {
    let b = TestBackend::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let saved = spool
        .save(&meta("perm", 1), &jpeg(1, 320, 240), test_id(23, 1))
        .unwrap();
    let rt = runtime();
    let wrong = Backend {
        base_url: b.url(),
        token: Secret::new("revoked-token"),
    };
    assert!(
        !format!("{wrong:?}").contains("revoked-token"),
        "token must not reach logs"
    );
    let (up, mut rx) = Uploader::spawn(rt.handle(), Arc::clone(&spool), wrong, fast()).unwrap();
    let out = collect(&rt, &mut rx, Duration::from_secs(10), |o| !o.is_empty());
    match &out[0] {
        UploadOutcome::UploadFailed {
            permanent, reason, ..
        } => {
            assert!(*permanent);
            assert!(
                reason.contains("401") && reason.contains("device token"),
                "{reason}"
            );
            assert!(!reason.contains("revoked-token"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Not retried in this run; kept, recorded as failed.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(b.posts_for(saved.photo.as_str()), 1);
    assert!(saved.path.exists());
    let sc = spool.get(&saved.photo).unwrap();
    assert_eq!(sc.state, PhotoState::Failed);
    assert!(sc.failure.unwrap().contains("401"));
    assert_eq!(
        rt.block_on(up.shutdown(Duration::from_secs(5))),
        ShutdownReport::Finished
    );
    drop(spool);

    // After a restart with the right token, it goes through.
    let spool = open(tmp.path());
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    collect(&rt, &mut rx, Duration::from_secs(10), |o| uploaded(o) == 1);
    assert_eq!(
        b.stored()[saved.photo.as_str()].1,
        std::fs::read(&saved.path).unwrap()
    );
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_confirmation_of_different_bytes_is_not_accepted() {
    let b = TestBackend::start();
    b.push_faults([Fault::WrongDigest]);
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let saved = spool
        .save(&meta("dig", 1), &jpeg(1, 64, 64), test_id(24, 1))
        .unwrap();
    let rt = runtime();
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    let out = collect(&rt, &mut rx, Duration::from_secs(10), |o| !o.is_empty());
    assert!(
        matches!(&out[0], UploadOutcome::UploadFailed { permanent: true, reason, .. } if reason.contains("different photo")),
        "{out:?}"
    );
    assert_ne!(spool.get(&saved.photo).unwrap().state, PhotoState::Uploaded);
    assert!(saved.path.exists());
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_photo_whose_bytes_changed_on_disk_is_never_uploaded() {
    let b = TestBackend::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let saved = spool
        .save(&meta("rot", 1), &jpeg(1, 64, 64), test_id(25, 1))
        .unwrap();
    let mut body = std::fs::read(&saved.path).unwrap();
    let last = body.len() - 3;
    body[last] ^= 0x55;
    std::fs::write(&saved.path, &body).unwrap();
    let rt = runtime();
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    let out = collect(&rt, &mut rx, Duration::from_secs(10), |o| !o.is_empty());
    assert!(
        matches!(&out[0], UploadOutcome::UploadFailed { permanent: true, reason, .. } if reason.contains("quarantined")),
        "{out:?}"
    );
    assert!(b.log().is_empty(), "nothing was sent");
    assert!(
        spool
            .quarantine_dir()
            .join(format!("{}.jpg", saved.photo))
            .exists()
    );
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn discarding_an_uploaded_photo_deletes_it_from_the_backend() {
    let b = TestBackend::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let keep = spool
        .save(&meta("d", 1), &jpeg(1, 64, 64), test_id(26, 1))
        .unwrap();
    let gone = spool
        .save(&meta("d", 2), &jpeg(2, 64, 64), test_id(26, 2))
        .unwrap();
    let rt = runtime();
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    collect(&rt, &mut rx, Duration::from_secs(10), |o| uploaded(o) == 2);

    let d = spool.discard_latest("d").unwrap().unwrap();
    assert_eq!(d.photo, gone.photo);
    assert!(d.was_uploaded && d.remote_delete);
    assert!(!gone.path.exists(), "local copy removed at once");
    let out = collect(&rt, &mut rx, Duration::from_secs(10), |o| !o.is_empty());
    assert_eq!(
        out[0],
        UploadOutcome::RemoteDeleted {
            photo: gone.photo.to_string(),
            session: "d".into()
        }
    );
    assert!(!b.stored().contains_key(gone.photo.as_str()));
    assert!(b.stored().contains_key(keep.photo.as_str()));
    assert!(
        !spool.sidecar_path(&gone.photo).exists(),
        "tombstone removed after the DELETE"
    );
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_discard_owed_to_the_backend_survives_a_restart() {
    let b = TestBackend::start();
    let tmp = tempfile::tempdir().unwrap();
    let photo;
    {
        let spool = open(tmp.path());
        let saved = spool
            .save(&meta("dr", 1), &jpeg(1, 64, 64), test_id(27, 1))
            .unwrap();
        photo = saved.photo.clone();
        let rt = runtime();
        let (up, mut rx) =
            Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
        collect(&rt, &mut rx, Duration::from_secs(10), |o| uploaded(o) == 1);
        b.set_sticky(Some(Fault::Down));
        let d = spool.discard_latest("dr").unwrap().unwrap();
        assert!(d.remote_delete);
        collect(&rt, &mut rx, Duration::from_secs(10), |o| {
            o.iter()
                .any(|o| matches!(o, UploadOutcome::RemoteDeleteFailed { .. }))
        });
        rt.block_on(up.shutdown(Duration::from_secs(5)));
    }
    assert!(b.stored().contains_key(photo.as_str()));
    b.set_sticky(None);
    let (spool, report) = Spool::open(SpoolOptions {
        dir: tmp.path().to_path_buf(),
        quota_bytes: 64 << 20,
        retention: Duration::from_secs(3600),
    })
    .unwrap();
    assert_eq!(report.deletes_owed, 1);
    let rt = runtime();
    let (up, mut rx) = Uploader::spawn(rt.handle(), Arc::new(spool), backend(&b), fast()).unwrap();
    collect(&rt, &mut rx, Duration::from_secs(10), |o| {
        o.iter()
            .any(|o| matches!(o, UploadOutcome::RemoteDeleted { .. }))
    });
    assert!(!b.stored().contains_key(photo.as_str()));
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn discarding_during_the_upload_still_removes_the_backend_copy() {
    let b = TestBackend::start();
    b.push_faults([Fault::StallAfterStore(Duration::from_millis(600))]);
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let saved = spool
        .save(&meta("dm", 1), &jpeg(1, 64, 64), test_id(28, 1))
        .unwrap();
    let rt = runtime();
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    b.wait_for("the upload to arrive", Duration::from_secs(10), |s| {
        !s.stored.is_empty()
    });
    let d = spool.discard_latest("dm").unwrap().unwrap();
    assert!(!d.was_uploaded);
    assert!(d.remote_delete, "in flight: the backend may have it");
    collect(&rt, &mut rx, Duration::from_secs(10), |o| {
        o.iter()
            .any(|o| matches!(o, UploadOutcome::RemoteDeleted { .. }))
    });
    assert!(!b.stored().contains_key(saved.photo.as_str()));
    assert!(!saved.path.exists() && !spool.sidecar_path(&saved.photo).exists());
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn shutdown_finishes_the_upload_in_flight_within_its_bound() {
    let b = TestBackend::start();
    b.push_faults([Fault::StallAfterStore(Duration::from_millis(500))]);
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let saved = spool
        .save(&meta("sd", 1), &jpeg(1, 64, 64), test_id(29, 1))
        .unwrap();
    let rt = runtime();
    let (up, _rx) = Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    b.wait_for("the upload to arrive", Duration::from_secs(10), |s| {
        !s.stored.is_empty()
    });
    assert_eq!(
        rt.block_on(up.shutdown(Duration::from_secs(5))),
        ShutdownReport::Finished
    );
    assert_eq!(spool.get(&saved.photo).unwrap().state, PhotoState::Uploaded);

    // A request that outlasts the bound is abandoned; the photo stays pending.
    let saved2 = spool
        .save(&meta("sd", 2), &jpeg(2, 64, 64), test_id(29, 2))
        .unwrap();
    b.push_faults([Fault::StallAfterStore(Duration::from_secs(3))]);
    let (up, _rx) = Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    b.wait_for("the second upload", Duration::from_secs(10), |s| {
        s.stored.len() == 2
    });
    let start = std::time::Instant::now();
    assert_eq!(
        rt.block_on(up.shutdown(Duration::from_millis(200))),
        ShutdownReport::TimedOut
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(spool.get(&saved2.photo).unwrap().state, PhotoState::Pending);
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let rt = runtime();
    let e = Uploader::spawn(
        rt.handle(),
        spool,
        Backend {
            base_url: "http://store.example.com".into(),
            token: Secret::new("t"),
        },
        fast(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}

#[test]
fn under_quota_pressure_uploaded_photos_make_room_but_pending_ones_never_do() {
    let b = TestBackend::start();
    let tmp = tempfile::tempdir().unwrap();
    let body_len = jpeg(0, 320, 240).len() as u64;
    let (spool, _) = Spool::open(SpoolOptions {
        dir: tmp.path().to_path_buf(),
        quota_bytes: body_len * 3 + 3000,
        retention: Duration::from_secs(3600),
    })
    .unwrap();
    let spool = Arc::new(spool);
    let first: Vec<_> = (0..3u64)
        .map(|n| {
            spool
                .save(&meta("qu", n), &jpeg(n as u32, 320, 240), test_id(30, n))
                .unwrap()
        })
        .collect();
    let rt = runtime();
    let (up, mut rx) =
        Uploader::spawn(rt.handle(), Arc::clone(&spool), backend(&b), fast()).unwrap();
    collect(&rt, &mut rx, Duration::from_secs(10), |o| uploaded(o) == 3);
    rt.block_on(up.shutdown(Duration::from_secs(5)));

    // The uploader is stopped: new photos stay pending.
    let fourth = spool
        .save(&meta("qu", 3), &jpeg(3, 320, 240), test_id(30, 3))
        .unwrap();
    assert!(
        !first[0].path.exists(),
        "oldest uploaded photo removed early to make room"
    );
    let fifth = spool
        .save(&meta("qu", 4), &jpeg(4, 320, 240), test_id(30, 4))
        .unwrap();
    let sixth = spool
        .save(&meta("qu", 5), &jpeg(5, 320, 240), test_id(30, 5))
        .unwrap();
    assert!(first.iter().all(|s| !s.path.exists()));
    let e = spool
        .save(&meta("qu", 6), &jpeg(6, 320, 240), test_id(30, 6))
        .unwrap_err();
    assert!(
        matches!(
            e,
            mirrorsight_photos::SpoolError::QuotaExceeded { waiting: 3, .. }
        ),
        "{e}"
    );
    for s in [&fourth, &fifth, &sixth] {
        assert!(s.path.exists(), "pending photos are never removed");
        assert_eq!(spool.get(&s.photo).unwrap().state, PhotoState::Pending);
    }
}
