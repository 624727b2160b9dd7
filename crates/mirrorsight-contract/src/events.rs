//! The event stream: one JSON object per line, always with `"type"` and `"t"`
//! (seconds since the start of the source, taken from frame timestamps).
//! Documented field by field in `docs/events.md`.

use serde::{Deserialize, Serialize};

/// One event as it appears on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(flatten)]
    pub kind: EventKind,
    /// Seconds since the start of the source (media time, millisecond resolution).
    pub t: f64,
}

impl Event {
    pub fn new(t: f64, kind: EventKind) -> Self {
        // Millisecond resolution keeps lines short and byte-stable across platforms.
        Self {
            kind,
            t: (t * 1000.0).round() / 1000.0,
        }
    }

    /// The `type` field, e.g. `session_started`.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// The session an event belongs to, if any.
    pub fn session(&self) -> Option<&str> {
        use EventKind::*;
        match &self.kind {
            SessionStarted { session }
            | SessionEnded { session, .. }
            | PersonLeft { session }
            | PersonReturned { session }
            | Gesture { session, .. }
            | OutfitSwitch { session, .. }
            | PhotoRequested { session, .. }
            | PhotoDiscardRequested { session }
            | QrMinted { session, .. }
            | QrFailed { session, .. }
            | PhotoSaved { session, .. }
            | PhotoRefused { session, .. }
            | PhotoDiscarded { session, .. }
            | PhotoUploaded { session, .. }
            | PhotoUploadFailed { session, .. }
            | CompareShown { session, .. }
            | CompareClosed { session, .. }
            | ClipRequested { session, .. }
            | ClipStarted { session, .. }
            | ClipSaved { session, .. }
            | ClipRefused { session, .. }
            | ClipUploaded { session, .. }
            | ClipUploadFailed { session, .. } => Some(session),
            SourceEnded { .. } | QrIdle { .. } => None,
        }
    }

    /// One JSON line, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        // Serialising a plain data enum cannot fail; fall back loudly rather than panic.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                r#"{{"type":"serialization_error","t":{},"error":"{e}"}}"#,
                self.t
            )
        })
    }
}

/// Seconds of media time as whole milliseconds, the unit of `*_ms` fields (what cannot be a
/// media time, negative or not finite, counts as 0).
pub fn media_ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round() as u64
    } else {
        0
    }
}

/// A `*_ms` media time back in seconds, the unit of `t`.
pub fn media_seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A shopper has been present for `session.enter_after_s`.
    SessionStarted { session: String },
    /// The shopper has been gone for `session.exit_after_s`, or the source ended.
    SessionEnded {
        session: String,
        reason: EndReason,
        duration_s: f64,
    },
    /// Inside a session: the shopper stepped out of view (short absence).
    PersonLeft { session: String },
    /// Inside a session: the shopper is back before the session timed out.
    PersonReturned { session: String },
    /// A recognised hand gesture.
    Gesture {
        session: String,
        gesture: GestureKind,
        /// Swipes only: motion in image coordinates as recorded.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        motion: Option<SwipeMotion>,
        /// Swipes only: the direction as the shopper sees it in the mirror.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        direction: Option<Side>,
        /// Which of the shopper's hands made it.
        hand: Side,
        confidence: f64,
    },
    /// Browse the session's outfit photos.
    OutfitSwitch {
        session: String,
        direction: OutfitDirection,
    },
    /// The shopper asked for a photo; the countdown starts now and ends at `capture_at_ms`.
    PhotoRequested {
        session: String,
        trigger: String,
        /// When the photo will be taken: media time in milliseconds (the clock of `t`), set
        /// by the capture scheduler from `photos.countdown_s`. The screen counts down to it.
        capture_at_ms: u64,
    },
    /// The shopper asked to throw the latest photo away.
    PhotoDiscardRequested { session: String },
    /// A QR code for the session is ready to show.
    QrMinted {
        session: String,
        scene: String,
        url: String,
        expires_at: u64,
        source: QrSource,
        /// The code as an image file the mirror keeps (`<state>/codes/<scene>.png|.jpg`):
        /// mini-program codes, which are drawn by WeChat and have no `url`. Absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
    },
    /// No QR code could be had for the session (yet); minting keeps retrying.
    QrFailed { session: String, reason: String },
    /// The mirror's permanent idle code (`qr.idle_code`), to show while nobody is at the
    /// mirror; `url` is empty for a mini-program code (`image` then).
    QrIdle {
        scene: String,
        url: String,
        /// As in `QrMinted`: the mini-program code's image file, absent for URL codes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<String>,
    },
    /// A photo is durably in the spool.
    PhotoSaved {
        session: String,
        scene: String,
        photo: String,
        path: String,
        trigger: String,
    },
    /// A photo was not taken (quota reached, disk full, spool unwritable).
    PhotoRefused { session: String, reason: String },
    /// A photo was removed at the shopper's request.
    PhotoDiscarded { session: String, photo: String },
    /// The backend confirmed a photo.
    PhotoUploaded {
        session: String,
        scene: String,
        photo: String,
    },
    /// An upload attempt failed. Transient failures are retried with backoff; a permanent one
    /// (the backend refused the photo) waits in the spool for the next start.
    PhotoUploadFailed {
        session: String,
        photo: String,
        reason: String,
        attempt: u32,
        permanent: bool,
    },
    /// The compare view shows one of the session's photos, large, beside the shopper's
    /// reflection (opened by a swipe after the first photo, or stepped by one).
    CompareShown {
        session: String,
        photo: String,
        /// 1-based position among the session's photos, oldest first ("2 / 4").
        index: u32,
        count: u32,
        /// The half of the mirror the photo is shown on, as the shopper sees it: the side away
        /// from where they stand.
        side: Side,
        /// Where the shopper stood in the photo: the middle of their body as a fraction of the
        /// photo's width from its left edge (as recorded), if known. A narrow view crops around it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        subject_x: Option<f64>,
    },
    /// The compare view closed.
    CompareClosed {
        session: String,
        reason: CompareCloseReason,
    },
    /// The shopper asked for a turn-around clip; the countdown starts now and recording
    /// starts at `record_at_ms`.
    ClipRequested {
        session: String,
        trigger: String,
        /// When recording starts: media time in milliseconds (the clock of `t`), set by the
        /// clip scheduler from `photos.countdown_s`. The screen counts down to it.
        record_at_ms: u64,
    },
    /// The countdown ended: recording `duration_s` of the camera's frames starts now.
    ClipStarted {
        session: String,
        clip: String,
        duration_s: f64,
    },
    /// A clip is encoded (H.264 MP4) and durably in the spool, with its poster frame.
    ClipSaved {
        session: String,
        scene: String,
        clip: String,
        /// The MP4 in the spool.
        path: String,
        /// The poster frame (JPEG) in the spool.
        poster: String,
        duration_s: f64,
        bytes: u64,
        /// Frames the encoder could not take in time (the clip repeats the previous frame).
        frames_dropped: u64,
    },
    /// A clip was not recorded or kept (encoder missing or failed, spool full or unwritable).
    ClipRefused { session: String, reason: String },
    /// The store backend confirmed a clip (same sha256) and took its poster frame.
    ClipUploaded {
        session: String,
        scene: String,
        clip: String,
    },
    /// A clip upload attempt failed. Transient failures are retried with backoff; a permanent
    /// one (the backend refused the clip) waits in the clip spool for the next start.
    ClipUploadFailed {
        session: String,
        clip: String,
        reason: String,
        attempt: u32,
        permanent: bool,
    },
    /// The frame source has no more frames (end of a clip, or the daemon stopping).
    SourceEnded { frames: u64 },
}

impl EventKind {
    pub fn type_name(&self) -> &'static str {
        use EventKind::*;
        match self {
            SessionStarted { .. } => "session_started",
            SessionEnded { .. } => "session_ended",
            PersonLeft { .. } => "person_left",
            PersonReturned { .. } => "person_returned",
            Gesture { .. } => "gesture",
            OutfitSwitch { .. } => "outfit_switch",
            PhotoRequested { .. } => "photo_requested",
            PhotoDiscardRequested { .. } => "photo_discard_requested",
            QrMinted { .. } => "qr_minted",
            QrFailed { .. } => "qr_failed",
            PhotoSaved { .. } => "photo_saved",
            PhotoRefused { .. } => "photo_refused",
            PhotoDiscarded { .. } => "photo_discarded",
            PhotoUploaded { .. } => "photo_uploaded",
            PhotoUploadFailed { .. } => "photo_upload_failed",
            CompareShown { .. } => "compare_shown",
            CompareClosed { .. } => "compare_closed",
            ClipRequested { .. } => "clip_requested",
            ClipStarted { .. } => "clip_started",
            ClipSaved { .. } => "clip_saved",
            ClipRefused { .. } => "clip_refused",
            ClipUploaded { .. } => "clip_uploaded",
            ClipUploadFailed { .. } => "clip_upload_failed",
            SourceEnded { .. } => "source_ended",
            QrIdle { .. } => "qr_idle",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The shopper was gone for `session.exit_after_s`.
    Absent,
    /// The clip or camera ended while the shopper was still there.
    EndOfStream,
    /// The daemon was asked to stop.
    Shutdown,
}

/// Why the compare view closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareCloseReason {
    /// No gesture for `overlay.compare_idle_s`.
    Idle,
    /// The shopper left (`session_ended`).
    SessionEnded,
    /// The last photo was discarded.
    NoPhotos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GestureKind {
    Swipe,
    OpenPalm,
    Fist,
    ThumbsUp,
    ThumbsDown,
    Pointing,
    Victory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwipeMotion {
    ImageLeftToRight,
    ImageRightToLeft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutfitDirection {
    Next,
    Previous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QrSource {
    Pool,
    Live,
    Relay,
    Url,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_has_type_and_t() {
        let e = Event::new(
            1.23456,
            EventKind::SessionStarted {
                session: "abc".into(),
            },
        );
        assert_eq!(
            e.to_json_line(),
            r#"{"type":"session_started","session":"abc","t":1.235}"#
        );
        let back: Event = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn photo_requested_says_when_the_photo_is_taken() {
        let e = Event::new(
            4.2,
            EventKind::PhotoRequested {
                session: "s".into(),
                trigger: "thumbs_up".into(),
                capture_at_ms: media_ms(4.2 + 3.0),
            },
        );
        let line = e.to_json_line();
        assert_eq!(
            line,
            r#"{"type":"photo_requested","session":"s","trigger":"thumbs_up","capture_at_ms":7200,"t":4.2}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        assert_eq!(media_seconds(7200), 7.2);
        assert_eq!((media_ms(-1.0), media_ms(f64::NAN)), (0, 0));
    }

    #[test]
    fn swipe_fields_are_present_only_for_swipes() {
        let thumbs = Event::new(
            2.0,
            EventKind::Gesture {
                session: "s".into(),
                gesture: GestureKind::ThumbsUp,
                motion: None,
                direction: None,
                hand: Side::Right,
                confidence: 0.9,
            },
        );
        assert_eq!(
            thumbs.to_json_line(),
            r#"{"type":"gesture","session":"s","gesture":"thumbs_up","hand":"right","confidence":0.9,"t":2.0}"#
        );
    }
}
