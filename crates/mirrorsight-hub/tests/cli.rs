//! The `device` and `sweep` subcommands against a real database file.

use std::process::Command;

use mirrorsight_hub::store::{SqliteStore, Store};
use mirrorsight_hub::token_digest;

fn hub(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorsight-hub"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("MIRRORSIGHT_HUB_LOG", "warn");
    // The test PostgreSQL server's password, where the hub looks for it.
    if let Ok(password) = std::env::var("MIRRORSIGHT_TEST_POSTGRES_PASSWORD") {
        command.env("MIRRORSIGHT_HUB_DATABASE_PASSWORD", password);
    }
    command.output().unwrap()
}

#[test]
fn device_add_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.sqlite3");
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "public_base_url = \"https://hub.example\"\ndatabase = {:?}\nblob_dir = {:?}\n[wechat]\nappid = \"wx1\"\n",
            db,
            dir.path().join("photos")
        ),
    )
    .unwrap();

    let out = hub(&config, &["device", "add", "mirror-1", "--store", "shop-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 43, "256 bits, base64url");
    {
        let store = SqliteStore::open(&db).unwrap();
        let device = store
            .device_by_token(&token_digest(&token))
            .unwrap()
            .unwrap();
        assert_eq!(
            (device.id.as_str(), device.store.as_str()),
            ("mirror-1", "shop-1")
        );
        assert!(
            store.device_by_token(&token).unwrap().is_none(),
            "only the digest is stored"
        );
    }
    let dup = hub(&config, &["device", "add", "mirror-1", "--store", "shop-1"]);
    assert!(!dup.status.success());
    let bad = hub(&config, &["device", "add", "../x", "--store", "shop-1"]);
    assert!(!bad.status.success());

    let list = hub(&config, &["device", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "mirror-1\tshop-1\tactive\n"
    );
    assert!(
        hub(&config, &["device", "revoke", "mirror-1"])
            .status
            .success()
    );
    assert!(
        !hub(&config, &["device", "revoke", "mirror-1"])
            .status
            .success()
    );
    let list = hub(&config, &["device", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "mirror-1\tshop-1\trevoked\n"
    );
    let store = SqliteStore::open(&db).unwrap();
    assert!(
        store
            .device_by_token(&token_digest(&token))
            .unwrap()
            .is_none()
    );

    let sweep = hub(&config, &["sweep"]);
    assert!(
        sweep.status.success(),
        "{}",
        String::from_utf8_lossy(&sweep.stderr)
    );
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        "public_base_url = \"https://hub.example\"\n[photos]\nretention_days = 0\n[wechat]\nappid = \"wx1\"\n",
    )
    .unwrap();
    let out = hub(&config, &["device", "list"]);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("photos.retention_days"), "{err}");
}

/// sysexits' EX_CONFIG: the unit's `RestartPreventExitStatus=78` keeps systemd from restarting
/// a hub whose configuration or credentials cannot work.
const EX_CONFIG: i32 = 78;

/// `serve` with credentials that cannot work: refused at start, before the database or a port
/// is touched, with one line naming what to fix and EX_CONFIG.
#[test]
fn serve_refuses_unfit_credentials_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    let db = dir.path().join("hub.sqlite3");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\npublic_base_url = \"https://hub.example\"\ndatabase = {db:?}\nblob_dir = {:?}\n[wechat]\nappid = \"wx1\"\n[metrics]\nlisten = \"\"\n",
            dir.path().join("photos")
        ),
    )
    .unwrap();
    const STRONG: &str = "Xq7vR2mK9pL4sT8wZ3nB6yC1dF5gH0jA";
    const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    for (token, aes_key, names) in [
        ("0123456789", Some(AES_KEY), "callback token"),
        ("abababababababababab", Some(AES_KEY), "callback token"),
        (STRONG, None, "callback.mode"),
    ] {
        let mut serve = Command::new(env!("CARGO_BIN_EXE_mirrorsight-hub"));
        serve
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("MIRRORSIGHT_HUB_LOG", "error")
            .env(
                "MIRRORSIGHT_WECHAT_APPSECRET",
                "appsecret-for-the-cli-test-000000",
            )
            .env("MIRRORSIGHT_HUB_CALLBACK_TOKEN", token)
            .env_remove("MIRRORSIGHT_HUB_ENCODING_AES_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some(key) = aes_key {
            serve.env("MIRRORSIGHT_HUB_ENCODING_AES_KEY", key);
        }
        let mut child = serve.spawn().unwrap();
        // Were the credentials taken, the hub would serve until killed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve started with token {token:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(EX_CONFIG), "{token}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(names), "{token}: {err}");
        assert!(!err.contains(token), "the token is not printed: {err}");
        assert!(!db.exists(), "the database was opened");
    }
}

mod support {
    pub mod pg;
}

/// The same commands with `[postgres]`: the device lands in the shared database.
#[test]
fn device_add_on_postgres_and_clear_errors_for_a_bad_database() {
    let Some(db) = support::pg::TestDb::create("cli_devices") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    let ca = std::env::var(support::pg::CA_ENV).ok();
    let write_with = |url: &str, ca: Option<&str>| {
        let ca_line = ca.map(|c| format!("ca_file = {c:?}\n")).unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "public_base_url = \"https://hub.example\"\nblob_dir = {:?}\n[wechat]\nappid = \"wx1\"\n[postgres]\nurl = {url:?}\nconnect_timeout_s = 2\n{ca_line}",
                dir.path().join("photos")
            ),
        )
        .unwrap();
    };
    let write = |url: &str| write_with(url, ca.as_deref());
    write(&db.url);
    let out = hub(
        &config,
        &["device", "add", "mirror-pg", "--store", "shop-9"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let device = db
        .store()
        .device_by_token(&token_digest(&token))
        .unwrap()
        .unwrap();
    assert_eq!(
        (device.id.as_str(), device.store.as_str()),
        ("mirror-pg", "shop-9")
    );
    let listed = hub(&config, &["device", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "mirror-pg\tshop-9\tactive\n"
    );

    // TLS required, but the server's certificate is signed by a CA we were not given.
    if ca.is_some() {
        write_with(&format!("{}?sslmode=require", db.url), None);
        let out = hub(&config, &["device", "list"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("UnknownIssuer") && stderr.contains("postgres.ca_file"),
            "{stderr}"
        );
    }

    // Nothing listens on port 1: one line naming the server and what to check.
    write("postgres://hub@127.0.0.1:1/hub");
    let out = hub(&config, &["device", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot connect to PostgreSQL at postgres://hub@127.0.0.1:1/hub"),
        "{stderr}"
    );
    // A password in the URL is refused at load, naming the key.
    write("postgres://hub:hunter2@127.0.0.1:1/hub");
    let out = hub(&config, &["device", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config key `postgres.url`"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// A temp file in `blob_dir/tmp` younger than an hour may be an upload a running hub is
/// writing: `device add` and `sweep` next to it leave `tmp/` alone, and `serve` removes only
/// leftovers older than an hour.
#[test]
fn cli_commands_leave_uploads_in_flight_alone_and_serve_removes_only_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    let tmp = dir.path().join("photos").join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\npublic_base_url = \"https://hub.example\"\ndatabase = {:?}\nblob_dir = {:?}\n[wechat]\nappid = \"wx1\"\n[callback]\nmode = \"plaintext\"\n[metrics]\nlisten = \"\"\n",
            dir.path().join("hub.sqlite3"),
            dir.path().join("photos")
        ),
    )
    .unwrap();
    let in_flight = tmp.join("0123456789abcdef.upload");
    let stale = tmp.join("fedcba9876543210.crashed");
    std::fs::write(&in_flight, b"half an upload").unwrap();
    std::fs::write(&stale, b"what a crash left").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600))
        .unwrap();

    for args in [
        &["device", "add", "mirror-1", "--store", "shop-1"][..],
        &["sweep"],
    ] {
        let out = hub(&config, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(in_flight.exists(), "{args:?} removed an upload in flight");
        assert!(
            stale.exists(),
            "{args:?} cleaned tmp/, which is serve's job"
        );
    }

    let mut serve = Command::new(env!("CARGO_BIN_EXE_mirrorsight-hub"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("MIRRORSIGHT_HUB_LOG", "warn")
        .env(
            "MIRRORSIGHT_WECHAT_APPSECRET",
            "appsecret-for-the-cli-test-000000",
        )
        .env(
            "MIRRORSIGHT_HUB_CALLBACK_TOKEN",
            "Xq7vR2mK9pL4sT8wZ3nB6yC1dF5gH0jA",
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stale.exists() && std::time::Instant::now() < deadline {
        if let Some(status) = serve.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
            panic!("serve exited with {status}: {err}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(!stale.exists(), "serve removes a crash's leftover");
    assert!(in_flight.exists(), "serve keeps an upload in flight");
}
