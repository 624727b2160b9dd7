//! The `device` and `sweep` subcommands against a real database file.

use std::process::Command;

use mirrorsight_hub::store::{SqliteStore, Store};
use mirrorsight_hub::token_digest;

fn hub(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mirrorsight-hub"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
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
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("photos.retention_days"), "{err}");
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
