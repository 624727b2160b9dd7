//! Photo bytes in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, …), so several hub
//! instances can share them.
//!
//! The S3 protocol is `object_store`'s `AmazonS3`: SigV4 signing, retries with backoff, the
//! listing's pagination, and AWS's credential chain (session tokens, web identity, the
//! container's or the instance's role, refreshed before they expire). This file adapts it to
//! the blocking [`BlobStore`] the hub calls from its blocking threads and its CLI, and turns
//! each failure into one line in [`BlobError::Remote`]: the HTTP status with the S3 error code
//! and message, or what went wrong in transit, plus what to check. Objects are
//! `<prefix><key>`; the prefix lets one bucket hold several hubs (or other data) without them
//! seeing each other.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use mirrorsight_wechat::Secret;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpConnector, HttpError, HttpErrorKind, ReqwestConnector};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use quick_xml::Reader;
use quick_xml::events::Event;

use super::blob::valid_key;
use super::blob::{BlobEntry, BlobError, BlobStore};

/// Where the bucket is and how to sign for it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `scheme://host[:port][/path]`, e.g. `http://127.0.0.1:9000` or
    /// `https://s3.eu-west-1.amazonaws.com`. Plain `http://` only to this machine.
    pub endpoint: String,
    pub bucket: String,
    /// The region signed for (`us-east-1` for most self-hosted stores).
    pub region: String,
    /// Prepended to every key inside the bucket, e.g. `"hub/photos/"`; may be `""`.
    pub prefix: String,
    /// `true`: `endpoint/bucket/key` (MinIO and most self-hosted stores);
    /// `false`: `bucket.host/key` (virtual-hosted, AWS's default).
    pub path_style: bool,
    pub credentials: S3Credentials,
    /// Longest one request may take, body included.
    pub timeout: Duration,
}

/// Whose keys sign the requests.
#[derive(Debug, Clone)]
pub enum S3Credentials {
    /// A key pair, with the session token of temporary credentials if there is one.
    KeyPair {
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
    /// AWS's credential chain, from these `AWS_*` variables (see [`CHAIN_VARIABLES`]):
    /// a key pair with its session token, else a web identity token with a role to assume,
    /// else the container's credentials, else the instance's role.
    Chain(Vec<(String, Secret)>),
}

impl S3Credentials {
    /// A long-lived key pair.
    pub fn key_pair(access_key_id: impl Into<String>, secret_access_key: Secret) -> Self {
        Self::KeyPair {
            access_key_id: access_key_id.into(),
            secret_access_key,
            session_token: None,
        }
    }

    /// The chain, from the [`CHAIN_VARIABLES`] that `env` has.
    pub fn chain(env: &dyn Fn(&str) -> Option<String>) -> Self {
        Self::Chain(
            CHAIN_VARIABLES
                .iter()
                .filter_map(|name| {
                    env(name)
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (name.to_string(), Secret::new(v.trim())))
                })
                .collect(),
        )
    }
}

/// The environment variables of AWS's credential chain that [`S3Credentials::chain`] reads;
/// nothing else of the environment (endpoint, region, signing) changes the hub's `[s3]`.
pub const CHAIN_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_METADATA_ENDPOINT",
    "AWS_IMDSV1_FALLBACK",
];

/// [`BlobStore`] on an S3-compatible bucket. Blocking; cheap to share (the connection pool is
/// inside).
pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    runtime: Runtime,
    /// What object_store was given, for [`S3BlobStore::create_bucket`]'s own request.
    client_options: ClientOptions,
    /// The bucket's URL: `endpoint/bucket` path-style, `scheme://bucket.host/path` otherwise.
    bucket_url: String,
    /// `scheme://host[:port]` as configured, for messages.
    endpoint: String,
    bucket: String,
    region: String,
    prefix: String,
    timeout: Duration,
    /// `max-keys` of a list page; `None` leaves the server's default (1000).
    page_size: Option<usize>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket_url", &self.bucket_url)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Largest object body read back (photos are at most 256 MiB).
const MAX_BODY: u64 = 1 << 30;
/// Largest answer read of a request of our own (an error, a one-key listing).
const MAX_ANSWER: usize = 64 * 1024;
/// A query value as SigV4 canonicalises it: everything but `A-Za-z0-9-_.~` percent-encoded
/// (so a `+` or a space in the prefix means itself, not a form-encoded space).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Pause before the one retry of a request that failed in transit or with a 5xx.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

fn settings_error(field: &'static str, message: String) -> BlobError {
    BlobError::Remote {
        op: "settings",
        key: field.to_string(),
        message,
    }
}

/// A small tokio runtime of the store's own, on which the blocking calls run object_store's
/// futures: the hub calls the store from `spawn_blocking` threads and from the CLI, and none of
/// them may drive (or block) a runtime of theirs.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn new() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-client")
            .enable_all()
            .build()
            .map(|r| Self(Some(r)))
    }

    /// Runs `work` to completion on the store's runtime, blocking this thread; `None` if the
    /// runtime is gone (the task panicked or the store is being dropped).
    fn run<T: Send + 'static>(&self, work: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let runtime = self.0.as_ref()?;
        let (done, result) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = done.send(work.await);
        });
        result.recv().ok()
    }
}

impl Drop for Runtime {
    /// Dropping a runtime blocks until its tasks end, which panics inside another runtime
    /// (the hub drops its state on a tokio thread): let them end in the background instead.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// What the server or the way to it said, read out of object_store's error.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// An HTTP answer that is not a success: its status and body.
    Status { status: u16, body: String },
    /// No answer: object_store's kind, and whether the connection was refused or TLS failed.
    Transport {
        kind: Option<HttpErrorKind>,
        refused: bool,
        tls: bool,
        host_not_found: bool,
        detail: String,
    },
}

/// object_store keeps the status and body of a refused request in its retry error, which it
/// does not export; its message is `Server returned non-2xx status code: <status>: <body>`
/// (or `Server returned error response: <body>` for an error in a 200's body).
const STATUS_PREFIX: &str = "Server returned non-2xx status code: ";
const ERROR_BODY_PREFIX: &str = "Server returned error response: ";

fn failure_of(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut kind = None;
    let (mut refused, mut tls, mut host_not_found) = (false, false, false);
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if let Some(rest) = text.strip_prefix(STATUS_PREFIX) {
            // `404 Not Found: <body>`; the reason may be missing for unusual codes.
            let status = rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0);
            let body = rest.split_once(": ").map_or("", |(_, b)| b).to_string();
            return Failure::Status { status, body };
        }
        if let Some(body) = text.strip_prefix(ERROR_BODY_PREFIX) {
            return Failure::Status {
                status: 200,
                body: body.to_string(),
            };
        }
        if let Some(http) = e.downcast_ref::<HttpError>() {
            kind = kind.or(Some(http.kind()));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
            tls |= wraps_rustls_error(io);
        }
        tls |= e.is::<rustls::Error>();
        // hyper-util's resolver says so in words; there is no kind for it.
        host_not_found |= text.contains("dns error") || text.contains("failed to lookup address");
        current = e.source();
    }
    Failure::Transport {
        kind,
        refused,
        tls,
        host_not_found,
        detail: chain_text(error),
    }
}

/// Whether an I/O error carries a rustls error, however deeply: tokio-rustls reports a failed
/// handshake as `InvalidData` wrapping it, and hyper-util wraps that in `Other`. An I/O error's
/// `source` is its inner error's source, so walking `source` never meets either of them.
fn wraps_rustls_error(io: &std::io::Error) -> bool {
    let mut inner = io.get_ref();
    // Bounded: an I/O error cannot contain itself, but nothing is to be trusted to end.
    for _ in 0..8 {
        let Some(e) = inner else { return false };
        if e.is::<rustls::Error>() {
            return true;
        }
        inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
    }
    false
}

/// The messages of an error and its sources that add something, one line.
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    one_line(parts.last().map_or("", String::as_str))
}

impl S3BlobStore {
    pub fn new(settings: S3Settings) -> Result<Self, BlobError> {
        let endpoint = settings.endpoint.trim();
        let (scheme, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
            ("https", rest)
        } else if let Some(rest) = endpoint.strip_prefix("http://") {
            ("http", rest)
        } else {
            return Err(settings_error(
                "endpoint",
                format!("{endpoint:?} must start with http:// or https://"),
            ));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = path.trim_end_matches('/');
        let authority_ok = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        let path_ok = path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
        if !authority_ok || !path_ok {
            return Err(settings_error(
                "endpoint",
                format!("{endpoint:?} is not scheme://host[:port][/path]"),
            ));
        }
        // Photos and signed requests would cross the network in the clear.
        if scheme == "http" && !is_loopback(authority) {
            return Err(settings_error(
                "endpoint",
                format!(
                    "{endpoint:?} must be https:// (plain http:// only to this machine: \
                     127.0.0.1, [::1], localhost)"
                ),
            ));
        }
        let bucket = settings.bucket.trim();
        // DNS-compatible names only: they work path-style and virtual-hosted alike.
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(settings_error(
                "bucket",
                format!(
                    "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
                ),
            ));
        }
        let region = settings.region.trim();
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(settings_error(
                "region",
                format!("{region:?} is not a region (us-east-1 for most self-hosted stores)"),
            ));
        }
        let prefix = settings.prefix;
        // object_store's paths have no empty, `.` or `..` segments and no leading `/`: a prefix
        // that would be rewritten would list other keys than it writes.
        let round_trips = ObjectPath::parse(format!("{prefix}k"))
            .is_ok_and(|p| p.as_ref() == format!("{prefix}k"));
        if prefix.len() > 512 || prefix.chars().any(char::is_control) || !round_trips {
            return Err(settings_error(
                "prefix",
                "is longer than 512 bytes, has control characters, a leading '/', '//', or a \
                 '.' or '..' segment"
                    .into(),
            ));
        }
        if settings.timeout.is_zero() {
            return Err(settings_error("timeout", "must be above zero".into()));
        }
        let mut builder = AmazonS3Builder::new();
        match &settings.credentials {
            S3Credentials::KeyPair {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let access_key_id = access_key_id.trim();
                if !is_header_token(access_key_id) || access_key_id.contains(['/', ',']) {
                    return Err(settings_error(
                        "access_key_id",
                        "is empty or has '/', ',', spaces or characters other than visible ASCII"
                            .into(),
                    ));
                }
                if secret_access_key.expose().is_empty() {
                    return Err(settings_error("secret_access_key", "is empty".into()));
                }
                builder = builder
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key.expose());
                if let Some(token) = session_token {
                    // It becomes a header of every request (the signer would panic on it).
                    if !is_header_token(token.expose()) {
                        return Err(settings_error(
                            "session_token",
                            "has characters other than visible ASCII".into(),
                        ));
                    }
                    builder = builder.with_token(token.expose());
                }
            }
            S3Credentials::Chain(variables) => {
                for (name, value) in variables {
                    // These two become headers of every request (the signer would panic).
                    if matches!(name.as_str(), "AWS_ACCESS_KEY_ID" | "AWS_SESSION_TOKEN")
                        && !is_header_token(value.expose())
                    {
                        return Err(settings_error(
                            "credentials",
                            format!("{name} has characters other than visible ASCII"),
                        ));
                    }
                    let key = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>();
                    if let Ok(key) = key {
                        builder = builder.with_config(key, value.expose());
                    }
                }
            }
        }
        let origin = if settings.path_style {
            format!("{scheme}://{authority}{path}")
        } else {
            format!("{scheme}://{bucket}.{authority}{path}")
        };
        let bucket_url = if settings.path_style {
            format!("{origin}/{bucket}")
        } else {
            origin.clone()
        };
        let client_options = ClientOptions::new()
            .with_timeout(settings.timeout)
            .with_connect_timeout(settings.timeout)
            .with_allow_http(scheme == "http");
        let store = builder
            .with_endpoint(origin)
            .with_bucket_name(bucket)
            .with_region(region)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_client_options(client_options.clone())
            .with_retry(RetryConfig {
                // One retry, soon, of a request that failed in transit or with a 5xx; none
                // once the first try took the whole timeout (a timeout is not retried).
                // The first pause is `init_backoff`; a base of 1 would panic in its sampling.
                backoff: BackoffConfig {
                    init_backoff: RETRY_PAUSE,
                    max_backoff: RETRY_PAUSE,
                    base: 2.0,
                },
                max_retries: 1,
                retry_timeout: settings.timeout,
            })
            .build()
            .map_err(|e| settings_error("endpoint", one_line(&e.to_string())))?;
        let runtime = Runtime::new().map_err(|e| BlobError::Remote {
            op: "settings",
            key: "runtime".into(),
            message: format!("cannot start the S3 client's threads: {e}"),
        })?;
        Ok(Self {
            store: Arc::new(store),
            runtime,
            client_options,
            bucket_url,
            endpoint: format!("{scheme}://{authority}"),
            bucket: bucket.to_string(),
            region: region.to_string(),
            prefix,
            timeout: settings.timeout,
            page_size: None,
        })
    }

    /// Lists `keys` per request instead of the server's default 1000 (clamped to 1..=1000).
    pub fn with_list_page_size(mut self, keys: u32) -> Self {
        self.page_size = Some(keys.clamp(1, 1000) as usize);
        self
    }

    /// Creates the bucket; one that already exists and is ours is fine. For setting up a
    /// self-hosted store (and the tests); on AWS buckets are usually made elsewhere.
    /// object_store has no bucket operations, so this is a request of our own ([`Self::signed`]).
    pub fn create_bucket(&self) -> Result<(), BlobError> {
        let body = if self.region == "us-east-1" {
            Vec::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
            .into_bytes()
        };
        let (status, body) = self
            .signed(http::Method::PUT, self.bucket_url.clone(), body)
            .ok_or_else(|| self.stopped("create bucket", ""))?
            .map_err(|e| self.error("create bucket", "", &e))?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        if error_code(&body).as_deref() == Some("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        Err(BlobError::Remote {
            op: "create bucket",
            key: self.location(""),
            message: http_message(status, &body),
        })
    }

    /// Probes the bucket the way the hub will use it, so a wrong endpoint, bucket or key is
    /// one line at startup rather than an error on the first photo: one signed ListObjectsV2
    /// of at most one key under the prefix (what the orphan sweep lists). HEAD of the bucket
    /// would be cheaper still, but its answers carry no body, so a wrong secret, an unknown
    /// key id and missing permissions would all be a bare 403; the list answer's error code
    /// tells them apart. Reads nothing but one key name and writes nothing.
    ///
    /// The request is our own ([`Self::signed`]), not object_store's listing: that one reads
    /// any 200 whose body has no `<Contents>` as an empty bucket, so a web console or a default
    /// virtual host on the endpoint would pass. Here a 200 counts only with a
    /// `<ListBucketResult>` body.
    ///
    /// Errors are [`BlobError::Remote`] with `op` `"check"`, one line like every other
    /// operation's: `NoSuchBucket`, a refused connection, a timeout, a TLS failure each say
    /// what to check; `InvalidAccessKeyId` and `SignatureDoesNotMatch` (which one an
    /// S3-compatible server answers for a mismatched pair varies) both point at the key pair.
    /// Without a key pair, credentials the chain cannot find are said here too.
    pub fn check(&self) -> Result<(), BlobError> {
        let store = Arc::clone(&self.store);
        let credentials = self
            .runtime
            .run(async move { store.credentials().get_credential().await.map(|_| ()) })
            .ok_or_else(|| self.stopped("check", ""))?;
        if let Err(e) = credentials {
            return Err(BlobError::Remote {
                op: "check",
                key: self.location(""),
                message: format!(
                    "no S3 credentials ({}); set s3.access_key_id and the secret key, or give \
                     the hub AWS credentials (AWS_* variables, a role)",
                    chain_text(&e)
                ),
            });
        }
        let mut url = format!("{}?list-type=2&max-keys=1", self.bucket_url);
        if !self.prefix.is_empty() {
            url.push_str("&prefix=");
            url.extend(utf8_percent_encode(&self.prefix, QUERY_VALUE));
        }
        let (status, body) = self
            .signed(http::Method::GET, url, Vec::new())
            .ok_or_else(|| self.stopped("check", ""))?
            .map_err(|e| self.error("check", "", &e))?;
        let refused = |message| BlobError::Remote {
            op: "check",
            key: self.location(""),
            message,
        };
        if !(200..300).contains(&status) || error_code(&body).is_some() {
            return Err(refused(http_message_with(status, &body, check_hint)));
        }
        if !is_list_result(&body) {
            return Err(refused(format!(
                "HTTP {status} but not a ListObjectsV2 answer; check the endpoint (the S3 API \
                 port, not a console) and path_style"
            )));
        }
        Ok(())
    }

    /// One request of our own to the bucket, signed with object_store's signer and the
    /// store's credentials (the chain's included), sent with the store's client options
    /// (timeouts, http only to this machine), not retried. The answer's status and body, the
    /// body cut at [`MAX_ANSWER`]; `None` if the store's runtime is gone.
    fn signed(
        &self,
        method: http::Method,
        url: String,
        body: Vec<u8>,
    ) -> Option<Result<(u16, Vec<u8>), object_store::Error>> {
        let store = Arc::clone(&self.store);
        let options = self.client_options.clone();
        let region = self.region.clone();
        let generic = |e: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
            store: "S3",
            source: e,
        };
        self.runtime.run(async move {
            let credential = store.credentials().get_credential().await?;
            let mut request: object_store::client::HttpRequest = http::Request::builder()
                .method(method)
                .uri(url)
                .body(body.into())
                .map_err(|e| generic(Box::new(e)))?;
            AwsAuthorizer::new(&credential, "s3", &region).try_authorize(&mut request, None)?;
            let client = ReqwestConnector::default().connect(&options)?;
            let response = client
                .execute(request)
                .await
                .map_err(|e| generic(Box::new(e)))?;
            let status = response.status().as_u16();
            // An error body or a one-key listing is small; more is a misbehaving server (its
            // first bytes are enough to say so).
            let mut answer = Vec::new();
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| generic(Box::new(e)))?;
                if let Some(data) = frame.data_ref() {
                    let room = MAX_ANSWER.saturating_sub(answer.len());
                    answer.extend_from_slice(&data[..data.len().min(room)]);
                    if answer.len() >= MAX_ANSWER {
                        break;
                    }
                }
            }
            Ok((status, answer))
        })
    }

    /// One ListObjectsV2 page under the prefix: the objects and the next page's token.
    fn list_page(
        &self,
        max_keys: Option<usize>,
        page_token: Option<String>,
        op: &'static str,
    ) -> Result<(Vec<object_store::ObjectMeta>, Option<String>), BlobError> {
        let store = Arc::clone(&self.store);
        // A raw key prefix (`hub-` matches `hub-0123…`), not object_store's path prefix,
        // which would only match whole segments.
        let prefix = (!self.prefix.is_empty()).then(|| self.prefix.clone());
        let page = self
            .runtime
            .run(async move {
                let options = PaginatedListOptions {
                    max_keys,
                    page_token,
                    ..PaginatedListOptions::default()
                };
                store.list_paginated(prefix.as_deref(), options).await
            })
            .ok_or_else(|| self.stopped(op, ""))?;
        match page {
            Ok(page) => Ok((page.result.objects, page.page_token)),
            Err(e) => {
                let error = self.error(op, "", &e);
                // A 200 whose body is no listing: something answers, but not as S3 does.
                let unreadable = matches!(failure_of(&e), Failure::Transport { kind: None, .. });
                if unreadable {
                    return Err(BlobError::Remote {
                        op,
                        key: self.location(""),
                        message: format!("unreadable ListObjectsV2 answer: {}", chain_text(&e)),
                    });
                }
                Err(error)
            }
        }
    }

    /// `bucket/prefix+key`, for messages.
    fn location(&self, key: &str) -> String {
        format!("{}/{}{key}", self.bucket, self.prefix)
    }

    fn object(&self, key: &str) -> Result<ObjectPath, BlobError> {
        if !valid_key(key) {
            return Err(BlobError::BadKey(key.to_string()));
        }
        // The prefix was checked to round-trip in `new` and keys are `[0-9a-f-]`.
        ObjectPath::parse(format!("{}{key}", self.prefix))
            .map_err(|_| BlobError::BadKey(key.to_string()))
    }

    fn stopped(&self, op: &'static str, key: &str) -> BlobError {
        BlobError::Remote {
            op,
            key: self.location(key),
            message: "the S3 client stopped (the hub is shutting down)".into(),
        }
    }

    /// One line for object_store's error: the status and S3 error code, or the transport
    /// failure, plus what to check.
    fn error(&self, op: &'static str, key: &str, e: &object_store::Error) -> BlobError {
        let hint = if op == "check" { check_hint } else { hint };
        let message = match failure_of(e) {
            Failure::Status { status, body } => http_message_with(status, body.as_bytes(), hint),
            Failure::Transport {
                kind,
                refused,
                tls,
                host_not_found,
                detail,
            } => {
                let endpoint = &self.endpoint;
                if kind == Some(HttpErrorKind::Timeout) {
                    format!(
                        "no answer from {endpoint} within {:?} ({detail}); check the endpoint and the network",
                        self.timeout
                    )
                } else if refused {
                    format!(
                        "connection refused by {endpoint}; check the endpoint and that the object store is running"
                    )
                } else if tls {
                    format!(
                        "TLS with {endpoint} failed ({detail}); check the endpoint and its certificate (the system's CA roots are trusted)"
                    )
                } else if host_not_found {
                    format!("host of {endpoint} not found; check the endpoint")
                } else {
                    format!("cannot talk to {endpoint} ({detail}); check the endpoint")
                }
            }
        };
        BlobError::Remote {
            op,
            key: self.location(key),
            message,
        }
    }

    /// The status and body of an error that carries them.
    fn status_of(e: &object_store::Error) -> Option<(u16, String)> {
        match failure_of(e) {
            Failure::Status { status, body } => Some((status, body)),
            Failure::Transport { .. } => None,
        }
    }
}

/// Whether `value` is non-empty visible ASCII, which goes into a header as it is.
fn is_header_token(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `authority` (`host[:port]`) is this machine.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `HTTP <status> <Code>: <Message>; <what to check>`, one line.
fn http_message(status: u16, body: &[u8]) -> String {
    http_message_with(status, body, hint)
}

/// [`http_message`] with another choice of what to check.
fn http_message_with(
    status: u16,
    body: &[u8],
    hint: fn(Option<&str>, u16) -> Option<&'static str>,
) -> String {
    let (code, message) = parse_error(body);
    let mut out = format!("HTTP {status}");
    match (&code, &message) {
        (Some(code), Some(message)) => out.push_str(&format!(" {code}: {message}")),
        (Some(code), None) => out.push_str(&format!(" {code}")),
        _ => {
            if let Some(reason) = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
            {
                out.push_str(&format!(" {reason}"));
            }
        }
    }
    if let Some(hint) = hint(code.as_deref(), status) {
        out.push_str("; ");
        out.push_str(hint);
    }
    out
}

fn hint(code: Option<&str>, status: u16) -> Option<&'static str> {
    Some(match code {
        Some("NoSuchBucket") => "check the bucket name and the endpoint",
        Some("InvalidAccessKeyId") => "check the access key id",
        Some("SignatureDoesNotMatch") => "check the secret access key",
        Some("AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError") => {
            "check the region"
        }
        Some("RequestTimeTooSkewed") => "check this machine's clock",
        Some("InvalidToken" | "ExpiredToken" | "TokenRefreshRequired") => {
            "check the session token (temporary credentials expire)"
        }
        Some("AccessDenied" | "AllAccessDisabled") => {
            "check the credentials and their permissions on the bucket"
        }
        Some("PermanentRedirect" | "TemporaryRedirect" | "IllegalLocationConstraintException") => {
            "check the region and the endpoint"
        }
        Some("InvalidBucketName") => "check the bucket name",
        Some("XAmzContentSHA256Mismatch" | "BadDigest") => {
            "the bytes were damaged in transit; check the network or proxy"
        }
        Some(_) => return None,
        None => match status {
            301 | 307 | 308 => "check the region and the endpoint (the store redirects elsewhere)",
            400 => "check the endpoint, the region and path_style",
            401 | 403 => {
                "check the access key id, the secret access key, the region and the permissions on the bucket"
            }
            404 => "check the bucket name, the endpoint and path_style",
            405 => "check the endpoint and path_style",
            500..=599 => "the object store is failing; try again later",
            _ => "check the endpoint",
        },
    })
}

/// What to check when the startup probe ([`S3BlobStore::check`]) is refused: said in terms of
/// the hub's `[s3]` keys. A wrong secret and a key id from another pair look alike to the
/// server, so both credential errors name both halves.
fn check_hint(code: Option<&str>, status: u16) -> Option<&'static str> {
    match code {
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
            Some("check s3.access_key_id and the secret key")
        }
        _ => hint(code, status),
    }
}

/// Collapses whitespace (newlines included) and caps the length, so a message is one line.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > 300 {
            let mut end = 300;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            out.push('…');
            break;
        }
    }
    out
}

/// Walks an XML document, calling `on_end(path, text)` as each element closes, with the names
/// of the open elements (the closing one last) and the text directly inside it. DTDs and
/// unknown entities make it fail, like the WeChat parser.
fn walk_xml(body: &[u8], mut on_end: impl FnMut(&[String], String)) -> Result<(), String> {
    const MAX_DEPTH: usize = 16;
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let mut reader = Reader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::DocType(_) => return Err("DTD in an object store answer".into()),
            Event::Start(start) => {
                if path.len() >= MAX_DEPTH {
                    return Err("too deeply nested".into());
                }
                path.push(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                texts.push(String::new());
            }
            Event::Empty(start) => {
                path.push(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                on_end(&path, String::new());
                path.pop();
            }
            Event::End(_) => {
                let text = texts.pop().unwrap_or_default();
                on_end(&path, text);
                path.pop();
            }
            Event::Text(t) => {
                if let Some(current) = texts.last_mut() {
                    current.push_str(&t.xml_content().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(t) => {
                if let Some(current) = texts.last_mut() {
                    current.push_str(&t.xml_content().map_err(|e| e.to_string())?);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = if reference.is_char_ref() {
                    reference
                        .resolve_char_ref()
                        .map_err(|e| e.to_string())?
                        .map(String::from)
                } else {
                    let name = reference.decode().map_err(|e| e.to_string())?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => Some(s.to_string()),
                        None => return Err(format!("unknown entity &{name};")),
                    }
                };
                if let (Some(current), Some(s)) = (texts.last_mut(), resolved) {
                    current.push_str(&s);
                }
            }
            Event::Eof => return Ok(()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
}

/// `Code` and `Message` of an S3 `<Error>` body, each made one line; `None`s for anything
/// else (an empty HEAD answer, a proxy's HTML page).
fn parse_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let mut code = None;
    let mut message = None;
    let parsed = walk_xml(body, |path, text| match path {
        [root, field] if root == "Error" && field == "Code" => code = Some(one_line(&text)),
        [root, field] if root == "Error" && field == "Message" => message = Some(one_line(&text)),
        _ => {}
    });
    if parsed.is_err() {
        return (None, None);
    }
    (
        code.filter(|c| !c.is_empty()),
        message.filter(|m| !m.is_empty()),
    )
}

fn error_code(body: &[u8]) -> Option<String> {
    parse_error(body).0
}

/// Whether a body is a ListObjectsV2 answer: an XML document whose root is
/// `<ListBucketResult>`.
fn is_list_result(body: &[u8]) -> bool {
    let mut root = None;
    let parsed = walk_xml(body, |path, _| {
        if let [name] = path {
            root = Some(name.clone());
        }
    });
    parsed.is_ok() && root.as_deref() == Some("ListBucketResult")
}

impl BlobStore for S3BlobStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.object(key)?;
        let store = Arc::clone(&self.store);
        let payload = PutPayload::from(bytes.to_vec());
        // S3 answers 200 only once the object is stored durably, and checks the bytes against
        // the signed x-amz-content-sha256.
        self.runtime
            .run(async move { store.put(&path, payload).await })
            .ok_or_else(|| self.stopped("put", key))?
            .map(|_| ())
            .map_err(|e| self.error("put", key, &e))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.object(key)?;
        let store = Arc::clone(&self.store);
        let answer = self
            .runtime
            .run(async move {
                let found = store.get(&path).await?;
                if found.meta.size > MAX_BODY {
                    return Ok(Err(found.meta.size));
                }
                found.bytes().await.map(Ok)
            })
            .ok_or_else(|| self.stopped("get", key))?;
        match answer {
            Ok(Ok(bytes)) => Ok(Some(bytes.to_vec())),
            Ok(Err(size)) => Err(BlobError::Remote {
                op: "get",
                key: self.location(key),
                message: format!("the object is {size} bytes, more than a photo can be"),
            }),
            // Only a missing key is "nothing there"; a missing bucket is an error.
            Err(e @ object_store::Error::NotFound { .. })
                if Self::status_of(&e).is_some_and(|(_, body)| {
                    error_code(body.as_bytes()).as_deref() == Some("NoSuchKey")
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error("get", key, &e)),
        }
    }

    fn delete(&self, key: &str) -> Result<bool, BlobError> {
        let path = self.object(key)?;
        let store = Arc::clone(&self.store);
        // DELETE answers 204 whether or not the object was there, so ask first.
        let answer = self
            .runtime
            .run(async move {
                match store.head(&path).await {
                    Ok(_) => store.delete(&path).await.map(|()| true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .ok_or_else(|| self.stopped("delete", key))?;
        answer.map_err(|e| self.error("delete", key, &e))
    }

    fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (objects, next) = self.list_page(self.page_size, token.clone(), "list")?;
            for object in objects {
                let Some(key) = object.location.as_ref().strip_prefix(&self.prefix) else {
                    continue;
                };
                if !valid_key(key) {
                    continue;
                }
                out.push(BlobEntry {
                    key: key.to_string(),
                    modified: object.last_modified.timestamp(),
                });
            }
            match next {
                None => return Ok(out),
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                Some(_) => {
                    return Err(BlobError::Remote {
                        op: "list",
                        key: self.location(""),
                        message: "a truncated ListObjectsV2 page without a new continuation token"
                            .into(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> S3Settings {
        S3Settings {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "photos".into(),
            region: "us-east-1".into(),
            prefix: "hub/".into(),
            path_style: true,
            credentials: S3Credentials::key_pair("id", Secret::new("hunter2-s3")),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn error_bodies_become_one_line() {
        let moto = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n    <Code>NoSuchBucket</Code>\n    \
            <Message><![CDATA[The specified bucket does not exist]]></Message>\n    \
            <BucketName>nobucket</BucketName>\n</Error>";
        assert_eq!(
            http_message(404, moto),
            "HTTP 404 NoSuchBucket: The specified bucket does not exist; check the bucket name and the endpoint"
        );
        let aws = b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we \
            calculated does not match the signature you provided.\nCheck your key &amp; signing \
            method.</Message><StringToSign>AWS4-HMAC-SHA256\n...</StringToSign></Error>";
        assert_eq!(
            http_message(403, aws),
            "HTTP 403 SignatureDoesNotMatch: The request signature we calculated does not match \
             the signature you provided. Check your key & signing method.; check the secret access key"
        );
        let html =
            b"<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>";
        assert_eq!(
            http_message(502, html),
            "HTTP 502 Bad Gateway; the object store is failing; try again later"
        );
        assert_eq!(
            http_message(403, b""),
            "HTTP 403 Forbidden; check the access key id, the secret access key, the region and the permissions on the bucket"
        );
        let long = format!(
            "<Error><Code>X</Code><Message>{}</Message></Error>",
            "word ".repeat(200)
        );
        let message = http_message(500, long.as_bytes());
        assert!(message.len() < 400 && !message.contains('\n'), "{message}");
        assert!(
            parse_error(b"<!DOCTYPE x [<!ENTITY a \"b\">]><Error><Code>&a;</Code></Error>")
                .0
                .is_none()
        );
    }

    #[test]
    fn probe_refusals_name_the_config_keys() {
        let signature = b"<Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error>";
        assert_eq!(
            http_message_with(403, signature, check_hint),
            "HTTP 403 SignatureDoesNotMatch: m; check s3.access_key_id and the secret key"
        );
        let unknown = b"<Error><Code>InvalidAccessKeyId</Code><Message>m</Message></Error>";
        assert_eq!(
            http_message_with(403, unknown, check_hint),
            "HTTP 403 InvalidAccessKeyId: m; check s3.access_key_id and the secret key"
        );
        // Everything else says what the other operations say.
        let missing = b"<Error><Code>NoSuchBucket</Code><Message>m</Message></Error>";
        assert_eq!(
            http_message_with(404, missing, check_hint),
            http_message(404, missing)
        );
        assert_eq!(
            http_message_with(403, b"", check_hint),
            http_message(403, b"")
        );
    }

    /// An error chain as object_store builds it: a wrapper whose source says the status.
    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn statuses_are_read_out_of_object_stores_errors() {
        let chain = Wrapped(
            "Generic S3 error: Error performing GET http://x in 2ms",
            Some(Box::new(Wrapped(
                "Server returned non-2xx status code: 404 Not Found: <Error><Code>NoSuchKey</Code></Error>",
                None,
            ))),
        );
        assert_eq!(
            failure_of(&chain),
            Failure::Status {
                status: 404,
                body: "<Error><Code>NoSuchKey</Code></Error>".into()
            }
        );
        let head = Wrapped("Server returned non-2xx status code: 403 Forbidden: ", None);
        assert_eq!(
            failure_of(&head),
            Failure::Status {
                status: 403,
                body: String::new()
            }
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            failure_of(&refused),
            Failure::Transport {
                refused: true,
                tls: false,
                ..
            }
        ));
        let tls = std::io::Error::other(rustls::Error::General("bad".into()));
        assert!(matches!(
            failure_of(&tls),
            Failure::Transport { tls: true, .. }
        ));
        // As hyper-util hands over tokio-rustls's failed handshake: I/O in I/O.
        let nested = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ));
        assert!(matches!(
            failure_of(&nested),
            Failure::Transport { tls: true, .. }
        ));
        let plain = std::io::Error::other(std::io::Error::other("reset"));
        assert!(matches!(
            failure_of(&plain),
            Failure::Transport { tls: false, .. }
        ));
    }

    #[test]
    fn settings_are_checked() {
        let store = S3BlobStore::new(settings()).unwrap();
        assert_eq!(store.bucket_url, "http://127.0.0.1:9000/photos");
        let virtual_hosted = S3BlobStore::new(S3Settings {
            endpoint: "https://s3.eu-west-1.amazonaws.com/".into(),
            path_style: false,
            ..settings()
        })
        .unwrap();
        assert_eq!(
            virtual_hosted.bucket_url,
            "https://photos.s3.eu-west-1.amazonaws.com"
        );
        let with_path = S3BlobStore::new(S3Settings {
            endpoint: "https://gw.local:8080/s3/".into(),
            ..settings()
        })
        .unwrap();
        assert_eq!(with_path.bucket_url, "https://gw.local:8080/s3/photos");
        let bad_cases = [
            ("127.0.0.1:9000", "endpoint"),
            ("http://user@host/", "endpoint"),
            ("http://minio.internal:9000", "endpoint"),
        ]
        .map(|(endpoint, field)| {
            (
                S3Settings {
                    endpoint: endpoint.into(),
                    ..settings()
                },
                field,
            )
        });
        for (bad, field) in bad_cases.into_iter().chain([
            (
                S3Settings {
                    bucket: "Photos_1".into(),
                    ..settings()
                },
                "bucket",
            ),
            (
                S3Settings {
                    region: "".into(),
                    ..settings()
                },
                "region",
            ),
            (
                S3Settings {
                    prefix: "hub//".into(),
                    ..settings()
                },
                "prefix",
            ),
            (
                S3Settings {
                    prefix: "/hub/".into(),
                    ..settings()
                },
                "prefix",
            ),
            (
                S3Settings {
                    credentials: S3Credentials::key_pair("id", Secret::new("")),
                    ..settings()
                },
                "secret_access_key",
            ),
            (
                S3Settings {
                    credentials: S3Credentials::KeyPair {
                        access_key_id: "id".into(),
                        secret_access_key: Secret::new("s"),
                        session_token: Some(Secret::new("tok\nen")),
                    },
                    ..settings()
                },
                "session_token",
            ),
            (
                S3Settings {
                    credentials: S3Credentials::key_pair("i\u{1}d", Secret::new("s")),
                    ..settings()
                },
                "access_key_id",
            ),
            (
                S3Settings {
                    credentials: S3Credentials::Chain(vec![(
                        "AWS_SESSION_TOKEN".into(),
                        Secret::new("tok\u{7f}en"),
                    )]),
                    ..settings()
                },
                "credentials",
            ),
        ]) {
            let e = S3BlobStore::new(bad).unwrap_err();
            assert!(
                matches!(&e, BlobError::Remote { op: "settings", key, .. } if key == field),
                "{e}"
            );
        }
        // The secret never shows.
        assert!(!format!("{store:?}").contains("hunter2"));
        let chain = S3Credentials::chain(&|name| {
            (name == "AWS_SESSION_TOKEN" || name == "PATH").then(|| "token-xyz".to_string())
        });
        assert!(
            matches!(&chain, S3Credentials::Chain(v) if v.len() == 1 && v[0].0 == "AWS_SESSION_TOKEN")
        );
        assert!(!format!("{chain:?}").contains("token-xyz"));
    }

    #[test]
    fn bad_keys_are_refused_before_any_request() {
        // Port 9 (discard) is never asked: the key is checked first.
        let store = S3BlobStore::new(S3Settings {
            endpoint: "http://127.0.0.1:9".into(),
            ..settings()
        })
        .unwrap();
        for key in [
            "../../etc/passwd",
            "abc",
            "ABCDEF0123456789",
            "0123456789/abcdef",
        ] {
            assert!(
                matches!(store.put(key, b"x"), Err(BlobError::BadKey(_))),
                "{key}"
            );
            assert!(matches!(store.get(key), Err(BlobError::BadKey(_))), "{key}");
            assert!(
                matches!(store.delete(key), Err(BlobError::BadKey(_))),
                "{key}"
            );
        }
    }
}
