//! The `Store` contract, the same tests on SQLite and on a real PostgreSQL server; the
//! retention sweep; writers racing on one database.

mod support {
    pub mod pg;
}

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use mirrorsight_hub::store::{
    Activity, BlobStore, Claim, Device, LocalBlobStore, Media, MintOutcome, MintedScene,
    NewWechatEvent, NonceUse, PhotoInsert, PhotoMeta, PostgresSettings, PostgresStore, SceneKind,
    SharedToken, SqliteStore, Store, StoreError, Totals,
};
use mirrorsight_hub::{ORPHAN_GRACE_S, OrphanReport, sweep_expired, sweep_orphans};

const DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

fn device(store: &dyn Store, id: &str, shop: &str) -> Device {
    store
        .add_device(id, shop, &format!("digest-{id}"), T0)
        .unwrap();
    store
        .device_by_token(&format!("digest-{id}"))
        .unwrap()
        .unwrap()
}

fn code(url: &str) -> MintedScene {
    MintedScene {
        url: url.into(),
        ticket: Some("gQ==".into()),
        expires_at: T0 + 3600,
        minted_at: T0,
    }
}

fn photo(scene: &str, id: &str, device: &str, session: &str, sha: &str, at: i64) -> PhotoMeta {
    PhotoMeta {
        scene: scene.into(),
        photo: id.into(),
        device: device.into(),
        session_id: session.into(),
        taken_at_ms: at * 1000,
        trigger: "thumbs_up".into(),
        sha256: sha.into(),
        bytes: 3,
        blob_key: format!(
            "{:0>32}-{}",
            id.bytes().map(|b| format!("{b:02x}")).collect::<String>(),
            &sha[..16]
        ),
        created_at: at,
        expired_at: None,
        media: Media::Photo,
        poster_key: None,
    }
}

fn devices_are_hashed_revocable_and_unique(s: &dyn Store) {
    let d = device(s, "mirror-1", "shop-1");
    assert_eq!((d.id.as_str(), d.store.as_str()), ("mirror-1", "shop-1"));
    assert!(matches!(
        s.add_device("mirror-1", "shop-1", "other", T0),
        Err(StoreError::Exists(_))
    ));
    assert!(s.device_by_token("unknown").unwrap().is_none());
    assert!(s.revoke_device("mirror-1", T0 + 1).unwrap());
    assert!(
        !s.revoke_device("mirror-1", T0 + 2).unwrap(),
        "already revoked"
    );
    assert!(s.device_by_token("digest-mirror-1").unwrap().is_none());
    let listed = s.list_devices().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(T0 + 1));
}

fn scenes_belong_to_their_minter_or_first_uploader(s: &dyn Store) {
    let d1 = device(s, "mirror-1", "shop-1");
    let d2 = device(s, "mirror-2", "shop-1");
    let MintOutcome::Created(rec) = s
        .record_minted_scene("sc1", &d1, &code("u1"), "key1", T0)
        .unwrap()
    else {
        panic!("created expected")
    };
    assert_eq!(rec.gallery_key, "key1");
    assert_eq!(rec.code.as_ref().map(|c| c.url.as_str()), Some("u1"));
    // A retry or a race returns the stored code, never a second one.
    assert_eq!(
        s.record_minted_scene("sc1", &d1, &code("u2"), "key2", T0)
            .unwrap(),
        MintOutcome::Existing(rec.clone())
    );
    assert_eq!(
        s.record_minted_scene("sc1", &d2, &code("u3"), "key3", T0)
            .unwrap(),
        MintOutcome::Forbidden
    );
    assert_eq!(
        s.claim_scene("sc1", &d2, "k", T0).unwrap(),
        Claim::Forbidden
    );
    assert_eq!(
        s.claim_scene("sc1", &d1, "k", T0).unwrap(),
        Claim::Owned(rec)
    );
    // Unminted scene: the first uploader owns it, and may mint it afterwards.
    let Claim::Owned(claimed) = s.claim_scene("sc2", &d2, "key-c", T0).unwrap() else {
        panic!("claim expected")
    };
    assert!(claimed.code.is_none());
    assert_eq!(
        s.claim_scene("sc2", &d1, "k", T0).unwrap(),
        Claim::Forbidden
    );
    let MintOutcome::Created(minted) = s
        .record_minted_scene("sc2", &d2, &code("u4"), "ignored", T0)
        .unwrap()
    else {
        panic!("created expected")
    };
    assert_eq!(minted.gallery_key, "key-c", "the gallery key never changes");
}

fn registered_codes_follow_what_the_mirror_minted_last(s: &dyn Store) {
    let d1 = device(s, "mirror-1", "shop-1");
    let d2 = device(s, "mirror-2", "shop-1");
    let minted_codes = |s: &dyn Store| {
        s.totals()
            .unwrap()
            .activity
            .into_iter()
            .find(|(kind, _)| *kind == Activity::CodeMinted)
            .map(|(_, n)| n)
    };
    let MintOutcome::Created(idle) = s
        .register_scene("idle-1", &d1, &code("u1"), SceneKind::Idle, "key1", T0)
        .unwrap()
    else {
        panic!("created expected")
    };
    assert_eq!(
        (idle.kind, idle.gallery_key.as_str()),
        (SceneKind::Idle, "key1")
    );
    assert_eq!(minted_codes(s), Some(1));
    // Registered again (a restart, a new ticket): the new code replaces the old one, the
    // gallery key stays, and it is not counted as another code.
    let MintOutcome::Existing(again) = s
        .register_scene("idle-1", &d1, &code("u2"), SceneKind::Idle, "key2", T0 + 5)
        .unwrap()
    else {
        panic!("existing expected")
    };
    assert_eq!(again.code.as_ref().map(|c| c.url.as_str()), Some("u2"));
    assert_eq!(again.gallery_key, "key1");
    assert_eq!(s.scene("idle-1").unwrap(), Some(again));
    assert_eq!(minted_codes(s), Some(1));
    assert_eq!(
        s.register_scene("idle-1", &d2, &code("u3"), SceneKind::Session, "k", T0)
            .unwrap(),
        MintOutcome::Forbidden
    );
    // A session scene its uploads claimed first takes the code the mirror registers.
    s.claim_scene("sc", &d2, "key-c", T0).unwrap();
    let MintOutcome::Existing(claimed) = s
        .register_scene("sc", &d2, &code("u4"), SceneKind::Session, "ignored", T0)
        .unwrap()
    else {
        panic!("existing expected")
    };
    assert_eq!(claimed.code.as_ref().map(|c| c.url.as_str()), Some("u4"));
    assert_eq!(
        (claimed.kind, claimed.gallery_key.as_str()),
        (SceneKind::Session, "key-c")
    );
    // A code the hub minted is not replaced by minting again, but a registration replaces it.
    s.record_minted_scene("hub-sc", &d1, &code("u5"), "key5", T0)
        .unwrap();
    let MintOutcome::Existing(kept) = s
        .record_minted_scene("hub-sc", &d1, &code("u6"), "key6", T0)
        .unwrap()
    else {
        panic!("existing expected")
    };
    assert_eq!(kept.code.as_ref().map(|c| c.url.as_str()), Some("u5"));
    let MintOutcome::Existing(replaced) = s
        .register_scene("hub-sc", &d1, &code("u7"), SceneKind::Session, "key7", T0)
        .unwrap()
    else {
        panic!("existing expected")
    };
    assert_eq!(replaced.code.as_ref().map(|c| c.url.as_str()), Some("u7"));
    assert_eq!(minted_codes(s), Some(2));
}

fn photos_are_idempotent_by_id(s: &dyn Store) {
    let d = device(s, "mirror-1", "shop-1");
    s.claim_scene("sc", &d, "k", T0).unwrap();
    let a = "a".repeat(64);
    let b = "b".repeat(64);
    let p1 = photo("sc", "p1", "mirror-1", "sess", &a, T0);
    assert_eq!(s.insert_photo(&p1, "shop-1").unwrap(), PhotoInsert::Created);
    assert_eq!(
        s.insert_photo(&p1, "shop-1").unwrap(),
        PhotoInsert::SameBytes
    );
    let p1b = photo("sc", "p1", "mirror-1", "sess", &b, T0);
    assert_eq!(
        s.insert_photo(&p1b, "shop-1").unwrap(),
        PhotoInsert::Conflict
    );
    assert_eq!(s.photo("sc", "p1").unwrap().unwrap().sha256, a);
    let p2 = photo("sc", "p2", "mirror-1", "sess", &b, T0 + 5);
    assert_eq!(s.insert_photo(&p2, "shop-1").unwrap(), PhotoInsert::Created);
    let ids: Vec<_> = s
        .photos_of_scene("sc")
        .unwrap()
        .into_iter()
        .map(|p| p.photo)
        .collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert_eq!(
        s.delete_photo("sc", "p1")
            .unwrap()
            .map(|p| p.photo)
            .as_deref(),
        Some("p1")
    );
    assert_eq!(s.delete_photo("sc", "p1").unwrap(), None);
    // One mirror session, however many photos.
    let stats = s.stats(0, None, None).unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].sessions, 1);
}

fn wechat_events_are_recorded_once_and_bind(s: &dyn Store) {
    let d = device(s, "mirror-1", "shop-1");
    let Claim::Owned(scene) = s.claim_scene("sc", &d, "k", T0).unwrap() else {
        panic!()
    };
    let event = NewWechatEvent {
        dedupe: "o1|1|subscribe|qrscene_sc".into(),
        openid: "o1".into(),
        event: "subscribe".into(),
        event_key: "qrscene_sc".into(),
        bind_scene: Some(scene.clone()),
        activity: Some(Activity::ScanNewFollower),
        reply: "<xml>first</xml>".into(),
    };
    assert_eq!(
        s.record_wechat_event(&event, T0).unwrap(),
        "<xml>first</xml>"
    );
    let again = NewWechatEvent {
        reply: "<xml>second</xml>".into(),
        ..event.clone()
    };
    assert_eq!(
        s.record_wechat_event(&again, T0 + 5).unwrap(),
        "<xml>first</xml>",
        "a racing retry gets the first answer"
    );
    assert_eq!(
        s.wechat_reply(&event.dedupe).unwrap().as_deref(),
        Some("<xml>first</xml>")
    );
    assert_eq!(s.bindings("sc").unwrap().len(), 1);
    assert_eq!(s.wechat_event_count().unwrap(), 1);
    let rows = s.stats(0, None, None).unwrap();
    assert_eq!((rows[0].scans, rows[0].new_followers), (1, 1));
}

fn stats_group_by_store_mirror_and_local_day(s: &dyn Store) {
    let d1 = device(s, "mirror-1", "shop-1");
    let d2 = device(s, "mirror-2", "shop-2");
    let Claim::Owned(sc1) = s.claim_scene("sc1", &d1, "k", T0).unwrap() else {
        panic!()
    };
    let Claim::Owned(sc2) = s.claim_scene("sc2", &d2, "k", T0).unwrap() else {
        panic!()
    };
    // 2026-01-01 20:00 UTC is 2026-01-02 04:00 in UTC+8.
    let evening = T0 + 20 * 3600;
    s.record_activity(Activity::GalleryOpened, &sc1, Some("g1"), T0 + 3600)
        .unwrap();
    assert!(
        !s.record_activity(Activity::GalleryOpened, &sc1, Some("g1"), T0 + 7200)
            .unwrap()
    );
    s.record_activity(Activity::PhotoDelivered, &sc1, None, evening)
        .unwrap();
    s.record_activity(Activity::ScanAlreadyFollowing, &sc2, None, T0)
        .unwrap();
    let utc = s.stats(0, None, None).unwrap();
    assert_eq!(utc.len(), 2, "{utc:?}");
    let china = s.stats(8 * 3600, None, None).unwrap();
    let days: Vec<_> = china
        .iter()
        .map(|r| (r.day.as_str(), r.mirror.as_str()))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-01-01", "mirror-1"),
            ("2026-01-01", "mirror-2"),
            ("2026-01-02", "mirror-1")
        ]
    );
    assert_eq!(china[0].galleries_opened, 1);
    assert_eq!(
        (
            china[1].store.as_str(),
            china[1].scans,
            china[1].already_following
        ),
        ("shop-2", 1, 1)
    );
    assert_eq!(china[2].photos_delivered, 1);
    let only_second = s
        .stats(8 * 3600, Some("2026-01-02"), Some("2026-01-02"))
        .unwrap();
    assert_eq!(only_second.len(), 1);
    let totals = s.totals().unwrap();
    assert!(totals.activity.contains(&(Activity::GalleryOpened, 1)));
    assert_eq!(totals.active_devices, 2);
}

/// `/metrics`' totals are kept by the writes themselves: after adds, repeats, revocations,
/// retries, expiries and deletions they are exactly what the rows say.
fn totals_are_kept_by_the_writes_they_count(s: &dyn Store) {
    assert_eq!(
        s.totals().unwrap(),
        Totals {
            activity: Activity::ALL.iter().map(|&k| (k, 0)).collect(),
            ..Totals::default()
        },
        "a new database counts nothing"
    );
    let d = device(s, "mirror-1", "shop-1");
    device(s, "mirror-2", "shop-1");
    assert!(s.add_device("mirror-1", "shop-1", "again", T0).is_err());
    assert!(s.revoke_device("mirror-2", T0).unwrap());
    assert!(!s.revoke_device("mirror-2", T0).unwrap());
    let Claim::Owned(scene) = s.claim_scene("sc", &d, "k", T0).unwrap() else {
        panic!()
    };
    s.record_minted_scene("m1", &d, &code("u1"), "k", T0)
        .unwrap();
    s.record_minted_scene("m1", &d, &code("u2"), "k", T0)
        .unwrap();
    let sha = |c: char| c.to_string().repeat(64);
    let sized = |id: &str, session: &str, c: char, bytes: i64| PhotoMeta {
        bytes,
        ..photo("sc", id, "mirror-1", session, &sha(c), T0)
    };
    for p in [
        sized("p1", "s1", 'a', 3),
        sized("p1", "s1", 'a', 3),
        sized("p1", "s1", 'b', 7),
        sized("p2", "s1", 'c', 10),
        sized("p3", "s2", 'd', 5),
    ] {
        s.insert_photo(&p, "shop-1").unwrap();
    }
    s.mark_expired("sc", "p1", T0 + 1).unwrap();
    s.mark_expired("sc", "p1", T0 + 2).unwrap();
    assert!(s.delete_photo("sc", "p1").unwrap().is_some(), "expired");
    assert!(s.delete_photo("sc", "p2").unwrap().is_some(), "live");
    assert!(s.delete_photo("sc", "p2").unwrap().is_none());
    let push = |dedupe: &str, event: &str, bind: bool| NewWechatEvent {
        dedupe: dedupe.into(),
        openid: "o1".into(),
        event: event.into(),
        event_key: "sc".into(),
        bind_scene: bind.then(|| scene.clone()),
        activity: Some(Activity::ScanAlreadyFollowing),
        reply: "<xml/>".into(),
    };
    for event in [
        push("e1", "SCAN", true),
        push("e1", "SCAN", true),
        push("e2", "SCAN", true),
        push("e3", "SCAN", false),
    ] {
        s.record_wechat_event(&event, T0).unwrap();
    }
    for _ in 0..2 {
        s.record_activity(Activity::GalleryOpened, &scene, Some("g"), T0)
            .unwrap();
    }
    let totals = s.totals().unwrap();
    assert_eq!(
        totals,
        Totals {
            activity: vec![
                (Activity::Session, 2),
                (Activity::CodeMinted, 1),
                (Activity::ScanNewFollower, 0),
                (Activity::ScanAlreadyFollowing, 2),
                (Activity::PhotoDelivered, 0),
                (Activity::GalleryOpened, 1),
            ],
            photos_stored: 1,
            photo_bytes_stored: 5,
            active_devices: 1,
            bindings: 1,
            wechat_events: 3,
        }
    );
    assert_eq!(totals.wechat_events, s.wechat_event_count().unwrap());
}

/// A signed push's (timestamp, nonce): fresh once, the same body again is a retry, another body
/// a replay; forgotten once its time is up.
fn push_nonces_are_remembered_with_their_body_until_they_expire(s: &dyn Store) {
    let keep = T0 + 300;
    assert_eq!(
        s.claim_push_nonce(T0, "n1", "body-a", T0, keep).unwrap(),
        NonceUse::Fresh
    );
    assert_eq!(
        s.claim_push_nonce(T0, "n1", "body-a", T0 + 5, keep)
            .unwrap(),
        NonceUse::SameBody
    );
    assert_eq!(
        s.claim_push_nonce(T0, "n1", "body-b", T0 + 5, keep)
            .unwrap(),
        NonceUse::OtherBody
    );
    assert_eq!(
        s.claim_push_nonce(T0, "n2", "body-b", T0 + 5, keep)
            .unwrap(),
        NonceUse::Fresh,
        "another nonce"
    );
    assert_eq!(
        s.claim_push_nonce(T0 + 1, "n1", "body-b", T0 + 5, keep + 1)
            .unwrap(),
        NonceUse::Fresh,
        "another timestamp"
    );
    assert_eq!(
        s.claim_push_nonce(T0, "n1", "body-b", keep, keep).unwrap(),
        NonceUse::OtherBody,
        "still remembered at its last second"
    );
    assert_eq!(
        s.claim_push_nonce(T0, "n1", "body-b", keep + 1, keep)
            .unwrap(),
        NonceUse::Fresh,
        "forgotten after it"
    );
}

fn retention_sweep_removes_old_bytes_and_keeps_rows(s: &dyn Store) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobStore::open(&dir.path().join("blobs")).unwrap();
    let d = device(s, "mirror-1", "shop-1");
    s.claim_scene("sc", &d, "k", T0).unwrap();
    let old = photo("sc", "old", "mirror-1", "s", &"a".repeat(64), T0);
    let new = photo("sc", "new", "mirror-1", "s", &"b".repeat(64), T0 + 6 * DAY);
    for p in [&old, &new] {
        blobs.put(&p.blob_key, b"jpg").unwrap();
        s.insert_photo(p, "shop-1").unwrap();
    }
    assert_eq!(
        s.referenced_blobs(&[
            old.blob_key.clone(),
            new.blob_key.clone(),
            "0123456789abcdef".into()
        ])
        .unwrap(),
        HashSet::from([old.blob_key.clone(), new.blob_key.clone()])
    );
    // Day 7 + 1 s: only the first photo is past a 7-day retention.
    let report = sweep_expired(s, &blobs, 7, T0 + 7 * DAY + 1).unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(blobs.get(&old.blob_key).unwrap(), None);
    assert!(blobs.get(&new.blob_key).unwrap().is_some());
    let rows = s.photos_of_scene("sc").unwrap();
    assert_eq!(rows.len(), 2, "expired rows stay for the gallery notice");
    assert_eq!(rows[0].expired_at, Some(T0 + 7 * DAY + 1));
    assert_eq!(rows[1].expired_at, None);
    assert_eq!(
        s.referenced_blobs(&[old.blob_key.clone(), new.blob_key.clone()])
            .unwrap(),
        HashSet::from([new.blob_key.clone()]),
        "an expired photo no longer needs its bytes"
    );
    // Idempotent, and a later sweep takes the rest.
    assert_eq!(
        sweep_expired(s, &blobs, 7, T0 + 7 * DAY + 2)
            .unwrap()
            .expired,
        0
    );
    assert_eq!(
        sweep_expired(s, &blobs, 7, T0 + 14 * DAY).unwrap().expired,
        1
    );
    assert_eq!(s.totals().unwrap().photos_stored, 0);
}

/// A clip is a row like a photo, with its poster's blob beside its bytes: retention, deletion
/// and the orphan sweep treat both blobs as the clip's.
fn clips_are_kept_like_photos_with_their_poster(s: &dyn Store) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobStore::open(&dir.path().join("blobs")).unwrap();
    let d = device(s, "mirror-1", "shop-1");
    s.claim_scene("sc", &d, "k", T0).unwrap();
    let clip = PhotoMeta {
        media: Media::Clip,
        trigger: "open_palm_hold".into(),
        ..photo("sc", "c1", "mirror-1", "s", &"c".repeat(64), T0)
    };
    let still = photo("sc", "p1", "mirror-1", "s", &"d".repeat(64), T0 + 1);
    for p in [&clip, &still] {
        blobs.put(&p.blob_key, b"bytes").unwrap();
        assert_eq!(s.insert_photo(p, "shop-1").unwrap(), PhotoInsert::Created);
    }
    // A poster only for a clip that is there.
    let poster = format!("{:0>32}-{}", "ab", "e".repeat(16));
    assert!(matches!(
        s.set_poster("sc", "p1", &poster),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.set_poster("sc", "nope", &poster),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.set_poster("sc", "c1", &poster).unwrap(), None);
    blobs.put(&poster, b"jpg").unwrap();
    let poster2 = format!("{:0>32}-{}", "ab", "f".repeat(16));
    assert_eq!(
        s.set_poster("sc", "c1", &poster2).unwrap(),
        Some(poster.clone()),
        "putting it again replaces it; the old key goes back to the caller"
    );
    blobs.delete(&poster).unwrap();
    blobs.put(&poster2, b"jpg").unwrap();
    let rows = s.photos_of_scene("sc").unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.photo.as_str(), r.media, r.poster_key.as_deref()))
            .collect::<Vec<_>>(),
        [
            ("c1", Media::Clip, Some(poster2.as_str())),
            ("p1", Media::Photo, None)
        ]
    );
    assert_eq!(
        s.referenced_blobs(&[clip.blob_key.clone(), poster2.clone(), poster.clone()])
            .unwrap(),
        HashSet::from([clip.blob_key.clone(), poster2.clone()]),
        "the poster is referenced as long as its clip is live"
    );
    // Retention expires the clip and removes both of its blobs.
    let report = sweep_expired(s, &blobs, 7, T0 + 7 * DAY + 2).unwrap();
    assert_eq!(report.expired, 2);
    assert_eq!(report.blobs_missing, 0);
    assert_eq!(blobs.get(&clip.blob_key).unwrap(), None);
    assert_eq!(blobs.get(&poster2).unwrap(), None);
    assert!(
        matches!(
            s.set_poster("sc", "c1", &poster),
            Err(StoreError::NotFound(_))
        ),
        "an expired clip takes no poster"
    );
    // Deleting the row hands back both keys.
    let gone = s.delete_photo("sc", "c1").unwrap().expect("the clip's row");
    assert_eq!(
        gone.blob_keys().collect::<Vec<_>>(),
        [clip.blob_key.as_str(), poster2.as_str()]
    );
}

fn bound_photos_are_kept_longer_and_retention_prunes_openids(s: &dyn Store) {
    use mirrorsight_hub::store::{Activity, NewWechatEvent, PushOutcome};
    use mirrorsight_hub::{Retention, sweep_retention};
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobStore::open(&dir.path().join("blobs")).unwrap();
    let d = device(s, "mirror-1", "shop-1");
    for scene in ["free", "kept"] {
        s.claim_scene(scene, &d, "k", T0).unwrap();
        let p = photo(
            scene,
            &format!("p-{scene}"),
            "mirror-1",
            scene,
            &"a".repeat(64),
            T0,
        );
        blobs.put(&p.blob_key, b"jpg").unwrap();
        s.insert_photo(&p, "shop-1").unwrap();
    }
    let kept = s.scene("kept").unwrap().unwrap();
    s.record_wechat_event(
        &NewWechatEvent {
            dedupe: "oKeeper\u{1f}1\u{1f}SCAN\u{1f}kept".into(),
            openid: "oKeeper".into(),
            event: "SCAN".into(),
            event_key: "kept".into(),
            bind_scene: Some(kept),
            activity: Some(Activity::ScanAlreadyFollowing),
            reply: "<xml/>".into(),
        },
        T0,
    )
    .unwrap();
    s.note_interaction("oKeeper", T0).unwrap();
    assert_eq!(s.enqueue_pushes("kept", T0 + 20, T0 - DAY, T0).unwrap(), 1);
    let due = s.claim_due_pushes("i1", T0 + 20, T0 + 100, 10).unwrap();
    s.finish_push(&due[0], &PushOutcome::Sent, T0 + 21).unwrap();
    let retention = Retention {
        days: 7,
        bound_days: 365,
    };

    // Day 8: the unbound session's photo expires; the bound one is kept. The sent message and
    // the follower are forgotten. The expired session stays one more period (the gallery says
    // "expired"), then goes.
    let report = sweep_retention(s, &blobs, retention, T0 + 8 * DAY).unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        (
            report.pruned.scenes,
            report.pruned.bindings,
            report.pruned.pushes,
            report.pruned.followers
        ),
        (0, 0, 1, 1),
        "{report:?}"
    );
    assert!(s.scene("free").unwrap().is_some());
    let report = sweep_retention(s, &blobs, retention, T0 + 16 * DAY).unwrap();
    assert_eq!((report.expired, report.pruned.scenes), (0, 1), "{report:?}");
    assert!(s.scene("free").unwrap().is_none());
    assert!(s.photos_of_scene("free").unwrap().is_empty());
    let live = s.photos_of_scene("kept").unwrap();
    assert_eq!((live.len(), live[0].expired_at), (1, None));
    assert_eq!(s.scenes_of_openid("oKeeper").unwrap().len(), 1);
    assert!(s.pushes_of_scene("kept").unwrap().is_empty());

    // Day 366: the bound photo expires too, and the recorded scan and its activity row go;
    // a period later the session and the binding, so the openid is in no row (the totals
    // stay).
    let report = sweep_retention(s, &blobs, retention, T0 + 366 * DAY).unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        (report.pruned.scenes, report.pruned.wechat_events),
        (0, 1),
        "{report:?}"
    );
    assert!(report.pruned.activity >= 1);
    let report = sweep_retention(s, &blobs, retention, T0 + 374 * DAY).unwrap();
    assert_eq!(
        (report.pruned.scenes, report.pruned.bindings),
        (1, 1),
        "{report:?}"
    );
    assert!(s.scenes_of_openid("oKeeper").unwrap().is_empty());
    assert_eq!(s.wechat_event_count().unwrap(), 0);
    let totals = s.totals().unwrap();
    assert_eq!(
        (totals.bindings, totals.wechat_events, totals.photos_stored),
        (0, 0, 0)
    );
    assert!(
        totals
            .activity
            .iter()
            .any(|(k, n)| *k == Activity::ScanAlreadyFollowing && *n == 1),
        "counted activity is history: {:?}",
        totals.activity
    );
}

fn orphaned_bytes_are_swept_after_a_grace_period(s: &dyn Store) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobStore::open(dir.path()).unwrap();
    let d = device(s, "mirror-1", "shop-1");
    s.claim_scene("sc", &d, "k", T0).unwrap();
    let kept = photo("sc", "kept", "mirror-1", "s", &"a".repeat(64), T0);
    blobs.put(&kept.blob_key, b"live").unwrap();
    s.insert_photo(&kept, "shop-1").unwrap();
    // Bytes whose row never made it (a crash between the two writes).
    let orphan = photo("sc", "orphan", "mirror-1", "s", &"b".repeat(64), T0);
    blobs.put(&orphan.blob_key, b"nobody's").unwrap();
    // Not shaped like a photo key (another hub's, under a prefix that extends ours, or
    // another application's): never the sweep's to delete.
    let foreign = format!("0{}", orphan.blob_key);
    blobs.put(&foreign, b"someone else's").unwrap();
    let wall_now = mirrorsight_hub::http::unix_now();
    // Young bytes may belong to an upload in flight: left alone.
    let young = sweep_orphans(s, &blobs, wall_now, ORPHAN_GRACE_S).unwrap();
    assert_eq!(
        young,
        OrphanReport {
            examined: 0,
            deleted: 0
        }
    );
    let later = wall_now + ORPHAN_GRACE_S + 1;
    let report = sweep_orphans(s, &blobs, later, ORPHAN_GRACE_S).unwrap();
    assert_eq!(
        report,
        OrphanReport {
            examined: 2,
            deleted: 1
        }
    );
    assert_eq!(blobs.get(&orphan.blob_key).unwrap(), None);
    assert!(blobs.get(&foreign).unwrap().is_some(), "foreign bytes kept");
    assert_eq!(
        blobs.get(&kept.blob_key).unwrap().as_deref(),
        Some(&b"live"[..])
    );
    assert_eq!(
        sweep_orphans(s, &blobs, later, ORPHAN_GRACE_S).unwrap(),
        OrphanReport {
            examined: 1,
            deleted: 0
        }
    );
}

fn the_token_lease_has_one_holder_at_a_time(s: &dyn Store) {
    let name = "wechat:wx-test";
    assert_eq!(s.shared_token(name).unwrap(), None);
    assert!(s.acquire_token_lease(name, "hub-a", T0, T0 + 30).unwrap());
    assert!(
        !s.acquire_token_lease(name, "hub-b", T0 + 1, T0 + 31)
            .unwrap(),
        "held by hub-a"
    );
    assert!(
        s.acquire_token_lease(name, "hub-a", T0 + 1, T0 + 31)
            .unwrap(),
        "renewed by its holder"
    );
    let token = SharedToken {
        token: "ACCESS-1".into(),
        expires_at: T0 + 7200,
        fetched_at: T0 + 2,
        holder: "hub-a".into(),
    };
    assert!(
        !s.publish_token(name, "hub-b", &token).unwrap(),
        "only the holder publishes"
    );
    assert_eq!(s.shared_token(name).unwrap(), None);
    assert!(s.publish_token(name, "hub-a", &token).unwrap());
    assert_eq!(s.shared_token(name).unwrap(), Some(token.clone()));
    // Publishing freed the lease.
    assert!(
        s.acquire_token_lease(name, "hub-b", T0 + 3, T0 + 33)
            .unwrap()
    );
    // A holder that dies keeps it only until it runs out.
    assert!(
        !s.acquire_token_lease(name, "hub-c", T0 + 32, T0 + 62)
            .unwrap()
    );
    assert!(
        s.acquire_token_lease(name, "hub-c", T0 + 33, T0 + 63)
            .unwrap()
    );
    s.release_token_lease(name, "hub-b").unwrap();
    assert!(
        !s.acquire_token_lease(name, "hub-b", T0 + 34, T0 + 64)
            .unwrap(),
        "not hub-b's to free"
    );
    s.release_token_lease(name, "hub-c").unwrap();
    assert!(
        s.acquire_token_lease(name, "hub-b", T0 + 34, T0 + 64)
            .unwrap()
    );
    assert_eq!(
        s.shared_token(name).unwrap(),
        Some(token),
        "the token outlives leases"
    );
    assert_eq!(s.shared_token("wechat:other").unwrap(), None);
}

/// Several instances (threads here) taking the same push, photo and scene at once: one row
/// each, and every racer gets the winner's answer.
fn racing_writers_store_everything_once(s: Arc<dyn Store>) {
    let d = device(s.as_ref(), "mirror-1", "shop-1");
    let Claim::Owned(scene) = s.claim_scene("sc", &d, "k", T0).unwrap() else {
        panic!()
    };
    let racers = 8;
    let barrier = Arc::new(Barrier::new(racers));
    let handles: Vec<_> = (0..racers)
        .map(|i| {
            let (s, d, scene, barrier) = (
                Arc::clone(&s),
                d.clone(),
                scene.clone(),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let minted = s
                    .record_minted_scene(
                        &format!("race-{}", i % 2),
                        &d,
                        &code(&format!("u{i}")),
                        "key",
                        T0,
                    )
                    .unwrap();
                let inserted = s
                    .insert_photo(
                        &photo("sc", "p1", "mirror-1", "sess", &"a".repeat(64), T0),
                        "shop-1",
                    )
                    .unwrap();
                let reply = s
                    .record_wechat_event(
                        &NewWechatEvent {
                            dedupe: "o1|1|SCAN|sc".into(),
                            openid: "o1".into(),
                            event: "SCAN".into(),
                            event_key: "sc".into(),
                            bind_scene: Some(scene),
                            activity: Some(Activity::ScanAlreadyFollowing),
                            reply: format!("<xml>{i}</xml>"),
                        },
                        T0,
                    )
                    .unwrap();
                let nonce = s
                    .claim_push_nonce(T0, "nonce", &format!("body-{i}"), T0, T0 + 300)
                    .unwrap();
                (minted, inserted, reply, nonce)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let created = results
        .iter()
        .filter(|r| r.1 == PhotoInsert::Created)
        .count();
    assert_eq!(created, 1, "{results:?}");
    let fresh = results.iter().filter(|r| r.3 == NonceUse::Fresh).count();
    assert_eq!(fresh, 1, "one racer's body owns the nonce: {results:?}");
    assert!(results.iter().all(|r| r.1 != PhotoInsert::Conflict));
    let replies: HashSet<_> = results.iter().map(|r| r.2.clone()).collect();
    assert_eq!(
        replies.len(),
        1,
        "every racer answers with the first reply: {replies:?}"
    );
    assert_eq!(s.wechat_event_count().unwrap(), 1);
    assert_eq!(s.bindings("sc").unwrap().len(), 1);
    for race in ["race-0", "race-1"] {
        let urls: HashSet<_> = results
            .iter()
            .filter_map(|r| match &r.0 {
                MintOutcome::Created(rec) | MintOutcome::Existing(rec) if rec.scene == race => {
                    rec.code.as_ref().map(|c| c.url.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(urls.len(), 1, "one code per scene: {urls:?}");
    }
    let totals = s.totals().unwrap();
    assert!(
        totals.activity.contains(&(Activity::CodeMinted, 2)),
        "{totals:?}"
    );
    assert!(
        totals.activity.contains(&(Activity::Session, 1)),
        "{totals:?}"
    );
    assert!(
        totals
            .activity
            .contains(&(Activity::ScanAlreadyFollowing, 1)),
        "{totals:?}"
    );
    assert_eq!(
        (
            totals.photos_stored,
            totals.photo_bytes_stored,
            totals.bindings,
            totals.wechat_events
        ),
        (1, 3, 1, 1),
        "racers counted once"
    );
}

fn shoppers_bindings_outbox_and_forget(s: &dyn Store) {
    use mirrorsight_hub::store::PushOutcome;
    let d = device(s, "mirror-1", "shop-1");
    for (scene, at) in [("old", T0), ("new", T0 + 10)] {
        let Claim::Owned(_) = s.claim_scene(scene, &d, "k", at).unwrap() else {
            panic!()
        };
        let p = photo(
            scene,
            &format!("p-{scene}"),
            "mirror-1",
            scene,
            &"a".repeat(64),
            at,
        );
        assert_eq!(s.insert_photo(&p, "shop-1").unwrap(), PhotoInsert::Created);
    }
    assert!(s.bind("old", "oA", "SCAN", T0).unwrap());
    assert!(!s.bind("old", "oA", "signin", T0).unwrap(), "bound once");
    assert!(s.bind("new", "oA", "signin", T0).unwrap());
    assert!(s.bind("new", "oB", "SCAN", T0).unwrap());
    let scenes: Vec<String> = s
        .scenes_of_openid("oA")
        .unwrap()
        .into_iter()
        .map(|r| r.scene)
        .collect();
    assert_eq!(scenes, ["new", "old"], "newest first");
    assert!(s.photo_of_openid("oA", "p-old").unwrap().is_some());
    assert!(s.photo_of_openid("oB", "p-old").unwrap().is_none());

    // The outbox: only followers within the window, one pending row per scene and openid.
    s.note_interaction("oA", T0).unwrap();
    s.note_interaction("oB", T0 - 3 * DAY).unwrap();
    assert_eq!(
        s.enqueue_pushes("new", T0 + 20, T0 - 2 * DAY, T0).unwrap(),
        1
    );
    assert_eq!(
        s.enqueue_pushes("new", T0 + 30, T0 - 2 * DAY, T0).unwrap(),
        1
    );
    assert_eq!(s.pushes_of_scene("new").unwrap().len(), 1, "batched");
    assert!(
        s.claim_due_pushes("i1", T0 + 29, T0 + 100, 10)
            .unwrap()
            .is_empty(),
        "moved to +30"
    );
    let due = s.claim_due_pushes("i1", T0 + 30, T0 + 100, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].openid.as_str(), due[0].attempts), ("oA", 0));
    assert!(
        s.claim_due_pushes("i2", T0 + 31, T0 + 100, 10)
            .unwrap()
            .is_empty(),
        "claimed by i1"
    );
    s.finish_push(
        &due[0],
        &PushOutcome::Retry {
            due_at: T0 + 40,
            error: "45047".into(),
        },
        T0 + 31,
    )
    .unwrap();
    let again = s.claim_due_pushes("i2", T0 + 40, T0 + 100, 10).unwrap();
    assert_eq!(again[0].attempts, 1);
    s.finish_push(&again[0], &PushOutcome::Sent, T0 + 41)
        .unwrap();
    assert_eq!(s.pushes_of_scene("new").unwrap()[0].state, "sent");
    // After a sent one, new photos queue a new message; an unsubscribe stops it.
    assert_eq!(
        s.enqueue_pushes("new", T0 + 60, T0 - DAY, T0 + 50).unwrap(),
        1
    );
    s.note_unsubscribe("oA", T0 + 55).unwrap();
    let states: Vec<String> = s
        .pushes_of_scene("new")
        .unwrap()
        .into_iter()
        .map(|p| p.state)
        .collect();
    assert_eq!(states, ["sent", "stopped"]);
    assert_eq!(
        s.enqueue_pushes("new", T0 + 70, T0 - DAY, T0 + 60).unwrap(),
        0
    );

    // Forget oA: their scenes' photos, bindings and pushes go; oB's binding stays.
    let removed = s.forget_openid("oA").unwrap();
    assert_eq!(removed.len(), 2);
    assert!(s.scenes_of_openid("oA").unwrap().is_empty());
    assert!(s.pushes_of_scene("new").unwrap().is_empty());
    assert_eq!(s.scenes_of_openid("oB").unwrap().len(), 1);
    assert!(s.photos_of_scene("old").unwrap().is_empty());
}

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let store = mirrorsight_hub::store::SqliteStore::in_memory().unwrap();
                    super::$name(&store);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(db) = crate::support::pg::TestDb::create(stringify!($name)) {
                        super::$name(db.store().as_ref());
                    }
                }
            )*
        }
    };
}

on_every_store!(
    devices_are_hashed_revocable_and_unique,
    scenes_belong_to_their_minter_or_first_uploader,
    registered_codes_follow_what_the_mirror_minted_last,
    photos_are_idempotent_by_id,
    wechat_events_are_recorded_once_and_bind,
    stats_group_by_store_mirror_and_local_day,
    retention_sweep_removes_old_bytes_and_keeps_rows,
    orphaned_bytes_are_swept_after_a_grace_period,
    the_token_lease_has_one_holder_at_a_time,
    totals_are_kept_by_the_writes_they_count,
    push_nonces_are_remembered_with_their_body_until_they_expire,
    shoppers_bindings_outbox_and_forget,
    bound_photos_are_kept_longer_and_retention_prunes_openids,
    clips_are_kept_like_photos_with_their_poster,
);

#[test]
fn sqlite_racing_writers_store_everything_once() {
    // A file, not memory: the race goes through SQLite's own locking.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("hub.sqlite3")).unwrap();
    racing_writers_store_everything_once(Arc::new(store));
}

#[test]
fn postgres_racing_writers_store_everything_once() {
    if let Some(db) = support::pg::TestDb::create("racing_writers") {
        racing_writers_store_everything_once(db.store());
    }
}

#[test]
fn sqlite_reopens_with_everything_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.sqlite3");
    let s = SqliteStore::open(&path).unwrap();
    let d = device(&s, "mirror-1", "shop-1");
    s.claim_scene("sc", &d, "k", T0).unwrap();
    s.insert_photo(
        &photo("sc", "p", "mirror-1", "s", &"a".repeat(64), T0),
        "shop-1",
    )
    .unwrap();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.photos_of_scene("sc").unwrap().len(), 1);
}

#[test]
fn postgres_reopens_with_everything_kept_and_migrates_once() {
    let Some(db) = support::pg::TestDb::create("reopen") else {
        return;
    };
    let s = db.store();
    let d = device(s.as_ref(), "mirror-1", "shop-1");
    s.claim_scene("sc", &d, "k", T0).unwrap();
    // Instances starting together each open (and check) the schema.
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                PostgresStore::open(&support::pg::settings(&url)).map(|_| ())
            })
        })
        .collect();
    for h in opened {
        h.join().unwrap().unwrap();
    }
    let again = PostgresStore::open(&support::pg::settings(&db.url)).unwrap();
    if std::env::var_os(support::pg::CA_ENV).is_some() {
        // The test server speaks TLS with its own CA, and the store verified and used it.
        assert_eq!(again.tls_version().unwrap().as_deref(), Some("TLSv1.3"));
    }
    assert_eq!(again.scene("sc").unwrap().unwrap().device, "mirror-1");
    assert_eq!(again.list_devices().unwrap().len(), 1);

    // Once migrated, the hub needs no DDL: a role that may only read and write rows runs it.
    let role = format!("hub_rw_{}", std::process::id());
    let mut admin = support::pg::admin_client(&db.url);
    let password = support::pg::password().unwrap_or_default();
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD '{password}';
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};"
        ))
        .unwrap();
    let rw_url = db.url.replacen("://postgres@", &format!("://{role}@"), 1);
    assert_ne!(rw_url, db.url, "the test URL names its user");
    let rw = PostgresStore::open(&support::pg::settings(&rw_url)).unwrap();
    let d2 = device(&rw, "mirror-2", "shop-1");
    rw.claim_scene("sc-rw", &d2, "k", T0).unwrap();
    assert_eq!(rw.list_devices().unwrap().len(), 2);
    drop(rw);
    admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .unwrap();
}

/// TLS to PostgreSQL as `postgres.ca_file` promises (libpq's `sslmode=verify-full`): the
/// server's certificate must be signed by that CA and name the host connected to, and SCRAM
/// with `channel_binding=require` binds the login to that TLS channel.
#[test]
fn postgres_tls_checks_the_ca_and_the_host_name_and_binds_the_channel() {
    let Some(db) = support::pg::TestDb::create("tls") else {
        return;
    };
    let (Ok(_), Ok(other_ca)) = (
        std::env::var(support::pg::CA_ENV),
        std::env::var(support::pg::OTHER_CA_ENV),
    ) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "scripts/pg.sh exports the test CAs"
        );
        eprintln!("skipping: the test server's CAs are not exported (scripts/pg.sh)");
        return;
    };
    let open_error = |settings: PostgresSettings| {
        let err = PostgresStore::open(&settings).unwrap_err().to_string();
        assert!(!err.contains('\n'), "one line: {err}");
        err
    };

    // SCRAM-SHA-256-PLUS: the login is bound to the TLS channel it ran over.
    let bound = PostgresStore::open(&support::pg::settings(&format!(
        "{}?channel_binding=require",
        db.url
    )))
    .unwrap();
    assert_eq!(bound.tls_version().unwrap().as_deref(), Some("TLSv1.3"));
    drop(bound);
    // Without TLS there is no channel to bind to: refused rather than logged in unbound.
    let mut plaintext = support::pg::settings(&format!(
        "{}?sslmode=disable&channel_binding=require",
        db.url
    ));
    plaintext.ca_file = None;
    let err = open_error(plaintext);
    assert!(err.contains("channel binding"), "{err}");

    // A CA that did not sign the server's certificate.
    let mut wrong_ca = support::pg::settings(&db.url);
    wrong_ca.ca_file = Some(other_ca.into());
    let err = open_error(wrong_ca);
    assert!(
        err.contains("UnknownIssuer") && err.contains("postgres.ca_file"),
        "{err}"
    );

    // The right CA, but the certificate names 127.0.0.1, not the host asked for.
    let err = open_error(support::pg::settings(&db.url.replacen(
        "@127.0.0.1:",
        "@localhost:",
        1,
    )));
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for name"),
        "{err}"
    );
}
