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

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mirrorsight_hub::store::{BlobError, BlobStore, LocalBlobStore, S3BlobStore, S3Settings};
use mirrorsight_wechat::Secret;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

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
        moto.add_user(signatures);
        moto
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
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/iam/aws4_request, \
                    SignedHeaders=host, Signature=0";
        let iam = |params: &[(&str, &str)]| -> String {
            let form = params
                .iter()
                .chain(&[("Version", "2010-05-08")])
                .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
                .collect::<Vec<_>>()
                .join("&");
            agent
                .post(&format!("{}/", self.endpoint()))
                .header("authorization", auth)
                .content_type("application/x-www-form-urlencoded")
                .send(&form)
                .unwrap_or_else(|e| panic!("moto IAM {params:?}: {e}\n{}", self.log_text()))
                .body_mut()
                .read_to_string()
                .unwrap()
        };
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
            access_key_id: self.access_key_id.clone(),
            secret_access_key: Secret::new(self.secret_access_key.clone()),
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
        secret_access_key: Secret::new("not-the-secret"),
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
        access_key_id: "AKIAUNKNOWNUNKNOWN00".into(),
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
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
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
