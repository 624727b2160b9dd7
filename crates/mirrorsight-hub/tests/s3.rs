//! `S3BlobStore` against a real S3-compatible server: moto (`moto_server`, installed into
//! `$MIRRORSIGHT_CACHE/venv` by `scripts/setup-test.sh`), one throwaway server per test on a
//! free loopback port, killed when the test ends.
//!
//! moto checks SigV4 signatures only with its IAM auth switched on, so the servers here get an
//! IAM user with an S3 policy, then auth on (`/moto-api/reset-auth`): from then on each request
//! the store sends is verified by botocore's signer, and a wrong secret really is refused with
//! `SignatureDoesNotMatch`. One limit of moto 5.1: it re-signs the query string after decoding
//! it, so a query value with a reserved character (a `prefix` holding `/`) never verifies there,
//! not even for boto3 itself. Prefixes in the checked tests are therefore `hub-`-like; the
//! `hub/` kind is covered by one test on a server that checks no signatures.
//!
//! Without moto the tests print a skip line and pass, except under `CI=true`, where it fails.

mod support {
    pub mod hub;
}

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mirrorsight_contract::backend::{CreateSceneResponse, PhotoUploadResponse, photo_path};
use mirrorsight_fake_backend::{FAKE_APPID, FakeServer};
use mirrorsight_hub::store::{
    BlobError, BlobStore, LocalBlobStore, S3BlobStore, S3Credentials, S3Settings,
};
use mirrorsight_hub::{HubConfig, ORPHAN_GRACE_S, open_stores, sweep_orphans, token_digest};
use mirrorsight_wechat::Secret;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use support::hub::{self, gallery_photos as gallery, sha256_hex as sha};
use tokio::task::block_in_place;

/// Longest wait for a fresh moto to answer on its port.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const REGION: &str = "us-east-1";

fn moto_binary() -> PathBuf {
    let cache = std::env::var_os("MIRRORSIGHT_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/mirrorsight")
        });
    cache.join("venv/bin/moto_server")
}

/// A running moto, or `None` after a skip line when it is not installed; under `CI=true` a
/// missing moto fails the test instead, so CI cannot pass without having talked to a server.
fn moto_or_skip(test: &str, signatures: Signatures) -> Option<Moto> {
    let bin = moto_binary();
    if bin.is_file() {
        return Some(Moto::start(&bin, signatures));
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: CI=true but {} is missing; scripts/setup-test.sh installs it",
        bin.display()
    );
    println!(
        "SKIP {test}: {} not found (scripts/setup-test.sh installs moto)",
        bin.display()
    );
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Signatures {
    /// moto verifies every request's signature against its IAM user's secret.
    Checked,
    /// moto takes any signature (its default).
    Unchecked,
}

/// One `moto_server` child with an IAM user whose keys the stores sign with.
struct Moto {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
    access_key_id: String,
    secret_access_key: String,
    /// Temporary credentials of a role allowed `s3:*` (STS AssumeRole): key id, secret and
    /// session token. moto checks the token of every request signed with them.
    temporary: (String, String, String),
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of `<tag>` in a small XML answer.
fn xml_field(xml: &str, tag: &str) -> String {
    let start = xml
        .find(&format!("<{tag}>"))
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + tag.len()
        + 2;
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    xml[start..end].to_string()
}

impl Moto {
    fn start(bin: &Path, signatures: Signatures) -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // From here on, dropping `moto` (a panic included) kills the server.
        let mut moto = Moto {
            child,
            port,
            log,
            access_key_id: String::new(),
            secret_access_key: String::new(),
            temporary: Default::default(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto_server exited with {status}:\n{}", moto.log_text());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(
                started.elapsed() < STARTUP_TIMEOUT,
                "moto_server did not answer on port {port} within {STARTUP_TIMEOUT:?}:\n{}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto.wait_for_http(started);
        moto.add_user(signatures);
        moto
    }

    /// The port accepting connections is not yet the server answering them: on a loaded
    /// machine moto reset the first request (CI: "Connection reset by peer" on CreateUser).
    /// Any HTTP answer, an error status included, means it is serving.
    fn wait_for_http(&mut self, started: Instant) {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        loop {
            match agent.get(&format!("{}/", self.endpoint())).call() {
                Ok(_) | Err(ureq::Error::StatusCode(_)) => return,
                Err(e) => {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        panic!(
                            "moto_server exited with {status}:
{}",
                            self.log_text()
                        );
                    }
                    assert!(
                        started.elapsed() < STARTUP_TIMEOUT,
                        "moto_server did not answer HTTP within {STARTUP_TIMEOUT:?} ({e}):
{}",
                        self.log_text()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An IAM user allowed `s3:*`, made while moto still accepts anything; then auth on if
    /// signatures are to be checked.
    fn add_user(&mut self, signatures: Signatures) {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        // Not checked yet: the credential scope only tells moto which service is asked.
        let query = |service: &str, version: &str, params: &[(&str, &str)]| -> String {
            let auth = format!(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/{service}/aws4_request, \
                 SignedHeaders=host, Signature=0"
            );
            let form = params
                .iter()
                .chain(&[("Version", version)])
                .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
                .collect::<Vec<_>>()
                .join("&");
            agent
                .post(&format!("{}/", self.endpoint()))
                .header("authorization", auth)
                .content_type("application/x-www-form-urlencoded")
                .send(&form)
                .unwrap_or_else(|e| panic!("moto {service} {params:?}: {e}\n{}", self.log_text()))
                .body_mut()
                .read_to_string()
                .unwrap()
        };
        let iam = |params: &[(&str, &str)]| query("iam", "2010-05-08", params);
        iam(&[("Action", "CreateUser"), ("UserName", "hub")]);
        let key = iam(&[("Action", "CreateAccessKey"), ("UserName", "hub")]);
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "hub"),
            ("PolicyName", "s3"),
            ("PolicyDocument", policy),
        ]);
        let access_key_id = xml_field(&key, "AccessKeyId");
        let secret_access_key = xml_field(&key, "SecretAccessKey");
        // A role with the same policy, and its temporary credentials.
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}"#;
        let role = iam(&[
            ("Action", "CreateRole"),
            ("RoleName", "hub-role"),
            ("AssumeRolePolicyDocument", trust),
        ]);
        iam(&[
            ("Action", "PutRolePolicy"),
            ("RoleName", "hub-role"),
            ("PolicyName", "s3"),
            ("PolicyDocument", policy),
        ]);
        let assumed = query(
            "sts",
            "2011-06-15",
            &[
                ("Action", "AssumeRole"),
                ("RoleArn", &xml_field(&role, "Arn")),
                ("RoleSessionName", "hub"),
            ],
        );
        self.temporary = (
            xml_field(&assumed, "AccessKeyId"),
            xml_field(&assumed, "SecretAccessKey"),
            xml_field(&assumed, "SessionToken"),
        );
        self.access_key_id = access_key_id;
        self.secret_access_key = secret_access_key;
        if signatures == Signatures::Unchecked {
            return;
        }
        agent
            .post(&format!("{}/moto-api/reset-auth", self.endpoint()))
            .content_type("text/plain")
            .send("0")
            .unwrap_or_else(|e| panic!("moto reset-auth: {e}\n{}", self.log_text()));
    }

    fn settings(&self, bucket: &str, prefix: &str) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint(),
            bucket: bucket.into(),
            region: REGION.into(),
            prefix: prefix.into(),
            path_style: true,
            credentials: S3Credentials::key_pair(
                self.access_key_id.clone(),
                Secret::new(self.secret_access_key.clone()),
            ),
            timeout: Duration::from_secs(10),
        }
    }

    /// A store on `bucket`, which is created (twice: creating is idempotent).
    fn store(&self, bucket: &str, prefix: &str) -> S3BlobStore {
        let store = S3BlobStore::new(self.settings(bucket, prefix)).unwrap();
        store.create_bucket().unwrap();
        store.create_bucket().unwrap();
        store
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Deterministic bytes that do not compress or repeat.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn key(i: usize) -> String {
    format!("{i:016x}-{:08x}", i * 7919)
}

fn keys(store: &dyn BlobStore) -> BTreeSet<String> {
    store.list().unwrap().into_iter().map(|e| e.key).collect()
}

/// What a store does on one fixed sequence of operations, as text, so two implementations
/// can be compared line by line.
fn transcript(store: &dyn BlobStore) -> Vec<String> {
    let started = now();
    let a = "00000000000000aa-0001";
    let b = "0123456789abcdef";
    let c = "ffffffff-ffff-0000";
    let mut out = Vec::new();
    let mut note = |line: String| out.push(line);
    note(format!("get a (nothing yet): {:?}", store.get(a).unwrap()));
    note(format!("list empty: {:?}", keys(store)));
    store.put(a, b"first").unwrap();
    store.put(a, b"second").unwrap();
    store.put(b, b"").unwrap();
    store.put(c, &noise(70_000, 3)).unwrap();
    note(format!(
        "get a after overwrite: {:?}",
        store.get(a).unwrap().map(String::from_utf8)
    ));
    note(format!("get empty b: {:?}", store.get(b).unwrap()));
    note(format!(
        "c intact: {}",
        store.get(c).unwrap() == Some(noise(70_000, 3))
    ));
    let listed = store.list().unwrap();
    note(format!(
        "list: {:?}",
        listed
            .iter()
            .map(|e| e.key.clone())
            .collect::<BTreeSet<_>>()
    ));
    note(format!(
        "list times fresh: {}",
        listed
            .iter()
            .all(|e| e.modified >= started - 5 && e.modified <= now() + 5)
    ));
    note(format!("delete a: {}", store.delete(a).unwrap()));
    note(format!("delete a again: {}", store.delete(a).unwrap()));
    note(format!("get a after delete: {:?}", store.get(a).unwrap()));
    note(format!(
        "delete never-stored: {}",
        store.delete("abcdef0123456789").unwrap()
    ));
    for bad in [
        "../../etc/passwd",
        "ABCDEF0123456789",
        "short",
        "0123456789/abcdef",
    ] {
        let outcomes = [
            matches!(store.put(bad, b"x"), Err(BlobError::BadKey(_))),
            matches!(store.get(bad), Err(BlobError::BadKey(_))),
            matches!(store.delete(bad), Err(BlobError::BadKey(_))),
        ];
        note(format!(
            "bad key {bad:?} refused by put/get/delete: {outcomes:?}"
        ));
    }
    note(format!("list at the end: {:?}", keys(store)));
    out
}

#[test]
fn local_and_s3_stores_behave_the_same() {
    let Some(moto) = moto_or_skip("local_and_s3_stores_behave_the_same", Signatures::Checked)
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let local = transcript(&LocalBlobStore::open(dir.path()).unwrap());
    let s3 = transcript(&moto.store("conformance", "hub-"));
    assert_eq!(local, s3);
    // And the transcript is the contract, not two stores agreeing on something wrong.
    let expected = [
        "get a (nothing yet): None",
        "list empty: {}",
        "get a after overwrite: Some(Ok(\"second\"))",
        "get empty b: Some([])",
        "c intact: true",
        "list: {\"00000000000000aa-0001\", \"0123456789abcdef\", \"ffffffff-ffff-0000\"}",
        "list times fresh: true",
        "delete a: true",
        "delete a again: false",
        "get a after delete: None",
        "delete never-stored: false",
    ];
    assert_eq!(&s3[..expected.len()], &expected[..]);
    assert!(
        s3[expected.len()..s3.len() - 1]
            .iter()
            .all(|line| line.ends_with("[true, true, true]")),
        "{s3:#?}"
    );
    assert_eq!(
        s3.last().unwrap(),
        "list at the end: {\"0123456789abcdef\", \"ffffffff-ffff-0000\"}"
    );
}

#[test]
fn big_bodies_round_trip_byte_identical() {
    let Some(moto) = moto_or_skip("big_bodies_round_trip_byte_identical", Signatures::Checked)
    else {
        return;
    };
    let store = moto.store("photos", "");
    let big = noise(3 << 20, 42);
    store.put(&key(1), &big).unwrap();
    let back = store.get(&key(1)).unwrap().unwrap();
    assert!(
        back.len() == big.len() && back == big,
        "3 MiB came back different"
    );
    // Overwritten by a smaller body: nothing of the old one is left.
    let small = noise(1000, 7);
    store.put(&key(1), &small).unwrap();
    assert_eq!(store.get(&key(1)).unwrap(), Some(small));
    // Every byte value survives.
    let all: Vec<u8> = (0..=255).collect();
    store.put(&key(2), &all).unwrap();
    assert_eq!(store.get(&key(2)).unwrap(), Some(all));
    assert_eq!(store.get(&key(3)).unwrap(), None);
}

#[test]
fn list_pages_through_more_than_a_thousand_objects() {
    let Some(moto) = moto_or_skip(
        "list_pages_through_more_than_a_thousand_objects",
        Signatures::Checked,
    ) else {
        return;
    };
    let started = now();
    let store = moto.store("many", "hub-photos-");
    const N: usize = 1003;
    std::thread::scope(|s| {
        for part in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in (part..N).step_by(4) {
                    store.put(&key(i), format!("{i}").as_bytes()).unwrap();
                }
            });
        }
    });
    // Objects under the prefix that are not blob keys are left out of the listing.
    let nested = S3BlobStore::new(moto.settings("many", "hub-photos-nested-")).unwrap();
    nested
        .put(&key(0), b"not a key of the outer store")
        .unwrap();
    let expected: BTreeSet<String> = (0..N).map(key).collect();

    // moto's default page is 1000 keys: two pages.
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), N, "no duplicates, nothing lost");
    assert_eq!(
        listed
            .iter()
            .map(|e| e.key.clone())
            .collect::<BTreeSet<_>>(),
        expected
    );
    assert!(
        listed
            .iter()
            .all(|e| e.modified >= started - 5 && e.modified <= now() + 5),
        "LastModified is read as Unix seconds"
    );
    // Small pages: many continuation tokens, same answer.
    let paged = S3BlobStore::new(moto.settings("many", "hub-photos-"))
        .unwrap()
        .with_list_page_size(97);
    let mut listed_small = paged.list().unwrap();
    listed_small.sort_by(|a, b| a.key.cmp(&b.key));
    let mut listed = listed;
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(listed_small, listed);
    assert_eq!(keys(&nested), BTreeSet::from([key(0)]));
}

#[test]
fn stores_with_different_prefixes_do_not_see_each_other() {
    let Some(moto) = moto_or_skip(
        "stores_with_different_prefixes_do_not_see_each_other",
        Signatures::Unchecked,
    ) else {
        return;
    };
    let a = moto.store("shared", "hub-a/");
    let b = moto.store("shared", "hub-b/");
    let root = moto.store("shared", "");
    let k = key(5);
    a.put(&k, b"from a").unwrap();
    assert_eq!(b.get(&k).unwrap(), None);
    assert_eq!(root.get(&k).unwrap(), None);
    b.put(&k, b"from b").unwrap();
    root.put(&key(6), b"from root").unwrap();
    assert_eq!(a.get(&k).unwrap().as_deref(), Some(&b"from a"[..]));
    assert_eq!(b.get(&k).unwrap().as_deref(), Some(&b"from b"[..]));
    assert_eq!(keys(&a), BTreeSet::from([k.clone()]));
    assert_eq!(keys(&b), BTreeSet::from([k.clone()]));
    // The unprefixed store sees "hub-a/<key>", which is no blob key, and its own blob.
    assert_eq!(keys(&root), BTreeSet::from([key(6)]));
    assert!(a.delete(&k).unwrap());
    assert!(!a.delete(&k).unwrap());
    assert_eq!(b.get(&k).unwrap().as_deref(), Some(&b"from b"[..]));
}

#[test]
fn bad_keys_are_refused() {
    let Some(moto) = moto_or_skip("bad_keys_are_refused", Signatures::Checked) else {
        return;
    };
    let store = moto.store("keys", "p-");
    for bad in [
        "../../etc/passwd",
        "abc",
        "ABCDEF0123456789",
        "0123456789/abcdef",
        "0123456789abcdef?x=1",
        "0123456789abcdef%2F",
        "",
    ] {
        assert!(
            matches!(store.put(bad, b"x"), Err(BlobError::BadKey(_))),
            "{bad}"
        );
        assert!(matches!(store.get(bad), Err(BlobError::BadKey(_))), "{bad}");
        assert!(
            matches!(store.delete(bad), Err(BlobError::BadKey(_))),
            "{bad}"
        );
    }
    assert!(
        store.list().unwrap().is_empty(),
        "nothing reached the bucket"
    );
}

fn remote_error(result: Result<impl std::fmt::Debug, BlobError>) -> (String, String) {
    match result {
        Err(e @ BlobError::Remote { .. }) => {
            let BlobError::Remote { op, .. } = &e else {
                unreachable!()
            };
            let line = e.to_string();
            assert!(
                !line.contains('\n') && line.len() < 400,
                "one short line: {line:?}"
            );
            assert!(!line.contains('<'), "no markup: {line}");
            (op.to_string(), line)
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn wrong_credentials_are_one_clear_line() {
    let Some(moto) = moto_or_skip("wrong_credentials_are_one_clear_line", Signatures::Checked)
    else {
        return;
    };
    let good = moto.store("secured", "");
    good.put(&key(1), b"x").unwrap();
    let wrong_secret = S3BlobStore::new(S3Settings {
        credentials: S3Credentials::key_pair(
            moto.access_key_id.clone(),
            Secret::new("not-the-secret"),
        ),
        ..moto.settings("secured", "")
    })
    .unwrap();
    let (op, line) = remote_error(wrong_secret.put(&key(2), b"y"));
    assert_eq!(op, "put");
    assert_eq!(
        line,
        format!(
            "object store put secured/{}: HTTP 403 SignatureDoesNotMatch: The request signature we \
             calculated does not match the signature you provided. Check your key and signing \
             method.; check the secret access key",
            key(2)
        )
    );
    let (_, line) = remote_error(wrong_secret.get(&key(1)));
    assert!(line.contains("HTTP 403 SignatureDoesNotMatch"), "{line}");
    let (_, line) = remote_error(wrong_secret.list());
    assert!(
        line.starts_with("object store list secured/: HTTP 403 SignatureDoesNotMatch"),
        "{line}"
    );
    // HEAD answers carry no body: the status alone, and what to check.
    let (op, line) = remote_error(wrong_secret.delete(&key(1)));
    assert_eq!(op, "delete");
    assert!(
        line.ends_with(
            "HTTP 403 Forbidden; check the access key id, the secret access key, the region and \
             the permissions on the bucket"
        ),
        "{line}"
    );
    let unknown_key = S3BlobStore::new(S3Settings {
        credentials: S3Credentials::key_pair(
            "AKIAUNKNOWNUNKNOWN00",
            Secret::new(moto.secret_access_key.clone()),
        ),
        ..moto.settings("secured", "")
    })
    .unwrap();
    let (_, line) = remote_error(unknown_key.get(&key(1)));
    assert!(
        line.contains("HTTP 403 InvalidAccessKeyId: ")
            && line.ends_with("; check the access key id"),
        "{line}"
    );
    // Nothing was written with the wrong credentials.
    assert_eq!(keys(&good), BTreeSet::from([key(1)]));
}

#[test]
fn a_missing_bucket_is_an_error_not_an_empty_store() {
    let Some(moto) = moto_or_skip(
        "a_missing_bucket_is_an_error_not_an_empty_store",
        Signatures::Checked,
    ) else {
        return;
    };
    let store = S3BlobStore::new(moto.settings("no-such-bucket", "hub-")).unwrap();
    let expected = format!(
        "object store get no-such-bucket/hub-{}: HTTP 404 NoSuchBucket: The specified bucket does \
         not exist; check the bucket name and the endpoint",
        key(1)
    );
    assert_eq!(remote_error(store.get(&key(1))).1, expected);
    let (op, line) = remote_error(store.put(&key(1), b"x"));
    assert_eq!(op, "put");
    assert!(line.contains("HTTP 404 NoSuchBucket"), "{line}");
    let (_, line) = remote_error(store.list());
    assert!(line.contains("HTTP 404 NoSuchBucket"), "{line}");
}

#[test]
fn unreachable_endpoints_are_one_clear_line() {
    // No moto needed: nothing listens on the port, or something listens and never answers.
    let settings = |endpoint: String, timeout: Duration| S3Settings {
        endpoint,
        bucket: "photos".into(),
        region: REGION.into(),
        prefix: "".into(),
        path_style: true,
        credentials: S3Credentials::key_pair(
            "AKIAIOSFODNN7EXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ),
        timeout,
    };
    let port = free_port();
    let closed = S3BlobStore::new(settings(
        format!("http://127.0.0.1:{port}"),
        Duration::from_secs(2),
    ))
    .unwrap();
    let (op, line) = remote_error(closed.get(&key(1)));
    assert_eq!(op, "get");
    assert_eq!(
        line,
        format!(
            "object store get photos/{}: connection refused by http://127.0.0.1:{port}; check the \
             endpoint and that the object store is running",
            key(1)
        )
    );
    let (op, line) = remote_error(closed.list());
    assert_eq!(op, "list");
    assert!(line.contains("connection refused"), "{line}");

    // The kernel completes the connection (the listener's backlog) but nobody ever answers:
    // a timeout after the configured time, not retried.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let slow = S3BlobStore::new(settings(
        format!("http://127.0.0.1:{port}"),
        Duration::from_millis(500),
    ))
    .unwrap();
    let started = Instant::now();
    let (_, line) = remote_error(slow.put(&key(1), b"x"));
    let took = started.elapsed();
    assert!(
        line.starts_with(&format!(
            "object store put photos/{}: no answer from http://127.0.0.1:{port} within 500ms",
            key(1)
        )) && line.ends_with("; check the endpoint and the network"),
        "{line}"
    );
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    drop(listener);

    // Plain HTTP where TLS was configured: the handshake fails, said as such.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().take(2).flatten() {
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let tls = S3BlobStore::new(settings(
        format!("https://127.0.0.1:{port}"),
        Duration::from_secs(5),
    ))
    .unwrap();
    let (_, line) = remote_error(tls.get(&key(1)));
    assert!(
        line.starts_with(&format!(
            "object store get photos/{}: TLS with https://127.0.0.1:{port} failed (",
            key(1)
        )) && line.ends_with(
            "); check the endpoint and its certificate (the system's CA roots are trusted)"
        ),
        "{line}"
    );
}

/// Temporary credentials (an assumed role's) sign with their session token, given as a key
/// pair plus token or found by the credential chain in `AWS_*` variables, in the store and
/// through the hub's `[s3]` config; without the token, or with another, moto refuses them.
#[test]
fn temporary_credentials_sign_with_their_session_token() {
    let Some(moto) = moto_or_skip(
        "temporary_credentials_sign_with_their_session_token",
        Signatures::Checked,
    ) else {
        return;
    };
    moto.store("temporary", "hub-");
    let (id, secret, token) = moto.temporary.clone();
    assert_ne!(id, moto.access_key_id);
    let with_token = |token: Option<&str>| {
        S3BlobStore::new(S3Settings {
            credentials: S3Credentials::KeyPair {
                access_key_id: id.clone(),
                secret_access_key: Secret::new(secret.clone()),
                session_token: token.map(Secret::new),
            },
            ..moto.settings("temporary", "hub-")
        })
        .unwrap()
    };
    let store = with_token(Some(&token));
    store.check().unwrap();
    store.put(&key(1), b"temporary").unwrap();
    assert_eq!(store.get(&key(1)).unwrap(), Some(b"temporary".to_vec()));
    assert_eq!(keys(&store), BTreeSet::from([key(1)]));
    // moto refuses the key id without its token, and the key with another one: each is one
    // line naming what to check.
    let (op, line) = remote_error(with_token(None).check());
    assert_eq!(op, "check");
    assert!(
        line.starts_with("object store check temporary/hub-: HTTP 403 InvalidAccessKeyId")
            && line.ends_with("; check s3.access_key_id and the secret key"),
        "{line}"
    );
    let (_, line) = remote_error(with_token(Some("not-the-token")).get(&key(1)));
    assert!(
        line.starts_with(&format!(
            "object store get temporary/hub-{}: HTTP 400 InvalidToken",
            key(1)
        )) && line.ends_with("; check the session token (temporary credentials expire)"),
        "{line}"
    );
    assert!(!line.contains(&token) && !line.contains(&secret), "{line}");

    // The chain, from the variables a role's credentials arrive in.
    let aws_env = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some(id.clone()),
        "AWS_SECRET_ACCESS_KEY" => Some(secret.clone()),
        "AWS_SESSION_TOKEN" => Some(token.clone()),
        _ => None,
    };
    let chained = S3BlobStore::new(S3Settings {
        credentials: S3Credentials::chain(&aws_env),
        ..moto.settings("temporary", "hub-")
    })
    .unwrap();
    chained.check().unwrap();
    assert_eq!(chained.get(&key(1)).unwrap(), Some(b"temporary".to_vec()));

    // The hub's config: the key pair with MIRRORSIGHT_HUB_S3_SESSION_TOKEN, or no
    // access_key_id and the chain.
    let dir = tempfile::tempdir().unwrap();
    let path = hub_toml(
        dir.path(),
        "temporary",
        "https://hub.example",
        "http://127.0.0.1:9",
        &moto,
        "temporary",
        &secret,
    );
    let mut config = HubConfig::load(&path).unwrap();
    let s3 = config.s3.as_mut().unwrap();
    s3.access_key_id = Some(id.clone());
    s3.prefix = "hub-".into();
    let token_env =
        |name: &str| (name == mirrorsight_hub::config::S3_SESSION_TOKEN_ENV).then(|| token.clone());
    let (_, blobs) = open_stores(&config, &token_env).unwrap();
    assert_eq!(blobs.get(&key(1)).unwrap(), Some(b"temporary".to_vec()));
    let no_env = |_: &str| None;
    let line = open_stores(&config, &no_env).err().unwrap().to_string();
    assert!(
        line.starts_with(
            "blob store: object store check temporary/hub-: HTTP 403 InvalidAccessKeyId"
        ),
        "{line}"
    );
    let s3 = config.s3.as_mut().unwrap();
    s3.access_key_id = None;
    s3.secret_key_file = None;
    let (_, blobs) = open_stores(&config, &aws_env).unwrap();
    assert_eq!(blobs.get(&key(1)).unwrap(), Some(b"temporary".to_vec()));
}

#[test]
fn check_probes_the_bucket_and_the_credentials() {
    let Some(moto) = moto_or_skip(
        "check_probes_the_bucket_and_the_credentials",
        Signatures::Checked,
    ) else {
        return;
    };
    // An empty bucket and one with objects both pass; the probe writes nothing.
    let good = moto.store("probed", "hub-");
    good.check().unwrap();
    assert!(good.list().unwrap().is_empty());
    good.put(&key(1), b"x").unwrap();
    good.put(&key(2), b"y").unwrap();
    good.check().unwrap();
    S3BlobStore::new(moto.settings("probed", "other-prefix-"))
        .unwrap()
        .check()
        .unwrap();

    let wrong_secret = S3BlobStore::new(S3Settings {
        credentials: S3Credentials::key_pair(
            moto.access_key_id.clone(),
            Secret::new("not-the-secret"),
        ),
        ..moto.settings("probed", "hub-")
    })
    .unwrap();
    let (op, line) = remote_error(wrong_secret.check());
    assert_eq!(op, "check");
    assert_eq!(
        line,
        "object store check probed/hub-: HTTP 403 SignatureDoesNotMatch: The request signature \
         we calculated does not match the signature you provided. Check your key and signing \
         method.; check s3.access_key_id and the secret key"
    );
    assert!(!line.contains(&moto.secret_access_key), "{line}");

    let unknown_key = S3BlobStore::new(S3Settings {
        credentials: S3Credentials::key_pair(
            "AKIAUNKNOWNUNKNOWN00",
            Secret::new(moto.secret_access_key.clone()),
        ),
        ..moto.settings("probed", "hub-")
    })
    .unwrap();
    let (_, line) = remote_error(unknown_key.check());
    assert!(
        line.starts_with("object store check probed/hub-: HTTP 403 InvalidAccessKeyId: ")
            && line.ends_with("; check s3.access_key_id and the secret key"),
        "{line}"
    );

    let missing = S3BlobStore::new(moto.settings("no-such-bucket", "hub-")).unwrap();
    assert_eq!(
        remote_error(missing.check()),
        (
            "check".to_string(),
            "object store check no-such-bucket/hub-: HTTP 404 NoSuchBucket: The specified bucket \
             does not exist; check the bucket name and the endpoint"
                .to_string()
        )
    );
    assert_eq!(keys(&good), BTreeSet::from([key(1), key(2)]));
}

#[test]
fn check_without_an_object_store() {
    // Nothing listens on the port.
    let port = free_port();
    let settings = |endpoint: String| S3Settings {
        endpoint,
        bucket: "photos".into(),
        region: REGION.into(),
        prefix: "hub-".into(),
        path_style: true,
        credentials: S3Credentials::key_pair(
            "AKIAIOSFODNN7EXAMPLE",
            Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ),
        timeout: Duration::from_secs(2),
    };
    let closed = S3BlobStore::new(settings(format!("http://127.0.0.1:{port}"))).unwrap();
    assert_eq!(
        remote_error(closed.check()),
        (
            "check".to_string(),
            format!(
                "object store check photos/hub-: connection refused by http://127.0.0.1:{port}; \
                 check the endpoint and that the object store is running"
            )
        )
    );

    // Something answers 200, but it is no S3 API (a web console, a default vhost).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Some(mut conn) = listener.incoming().flatten().next() {
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let page = "<html><body>MinIO Console</body></html>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    let console = S3BlobStore::new(settings(format!("http://127.0.0.1:{port}"))).unwrap();
    assert_eq!(
        remote_error(console.check()).1,
        "object store check photos/hub-: HTTP 200 but not a ListObjectsV2 answer; check the \
         endpoint (the S3 API port, not a console) and path_style"
    );
}

/// A loopback server answering every request with the body in `page` (200, XML): what an S3
/// listing may look like when the server, a proxy or a bug makes it up.
fn listing_server(page: Arc<std::sync::Mutex<String>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            // The request's head; the listing has no body.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let body = page.lock().map(|p| p.clone()).unwrap_or_default();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// XML text with the five predefined entities escaped.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

mod listing_properties {
    use super::*;
    use proptest::prelude::*;

    /// An object name: mostly ours (prefix and a blob key), else anything a bucket may hold.
    fn object_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-f]{16}-[0-9a-f]{8}".prop_map(|k| format!("hub-{k}")),
            "hub-[0-9a-zA-Z/._ -]{0,40}",
            "[ -~]{0,40}",
            "\\PC{0,20}",
        ]
    }

    fn last_modified() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("2026-01-02T03:04:05.000Z".to_string()),
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z",
            "[ -~]{0,30}",
        ]
    }

    /// A ListObjectsV2 page: entries, truncation and token as generated, or raw garbage.
    fn listing() -> impl Strategy<Value = (String, Vec<String>)> {
        let page = (
            proptest::collection::vec((object_name(), last_modified()), 0..12),
            any::<bool>(),
            proptest::option::of("[A-Za-z0-9+/=]{1,20}"),
        )
            .prop_map(|(objects, truncated, token)| {
                let mut xml = String::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                     <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                     <Name>photos</Name><Prefix>hub-</Prefix>",
                );
                for (name, modified) in &objects {
                    xml.push_str(&format!(
                        "<Contents><Key>{}</Key><LastModified>{}</LastModified>\
                         <ETag>\"e\"</ETag><Size>1</Size></Contents>",
                        xml_escape(name),
                        xml_escape(modified)
                    ));
                }
                xml.push_str(&format!("<IsTruncated>{truncated}</IsTruncated>"));
                if let Some(token) = token {
                    xml.push_str(&format!(
                        "<NextContinuationToken>{token}</NextContinuationToken>"
                    ));
                }
                xml.push_str("</ListBucketResult>");
                (xml, objects.into_iter().map(|(name, _)| name).collect())
            });
        prop_oneof![
            4 => page,
            1 => "\\PC{0,200}".prop_map(|junk| (junk, Vec::new())),
        ]
    }

    proptest! {
        // Each case is a few loopback requests: bounded so the suite stays fast.
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever a listing holds, `list` answers without a panic: only blob keys under the
        /// prefix that the page named, or one line saying what is wrong.
        #[test]
        fn any_listing_gets_keys_or_one_line((body, names) in listing()) {
            static SERVER: std::sync::OnceLock<(u16, Arc<std::sync::Mutex<String>>)> =
                std::sync::OnceLock::new();
            let (port, page) = SERVER.get_or_init(|| {
                let page = Arc::new(std::sync::Mutex::new(String::new()));
                (listing_server(Arc::clone(&page)), page)
            });
            *page.lock().unwrap() = body;
            let store = S3BlobStore::new(S3Settings {
                endpoint: format!("http://127.0.0.1:{port}"),
                bucket: "photos".into(),
                region: REGION.into(),
                prefix: "hub-".into(),
                path_style: true,
                credentials: S3Credentials::key_pair(
                    "AKIAIOSFODNN7EXAMPLE",
                    Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                ),
                timeout: Duration::from_secs(5),
            })
            .unwrap();
            match store.list() {
                Ok(entries) => {
                    for entry in entries {
                        prop_assert!(
                            names.contains(&format!("hub-{}", entry.key)),
                            "{} was not in the page", entry.key
                        );
                        prop_assert!(entry.key.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
                    }
                }
                Err(e @ BlobError::Remote { .. }) => {
                    let line = e.to_string();
                    prop_assert!(!line.contains('\n') && line.len() < 600, "{line:?}");
                    prop_assert!(line.starts_with("object store list photos/hub-: "), "{line}");
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}

const CALLBACK_TOKEN: &str = "callbackTokenAAAAA1234";
const MIRROR: &str = "device-token-mirror-1-xxxxxxxxxxxx";
const SCENE: &str = "s3Scene_Zq8R0aUe-1mVbN4w";

/// A hub config file as an operator writes it, with `[s3]` on `bucket` of `moto` and the
/// secret key in the file `secret_file`.
fn hub_toml(
    dir: &Path,
    name: &str,
    base: &str,
    fake_url: &str,
    moto: &Moto,
    bucket: &str,
    secret: &str,
) -> PathBuf {
    let secret_file = dir.join(format!("{name}.s3-secret"));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let text = format!(
        r#"public_base_url = "{base}"
database = "{database}"
blob_dir = "{blob_dir}"

[wechat]
appid = "{FAKE_APPID}"
api_base = "{fake_url}"
mp_base = "{fake_url}"

[s3]
endpoint = "{endpoint}"
bucket = "{bucket}"
region = "{REGION}"
prefix = "hub-photos-"
path_style = true
access_key_id = "{access_key_id}"
secret_key_file = "{secret_file}"
timeout_s = 10
"#,
        database = dir.join(format!("{name}.sqlite3")).display(),
        blob_dir = dir.join(format!("{name}-local-photos")).display(),
        endpoint = moto.endpoint(),
        access_key_id = moto.access_key_id,
        secret_file = secret_file.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// JPEG-framed bytes that do not compress.
fn photo_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend(noise(len, seed));
    b.extend([0xFF, 0xD9]);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_configured_with_s3_serves_photos_from_the_bucket() {
    let test = "hub_configured_with_s3_serves_photos_from_the_bucket";
    let Some(moto) = block_in_place(|| moto_or_skip(test, Signatures::Checked)) else {
        return;
    };
    // The bucket is the operator's to make; the hub only probes it.
    let bucket = block_in_place(|| moto.store("hub-bucket", "hub-photos-"));
    let (fake_url, _fake) = FakeServer::start().await.unwrap();
    let (listener, base) = hub::listen().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let no_env = |_: &str| None;

    // A wrong secret or a missing bucket stops the hub at startup, in one line.
    for (name, bucket_name, secret, expected) in [
        (
            "wrong-secret",
            "hub-bucket",
            "not-the-secret",
            "HTTP 403 SignatureDoesNotMatch",
        ),
        (
            "no-bucket",
            "no-such-bucket",
            moto.secret_access_key.as_str(),
            "HTTP 404 NoSuchBucket",
        ),
    ] {
        let path = hub_toml(
            dir.path(),
            name,
            &base,
            &fake_url,
            &moto,
            bucket_name,
            secret,
        );
        let config = HubConfig::load(&path).unwrap();
        let e = block_in_place(|| open_stores(&config, &no_env))
            .err()
            .unwrap_or_else(|| panic!("{name}: opened"));
        let line = e.to_string();
        assert!(
            line.starts_with(&format!(
                "blob store: object store check {bucket_name}/hub-photos-: {expected}"
            )) && !line.contains('\n')
                && line.len() < 400,
            "{name}: {line}"
        );
        assert!(!line.contains(&moto.secret_access_key), "{line}");
        if name == "wrong-secret" {
            assert!(
                line.ends_with("; check s3.access_key_id and the secret key"),
                "{line}"
            );
        }
    }

    let path = hub_toml(
        dir.path(),
        "hub",
        &base,
        &fake_url,
        &moto,
        "hub-bucket",
        &moto.secret_access_key,
    );
    let mut config = HubConfig::load(&path).unwrap();
    // This test's pushes are plaintext (the secrets hold no EncodingAESKey).
    config.callback.mode = mirrorsight_hub::config::CallbackMode::Plaintext;
    let (store, blobs) = block_in_place(|| open_stores(&config, &no_env)).unwrap();
    block_in_place(|| store.add_device("mirror-1", "shop-1", &token_digest(MIRROR), 0)).unwrap();
    let secrets = hub::fake_wechat_secrets(CALLBACK_TOKEN);
    let _running = hub::serve(
        listener,
        base.clone(),
        config,
        secrets,
        Arc::clone(&store),
        Arc::clone(&blobs),
    )
    .unwrap();
    let http = reqwest::Client::new();

    // The mirror mints a scene and uploads two photos through the relay.
    let resp = hub::mint_request(&http, &base, MIRROR, SCENE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.json::<CreateSceneResponse>().await.unwrap().scene,
        SCENE
    );
    let photos = [
        ("photoS3AAAAAAAAAAAAAAA", photo_bytes(300_000, 11)),
        ("photoS3BBBBBBBBBBBBBBB", photo_bytes(123_457, 12)),
    ];
    for (id, bytes) in &photos {
        let digest = sha(bytes);
        let upload = hub::Upload {
            token: MIRROR,
            scene: SCENE,
            session: SCENE,
            photo: id,
            digest: &digest,
        };
        let resp = upload
            .request(&http, &base, 1_767_225_600_123, bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let stored: PhotoUploadResponse = resp.json().await.unwrap();
        assert_eq!(
            (stored.photo.as_str(), stored.bytes, stored.sha256),
            (*id, bytes.len() as u64, sha(bytes))
        );
    }

    // The bytes are in the bucket, under the prefix, byte for byte; nothing went to disk.
    let rows = block_in_place(|| store.photos_of_scene(SCENE)).unwrap();
    let blob_key = |id: &str| {
        rows.iter()
            .find(|r| r.photo == id)
            .unwrap_or_else(|| panic!("row of {id}"))
            .blob_key
            .clone()
    };
    let (key_a, key_b) = (blob_key(photos[0].0), blob_key(photos[1].0));
    block_in_place(|| {
        assert_eq!(
            keys(&bucket),
            BTreeSet::from([key_a.clone(), key_b.clone()])
        );
        assert_eq!(bucket.get(&key_a).unwrap().as_ref(), Some(&photos[0].1));
        assert_eq!(bucket.get(&key_b).unwrap().as_ref(), Some(&photos[1].1));
    });
    assert!(!dir.path().join("hub-local-photos").exists());

    // A shopper scans; the gallery the reply links to serves both photos from the bucket.
    let push = hub::scan_xml("gh_store", "oShopper", 1_767_225_700, "SCAN", SCENE);
    let reply = hub::push(&http, &base, CALLBACK_TOKEN, "42", &push)
        .await
        .text()
        .await
        .unwrap();
    let article = hub::news_article(&reply);
    assert!(article.url.starts_with(&base), "{}", article.url);
    let srcs = gallery(&http, &base, &article.url).await;
    assert_eq!(srcs.len(), 2, "{srcs:?}");
    let mut served = Vec::new();
    for src in &srcs {
        let resp = http.get(src).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{src}");
        served.push(resp.bytes().await.unwrap().to_vec());
    }
    served.sort();
    let mut uploaded = vec![photos[0].1.clone(), photos[1].1.clone()];
    uploaded.sort();
    assert!(served == uploaded, "the gallery serves the uploaded bytes");

    // The shopper has one photo deleted: its object leaves the bucket.
    let resp = http
        .delete(format!("{base}{}", photo_path(SCENE, photos[1].0)))
        .bearer_auth(MIRROR)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    block_in_place(|| {
        assert_eq!(bucket.get(&key_b).unwrap(), None);
        assert_eq!(keys(&bucket), BTreeSet::from([key_a.clone()]));
    });
    assert_eq!(gallery(&http, &base, &article.url).await.len(), 1);

    // Bytes nobody refers to (a crash between storing them and their row) are swept once
    // old enough; the live photo stays.
    // Shaped like a photo key: the sweep touches nothing else in the bucket.
    let orphan = "0123456789abcdef0123456789abcdef-0badc0de0badc0de-00000000deadbeef";
    block_in_place(|| {
        bucket.put(orphan, b"left by a crash").unwrap();
        let later = now() + ORPHAN_GRACE_S + 1;
        let report = sweep_orphans(store.as_ref(), blobs.as_ref(), later, ORPHAN_GRACE_S).unwrap();
        assert_eq!((report.examined, report.deleted), (2, 1));
        assert_eq!(keys(&bucket), BTreeSet::from([key_a.clone()]));
        assert_eq!(bucket.get(&key_a).unwrap().as_ref(), Some(&photos[0].1));
    });
    let srcs = gallery(&http, &base, &article.url).await;
    assert_eq!(srcs.len(), 1);
    let resp = http.get(&srcs[0]).send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), photos[0].1.as_slice());
    block_in_place(move || drop(moto));
}
