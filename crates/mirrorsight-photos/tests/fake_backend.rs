//! The uploader against the project's shared fake backend (`mirrorsight-fake-backend`), which
//! implements `docs/openapi.yaml`: a contract check on top of the fault tests in `upload.rs`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mirrorsight_fake_backend::{
    BlockingFakeServer, FAKE_DEVICE_TOKEN, FAKE_DEVICE_TOKEN_2, FakeServer, Fault, Route,
};
use mirrorsight_photos::{
    Backend, PhotoMeta, PhotoState, Secret, Spool, SpoolOptions, UploadOutcome, Uploader,
    UploaderOptions,
};
use support::{jpeg, spooled_jpgs, test_id};
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

fn start(
    rt: &tokio::runtime::Runtime,
    spool: &Arc<Spool>,
    fake: &BlockingFakeServer,
    token: &str,
) -> (Uploader, UnboundedReceiver<UploadOutcome>) {
    Uploader::spawn(
        rt.handle(),
        Arc::clone(spool),
        Backend {
            base_url: fake.url().to_string(),
            token: Secret::new(token),
        },
        UploaderOptions {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            sweep_interval: Duration::from_secs(1),
        },
    )
    .unwrap()
}

fn meta(session: &str, scene: &str, n: u64) -> PhotoMeta {
    PhotoMeta {
        session: session.into(),
        scene: scene.into(),
        taken_at: 1_700_000_000_000 + n,
        t: n as f64,
        trigger: "victory".into(),
    }
}

fn collect(
    rt: &tokio::runtime::Runtime,
    rx: &mut UnboundedReceiver<UploadOutcome>,
    mut done: impl FnMut(&[UploadOutcome]) -> bool,
) -> Vec<UploadOutcome> {
    let mut got = Vec::new();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
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
fn photos_reach_the_fake_backend_byte_identical_once_through_outage_and_faults() {
    let fake = FakeServer::start_blocking().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let rt = runtime();
    for n in 0..2u64 {
        spool
            .save(
                &meta("sessF", "sceneF", n),
                &jpeg(n as u32, 320, 240),
                test_id(40, n),
            )
            .unwrap();
    }
    let (up, mut rx) = start(&rt, &spool, &fake, FAKE_DEVICE_TOKEN);
    collect(&rt, &mut rx, |o| uploaded(o) == 2);

    // A real outage (connection refused), then an nginx 502 page and a 503 with Retry-After.
    fake.go_down();
    for n in 2..4u64 {
        spool
            .save(
                &meta("sessF", "sceneF", n),
                &jpeg(n as u32, 320, 240),
                test_id(40, n),
            )
            .unwrap();
    }
    let failed = collect(&rt, &mut rx, |o| o.len() >= 3);
    assert!(failed.iter().all(|o| matches!(
        o,
        UploadOutcome::UploadFailed {
            permanent: false,
            ..
        }
    )));
    fake.inject(Route::PhotoUpload, Fault::Html502, 1);
    fake.inject(Route::PhotoUpload, Fault::Status(503), 1);
    fake.come_back();
    collect(&rt, &mut rx, |o| uploaded(o) == 2);

    let stored = fake.photos();
    let on_disk = spooled_jpgs(tmp.path());
    assert_eq!(stored.len(), 4);
    for p in &stored {
        assert_eq!(p.bytes, on_disk[&p.photo], "{} byte-identical", p.photo);
        assert_eq!((p.scene.as_str(), p.session.as_str()), ("sceneF", "sessF"));
        assert_eq!(p.trigger, "victory");
        assert_eq!(p.device, "mirror-1");
        assert!((1_700_000_000_000..1_700_000_000_004).contains(&p.taken_at_ms));
    }
    for n in 0..4 {
        assert_eq!(
            spool.get(&test_id(40, n)).unwrap().state,
            PhotoState::Uploaded
        );
    }

    // Discard of an uploaded photo reaches the fake as a DELETE.
    let d = spool.discard_latest("sessF").unwrap().unwrap();
    assert!(d.remote_delete);
    collect(&rt, &mut rx, |o| {
        o.iter()
            .any(|o| matches!(o, UploadOutcome::RemoteDeleted { .. }))
    });
    assert_eq!(fake.photos().len(), 3);
    assert!(fake.photo("sceneF", d.photo.as_str()).is_none());
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_scene_of_another_device_is_a_permanent_refusal_and_the_photo_is_kept() {
    let fake = FakeServer::start_blocking().unwrap();
    let rt = runtime();
    // Mirror 2 uploads to the scene first and so owns it.
    let other = tempfile::tempdir().unwrap();
    let other_spool = open(other.path());
    other_spool
        .save(&meta("s2", "taken", 0), &jpeg(1, 64, 64), test_id(41, 0))
        .unwrap();
    let (up2, mut rx2) = start(&rt, &other_spool, &fake, FAKE_DEVICE_TOKEN_2);
    collect(&rt, &mut rx2, |o| uploaded(o) == 1);
    rt.block_on(up2.shutdown(Duration::from_secs(5)));

    let tmp = tempfile::tempdir().unwrap();
    let spool = open(tmp.path());
    let saved = spool
        .save(&meta("s1", "taken", 1), &jpeg(2, 64, 64), test_id(41, 1))
        .unwrap();
    let (up, mut rx) = start(&rt, &spool, &fake, FAKE_DEVICE_TOKEN);
    let out = collect(&rt, &mut rx, |o| !o.is_empty());
    match &out[0] {
        UploadOutcome::UploadFailed {
            permanent, reason, ..
        } => {
            assert!(*permanent);
            assert!(
                reason.contains("403") && reason.contains("another device"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(saved.path.exists());
    assert_eq!(spool.get(&saved.photo).unwrap().state, PhotoState::Failed);
    rt.block_on(up.shutdown(Duration::from_secs(5)));
}
