//! Photo bytes in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, …), so several hub
//! instances can share them.
//!
//! Plain blocking HTTP (ureq, rustls) signed with AWS Signature Version 4, written out in
//! [`sigv4`] and checked against AWS's published examples. Objects are `<prefix><key>`; the
//! prefix lets one bucket hold several hubs (or other data) without them seeing each other.
//!
//! Every failure becomes one line in [`BlobError::Remote`]: the HTTP status with the S3 error
//! code and message, or the transport error, plus what to check.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirrorsight_wechat::Secret;
use quick_xml::Reader;
use quick_xml::events::Event;
use ureq::http::{Method, StatusCode};

use super::blob::valid_key;
use super::blob::{BlobEntry, BlobError, BlobStore};

/// Where the bucket is and how to sign for it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `scheme://host[:port][/path]`, e.g. `http://127.0.0.1:9000` or
    /// `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    pub bucket: String,
    /// The region signed for (`us-east-1` for most self-hosted stores).
    pub region: String,
    /// Prepended to every key inside the bucket, e.g. `"hub/photos/"`; may be `""`.
    pub prefix: String,
    /// `true`: `endpoint/bucket/key` (MinIO and most self-hosted stores);
    /// `false`: `bucket.host/key` (virtual-hosted, AWS's default).
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Longest one request may take, body included.
    pub timeout: Duration,
}

/// [`BlobStore`] on an S3-compatible bucket. Blocking; cheap to share (the connection pool is
/// inside).
#[derive(Debug)]
pub struct S3BlobStore {
    agent: ureq::Agent,
    /// `http` or `https`.
    scheme: String,
    /// What is connected to and sent as `Host`: `host[:port]`, with `bucket.` in front when
    /// virtual-hosted.
    host: String,
    /// The URI path of the bucket: the endpoint's own path, plus `/<bucket>` when path-style;
    /// `""` for the root. Already URI-encoded.
    bucket_path: String,
    bucket: String,
    region: String,
    prefix: String,
    access_key_id: String,
    secret_access_key: Secret,
    timeout: Duration,
    /// `max-keys` of a list page; `None` leaves the server's default (1000).
    page_size: Option<u32>,
}

/// Largest object body read back (photos are at most 256 MiB).
const MAX_BODY: u64 = 1 << 30;
/// Pause before the one retry of a request that failed in transit or with a 5xx.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

fn settings_error(field: &'static str, message: String) -> BlobError {
    BlobError::Remote {
        op: "settings",
        key: field.to_string(),
        message,
    }
}

/// One answer, read whole.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// A request that did not get an HTTP answer.
struct Transport(ureq::Error);

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
        let access_key_id = settings.access_key_id.trim();
        if access_key_id.is_empty() || access_key_id.contains(['/', ',', ' ']) {
            return Err(settings_error(
                "access_key_id",
                "is empty or has '/', ',' or spaces".into(),
            ));
        }
        if settings.secret_access_key.expose().is_empty() {
            return Err(settings_error("secret_access_key", "is empty".into()));
        }
        if settings.prefix.len() > 512 || settings.prefix.chars().any(char::is_control) {
            return Err(settings_error(
                "prefix",
                "is longer than 512 bytes or has control characters".into(),
            ));
        }
        if settings.timeout.is_zero() {
            return Err(settings_error("timeout", "must be above zero".into()));
        }
        let (host, bucket_path) = if settings.path_style {
            (authority.to_string(), format!("{path}/{bucket}"))
        } else {
            (format!("{bucket}.{authority}"), path.to_string())
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            // Error statuses are answers to read (their XML says what is wrong), not errors.
            .http_status_as_error(false)
            // A redirect means the wrong endpoint or region; following it would break the
            // signature, so it is reported instead.
            .max_redirects(0)
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(Self {
            agent,
            scheme: scheme.to_string(),
            host,
            bucket_path,
            bucket: bucket.to_string(),
            region: region.to_string(),
            prefix: settings.prefix,
            access_key_id: access_key_id.to_string(),
            secret_access_key: settings.secret_access_key,
            timeout: settings.timeout,
            page_size: None,
        })
    }

    /// Lists `keys` per request instead of the server's default 1000 (clamped to 1..=1000).
    pub fn with_list_page_size(mut self, keys: u32) -> Self {
        self.page_size = Some(keys.clamp(1, 1000));
        self
    }

    /// Creates the bucket; one that already exists and is ours is fine. For setting up a
    /// self-hosted store (and the tests); on AWS buckets are usually made elsewhere.
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
        let reply = self.send("create bucket", "", Method::PUT, None, &[], &body)?;
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        if error_code(&reply.body).as_deref() == Some("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        Err(self.http_error("create bucket", "", &reply))
    }

    /// Probes the bucket the way the hub will use it, so a wrong endpoint, bucket or key is
    /// one line at startup rather than an error on the first photo: one signed ListObjectsV2
    /// of at most one key under the prefix (what the orphan sweep lists). HEAD of the bucket
    /// would be cheaper still, but its answers carry no body, so a wrong secret, an unknown
    /// key id and missing permissions would all be a bare 403; the list answer's error code
    /// tells them apart. Reads nothing but one key name and writes nothing.
    ///
    /// Errors are [`BlobError::Remote`] with `op` `"check"`, one line like every other
    /// operation's: `NoSuchBucket`, a refused connection, a timeout, a TLS failure each say
    /// what to check; `InvalidAccessKeyId` and `SignatureDoesNotMatch` (which one an
    /// S3-compatible server answers for a mismatched pair varies) both point at the key pair.
    pub fn check(&self) -> Result<(), BlobError> {
        let mut query = vec![("list-type", "2"), ("max-keys", "1")];
        if !self.prefix.is_empty() {
            query.push(("prefix", self.prefix.as_str()));
        }
        let reply = self.send("check", "", Method::GET, None, &query, &[])?;
        let message = if reply.status == 200 {
            if is_list_result(&reply.body) {
                return Ok(());
            }
            // Something answers, but not as S3 does: a web server, a console port, a proxy.
            "HTTP 200 but not a ListObjectsV2 answer; check the endpoint (the S3 API port, not \
             a console) and path_style"
                .to_string()
        } else {
            http_message_with(reply.status, &reply.body, check_hint)
        };
        Err(BlobError::Remote {
            op: "check",
            key: self.location(""),
            message,
        })
    }

    /// `bucket/prefix+key`, for messages.
    fn location(&self, key: &str) -> String {
        format!("{}/{}{key}", self.bucket, self.prefix)
    }

    fn endpoint_for_messages(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    fn check_key(key: &str) -> Result<(), BlobError> {
        if valid_key(key) {
            Ok(())
        } else {
            Err(BlobError::BadKey(key.to_string()))
        }
    }

    /// Sends one signed request, once more if it failed in transit or with a 5xx.
    fn send(
        &self,
        op: &'static str,
        key: &str,
        method: Method,
        object: Option<&str>,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, BlobError> {
        let first = self.send_once(method.clone(), object, query, body);
        let retry = match &first {
            Ok(reply) => reply.status >= 500,
            Err(Transport(e)) => !matches!(e, ureq::Error::Timeout(_)),
        };
        let result = if retry {
            std::thread::sleep(RETRY_PAUSE);
            self.send_once(method, object, query, body)
        } else {
            first
        };
        result.map_err(|Transport(e)| BlobError::Remote {
            op,
            key: self.location(key),
            message: self.transport_message(&e),
        })
    }

    fn send_once(
        &self,
        method: Method,
        object: Option<&str>,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, Transport> {
        let mut path = self.bucket_path.clone();
        if let Some(object) = object {
            path.push('/');
            path.push_str(&sigv4::uri_encode(object, false));
        }
        if path.is_empty() {
            path.push('/');
        }
        let query = sigv4::canonical_query(query);
        let payload_hash = sigv4::sha256_hex(body);
        let amz_date = sigv4::amz_date(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        let headers = [
            ("host", self.host.as_str()),
            ("x-amz-content-sha256", payload_hash.as_str()),
            ("x-amz-date", amz_date.as_str()),
        ];
        let authorization = sigv4::authorization(
            &sigv4::Credentials {
                access_key_id: &self.access_key_id,
                secret_access_key: self.secret_access_key.expose(),
                region: &self.region,
                service: "s3",
            },
            &amz_date,
            &sigv4::Request {
                method: method.as_str(),
                canonical_uri: &path,
                canonical_query: &query,
                headers: &headers,
                payload_hash: &payload_hash,
            },
        );
        let url = if query.is_empty() {
            format!("{}://{}{path}", self.scheme, self.host)
        } else {
            format!("{}://{}{path}?{query}", self.scheme, self.host)
        };
        let has_body = method == Method::PUT || method == Method::POST;
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        builder = builder.header("authorization", authorization);
        let response = if has_body {
            let request = builder
                .body(body)
                .map_err(|e| Transport(ureq::Error::Http(e)))?;
            self.agent.run(request)
        } else {
            let request = builder
                .body(())
                .map_err(|e| Transport(ureq::Error::Http(e)))?;
            self.agent.run(request)
        }
        .map_err(Transport)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(Transport)?;
        Ok(Reply { status, body })
    }

    fn transport_message(&self, e: &ureq::Error) -> String {
        let endpoint = self.endpoint_for_messages();
        let detail = one_line(&e.to_string());
        let io_kind = match e {
            ureq::Error::Io(io) => Some(io.kind()),
            _ => None,
        };
        // rustls reports handshake and certificate failures through the I/O error.
        let tls_failure = match e {
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => true,
            ureq::Error::Io(io) => io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()),
            _ => false,
        };
        match e {
            ureq::Error::Timeout(_) => format!(
                "no answer from {endpoint} within {:?} ({detail}); check the endpoint and the network",
                self.timeout
            ),
            ureq::Error::HostNotFound => {
                format!("host of {endpoint} not found; check the endpoint")
            }
            _ if io_kind == Some(std::io::ErrorKind::ConnectionRefused) => format!(
                "connection refused by {endpoint}; check the endpoint and that the object store is running"
            ),
            _ if tls_failure => format!(
                "TLS with {endpoint} failed ({detail}); check the endpoint and its certificate (the system's CA roots are trusted)"
            ),
            _ => format!("cannot talk to {endpoint} ({detail}); check the endpoint"),
        }
    }

    fn http_error(&self, op: &'static str, key: &str, reply: &Reply) -> BlobError {
        BlobError::Remote {
            op,
            key: self.location(key),
            message: http_message(reply.status, &reply.body),
        }
    }
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
            if let Some(reason) = StatusCode::from_u16(status)
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

/// Whether `body` is a ListObjectsV2 (or V1) answer: an XML document whose root is
/// `ListBucketResult`.
fn is_list_result(body: &[u8]) -> bool {
    let mut root = false;
    walk_xml(body, |path, _| {
        if let [only] = path {
            root |= only == "ListBucketResult";
        }
    })
    .is_ok()
        && root
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

/// One page of ListObjectsV2.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListPage {
    /// Full object keys with their LastModified text.
    objects: Vec<(String, String)>,
    next: Option<String>,
    truncated: bool,
}

fn parse_list_page(body: &[u8]) -> Result<ListPage, String> {
    let mut page = ListPage::default();
    let mut key = None;
    let mut modified = None;
    let mut missing = false;
    walk_xml(body, |path, text| {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        match names.as_slice() {
            ["ListBucketResult", "Contents", "Key"] => key = Some(text),
            ["ListBucketResult", "Contents", "LastModified"] => modified = Some(text),
            ["ListBucketResult", "Contents"] => match (key.take(), modified.take()) {
                (Some(k), Some(m)) => page.objects.push((k, m)),
                _ => missing = true,
            },
            ["ListBucketResult", "IsTruncated"] => page.truncated = text.trim() == "true",
            ["ListBucketResult", "NextContinuationToken"] => {
                page.next = Some(text).filter(|t| !t.is_empty())
            }
            _ => {}
        }
    })?;
    if missing {
        return Err("an entry without Key or LastModified".into());
    }
    Ok(page)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` to Unix seconds (S3's LastModified).
fn parse_iso8601(text: &str) -> Option<i64> {
    let t = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = t.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if t.len() < 20 || t[4] != b'-' || t[7] != b'-' || !matches!(t[10], b'T' | b't' | b' ') {
        return None;
    }
    if t[13] != b':' || t[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &t[19..];
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &rest[1 + digits..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let m = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let month_days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if !(1..=12).contains(&month) {
        return None;
    }
    let max_day = month_days[(month - 1) as usize] + i64::from(month == 2 && leap);
    if !(1..=max_day).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number from [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl BlobStore for S3BlobStore {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        Self::check_key(key)?;
        let object = format!("{}{key}", self.prefix);
        // S3 answers 200 only once the object is stored durably, and checks the bytes against
        // the signed x-amz-content-sha256.
        let reply = self.send("put", key, Method::PUT, Some(&object), &[], bytes)?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(self.http_error("put", key, &reply))
        }
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        Self::check_key(key)?;
        let object = format!("{}{key}", self.prefix);
        let reply = self.send("get", key, Method::GET, Some(&object), &[], &[])?;
        match reply.status {
            200 => Ok(Some(reply.body)),
            // Only a missing key is "nothing there"; a missing bucket is an error.
            404 if error_code(&reply.body).as_deref() == Some("NoSuchKey") => Ok(None),
            _ => Err(self.http_error("get", key, &reply)),
        }
    }

    fn delete(&self, key: &str) -> Result<bool, BlobError> {
        Self::check_key(key)?;
        let object = format!("{}{key}", self.prefix);
        // DELETE answers 204 whether or not the object was there, so ask first.
        let head = self.send("delete", key, Method::HEAD, Some(&object), &[], &[])?;
        match head.status {
            200..=299 => {}
            404 => return Ok(false),
            _ => return Err(self.http_error("delete", key, &head)),
        }
        let reply = self.send("delete", key, Method::DELETE, Some(&object), &[], &[])?;
        if (200..300).contains(&reply.status) {
            Ok(true)
        } else {
            Err(self.http_error("delete", key, &reply))
        }
    }

    fn list(&self) -> Result<Vec<BlobEntry>, BlobError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let page_size = self.page_size.map(|n| n.to_string());
        loop {
            let mut query = vec![("list-type", "2")];
            if !self.prefix.is_empty() {
                query.push(("prefix", self.prefix.as_str()));
            }
            if let Some(n) = &page_size {
                query.push(("max-keys", n.as_str()));
            }
            if let Some(t) = &token {
                query.push(("continuation-token", t.as_str()));
            }
            let reply = self.send("list", "", Method::GET, None, &query, &[])?;
            if reply.status != 200 {
                return Err(self.http_error("list", "", &reply));
            }
            let bad = |message: String| BlobError::Remote {
                op: "list",
                key: self.location(""),
                message,
            };
            let page = parse_list_page(&reply.body)
                .map_err(|e| bad(format!("unreadable ListObjectsV2 answer: {}", one_line(&e))))?;
            for (object, modified) in page.objects {
                let Some(key) = object.strip_prefix(&self.prefix) else {
                    continue;
                };
                if !valid_key(key) {
                    continue;
                }
                // Never guess a time: the sweep would take a fresh upload for an old orphan.
                let modified = parse_iso8601(&modified).ok_or_else(|| {
                    bad(format!(
                        "LastModified {:?} of {object:?} is not an ISO-8601 time",
                        one_line(&modified)
                    ))
                })?;
                out.push(BlobEntry {
                    key: key.to_string(),
                    modified,
                });
            }
            if !page.truncated {
                return Ok(out);
            }
            match page.next {
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                _ => {
                    return Err(bad(
                        "a truncated ListObjectsV2 page without a new NextContinuationToken".into(),
                    ));
                }
            }
        }
    }
}

/// AWS Signature Version 4 for S3 requests signed in the `Authorization` header: pure
/// functions, no I/O. Reference: "Authenticating Requests: Using the Authorization Header
/// (AWS Signature Version 4)" in the Amazon S3 API documentation.
mod sigv4 {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    pub struct Credentials<'a> {
        pub access_key_id: &'a str,
        pub secret_access_key: &'a str,
        pub region: &'a str,
        pub service: &'a str,
    }

    /// What is signed. `headers` are all signed and must include `host`, `x-amz-date` and
    /// (for S3) `x-amz-content-sha256`; names in any case, in any order.
    pub struct Request<'a> {
        pub method: &'a str,
        /// The URI path as sent, already encoded with [`uri_encode`] (slashes kept).
        pub canonical_uri: &'a str,
        /// From [`canonical_query`]; also what is sent.
        pub canonical_query: &'a str,
        pub headers: &'a [(&'a str, &'a str)],
        pub payload_hash: &'a str,
    }

    pub fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// SigV4's URI encoding: every byte but `A-Za-z0-9-._~` as `%XX` (upper case), and `/`
    /// kept as is unless `encode_slash`.
    pub fn uri_encode(text: &str, encode_slash: bool) -> String {
        let mut out = String::with_capacity(text.len());
        for &b in text.as_bytes() {
            if b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.' | b'~')
                || (b == b'/' && !encode_slash)
            {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// Raw query pairs as the canonical (and sent) query string: each name and value
    /// encoded, sorted by name then value, a bare name given an empty value.
    pub fn canonical_query(pairs: &[(&str, &str)]) -> String {
        let mut encoded: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
            .collect();
        encoded.sort();
        encoded
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The canonical request and the signed header list (`host;x-amz-date;…`).
    pub fn canonical_request(request: &Request<'_>) -> (String, String) {
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.trim().to_ascii_lowercase(),
                    value.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
            .collect();
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        // Repeated names become one line with the values comma-separated, in order.
        let mut merged: Vec<(String, String)> = Vec::new();
        for (name, value) in headers {
            match merged.last_mut() {
                Some((last, values)) if *last == name => {
                    values.push(',');
                    values.push_str(&value);
                }
                _ => merged.push((name, value)),
            }
        }
        let canonical_headers: String = merged
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let signed_headers = merged
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            request.method,
            request.canonical_uri,
            request.canonical_query,
            canonical_headers,
            signed_headers,
            request.payload_hash
        );
        (canonical, signed_headers)
    }

    /// `<date>/<region>/<service>/aws4_request`.
    pub fn scope(amz_date: &str, credentials: &Credentials<'_>) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            &amz_date[..8.min(amz_date.len())],
            credentials.region,
            credentials.service
        )
    }

    pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        )
    }

    pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        let k_region = hmac(&k_date, region.as_bytes());
        let k_service = hmac(&k_region, service.as_bytes());
        hmac(&k_service, b"aws4_request")
    }

    /// The `Authorization` header value. `amz_date` is `YYYYMMDDTHHMMSSZ`, the same as the
    /// signed `x-amz-date` header.
    pub fn authorization(
        credentials: &Credentials<'_>,
        amz_date: &str,
        request: &Request<'_>,
    ) -> String {
        let (canonical, signed_headers) = canonical_request(request);
        let scope = scope(amz_date, credentials);
        let to_sign = string_to_sign(amz_date, &scope, &canonical);
        let key = signing_key(
            credentials.secret_access_key,
            &amz_date[..8.min(amz_date.len())],
            credentials.region,
            credentials.service,
        );
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}",
            credentials.access_key_id
        )
    }

    /// `YYYYMMDDTHHMMSSZ` of a Unix time.
    pub fn amz_date(unix_secs: i64) -> String {
        let (year, month, day) = super::civil_from_days(unix_secs.div_euclid(86_400));
        let secs = unix_secs.rem_euclid(86_400);
        format!(
            "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        // The examples of the S3 SigV4 documentation ("Examples of signature calculations"):
        // these credentials, 2013-05-24 00:00:00 UTC, us-east-1, examplebucket, virtual-hosted.
        const CREDENTIALS: Credentials<'static> = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "s3",
        };
        const DATE: &str = "20130524T000000Z";
        const HOST: &str = "examplebucket.s3.amazonaws.com";
        const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

        #[test]
        fn get_object_example() {
            let headers = [
                ("Host", HOST),
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY),
                ("x-amz-date", DATE),
            ];
            let request = Request {
                method: "GET",
                canonical_uri: "/test.txt",
                canonical_query: "",
                headers: &headers,
                payload_hash: EMPTY,
            };
            let (canonical, signed) = canonical_request(&request);
            assert_eq!(
                canonical,
                "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
                 x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
                 x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
                 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            );
            assert_eq!(signed, "host;range;x-amz-content-sha256;x-amz-date");
            let scope = scope(DATE, &CREDENTIALS);
            assert_eq!(scope, "20130524/us-east-1/s3/aws4_request");
            assert_eq!(
                string_to_sign(DATE, &scope, &canonical),
                "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n\
                 7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
            );
            assert_eq!(
                authorization(&CREDENTIALS, DATE, &request),
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
                 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            );
        }

        #[test]
        fn put_object_example() {
            let body = b"Welcome to Amazon S3.";
            let hash = sha256_hex(body);
            assert_eq!(
                hash,
                "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
            );
            let uri = format!("/{}", uri_encode("test$file.text", false));
            assert_eq!(uri, "/test%24file.text");
            let headers = [
                ("Host", HOST),
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-date", DATE),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", hash.as_str()),
            ];
            let request = Request {
                method: "PUT",
                canonical_uri: &uri,
                canonical_query: "",
                headers: &headers,
                payload_hash: &hash,
            };
            assert_eq!(
                authorization(&CREDENTIALS, DATE, &request),
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
                 SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,\
                 Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
            );
        }

        #[test]
        fn bucket_examples_with_queries() {
            let headers = [
                ("host", HOST),
                ("x-amz-content-sha256", EMPTY),
                ("x-amz-date", DATE),
            ];
            // "GET Bucket Lifecycle": a bare parameter gets an empty value.
            let query = canonical_query(&[("lifecycle", "")]);
            assert_eq!(query, "lifecycle=");
            let request = Request {
                method: "GET",
                canonical_uri: "/",
                canonical_query: &query,
                headers: &headers,
                payload_hash: EMPTY,
            };
            assert!(authorization(&CREDENTIALS, DATE, &request).ends_with(
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
            ));
            // "GET Bucket (List Objects)": parameters sorted whatever order they come in.
            let query = canonical_query(&[("prefix", "J"), ("max-keys", "2")]);
            assert_eq!(query, "max-keys=2&prefix=J");
            let request = Request {
                canonical_query: &query,
                ..request
            };
            assert!(authorization(&CREDENTIALS, DATE, &request).ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ));
        }

        #[test]
        fn uri_encoding_keeps_only_unreserved_bytes() {
            assert_eq!(uri_encode("a-b_c.d~e09AZ", true), "a-b_c.d~e09AZ");
            assert_eq!(uri_encode("a b/c+d=é*", true), "a%20b%2Fc%2Bd%3D%C3%A9%2A");
            assert_eq!(uri_encode("hub/photos/ab-01", false), "hub/photos/ab-01");
            assert_eq!(
                canonical_query(&[("prefix", "hub/ph otos/"), ("list-type", "2")]),
                "list-type=2&prefix=hub%2Fph%20otos%2F"
            );
        }

        #[test]
        fn header_values_are_trimmed_and_repeats_merged() {
            let headers = [
                ("X-Amz-Meta-A", "  two   words "),
                ("host", "h"),
                ("x-amz-meta-a", "second"),
            ];
            let request = Request {
                method: "GET",
                canonical_uri: "/",
                canonical_query: "",
                headers: &headers,
                payload_hash: EMPTY,
            };
            let (canonical, signed) = canonical_request(&request);
            assert_eq!(signed, "host;x-amz-meta-a");
            assert!(canonical.contains("\nhost:h\nx-amz-meta-a:two words,second\n"));
        }

        #[test]
        fn amz_dates() {
            assert_eq!(amz_date(0), "19700101T000000Z");
            assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
            assert_eq!(amz_date(951_782_400 + 3_723), "20000229T010203Z");
            assert_eq!(amz_date(4_102_444_799), "20991231T235959Z");
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
            access_key_id: "id".into(),
            secret_access_key: Secret::new("hunter2-s3"),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn iso8601_times() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso8601("2013-05-24T00:00:00.000Z"),
            Some(1_369_353_600)
        );
        assert_eq!(
            parse_iso8601("2009-10-12T17:50:30.000Z"),
            Some(1_255_369_830)
        );
        assert_eq!(
            parse_iso8601("2024-02-29T12:00:00.123456Z"),
            Some(1_709_208_000)
        );
        assert_eq!(
            parse_iso8601("2024-02-29T14:00:00+02:00"),
            Some(1_709_208_000)
        );
        assert_eq!(
            parse_iso8601("2024-02-29T07:30:00-04:30"),
            Some(1_709_208_000)
        );
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01 00:00Z",
            "Mon, 01 Jan 2024 00:00:00 GMT",
            "2024-01-01T00:00:00Zjunk",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        for days in [-800_000, -1, 0, 1, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
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
    fn probe_answers_are_judged() {
        assert!(is_list_result(
            b"<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
              <Name>photos</Name><KeyCount>0</KeyCount></ListBucketResult>"
        ));
        assert!(is_list_result(b"<ListBucketResult/>"));
        for not_a_listing in [
            &b""[..],
            b"<html><body>MinIO Console</body></html>",
            b"<Error><Code>NoSuchBucket</Code></Error>",
            b"<x><ListBucketResult/></x>",
            b"{\"ListBucketResult\": []}",
        ] {
            assert!(
                !is_list_result(not_a_listing),
                "{}",
                String::from_utf8_lossy(not_a_listing)
            );
        }
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

    #[test]
    fn list_pages_parse() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>photos</Name><Prefix>hub/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents><Key>hub/0123456789abcdef</Key><LastModified>2013-05-24T00:00:00.000Z</LastModified>
    <ETag>&quot;x&quot;</ETag><Size>5</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>hub/a&amp;b</Key><LastModified>2013-05-24T00:00:01.000Z</LastModified></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;
        let page = parse_list_page(xml).unwrap();
        assert_eq!(
            page,
            ListPage {
                objects: vec![
                    (
                        "hub/0123456789abcdef".into(),
                        "2013-05-24T00:00:00.000Z".into()
                    ),
                    ("hub/a&b".into(), "2013-05-24T00:00:01.000Z".into()),
                ],
                next: Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=".into()),
                truncated: true,
            }
        );
        let last = parse_list_page(
            b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .unwrap();
        assert!(!last.truncated && last.objects.is_empty());
        assert!(
            parse_list_page(
                b"<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>"
            )
            .is_err()
        );
    }

    #[test]
    fn settings_are_checked() {
        let store = S3BlobStore::new(settings()).unwrap();
        assert_eq!(
            (store.host.as_str(), store.bucket_path.as_str()),
            ("127.0.0.1:9000", "/photos")
        );
        let virtual_hosted = S3BlobStore::new(S3Settings {
            endpoint: "https://s3.eu-west-1.amazonaws.com/".into(),
            path_style: false,
            ..settings()
        })
        .unwrap();
        assert_eq!(
            (
                virtual_hosted.host.as_str(),
                virtual_hosted.bucket_path.as_str()
            ),
            ("photos.s3.eu-west-1.amazonaws.com", "")
        );
        let with_path = S3BlobStore::new(S3Settings {
            endpoint: "http://gw.local:8080/s3/".into(),
            ..settings()
        })
        .unwrap();
        assert_eq!(with_path.bucket_path, "/s3/photos");
        for (bad, field) in [
            (
                S3Settings {
                    endpoint: "127.0.0.1:9000".into(),
                    ..settings()
                },
                "endpoint",
            ),
            (
                S3Settings {
                    endpoint: "http://user@host/".into(),
                    ..settings()
                },
                "endpoint",
            ),
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
                    secret_access_key: Secret::new(""),
                    ..settings()
                },
                "secret_access_key",
            ),
        ] {
            let e = S3BlobStore::new(bad).unwrap_err();
            assert!(
                matches!(&e, BlobError::Remote { op: "settings", key, .. } if key == field),
                "{e}"
            );
        }
        // The secret never shows.
        assert!(!format!("{store:?}").contains("hunter2"));
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
