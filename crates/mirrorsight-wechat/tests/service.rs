//! The QR service as the daemon drives it: from a plain thread, with the fake on a runtime.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mirrorsight_fake_backend::{
    FAKE_APPID, FAKE_APPSECRET, FAKE_DEVICE_TOKEN, FakeHandle, FakeServer, Fault, Route,
};
use mirrorsight_wechat::config::{BackendConfig, QrConfig, QrKind, Settings, WechatConfig};
use mirrorsight_wechat::{
    BindingLog, CodeOutcome, IdGenerator, QrService, QrSource, QrUpdate, Secret, Secrets,
};

struct Env {
    runtime: tokio::runtime::Runtime,
    url: String,
    fake: FakeHandle,
    dir: tempfile::TempDir,
}

fn env() -> Env {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (url, fake) = runtime.block_on(FakeServer::start()).unwrap();
    Env {
        runtime,
        url,
        fake,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// Ids `pool-000`, `pool-001`, … and a count of how many were drawn.
fn counting_ids() -> (IdGenerator, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&n);
    (
        Box::new(move || format!("pool-{:03}", counter.fetch_add(1, Ordering::SeqCst))),
        n,
    )
}

fn settings(env: &Env, kind: QrKind) -> Settings {
    Settings {
        qr: QrConfig {
            kind,
            pool_size: 3,
            pool_low_water: 1,
            retry_initial_ms: 20,
            retry_max_s: 1,
            ..QrConfig::default()
        },
        wechat: WechatConfig {
            api_base: env.url.clone(),
            mp_base: env.url.clone(),
            appid: FAKE_APPID.into(),
            timeout_s: 2.0,
            busy_backoff_ms: 10,
            ..WechatConfig::default()
        },
        backend: BackendConfig {
            url: Some(env.url.clone()),
            timeout_s: 2.0,
            ..BackendConfig::default()
        },
    }
}

fn secrets() -> Secrets {
    Secrets {
        appsecret: Some(Secret::new(FAKE_APPSECRET)),
        device_token: Some(Secret::new(FAKE_DEVICE_TOKEN)),
    }
}

fn start(env: &Env, settings: &Settings, ids: IdGenerator) -> QrService {
    QrService::start(
        settings,
        &secrets(),
        ids,
        &log_path(env),
        env.runtime.handle().clone(),
    )
    .unwrap()
}

fn log_path(env: &Env) -> std::path::PathBuf {
    env.dir.path().join("state/bindings.jsonl")
}

fn bindings(path: &Path) -> Vec<(String, String, QrSource)> {
    BindingLog::read(path)
        .unwrap()
        .bindings
        .into_iter()
        .map(|b| (b.session, b.scene, b.source))
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn url_kind_is_ready_at_once_and_bound() {
    let env = env();
    let svc = start(&env, &settings(&env, QrKind::Url), counting_ids().0);
    assert!(svc.wait_filled(Duration::ZERO), "no pool needed");
    let CodeOutcome::Ready { code, source } = svc.code_for_session("sessA") else {
        panic!("url codes need no network")
    };
    assert_eq!(source, QrSource::Url);
    assert_eq!(code.url.as_deref(), Some("https://mirror.example/s/sessA"));
    assert_eq!(
        svc.code_for_session("sessA"),
        CodeOutcome::Ready { code, source },
        "idempotent"
    );
    assert_eq!(
        bindings(&log_path(&env)),
        vec![("sessA".into(), "sessA".into(), QrSource::Url)]
    );
    assert!(env.fake.requests().is_empty());
    assert!(svc.shutdown(Duration::from_secs(1)).clean);
}

#[test]
fn relay_pool_serves_a_session_instantly_and_refills() {
    let env = env();
    let (ids, drawn) = counting_ids();
    let svc = start(&env, &settings(&env, QrKind::Relay), ids);
    assert!(
        svc.wait_filled(Duration::from_secs(5)),
        "{:?}",
        svc.status()
    );
    assert_eq!(svc.status().pool_ready, 3);

    let t = Instant::now();
    let outcome = svc.code_for_session("session-1");
    let took = t.elapsed();
    let CodeOutcome::Ready { code, source } = outcome else {
        panic!("pool was full")
    };
    assert!(took < Duration::from_millis(5), "pool served in {took:?}");
    assert_eq!(source, QrSource::Pool);
    assert_eq!(
        code.scene, "pool-000",
        "oldest first, scene from the caller's id generator"
    );
    assert!(code.url.is_some() && code.expires_at.is_some());
    assert_eq!(
        svc.code_for_session("session-1"),
        CodeOutcome::Ready {
            code: code.clone(),
            source
        },
        "idempotent"
    );

    // Durable before it was returned.
    assert_eq!(
        bindings(&log_path(&env)),
        vec![("session-1".into(), "pool-000".into(), QrSource::Pool)]
    );

    // Two more sessions take the pool down to low water: it refills to 3.
    assert!(matches!(
        svc.code_for_session("session-2"),
        CodeOutcome::Ready { .. }
    ));
    assert!(matches!(
        svc.code_for_session("session-3"),
        CodeOutcome::Ready { .. }
    ));
    assert!(
        svc.wait_filled(Duration::from_secs(5)),
        "{:?} {:?}",
        svc.status(),
        env.fake.requests_to(Route::Scenes).len()
    );
    assert_eq!(drawn.load(Ordering::SeqCst), 6);
    assert_eq!(env.fake.count(Route::Scenes), 6);
    for r in env.fake.requests_to(Route::Scenes) {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {FAKE_DEVICE_TOKEN}").as_str())
        );
    }
    assert!(svc.updates().try_recv().is_err(), "nothing was pending");
    assert!(svc.shutdown(Duration::from_secs(2)).clean);
}

#[test]
fn pool_refills_after_the_backend_comes_back() {
    let env = env();
    // Down for 5 requests (503), then healthy.
    env.fake.inject(Route::Scenes, Fault::Status(503), 5);
    let svc = start(&env, &settings(&env, QrKind::Relay), counting_ids().0);
    assert!(
        svc.wait_filled(Duration::from_secs(10)),
        "{:?}",
        svc.status()
    );
    // While failing, one probe at a time: exactly the 5 failures, then 3 successes.
    assert_eq!(env.fake.count(Route::Scenes), 8);
    let status = svc.status();
    assert_eq!(
        (
            status.pool_ready,
            status.consecutive_failures,
            status.last_error
        ),
        (3, 0, None)
    );
    assert!(svc.shutdown(Duration::from_secs(2)).clean);
}

#[test]
fn pending_session_reports_failure_and_gets_its_code_when_the_network_returns() {
    let env = env();
    env.runtime.block_on(env.fake.go_down());
    let svc = start(&env, &settings(&env, QrKind::Relay), counting_ids().0);
    wait_until("a failed pool mint", Duration::from_secs(5), || {
        svc.status().consecutive_failures > 0
    });
    assert!(svc.status().last_error.is_some());

    assert_eq!(svc.code_for_session("sess-offline"), CodeOutcome::Pending);
    assert_eq!(
        svc.code_for_session("sess-offline"),
        CodeOutcome::Pending,
        "still pending, not queued twice"
    );
    match svc.updates().recv_timeout(Duration::from_secs(5)).unwrap() {
        QrUpdate::Failed {
            session,
            reason,
            attempt,
        } => {
            assert_eq!((session.as_str(), attempt), ("sess-offline", 1));
            assert!(reason.contains("/v1/scenes"), "{reason}");
        }
        other => panic!("expected a failure first, got {other:?}"),
    }
    // Retries keep going (with backoff) but the same failure is reported once.
    std::thread::sleep(Duration::from_millis(300));
    assert!(svc.updates().try_recv().is_err());

    env.runtime.block_on(env.fake.come_back());
    let update = svc.updates().recv_timeout(Duration::from_secs(5)).unwrap();
    let QrUpdate::Minted {
        session,
        code,
        source,
    } = update
    else {
        panic!("expected the code, got {update:?}")
    };
    assert_eq!(session, "sess-offline");
    assert!(
        matches!(source, QrSource::Relay | QrSource::Pool),
        "{source:?}"
    );
    if source == QrSource::Relay {
        assert_eq!(
            code.scene, "sess-offline",
            "live mints use the session id as the scene"
        );
    }
    assert_eq!(
        svc.code_for_session("sess-offline"),
        CodeOutcome::Ready {
            code: code.clone(),
            source
        }
    );
    assert!(svc.wait_filled(Duration::from_secs(5)));
    assert_eq!(
        bindings(&log_path(&env)),
        vec![("sess-offline".into(), code.scene, source)]
    );
    assert!(svc.shutdown(Duration::from_secs(2)).clean);
}

#[test]
fn without_a_pool_sessions_are_minted_live_through_wechat() {
    let env = env();
    let mut s = settings(&env, QrKind::OfficialAccount);
    s.qr.pool_size = 0;
    s.qr.pool_low_water = 0;
    let svc = start(&env, &s, counting_ids().0);
    assert_eq!(svc.code_for_session("sessL"), CodeOutcome::Pending);
    let update = svc.updates().recv_timeout(Duration::from_secs(5)).unwrap();
    let QrUpdate::Minted {
        session,
        code,
        source,
    } = update
    else {
        panic!("{update:?}")
    };
    assert_eq!(
        (session.as_str(), code.scene.as_str(), source),
        ("sessL", "sessL", QrSource::Live)
    );
    let body = env.fake.requests_to(Route::QrcodeCreate)[0].body_str();
    assert_eq!(
        body,
        r#"{"expire_seconds":3600,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"sessL"}}}"#
    );
    assert_eq!(
        bindings(&log_path(&env)),
        vec![("sessL".into(), "sessL".into(), QrSource::Live)]
    );
    assert!(svc.shutdown(Duration::from_secs(2)).clean);
}

/// A mirror minting its own codes tells its hub each one, so a scan finds the session before
/// any photo has; a code the hub refused is not shown (the scan would be answered "expired").
#[test]
fn official_account_codes_are_registered_with_the_hub() {
    let env = env();
    let mut s = settings(&env, QrKind::OfficialAccount);
    s.qr.pool_size = 0;
    s.qr.pool_low_water = 0;
    let svc = start(&env, &s, counting_ids().0);
    assert_eq!(svc.code_for_session("sessR"), CodeOutcome::Pending);
    let QrUpdate::Minted { code, .. } = svc.updates().recv_timeout(Duration::from_secs(5)).unwrap()
    else {
        panic!("minted")
    };
    let registered = env.fake.scene("sessR").expect("registered with the hub");
    assert_eq!(registered.device, "mirror-1", "{registered:?}");
    assert_eq!(Some(registered.response.url.clone()), code.url);
    assert_eq!(registered.response.ticket, code.ticket);
    assert_eq!(Some(registered.response.expires_at), code.expires_at);
    let put = &env.fake.requests_to(Route::RegisterScene)[0];
    assert!(
        !put.body_str().contains("\"kind\""),
        "a session code: {}",
        put.body_str()
    );

    // The hub refuses (another mirror's scene, say): the code is not handed out.
    env.fake
        .inject(Route::RegisterScene, Fault::Status(403), 100);
    assert_eq!(svc.code_for_session("sessX"), CodeOutcome::Pending);
    let update = svc.updates().recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        matches!(update, QrUpdate::Failed { ref session, .. } if session == "sessX"),
        "{update:?}"
    );
    assert!(env.fake.scene("sessX").is_none());
    assert!(svc.shutdown(Duration::from_secs(2)).clean);

    // Without backend.url nothing is registered (and no device token is needed).
    let env = crate::env();
    let mut s = settings(&env, QrKind::OfficialAccount);
    s.qr.pool_size = 0;
    s.qr.pool_low_water = 0;
    s.backend.url = None;
    let svc = start(&env, &s, counting_ids().0);
    svc.code_for_session("sessN");
    svc.updates().recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(env.fake.count(Route::RegisterScene), 0);
    assert!(svc.shutdown(Duration::from_secs(2)).clean);
}

/// The mirror's idle code is minted once in its life: through the hub in relay mode, as a
/// permanent code registered with the hub otherwise; later starts read it back.
#[test]
fn the_idle_code_is_minted_once_and_kept() {
    let env = env();
    let mut s = settings(&env, QrKind::Relay);
    s.qr.idle_code = Some("idle-mirror-1".into());
    let svc = start(&env, &s, counting_ids().0);
    let code = svc
        .wait_idle_code(Duration::from_secs(5))
        .expect("idle code");
    assert_eq!(code.scene, "idle-mirror-1");
    assert_eq!(code.expires_at, None, "permanent");
    let asked = env
        .fake
        .requests_to(Route::Scenes)
        .into_iter()
        .filter(|r| r.body_str().contains("\"kind\":\"idle\""))
        .count();
    assert_eq!(asked, 1);
    assert!(svc.shutdown(Duration::from_secs(2)).clean);
    // Restarted: read back, not minted again.
    let svc = start(&env, &s, counting_ids().0);
    assert_eq!(svc.wait_idle_code(Duration::from_secs(5)), Some(code));
    let asked_again = env
        .fake
        .requests_to(Route::Scenes)
        .into_iter()
        .filter(|r| r.body_str().contains("\"kind\":\"idle\""))
        .count();
    assert_eq!(asked_again, 1, "minted once in the mirror's life");
    assert!(svc.shutdown(Duration::from_secs(2)).clean);

    // Minting itself: a QR_LIMIT_STR_SCENE, registered with the hub as idle.
    let env = crate::env();
    let mut s = settings(&env, QrKind::OfficialAccount);
    s.qr.pool_size = 0;
    s.qr.pool_low_water = 0;
    s.qr.idle_code = Some("idle-mirror-1".into());
    let svc = start(&env, &s, counting_ids().0);
    let code = svc
        .wait_idle_code(Duration::from_secs(5))
        .expect("idle code");
    let create = env.fake.requests_to(Route::QrcodeCreate)[0].body_str();
    assert_eq!(
        create,
        r#"{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"idle-mirror-1"}}}"#
    );
    let registered = env.fake.scene("idle-mirror-1").expect("registered");
    assert_eq!(Some(registered.response.url), code.url);
    assert_eq!(registered.response.expires_at, 0, "permanent");
    assert!(
        env.fake.requests_to(Route::RegisterScene)[0]
            .body_str()
            .contains("\"kind\":\"idle\"")
    );
    assert!(svc.shutdown(Duration::from_secs(2)).clean);
}

#[test]
fn official_account_pool_fills_with_one_token_fetch() {
    let env = env();
    let mut s = settings(&env, QrKind::OfficialAccount);
    s.qr.pool_size = 5;
    s.qr.pool_low_water = 2;
    s.qr.max_concurrent_mints = 4;
    let svc = start(&env, &s, counting_ids().0);
    assert!(svc.wait_filled(Duration::from_secs(5)));
    assert_eq!(env.fake.count(Route::StableToken), 1);
    assert_eq!(env.fake.count(Route::QrcodeCreate), 5);
    assert!(svc.shutdown(Duration::from_secs(2)).clean);
}

#[test]
fn shutdown_finishes_in_flight_mints_within_the_bound() {
    let env = env();
    env.fake
        .inject(Route::Scenes, Fault::Delay(Duration::from_millis(300)), 2);
    let svc = start(&env, &settings(&env, QrKind::Relay), counting_ids().0);
    wait_until("mints in flight", Duration::from_secs(2), || {
        svc.status().minting > 0
    });
    let t = Instant::now();
    let report = svc.shutdown(Duration::from_secs(3));
    assert!(report.clean, "{report:?}");
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(
        svc.shutdown(Duration::from_secs(1)).abandoned_mints,
        0,
        "second call is a no-op"
    );
    assert_eq!(
        svc.code_for_session("late"),
        CodeOutcome::Ready {
            code: svc_first_code(&env),
            source: QrSource::Pool
        }
    );
}

/// The code the delayed mints produced first (the pool keeps handing out after shutdown).
fn svc_first_code(env: &Env) -> mirrorsight_wechat::MintedCode {
    let scenes = env.fake.scenes();
    let first = scenes
        .iter()
        .find(|s| s.response.scene == "pool-000")
        .expect("minted during shutdown");
    let r = &first.response;
    mirrorsight_wechat::MintedCode {
        scene: r.scene.clone(),
        url: Some(r.url.clone()),
        ticket: r.ticket.clone(),
        image: None,
        expires_at: Some(r.expires_at),
        expire_seconds: Some(3600),
    }
}

#[test]
fn shutdown_cuts_off_mints_that_outlast_the_bound() {
    let env = env();
    env.fake
        .inject(Route::Scenes, Fault::Delay(Duration::from_secs(10)), 2);
    let mut s = settings(&env, QrKind::Relay);
    s.backend.timeout_s = 30.0;
    let svc = start(&env, &s, counting_ids().0);
    wait_until("mints in flight", Duration::from_secs(2), || {
        svc.status().minting == 2
    });
    let t = Instant::now();
    let report = svc.shutdown(Duration::from_millis(200));
    assert!(!report.clean);
    assert_eq!(report.abandoned_mints, 2);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn start_refuses_bad_config_and_missing_secrets() {
    let env = env();
    let mut s = settings(&env, QrKind::Relay);
    s.qr.expire_seconds = 0;
    let err = QrService::start(
        &s,
        &secrets(),
        counting_ids().0,
        &log_path(&env),
        env.runtime.handle().clone(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("qr.expire_seconds"), "{err}");
    let s = settings(&env, QrKind::Relay);
    let err = QrService::start(
        &s,
        &Secrets::default(),
        counting_ids().0,
        &log_path(&env),
        env.runtime.handle().clone(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("device token"), "{err}");
}
