//! The spool on a real filesystem: crash-safe layout, modes, recovery, quota, full and
//! read-only disks (root: a real tmpfs; without root these skip, and fail under `CI=true`).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use mirrorsight_photos::{PhotoMeta, PhotoState, Sidecar, Spool, SpoolError, SpoolOptions};
use mirrorsight_testkit::{Tmpfs, can_run, is_root, require};
use support::*;

fn options(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        dir: dir.to_path_buf(),
        quota_bytes: 64 << 20,
        retention: Duration::from_secs(3600),
    }
}

fn meta(session: &str, n: u64) -> PhotoMeta {
    PhotoMeta {
        session: session.into(),
        scene: format!("scene-{session}"),
        taken_at: 1_700_000_000_000 + n,
        t: n as f64,
        trigger: "thumbs_up".into(),
    }
}

fn read_sidecar(dir: &Path, id: &str) -> Sidecar {
    serde_json::from_slice(&fs::read(dir.join(format!("{id}.json"))).unwrap()).unwrap()
}

#[test]
fn save_writes_photo_sidecar_and_manifest_privately() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    // A permissive umask must not make the spool readable by others.
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0) };
    let (spool, report) = Spool::open(options(&dir)).unwrap();
    assert_eq!(report.pending, 0);
    let body = jpeg(1, 320, 240);
    let saved = spool.save(&meta("sessA", 1), &body, test_id(1, 1)).unwrap();
    let body2 = jpeg(2, 320, 240);
    let saved2 = spool
        .save(&meta("sessA", 2), &body2, test_id(1, 2))
        .unwrap();
    // SAFETY: as above.
    unsafe { libc::umask(old) };

    assert_eq!(saved.path, dir.join(format!("{}.jpg", saved.photo)));
    assert_eq!(
        fs::read(&saved.path).unwrap(),
        body,
        "jpg on disk is the exact bytes"
    );
    let sc = read_sidecar(&dir, saved.photo.as_str());
    assert_eq!(sc.photo, saved.photo);
    assert_eq!(sc.session, "sessA");
    assert_eq!(sc.scene, "scene-sessA");
    assert_eq!(sc.taken_at, 1_700_000_000_001);
    assert_eq!(sc.t, 1.0);
    assert_eq!(sc.trigger, "thumbs_up");
    assert_eq!(sc.sha256, sha_hex(&body));
    assert_eq!(sc.bytes, body.len() as u64);
    assert_eq!(sc.state, PhotoState::Pending);

    let manifest: mirrorsight_photos::Manifest =
        serde_json::from_slice(&fs::read(spool.manifest_path("sessA")).unwrap()).unwrap();
    let ids: Vec<_> = manifest.photos.iter().map(|p| p.photo.clone()).collect();
    assert_eq!(ids, vec![saved.photo.clone(), saved2.photo.clone()]);
    assert_eq!(manifest.scene, "scene-sessA");

    assert!(temp_files(&dir).is_empty());
    assert_private(&dir);
    // The event carries the path and id.
    match saved.event() {
        mirrorsight_contract::events::EventKind::PhotoSaved {
            photo,
            path,
            session,
            ..
        } => {
            assert_eq!(photo, saved.photo.as_str());
            assert_eq!(path, saved.path.display().to_string());
            assert_eq!(session, "sessA");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ids_and_names_are_checked_and_duplicates_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(tmp.path())).unwrap();
    let body = jpeg(3, 64, 64);
    let mut bad = meta("s", 1);
    bad.session = "../../etc".into();
    assert!(matches!(
        spool.save(&bad, &body, test_id(2, 1)),
        Err(SpoolError::Invalid { .. })
    ));
    assert!(matches!(
        spool.save(&meta("s", 1), b"not a jpeg", test_id(2, 1)),
        Err(SpoolError::NotJpeg { .. })
    ));
    spool.save(&meta("s", 1), &body, test_id(2, 1)).unwrap();
    assert!(matches!(
        spool.save(&meta("s", 2), &jpeg(4, 64, 64), test_id(2, 1)),
        Err(SpoolError::Duplicate(_))
    ));
    assert_eq!(
        fs::read(spool.photo_path(&test_id(2, 1))).unwrap(),
        body,
        "a duplicate id never overwrites"
    );
}

#[test]
fn a_second_process_cannot_open_the_same_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let (_a, _) = Spool::open(options(tmp.path())).unwrap();
    let e = Spool::open(options(tmp.path())).unwrap_err();
    assert!(matches!(e, SpoolError::Locked { .. }), "{e}");
}

#[test]
fn recovery_removes_partial_writes_and_quarantines_what_cannot_be_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let good_body = jpeg(10, 200, 100);
    let (good, tampered, no_sidecar, truncated) =
        (test_id(3, 1), test_id(3, 2), test_id(3, 3), test_id(3, 4));
    {
        let (spool, _) = Spool::open(options(&dir)).unwrap();
        spool.save(&meta("s", 1), &good_body, good.clone()).unwrap();
        spool
            .save(&meta("s", 2), &jpeg(11, 200, 100), tampered.clone())
            .unwrap();
        spool
            .save(&meta("s", 4), &jpeg(12, 200, 100), truncated.clone())
            .unwrap();
    }
    // What a crash (or a disk error) can leave behind:
    fs::write(dir.join(".tmp-partial.jpg"), b"\xFF\xD8half").unwrap();
    fs::write(dir.join("sessions/.tmp-s.json"), b"{").unwrap();
    fs::write(dir.join(format!("{no_sidecar}.jpg")), jpeg(13, 200, 100)).unwrap();
    let mut t = fs::read(dir.join(format!("{tampered}.jpg"))).unwrap();
    t[100] ^= 0xFF;
    fs::write(dir.join(format!("{tampered}.jpg")), t).unwrap();
    let sc = fs::read(dir.join(format!("{truncated}.json"))).unwrap();
    fs::write(dir.join(format!("{truncated}.json")), &sc[..sc.len() / 2]).unwrap();
    fs::set_permissions(
        dir.join(format!("{good}.jpg")),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(dir.join("sessions/s.json")).unwrap();

    let (spool, report) = Spool::open(options(&dir)).unwrap();
    assert_eq!(report.pending, 1, "{report:?}");
    assert_eq!(report.temp_files_removed.len(), 2, "{report:?}");
    let quarantined: Vec<String> = report
        .quarantined
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for f in [
        format!("{tampered}.jpg"),
        format!("{tampered}.json"),
        format!("{no_sidecar}.jpg"),
        format!("{truncated}.jpg"),
        format!("{truncated}.json"),
    ] {
        assert!(
            quarantined.contains(&f),
            "{f} not quarantined: {quarantined:?}"
        );
        assert!(spool.quarantine_dir().join(&f).exists());
        assert!(!dir.join(&f).exists());
    }
    assert!(spool.get(&tampered).is_none());
    assert!(spool.get(&good).is_some());
    assert_eq!(
        fs::read(dir.join(format!("{good}.jpg"))).unwrap(),
        good_body
    );
    assert!(temp_files(&dir).is_empty());
    // Manifest rebuilt from the sidecars, with only the trustworthy photo.
    let manifest: mirrorsight_photos::Manifest =
        serde_json::from_slice(&fs::read(spool.manifest_path("s")).unwrap()).unwrap();
    assert_eq!(manifest.photos.len(), 1);
    assert_eq!(manifest.photos[0].photo, good);
    assert_private(&dir);
}

#[test]
fn quota_refuses_new_photos_and_never_deletes_unuploaded_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let body_len = jpeg(0, 320, 240).len() as u64;
    let opts = SpoolOptions {
        quota_bytes: body_len * 3 + 2000,
        ..options(&dir)
    };
    let (spool, _) = Spool::open(opts).unwrap();
    let mut saved = Vec::new();
    let mut refused = None;
    for n in 0..10 {
        let body = jpeg(n as u32, 320, 240);
        match spool.save(&meta("q", n), &body, test_id(4, n)) {
            Ok(s) => saved.push((s, body)),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("quota must refuse at some point");
    assert!(matches!(e, SpoolError::QuotaExceeded { .. }), "{e}");
    assert_eq!(e.reason(), "spool_quota_reached");
    assert!(e.to_string().contains("photos.spool_quota_mb"), "{e}");
    assert!(saved.len() >= 2, "only {} fit", saved.len());
    for (s, body) in &saved {
        assert_eq!(&fs::read(&s.path).unwrap(), body);
        assert_eq!(spool.get(&s.photo).unwrap().state, PhotoState::Pending);
    }
    // Refused again (still nothing uploaded), nothing deleted.
    assert!(
        spool
            .save(&meta("q", 99), &jpeg(99, 320, 240), test_id(4, 99))
            .is_err()
    );
    assert_eq!(spooled_jpgs(&dir).len(), saved.len());
    assert!(temp_files(&dir).is_empty());
    match e.refused_event("q") {
        mirrorsight_contract::events::EventKind::PhotoRefused { session, reason } => {
            assert_eq!(
                (session.as_str(), reason.as_str()),
                ("q", "spool_quota_reached")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn discard_removes_the_latest_photo_of_the_session_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (spool, _) = Spool::open(options(&dir)).unwrap();
    let a1 = spool
        .save(&meta("a", 1), &jpeg(1, 64, 64), test_id(5, 1))
        .unwrap();
    let b1 = spool
        .save(&meta("b", 2), &jpeg(2, 64, 64), test_id(5, 2))
        .unwrap();
    let a2 = spool
        .save(&meta("a", 3), &jpeg(3, 64, 64), test_id(5, 3))
        .unwrap();

    let d = spool.discard_latest("a").unwrap().unwrap();
    assert_eq!(d.photo, a2.photo);
    assert!(!d.was_uploaded);
    assert!(!d.remote_delete, "never sent: nothing to delete remotely");
    assert!(!a2.path.exists());
    assert!(!spool.sidecar_path(&a2.photo).exists());
    assert!(a1.path.exists() && b1.path.exists());
    let manifest: mirrorsight_photos::Manifest =
        serde_json::from_slice(&fs::read(spool.manifest_path("a")).unwrap()).unwrap();
    assert_eq!(manifest.photos.len(), 1);

    assert_eq!(spool.discard_latest("a").unwrap().unwrap().photo, a1.photo);
    assert!(spool.discard_latest("a").unwrap().is_none());
    assert!(
        !spool.manifest_path("a").exists(),
        "empty session: manifest removed"
    );
    assert!(b1.path.exists());
    drop(spool);
    let (spool, report) = Spool::open(options(&dir)).unwrap();
    assert_eq!(report.pending, 1);
    assert!(spool.get(&b1.photo).is_some());
}

#[test]
fn retention_removes_only_uploaded_photos() {
    // Uploaded state comes from the uploader; here a sidecar is edited the way the uploader
    // writes it and the spool reopened.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (up, pend) = (test_id(6, 1), test_id(6, 2));
    {
        let (spool, _) = Spool::open(options(&dir)).unwrap();
        spool
            .save(&meta("r", 1), &jpeg(1, 64, 64), up.clone())
            .unwrap();
        spool
            .save(&meta("r", 2), &jpeg(2, 64, 64), pend.clone())
            .unwrap();
    }
    let mut sc = read_sidecar(&dir, up.as_str());
    sc.state = PhotoState::Uploaded;
    sc.uploaded_at = Some(1_000_000);
    fs::write(
        dir.join(format!("{up}.json")),
        serde_json::to_vec(&sc).unwrap(),
    )
    .unwrap();

    let (spool, report) = Spool::open(options(&dir)).unwrap();
    assert_eq!((report.pending, report.uploaded), (1, 1));
    assert_eq!(spool.sweep_retention(1_000_000 + 3_599_999).unwrap(), 0);
    assert_eq!(spool.sweep_retention(1_000_000 + 3_600_000).unwrap(), 1);
    assert!(!spool.photo_path(&up).exists() && !spool.sidecar_path(&up).exists());
    assert!(spool.photo_path(&pend).exists());
    assert_eq!(
        spool.sweep_retention(u64::MAX).unwrap(),
        0,
        "pending photos never expire"
    );
    assert!(spool.photo_path(&pend).exists());
}

#[test]
fn read_only_spool_gives_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    fs::create_dir_all(&dir).unwrap();
    if is_root() {
        // Permission bits do not stop root; a read-only tmpfs does.
        let test = "read_only_spool_gives_a_clear_error";
        let Some(_ro) = require(test, Tmpfs::mount(&dir, "ro,size=1m,mode=0700")) else {
            return;
        };
        let e = Spool::open(options(&dir)).unwrap_err();
        assert!(matches!(e, SpoolError::ReadOnly { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(
            msg.contains("read-only") && msg.contains("photos.spool_dir"),
            "{msg}"
        );
    } else {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
        let e = Spool::open(options(&dir)).unwrap_err();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(e, SpoolError::PermissionDenied { .. }), "{e}");
        assert!(e.to_string().contains("chmod 0700"), "{e}");
    }
}

#[test]
fn spool_turned_read_only_refuses_new_photos_and_keeps_old_ones() {
    let test = "spool_turned_read_only_refuses_new_photos_and_keeps_old_ones";
    if !can_run(
        test,
        is_root(),
        "remounting read-only needs root (chmod is covered by read_only_spool_gives_a_clear_error)",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let Some(fs_) = require(test, Tmpfs::mount(&dir, "size=8m,mode=0700")) else {
        return;
    };
    let (spool, _) = Spool::open(options(&dir)).unwrap();
    let first = jpeg(1, 320, 240);
    let saved = spool.save(&meta("ro", 1), &first, test_id(7, 1)).unwrap();
    assert!(fs_.remount("ro"));
    let e = spool
        .save(&meta("ro", 2), &jpeg(2, 320, 240), test_id(7, 2))
        .unwrap_err();
    assert!(matches!(e, SpoolError::ReadOnly { .. }), "{e}");
    assert_eq!(e.reason(), "spool_read_only");
    assert_eq!(fs::read(&saved.path).unwrap(), first);
    assert!(
        spool.discard_latest("ro").is_err(),
        "discard also reports, never panics"
    );
    assert!(fs_.remount("rw"));
    drop(spool);
    let (spool, report) = Spool::open(options(&dir)).unwrap();
    assert_eq!(report.pending, 1);
    assert!(spool.get(&test_id(7, 2)).is_none());
    assert!(temp_files(&dir).is_empty());
}

#[test]
fn full_disk_refuses_with_a_typed_error_and_loses_nothing() {
    let test = "full_disk_refuses_with_a_typed_error_and_loses_nothing";
    if !can_run(test, is_root(), "a small tmpfs needs root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let Some(_fs) = require(test, Tmpfs::mount(&dir, "size=400k,mode=0700")) else {
        return;
    };
    let (spool, _) = Spool::open(options(&dir)).unwrap();
    let mut kept = Vec::new();
    let mut err = None;
    for n in 0..100u64 {
        let body = jpeg(n as u32, 320, 240);
        match spool.save(&meta("full", n), &body, test_id(8, n)) {
            Ok(s) => kept.push((s, body)),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err.expect("the tmpfs must fill up");
    assert!(matches!(e, SpoolError::DiskFull { .. }), "{e}");
    assert!(e.to_string().contains(&dir.display().to_string()), "{e}");
    assert!(e.to_string().contains("free space"), "{e}");
    assert!(!kept.is_empty());
    for (s, body) in &kept {
        assert_eq!(&fs::read(&s.path).unwrap(), body);
    }
    assert!(temp_files(&dir).is_empty(), "failed write cleaned up");
    assert_eq!(spooled_jpgs(&dir).len(), kept.len());
    drop(spool);
    // Still opens on a full disk (the spooled photos can still be uploaded).
    let (_spool, report) = Spool::open(options(&dir)).unwrap();
    assert_eq!(report.pending, kept.len());
    assert!(report.quarantined.is_empty());
}
