//! Reading the headers of a relay request: the bearer token of every request and the metadata
//! headers of a photo upload ([`super::header`]). The hub and the loopback fake backend both
//! parse with this, so the two cannot disagree about what a mirror may send.
//!
//! Headers come in as `(name, value bytes)` pairs, names in any case, so this crate needs no
//! HTTP library: `headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))` with `http`'s map.
//! A header the contract expects once but that arrives several times is refused: two
//! `Authorization` or two `X-Photo-Id` headers mean a confused or malicious client, and
//! silently picking one of them is how a proxy and a server end up disagreeing.

use thiserror::Error;

use super::{CLIP_CONTENT_TYPE, PHOTO_CONTENT_TYPE, header};

/// Longest photo id, session id and trigger accepted.
pub const MAX_ID_LEN: usize = 64;

/// Longest `X-Taken-At` in digits: 16 decimal digits of milliseconds reach the year 318857,
/// and always fit an `i64`.
const MAX_TAKEN_AT_DIGITS: usize = 16;

/// Why the headers of a request were refused. Each message names the header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("{0} given more than once")]
    Repeated(&'static str),
    #[error("X-Photo-Id missing or not 1..=64 of [A-Za-z0-9_-]")]
    PhotoId,
    #[error("X-Clip-Id missing or not 1..=64 of [A-Za-z0-9_-]")]
    ClipId,
    #[error("Idempotency-Key must equal X-Photo-Id (X-Clip-Id for a clip)")]
    IdempotencyKey,
    #[error("X-Session-Id missing or not 1..=64 of [A-Za-z0-9_-]")]
    SessionId,
    #[error("X-Taken-At must be unix milliseconds")]
    TakenAt,
    #[error("X-Trigger missing, longer than 64 characters or not printable")]
    Trigger,
    #[error("X-Content-SHA256 must be 64 lowercase hex digits")]
    ContentSha256,
}

/// The checked metadata headers of a photo upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadHeaders {
    /// `X-Photo-Id` (equal to `Idempotency-Key`).
    pub photo: String,
    /// `X-Session-Id`.
    pub session: String,
    /// `X-Taken-At`, unix milliseconds.
    pub taken_at_ms: u64,
    /// `X-Trigger`.
    pub trigger: String,
    /// `X-Content-SHA256`, lowercase hex.
    pub sha256: String,
}

/// A photo or session id: 1..=64 characters of `[A-Za-z0-9_-]` (base64url ids, decimal ids).
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a `Content-Type` value says JPEG (parameters such as `; charset` are ignored).
pub fn is_photo_content_type(value: &str) -> bool {
    value
        .trim()
        .to_ascii_lowercase()
        .starts_with(PHOTO_CONTENT_TYPE)
}

/// Whether a `Content-Type` value says MP4 video (parameters are ignored).
pub fn is_clip_content_type(value: &str) -> bool {
    value
        .trim()
        .to_ascii_lowercase()
        .starts_with(CLIP_CONTENT_TYPE)
}

/// The checked metadata headers of a clip upload: those of a photo, with `X-Clip-Id` (equal
/// to `Idempotency-Key`) naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipUploadHeaders {
    /// `X-Clip-Id` (equal to `Idempotency-Key`).
    pub clip: String,
    /// `X-Session-Id`.
    pub session: String,
    /// `X-Taken-At`, unix milliseconds (when recording started).
    pub taken_at_ms: u64,
    /// `X-Trigger`.
    pub trigger: String,
    /// `X-Content-SHA256`, lowercase hex.
    pub sha256: String,
}

impl ClipUploadHeaders {
    /// Checks the metadata headers of a clip upload.
    pub fn parse<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, HeaderError> {
        let headers: Vec<_> = headers.into_iter().collect();
        let m = parse_media(&headers, header::CLIP_ID, HeaderError::ClipId)?;
        Ok(Self {
            clip: m.photo,
            session: m.session,
            taken_at_ms: m.taken_at_ms,
            trigger: m.trigger,
            sha256: m.sha256,
        })
    }

    /// The headers a mirror sends for these values, in the contract's spelling.
    pub fn to_pairs(&self) -> [(&'static str, String); 6] {
        media_pairs(
            header::CLIP_ID,
            &self.clip,
            &self.session,
            self.taken_at_ms,
            &self.trigger,
            &self.sha256,
        )
    }
}

/// The one value of header `name`: `Ok(None)` when absent, an error when repeated. Values
/// that are not visible ASCII are read as absent, which the callers refuse with their own
/// message. Leading and trailing whitespace is not part of a value (RFC 9110, 5.5).
fn single<'a>(
    headers: &[(&'a str, &'a [u8])],
    name: &'static str,
) -> Result<Option<&'a str>, HeaderError> {
    let mut found: Option<&'a [u8]> = None;
    for (n, v) in headers {
        if n.eq_ignore_ascii_case(name) {
            if found.is_some() {
                return Err(HeaderError::Repeated(name));
            }
            found = Some(v);
        }
    }
    Ok(found
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| {
            v.bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        })
        .map(str::trim)
        .filter(|v| !v.is_empty()))
}

/// The bearer token of a request: `Ok(None)` when there is no `Authorization` header or it
/// is not a `Bearer` credential, an error when the header is repeated.
pub fn bearer_token<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<Option<&'a str>, HeaderError> {
    let headers: Vec<_> = headers.into_iter().collect();
    let Some(value) = single(&headers, header::AUTHORIZATION)? else {
        return Ok(None);
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    let token = token.trim();
    Ok(
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
            .then_some(token),
    )
}

impl UploadHeaders {
    /// Checks the metadata headers of a photo upload.
    pub fn parse<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, HeaderError> {
        let headers: Vec<_> = headers.into_iter().collect();
        parse_media(&headers, header::PHOTO_ID, HeaderError::PhotoId)
    }

    /// The headers a mirror sends for these values, in the contract's spelling.
    pub fn to_pairs(&self) -> [(&'static str, String); 6] {
        media_pairs(
            header::PHOTO_ID,
            &self.photo,
            &self.session,
            self.taken_at_ms,
            &self.trigger,
            &self.sha256,
        )
    }
}

/// The metadata headers of an upload whose id is `id` in `id_header`, the one
/// [`parse_media`] reads.
fn media_pairs(
    id_header: &'static str,
    id: &str,
    session: &str,
    taken_at_ms: u64,
    trigger: &str,
    sha256: &str,
) -> [(&'static str, String); 6] {
    [
        (header::IDEMPOTENCY_KEY, id.to_string()),
        (id_header, id.to_string()),
        (header::SESSION_ID, session.to_string()),
        (header::TAKEN_AT, taken_at_ms.to_string()),
        (header::TRIGGER, trigger.to_string()),
        (header::CONTENT_SHA256, sha256.to_string()),
    ]
}

/// The metadata headers of an upload whose id is in `id_header` (a photo's or a clip's).
fn parse_media(
    headers: &[(&str, &[u8])],
    id_header: &'static str,
    id_error: HeaderError,
) -> Result<UploadHeaders, HeaderError> {
    let get = |name| single(headers, name);
    let photo = get(id_header)?.filter(|p| valid_id(p)).ok_or(id_error)?;
    if get(header::IDEMPOTENCY_KEY)? != Some(photo) {
        return Err(HeaderError::IdempotencyKey);
    }
    let session = get(header::SESSION_ID)?
        .filter(|s| valid_id(s))
        .ok_or(HeaderError::SessionId)?;
    let taken_at_ms = get(header::TAKEN_AT)?
        .filter(|v| {
            (1..=MAX_TAKEN_AT_DIGITS).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or(HeaderError::TakenAt)?;
    let trigger = get(header::TRIGGER)?
        .filter(|t| t.len() <= MAX_ID_LEN)
        .ok_or(HeaderError::Trigger)?;
    let sha256 = get(header::CONTENT_SHA256)?
        .filter(|v| {
            v.len() == 64
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or(HeaderError::ContentSha256)?;
    Ok(UploadHeaders {
        photo: photo.to_string(),
        session: session.to_string(),
        taken_at_ms,
        trigger: trigger.to_string(),
        sha256: sha256.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> UploadHeaders {
        UploadHeaders {
            photo: "kJ3x_Zq8R0aUe-1mVbN4wA".into(),
            session: "s-1".into(),
            taken_at_ms: 1_767_225_600_123,
            trigger: "thumbs_up".into(),
            sha256: "ab".repeat(32),
        }
    }

    fn pairs(h: &UploadHeaders) -> Vec<(String, Vec<u8>)> {
        h.to_pairs()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.into_bytes()))
            .collect()
    }

    fn parse(pairs: &[(String, Vec<u8>)]) -> Result<UploadHeaders, HeaderError> {
        UploadHeaders::parse(pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
    }

    fn with(mut p: Vec<(String, Vec<u8>)>, name: &str, value: &str) -> Vec<(String, Vec<u8>)> {
        p.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        p.push((name.to_string(), value.as_bytes().to_vec()));
        p
    }

    #[test]
    fn round_trip_and_case_insensitive_names() {
        let h = sample();
        assert_eq!(parse(&pairs(&h)), Ok(h.clone()));
        let lower: Vec<_> = pairs(&h)
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        assert_eq!(parse(&lower), Ok(h));
    }

    #[test]
    fn each_header_is_checked() {
        let p = pairs(&sample());
        let cases = [
            (header::PHOTO_ID, "a/b", HeaderError::PhotoId),
            (
                header::IDEMPOTENCY_KEY,
                "other",
                HeaderError::IdempotencyKey,
            ),
            (header::SESSION_ID, "", HeaderError::SessionId),
            (header::SESSION_ID, "a b", HeaderError::SessionId),
            (header::TAKEN_AT, "-1", HeaderError::TakenAt),
            (header::TAKEN_AT, "12345678901234567", HeaderError::TakenAt),
            (header::TAKEN_AT, "1e3", HeaderError::TakenAt),
            (header::TRIGGER, &"t".repeat(65), HeaderError::Trigger),
            (
                header::CONTENT_SHA256,
                &"AB".repeat(32),
                HeaderError::ContentSha256,
            ),
            (header::CONTENT_SHA256, "abc", HeaderError::ContentSha256),
        ];
        for (name, value, error) in cases {
            assert_eq!(
                parse(&with(p.clone(), name, value)),
                Err(error),
                "{name}: {value}"
            );
        }
        let mut missing = p.clone();
        missing.retain(|(n, _)| n != header::TRIGGER);
        assert_eq!(parse(&missing), Err(HeaderError::Trigger));
        let mut binary = p;
        binary.retain(|(n, _)| n != header::TRIGGER);
        binary.push((header::TRIGGER.into(), b"thumbs\x01up".to_vec()));
        assert_eq!(parse(&binary), Err(HeaderError::Trigger));
    }

    #[test]
    fn clip_headers_name_the_clip() {
        let clip = ClipUploadHeaders {
            clip: "Xb1oQ2_Zq8R0aUe-1mVbN4".into(),
            session: "s-1".into(),
            taken_at_ms: 1_767_225_600_123,
            trigger: "open_palm_hold".into(),
            sha256: "cd".repeat(32),
        };
        let p: Vec<(String, Vec<u8>)> = clip
            .to_pairs()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.into_bytes()))
            .collect();
        let parse_clip = |p: &[(String, Vec<u8>)]| {
            ClipUploadHeaders::parse(p.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
        };
        assert_eq!(parse_clip(&p), Ok(clip));
        // A clip is not a photo, and a photo's headers do not make a clip.
        assert_eq!(parse(&p), Err(HeaderError::PhotoId));
        assert_eq!(parse_clip(&pairs(&sample())), Err(HeaderError::ClipId));
        assert_eq!(
            parse_clip(&with(p, header::IDEMPOTENCY_KEY, "other")),
            Err(HeaderError::IdempotencyKey)
        );
        assert!(is_clip_content_type("video/mp4") && !is_clip_content_type("image/jpeg"));
    }

    #[test]
    fn repeated_headers_are_refused() {
        let mut p = pairs(&sample());
        p.push(("x-photo-id".into(), b"kJ3x_Zq8R0aUe-1mVbN4wA".to_vec()));
        assert_eq!(parse(&p), Err(HeaderError::Repeated(header::PHOTO_ID)));
    }

    #[test]
    fn bearer_tokens() {
        let auth = |values: &[&str]| -> Result<Option<String>, HeaderError> {
            let pairs: Vec<(&str, &[u8])> = values
                .iter()
                .map(|v| ("authorization", v.as_bytes()))
                .collect();
            bearer_token(pairs).map(|t| t.map(str::to_string))
        };
        assert_eq!(auth(&[]), Ok(None));
        assert_eq!(auth(&["Bearer abc"]), Ok(Some("abc".into())));
        assert_eq!(auth(&["bearer  abc "]), Ok(Some("abc".into())));
        assert_eq!(auth(&["Basic abc"]), Ok(None));
        assert_eq!(auth(&["Bearer "]), Ok(None));
        assert_eq!(auth(&["Bearer a b"]), Ok(None));
        assert_eq!(
            auth(&["Bearer abc", "Bearer abc"]),
            Err(HeaderError::Repeated(header::AUTHORIZATION))
        );
        assert!(is_photo_content_type(" Image/JPEG; q=1"));
        assert!(!is_photo_content_type("image/png"));
    }

    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,64}"
    }

    fn valid_headers() -> impl Strategy<Value = UploadHeaders> {
        (
            id(),
            id(),
            0u64..10_000_000_000_000_000,
            "[ -~]{0,64}",
            "[0-9a-f]{64}",
        )
            .prop_filter("a trigger is not blank", |(_, _, _, t, _)| {
                !t.trim().is_empty()
            })
            .prop_map(
                |(photo, session, taken_at_ms, trigger, sha256)| UploadHeaders {
                    photo,
                    session,
                    taken_at_ms,
                    trigger: trigger.trim().to_string(),
                    sha256,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// What a mirror sends is read back exactly.
        #[test]
        fn sent_headers_read_back(h in valid_headers()) {
            prop_assert_eq!(parse(&pairs(&h)), Ok(h));
        }

        /// Any bytes in any header: an answer, never a panic, and what is accepted is valid.
        #[test]
        fn arbitrary_headers_never_panic(
            extra in proptest::collection::vec(
                (prop_oneof![
                    Just(header::PHOTO_ID.to_string()),
                    Just(header::IDEMPOTENCY_KEY.to_ascii_uppercase()),
                    Just(header::TAKEN_AT.to_string()),
                    Just(header::TRIGGER.to_string()),
                    Just("authorization".to_string()),
                    "[a-zA-Z-]{1,12}",
                ], proptest::collection::vec(any::<u8>(), 0..80)),
                0..8,
            ),
            base in valid_headers(),
        ) {
            let mut p = pairs(&base);
            p.extend(extra);
            if let Ok(h) = parse(&p) {
                prop_assert!(valid_id(&h.photo) && valid_id(&h.session));
                prop_assert!(h.sha256.len() == 64 && h.trigger.len() <= MAX_ID_LEN);
            }
            let _ = bearer_token(p.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
        }

        /// Sending any contract header twice is refused, whatever the values.
        #[test]
        fn any_repeated_header_is_refused(h in valid_headers(), which in 0usize..6, value in "[ -~]{0,20}") {
            let mut p = pairs(&h);
            let name = p[which].0.to_ascii_lowercase();
            p.push((name, value.into_bytes()));
            prop_assert!(matches!(parse(&p), Err(HeaderError::Repeated(_))));
        }
    }
}
