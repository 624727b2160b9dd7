#![allow(dead_code)] // Each test crate uses part of this module.

//! A private PostgreSQL database per test, on the server `scripts/pg.sh` starts
//! (`$MIRRORSIGHT_TEST_POSTGRES`, SCRAM password `$MIRRORSIGHT_TEST_POSTGRES_PASSWORD`, TLS
//! with the CA `$MIRRORSIGHT_TEST_POSTGRES_CA`). Without the URL the PostgreSQL tests skip,
//! except in CI, where skipping would hide that they never ran.

use std::sync::Arc;
use std::time::Duration;

use mirrorsight_hub::store::{PostgresSettings, PostgresStore, Store};

pub const URL_ENV: &str = "MIRRORSIGHT_TEST_POSTGRES";
pub const CA_ENV: &str = "MIRRORSIGHT_TEST_POSTGRES_CA";
pub const PASSWORD_ENV: &str = "MIRRORSIGHT_TEST_POSTGRES_PASSWORD";
/// A CA that signed nothing on the test server.
pub const OTHER_CA_ENV: &str = "MIRRORSIGHT_TEST_POSTGRES_OTHER_CA";

/// The test server's password, if it has one.
pub fn password() -> Option<String> {
    std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
}

/// A plain (setup) connection to `url` with the test server's password.
pub fn admin_client(url: &str) -> postgres::Client {
    let mut config: postgres::Config = url.parse().expect("a postgres:// URL");
    if let Some(password) = password() {
        config.password(password);
    }
    config
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

pub struct TestDb {
    store: Option<Arc<PostgresStore>>,
    admin_url: String,
    name: String,
    pub url: String,
}

fn admin_url() -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{URL_ENV} is not set in CI: scripts/test.sh starts PostgreSQL with scripts/pg.sh"
            )
        }
        _ => {
            eprintln!(
                "skipping: {URL_ENV} not set (run `eval \"$(scripts/pg.sh)\"` to test on PostgreSQL)"
            );
            None
        }
    }
}

/// `url` with its database (the path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let host = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{host}/{db}")
}

pub fn settings(url: &str) -> PostgresSettings {
    PostgresSettings {
        url: url.to_string(),
        password: password(),
        pool_size: 8,
        connect_timeout: Duration::from_secs(10),
        // The test server speaks TLS with its own CA (scripts/pg.sh).
        ca_file: std::env::var_os(CA_ENV).map(std::path::PathBuf::from),
    }
}

impl TestDb {
    /// A fresh, empty database named after the test, or `None` when PostgreSQL is not available.
    pub fn create(test: &str) -> Option<Self> {
        let admin_url = admin_url()?;
        let name = format!("hub_{}_{}", test, std::process::id()).to_lowercase();
        let mut admin = admin_client(&admin_url);
        // Two statements: a multi-statement batch is one transaction, which DROP DATABASE refuses.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = with_database(&admin_url, &name);
        let store = Arc::new(PostgresStore::open(&settings(&url)).unwrap());
        Some(Self {
            store: Some(store),
            admin_url,
            name,
            url,
        })
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(self.store.as_ref().expect("store open")) as Arc<dyn Store>
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.store.take();
        let mut config: postgres::Config = match self.admin_url.parse() {
            Ok(config) => config,
            Err(_) => return,
        };
        if let Some(password) = password() {
            config.password(password);
        }
        if let Ok(mut admin) = config.connect(postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
