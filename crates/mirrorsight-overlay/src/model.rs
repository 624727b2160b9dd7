//! What the screen should show, as a pure function of the event stream and media time.
//!
//! No clocks, no files, no threads: the same events and times always give the same
//! [`Scene`], which is what makes snapshots reproducible and the logic unit-testable.

use std::sync::Arc;

use mirrorsight_contract::events::{
    Event, EventKind, GestureKind, OutfitDirection, Side, SwipeMotion, media_seconds,
};

use crate::config::OverlayConfig;

/// Media times closer than this are the same instant. Event times have millisecond
/// resolution, so this only absorbs floating-point error in `t0 + k` style deadlines.
const EPS: f64 = 1e-6;

/// An `outfit_switch` this soon after a swipe is the swipe's own action: keep the swipe's
/// arrow, which already points the way the hand moved.
const SWIPE_ACTION_WINDOW_S: f64 = 0.25;

/// The picture, as plain data. Two equal scenes draw identical pixels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scene {
    pub qr: QrView,
    pub feedback: Option<Feedback>,
    /// The countdown digit on screen (3, 2, 1), if counting.
    pub countdown: Option<u32>,
    /// The whole screen white: the countdown just ended.
    pub flash: bool,
    /// The session's photos, oldest first.
    pub thumbnails: Vec<Thumbnail>,
    /// Index into `thumbnails` of the highlighted photo.
    pub selected: Option<usize>,
    /// The compare view: one photo large beside the reflection (the strip is hidden meanwhile).
    pub compare: Option<CompareView>,
    /// A turn-around clip is recording: whole seconds left.
    pub recording: Option<u32>,
}

/// What the compare view shows (from `compare_shown`).
#[derive(Debug, Clone, PartialEq)]
pub struct CompareView {
    pub photo: Thumbnail,
    /// 1-based, with `count`: the "2 / 4" under the photo.
    pub index: u32,
    pub count: u32,
    /// The half of the mirror the photo goes on, as the shopper sees it.
    pub side: Side,
    /// Where the shopper stood in the photo (fraction of its width); a narrow view crops there.
    pub subject_x: Option<f64>,
}

impl Scene {
    /// An entirely black screen.
    pub fn is_blank(&self) -> bool {
        *self == Scene::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QrView {
    /// No session, or the session's code is still being minted.
    #[default]
    Hidden,
    /// Scanning this URL leads to the session's photos.
    Code(Arc<str>),
    /// The code as an image file (PNG or JPEG) WeChat drew: a mini-program code, which has
    /// no URL to encode. Drawn scaled to the size a QR code would take.
    Image(Arc<str>),
    /// Minting failed and no code is in hand; `overlay.offline_text` is shown instead.
    Offline,
}

/// The short visual answer to a gesture or photo action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feedback {
    /// Points the way the shopper's hand moved, as the shopper sees it.
    ArrowLeft,
    ArrowRight,
    /// A photo was requested or saved.
    Check,
    /// A photo was discarded or refused.
    Cross,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub photo: Arc<str>,
    /// The spooled JPEG; read by the renderer, never by the model.
    pub path: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
enum QrState {
    Pending,
    /// `QrView::Code` or `QrView::Image`.
    Ready(QrView),
    Failed,
}

/// What a `qr_minted` or `qr_idle` gives to draw: the image when there is one (mini-program
/// codes), else the URL; `None` when neither is there.
fn code_view(url: &str, image: Option<&str>) -> Option<QrView> {
    match image.filter(|p| !p.is_empty()) {
        Some(path) => Some(QrView::Image(Arc::from(path))),
        None => (!url.is_empty()).then(|| QrView::Code(Arc::from(url))),
    }
}

#[derive(Debug, Clone, Copy)]
struct ActiveFeedback {
    kind: Feedback,
    from: f64,
    until: f64,
    from_swipe: bool,
}

#[derive(Debug, Clone)]
struct Session {
    id: String,
    qr: QrState,
    feedback: Option<ActiveFeedback>,
    /// The countdown on screen: the photo is taken at this media time (`capture_at_ms` of
    /// the `photo_requested` that started it).
    photo_at: Option<f64>,
    photos: Vec<Thumbnail>,
    selected: Option<usize>,
    compare: Option<CompareView>,
    /// The countdown before a clip: recording starts at this media time (`record_at_ms` of
    /// the `clip_requested` that started it).
    clip_at: Option<f64>,
    /// The clip being recorded: (from, until).
    recording: Option<(f64, f64)>,
}

/// The overlay's state machine: feed it every event with [`apply`](Self::apply) and the
/// media time of every frame with [`advance`](Self::advance); read the picture with
/// [`scene`](Self::scene).
#[derive(Debug, Clone)]
pub struct OverlayModel {
    flash_s: f64,
    feedback_s: f64,
    now: f64,
    session: Option<Session>,
    /// A code minted (or failed) before its `session_started` arrived; the pool may answer
    /// within the same millisecond, so the order on the wire is not guaranteed.
    early_qr: Option<(String, QrState)>,
    /// The mirror's idle code (`qr_idle`), shown while nobody is in front of it.
    idle_qr: Option<QrView>,
}

impl OverlayModel {
    pub fn new(cfg: &OverlayConfig) -> Self {
        Self::with_timing(cfg.flash_s, cfg.feedback_s)
    }

    /// The countdown's length is not a setting of the screen: each `photo_requested` says
    /// when its photo is taken, and the screen counts down to that.
    pub fn with_timing(flash_s: f64, feedback_s: f64) -> Self {
        let clean = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        Self {
            flash_s: clean(flash_s),
            feedback_s: clean(feedback_s),
            now: 0.0,
            session: None,
            early_qr: None,
            idle_qr: None,
        }
    }

    /// Media time of the last `apply`/`advance`.
    pub fn now(&self) -> f64 {
        self.now
    }

    /// The active session's id.
    pub fn session(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.as_str())
    }

    /// Moves media time forward; time never runs backwards (late events keep the clock).
    pub fn advance(&mut self, t: f64) {
        if t.is_finite() && t > self.now {
            self.now = t;
        }
        let now = self.now;
        let flash_s = self.flash_s;
        if let Some(s) = &mut self.session {
            if s.feedback.is_some_and(|f| now >= f.until - EPS) {
                s.feedback = None;
            }
            if s.photo_at.is_some_and(|end| now >= end + flash_s - EPS) {
                s.photo_at = None;
            }
            if s.clip_at.is_some_and(|end| now >= end - EPS) {
                s.clip_at = None;
            }
            if s.recording.is_some_and(|(_, end)| now >= end - EPS) {
                s.recording = None;
            }
        }
    }

    /// The next media time at which the scene changes without any event, so a caller can
    /// step exactly there (snapshots then carry exact times, e.g. the "2" at `t0 + 1`).
    pub fn next_change(&self) -> Option<f64> {
        let s = self.session.as_ref()?;
        let mut next: Option<f64> = None;
        let mut consider = |t: f64| {
            if t > self.now + EPS && next.is_none_or(|n| t < n) {
                next = Some(t);
            }
        };
        if let Some(f) = s.feedback {
            consider(f.until);
        }
        if let Some(end) = s.photo_at {
            // Digit changes happen where the remaining time crosses a whole second.
            let mut k = (end - self.now).ceil() - 1.0;
            while k >= 1.0 {
                consider(end - k);
                k -= 1.0;
            }
            consider(end);
            consider(end + self.flash_s);
        }
        for end in [s.clip_at, s.recording.map(|(_, end)| end)]
            .into_iter()
            .flatten()
        {
            let mut k = (end - self.now).ceil() - 1.0;
            while k >= 1.0 {
                consider(end - k);
                k -= 1.0;
            }
            consider(end);
        }
        next
    }

    pub fn apply(&mut self, event: &Event) {
        self.advance(event.t);
        let now = self.now;
        match &event.kind {
            EventKind::SessionStarted { session } => {
                let qr = match self.early_qr.take() {
                    Some((id, qr)) if id == *session => qr,
                    _ => QrState::Pending,
                };
                self.session = Some(Session {
                    id: session.clone(),
                    qr,
                    feedback: None,
                    photo_at: None,
                    photos: Vec::new(),
                    selected: None,
                    compare: None,
                    clip_at: None,
                    recording: None,
                });
            }
            EventKind::SessionEnded { session, .. } => {
                if self.session() == Some(session.as_str()) {
                    self.session = None;
                }
                self.early_qr = None;
            }
            EventKind::QrMinted {
                session,
                url,
                image,
                ..
            } => {
                let ready = match code_view(url, image.as_deref()) {
                    Some(view) => QrState::Ready(view),
                    None => QrState::Failed,
                };
                match self.active(session) {
                    Some(s) => s.qr = ready,
                    None => self.early_qr = Some((session.clone(), ready)),
                }
            }
            EventKind::QrFailed { session, .. } => match self.active(session) {
                // A code in hand stays valid; only a session without one goes offline.
                Some(s) if !matches!(s.qr, QrState::Ready(_)) => s.qr = QrState::Failed,
                Some(_) => {}
                None => {
                    if !matches!(&self.early_qr, Some((id, QrState::Ready(_))) if id == session) {
                        self.early_qr = Some((session.clone(), QrState::Failed));
                    }
                }
            },
            EventKind::Gesture {
                session,
                gesture: GestureKind::Swipe,
                direction,
                motion,
                ..
            } => {
                let side = direction.or(motion.map(|m| match m {
                    // Without the shopper's direction, assume a mirrored (selfie) camera.
                    SwipeMotion::ImageLeftToRight => Side::Right,
                    SwipeMotion::ImageRightToLeft => Side::Left,
                }));
                let feedback_s = self.feedback_s;
                if let Some(side) = side
                    && let Some(s) = self.active(session)
                {
                    let kind = match side {
                        Side::Left => Feedback::ArrowLeft,
                        Side::Right => Feedback::ArrowRight,
                    };
                    s.feedback = Some(ActiveFeedback {
                        kind,
                        from: now,
                        until: now + feedback_s,
                        from_swipe: true,
                    });
                }
            }
            EventKind::OutfitSwitch { session, direction } => {
                let feedback_s = self.feedback_s;
                if let Some(s) = self.active(session) {
                    let n = s.photos.len();
                    if n > 0 {
                        let cur = s.selected.unwrap_or(n - 1);
                        s.selected = Some(match direction {
                            OutfitDirection::Next => (cur + 1) % n,
                            OutfitDirection::Previous => (cur + n - 1) % n,
                        });
                    }
                    let swipe_arrow = s
                        .feedback
                        .is_some_and(|f| f.from_swipe && now - f.from <= SWIPE_ACTION_WINDOW_S);
                    if !swipe_arrow {
                        let kind = match direction {
                            OutfitDirection::Next => Feedback::ArrowRight,
                            OutfitDirection::Previous => Feedback::ArrowLeft,
                        };
                        s.feedback = Some(ActiveFeedback {
                            kind,
                            from: now,
                            until: now + feedback_s,
                            from_swipe: false,
                        });
                    }
                }
            }
            EventKind::PhotoRequested {
                session,
                capture_at_ms,
                ..
            } => {
                let feedback_s = self.feedback_s;
                if let Some(s) = self.active(session) {
                    s.feedback = Some(feedback(Feedback::Check, now, feedback_s));
                    // A second request while counting keeps the countdown already on screen.
                    if s.photo_at.is_none() {
                        s.photo_at = Some(media_seconds(*capture_at_ms));
                    }
                }
            }
            EventKind::PhotoSaved {
                session,
                photo,
                path,
                ..
            } => {
                let feedback_s = self.feedback_s;
                if let Some(s) = self.active(session) {
                    if !s.photos.iter().any(|p| *p.photo == **photo) {
                        s.photos.push(Thumbnail {
                            photo: Arc::from(photo.as_str()),
                            path: Arc::from(path.as_str()),
                        });
                    }
                    // The newest photo is the one the shopper wants to see.
                    s.selected = s.photos.iter().position(|p| *p.photo == **photo);
                    s.feedback = Some(feedback(Feedback::Check, now, feedback_s));
                }
            }
            EventKind::PhotoDiscardRequested { session }
            | EventKind::PhotoRefused { session, .. } => {
                let feedback_s = self.feedback_s;
                if let Some(s) = self.active(session) {
                    s.feedback = Some(feedback(Feedback::Cross, now, feedback_s));
                }
            }
            EventKind::PhotoDiscarded { session, photo } => {
                let feedback_s = self.feedback_s;
                if let Some(s) = self.active(session) {
                    if s.compare
                        .as_ref()
                        .is_some_and(|c| *c.photo.photo == **photo)
                    {
                        // Its file is gone; the `compare_shown` that follows names the next one.
                        s.compare = None;
                    }
                    if let Some(i) = s.photos.iter().position(|p| *p.photo == **photo) {
                        s.photos.remove(i);
                        s.selected = match s.selected {
                            _ if s.photos.is_empty() => None,
                            Some(sel) if sel > i => Some(sel - 1),
                            Some(sel) => Some(sel.min(s.photos.len() - 1)),
                            None => None,
                        };
                    }
                    s.feedback = Some(feedback(Feedback::Cross, now, feedback_s));
                }
            }
            EventKind::CompareShown {
                session,
                photo,
                index,
                count,
                side,
                subject_x,
            } => {
                if let Some(s) = self.active(session) {
                    // Only a photo whose file the stream named can be drawn.
                    s.compare =
                        s.photos
                            .iter()
                            .find(|p| *p.photo == **photo)
                            .map(|p| CompareView {
                                photo: p.clone(),
                                index: *index,
                                count: *count,
                                side: *side,
                                subject_x: *subject_x,
                            });
                    if let Some(i) = s.photos.iter().position(|p| *p.photo == **photo) {
                        s.selected = Some(i);
                    }
                }
            }
            EventKind::CompareClosed { session, .. } => {
                if let Some(s) = self.active(session) {
                    s.compare = None;
                }
            }
            EventKind::ClipRequested {
                session,
                record_at_ms,
                ..
            } => {
                let feedback_s = self.feedback_s;
                if let Some(s) = self.active(session) {
                    s.feedback = Some(feedback(Feedback::Check, now, feedback_s));
                    // One clip at a time: a request while one counts down or records changes
                    // nothing on screen.
                    if s.clip_at.is_none() && s.recording.is_none() {
                        s.clip_at = Some(media_seconds(*record_at_ms));
                    }
                }
            }
            EventKind::ClipStarted {
                session,
                duration_s,
                ..
            } => {
                if let Some(s) = self.active(session) {
                    s.clip_at = None;
                    let len = if duration_s.is_finite() {
                        duration_s.clamp(0.0, 3600.0)
                    } else {
                        0.0
                    };
                    s.recording = Some((now, now + len));
                }
            }
            EventKind::ClipSaved { session, .. } | EventKind::ClipRefused { session, .. } => {
                if let Some(s) = self.active(session) {
                    s.clip_at = None;
                    s.recording = None;
                }
            }
            EventKind::QrIdle { url, image, .. } => {
                self.idle_qr = code_view(url, image.as_deref());
            }
            EventKind::Gesture { .. }
            | EventKind::PersonLeft { .. }
            | EventKind::PersonReturned { .. }
            | EventKind::PhotoUploaded { .. }
            | EventKind::PhotoUploadFailed { .. }
            | EventKind::ClipUploaded { .. }
            | EventKind::ClipUploadFailed { .. }
            | EventKind::SourceEnded { .. } => {}
        }
    }

    /// The picture at the current media time.
    pub fn scene(&self) -> Scene {
        let Some(s) = &self.session else {
            return Scene {
                qr: self.idle_qr.clone().unwrap_or_default(),
                ..Scene::default()
            };
        };
        let mut countdown = None;
        let mut flash = false;
        if let Some(end) = s.photo_at {
            let remaining = end - self.now;
            if remaining > EPS {
                countdown = Some((remaining - EPS).ceil().max(1.0) as u32);
            } else if remaining > -self.flash_s + EPS {
                flash = true;
            }
        }
        if let Some(end) = s.clip_at.filter(|_| countdown.is_none()) {
            let remaining = end - self.now;
            if remaining > EPS {
                countdown = Some((remaining - EPS).ceil().max(1.0) as u32);
            }
        }
        let recording = s
            .recording
            .map(|(_, end)| end - self.now)
            .filter(|left| *left > EPS)
            .map(|left| (left - EPS).ceil().max(1.0) as u32);
        Scene {
            qr: match &s.qr {
                QrState::Pending => QrView::Hidden,
                QrState::Ready(view) => view.clone(),
                QrState::Failed => QrView::Offline,
            },
            feedback: s
                .feedback
                .filter(|f| self.now < f.until - EPS)
                .map(|f| f.kind),
            countdown,
            flash,
            thumbnails: s.photos.clone(),
            selected: s.selected,
            compare: s.compare.clone(),
            recording,
        }
    }

    fn active(&mut self, session: &str) -> Option<&mut Session> {
        self.session.as_mut().filter(|s| s.id == session)
    }
}

fn feedback(kind: Feedback, now: f64, feedback_s: f64) -> ActiveFeedback {
    ActiveFeedback {
        kind,
        from: now,
        until: now + feedback_s,
        from_swipe: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirrorsight_contract::events::{EndReason, QrSource};

    fn ev(t: f64, kind: EventKind) -> Event {
        Event::new(t, kind)
    }

    fn started(t: f64) -> Event {
        ev(
            t,
            EventKind::SessionStarted {
                session: "s1".into(),
            },
        )
    }

    fn minted(t: f64, url: &str) -> Event {
        ev(
            t,
            EventKind::QrMinted {
                session: "s1".into(),
                scene: "sc".into(),
                url: url.into(),
                expires_at: 0,
                source: QrSource::Pool,
                image: None,
            },
        )
    }

    fn saved(t: f64, photo: &str) -> Event {
        ev(
            t,
            EventKind::PhotoSaved {
                session: "s1".into(),
                scene: "sc".into(),
                photo: photo.into(),
                path: format!("/spool/{photo}.jpg"),
                trigger: "thumbs_up".into(),
            },
        )
    }

    fn switch(t: f64, direction: OutfitDirection) -> Event {
        ev(
            t,
            EventKind::OutfitSwitch {
                session: "s1".into(),
                direction,
            },
        )
    }

    fn model() -> OverlayModel {
        OverlayModel::with_timing(0.2, 0.8)
    }

    #[test]
    fn blank_without_session_and_after_end() {
        let mut m = model();
        assert!(m.scene().is_blank());
        m.apply(&started(1.0));
        m.apply(&minted(1.001, "https://x/1"));
        assert_eq!(m.scene().qr, QrView::Code("https://x/1".into()));
        m.apply(&ev(
            5.0,
            EventKind::SessionEnded {
                session: "s1".into(),
                reason: EndReason::Absent,
                duration_s: 4.0,
            },
        ));
        assert!(m.scene().is_blank());
        assert_eq!(m.next_change(), None);
    }

    #[test]
    fn the_idle_code_shows_while_nobody_is_there() {
        let mut m = model();
        m.apply(&ev(
            0.0,
            EventKind::QrIdle {
                scene: "idle-1".into(),
                url: "https://x/idle".into(),
                image: None,
            },
        ));
        assert_eq!(m.scene().qr, QrView::Code("https://x/idle".into()));
        m.apply(&started(1.0));
        assert_eq!(m.scene().qr, QrView::Hidden, "a session shows its own code");
        m.apply(&minted(1.001, "https://x/1"));
        assert_eq!(m.scene().qr, QrView::Code("https://x/1".into()));
        m.apply(&ev(
            5.0,
            EventKind::SessionEnded {
                session: "s1".into(),
                reason: EndReason::Absent,
                duration_s: 4.0,
            },
        ));
        assert_eq!(m.scene().qr, QrView::Code("https://x/idle".into()));
        // A mini-program idle code is an image.
        m.apply(&ev(
            6.0,
            EventKind::QrIdle {
                scene: "idle-1".into(),
                url: String::new(),
                image: Some("/state/codes/idle-1.png".into()),
            },
        ));
        assert_eq!(
            m.scene().qr,
            QrView::Image("/state/codes/idle-1.png".into())
        );
        // Neither url nor image: nothing to draw.
        m.apply(&ev(
            7.0,
            EventKind::QrIdle {
                scene: "idle-1".into(),
                url: String::new(),
                image: None,
            },
        ));
        assert!(m.scene().is_blank());
    }

    #[test]
    fn other_sessions_are_ignored() {
        let mut m = model();
        m.apply(&started(1.0));
        m.apply(&ev(
            1.1,
            EventKind::QrMinted {
                session: "other".into(),
                scene: "x".into(),
                url: "u".into(),
                expires_at: 0,
                source: QrSource::Live,
                image: None,
            },
        ));
        m.apply(&ev(
            1.2,
            EventKind::SessionEnded {
                session: "other".into(),
                reason: EndReason::Absent,
                duration_s: 1.0,
            },
        ));
        assert_eq!(m.session(), Some("s1"));
        assert_eq!(m.scene().qr, QrView::Hidden);
    }

    #[test]
    fn a_mini_program_code_shows_its_image() {
        let mut m = model();
        m.apply(&started(1.0));
        m.apply(&ev(
            1.001,
            EventKind::QrMinted {
                session: "s1".into(),
                scene: "sc".into(),
                url: String::new(),
                expires_at: 0,
                source: QrSource::Live,
                image: Some("/state/codes/sc.png".into()),
            },
        ));
        assert_eq!(m.scene().qr, QrView::Image("/state/codes/sc.png".into()));
    }

    #[test]
    fn qr_before_session_start_is_kept() {
        let mut m = model();
        m.apply(&minted(1.0, "https://x/early"));
        assert!(m.scene().is_blank());
        m.apply(&started(1.0));
        assert_eq!(m.scene().qr, QrView::Code("https://x/early".into()));
    }

    #[test]
    fn offline_until_a_code_arrives_and_failures_do_not_hide_a_code() {
        let mut m = model();
        m.apply(&started(1.0));
        m.apply(&ev(
            1.1,
            EventKind::QrFailed {
                session: "s1".into(),
                reason: "network down".into(),
            },
        ));
        assert_eq!(m.scene().qr, QrView::Offline);
        m.apply(&minted(4.0, "https://x/2"));
        assert_eq!(m.scene().qr, QrView::Code("https://x/2".into()));
        m.apply(&ev(
            5.0,
            EventKind::QrFailed {
                session: "s1".into(),
                reason: "again".into(),
            },
        ));
        assert_eq!(m.scene().qr, QrView::Code("https://x/2".into()));
    }

    #[test]
    fn countdown_digits_flash_and_deadlines() {
        let mut m = model();
        m.apply(&started(1.0));
        m.apply(&ev(
            10.0,
            EventKind::PhotoRequested {
                session: "s1".into(),
                trigger: "thumbs_up".into(),
                capture_at_ms: 13_000,
            },
        ));
        let mut seen = vec![(m.now(), m.scene().countdown, m.scene().flash)];
        while let Some(t) = m.next_change() {
            m.advance(t);
            seen.push((m.now(), m.scene().countdown, m.scene().flash));
        }
        assert_eq!(
            seen,
            vec![
                (10.0, Some(3), false),
                (10.8, Some(3), false), // the check mark expires
                (11.0, Some(2), false),
                (12.0, Some(1), false),
                (13.0, None, true),
                (13.2, None, false),
            ]
        );
    }

    #[test]
    fn countdown_at_frame_times() {
        let mut m = model();
        m.apply(&started(0.0));
        m.apply(&ev(
            10.0,
            EventKind::PhotoRequested {
                session: "s1".into(),
                trigger: "palm".into(),
                capture_at_ms: 13_000,
            },
        ));
        let at = |m: &mut OverlayModel, t: f64| {
            m.advance(t);
            (m.scene().countdown, m.scene().flash)
        };
        assert_eq!(at(&mut m, 10.999), (Some(3), false));
        assert_eq!(at(&mut m, 11.001), (Some(2), false));
        assert_eq!(at(&mut m, 12.5), (Some(1), false));
        assert_eq!(at(&mut m, 13.1), (None, true));
        assert_eq!(at(&mut m, 13.3), (None, false));
    }

    #[test]
    fn the_countdown_ends_when_the_event_says_the_photo_is_taken() {
        let requested = |t: f64, capture_at_ms: u64| {
            ev(
                t,
                EventKind::PhotoRequested {
                    session: "s1".into(),
                    trigger: "thumbs_up".into(),
                    capture_at_ms,
                },
            )
        };
        let mut m = model();
        m.apply(&started(0.0));
        m.apply(&requested(2.0, 7_000));
        assert_eq!(m.scene().countdown, Some(5));
        let mut digits = vec![];
        while let Some(t) = m.next_change() {
            m.advance(t);
            digits.push((m.now(), m.scene().countdown, m.scene().flash));
        }
        assert_eq!(
            digits,
            vec![
                (2.8, Some(5), false), // the check mark expires
                (3.0, Some(4), false),
                (4.0, Some(3), false),
                (5.0, Some(2), false),
                (6.0, Some(1), false),
                (7.0, None, true),
                (7.2, None, false),
            ]
        );
        // A request taken at once (photos.countdown_s = 0) goes straight to the flash.
        m.apply(&requested(9.0, 9_000));
        assert_eq!((m.scene().countdown, m.scene().flash), (None, true));
        m.advance(9.2);
        assert_eq!((m.scene().countdown, m.scene().flash), (None, false));
    }

    #[test]
    fn a_clip_counts_down_to_record_at_ms_then_shows_rec_with_the_seconds_left() {
        let clip_requested = |t: f64, record_at_ms: u64| {
            ev(
                t,
                EventKind::ClipRequested {
                    session: "s1".into(),
                    trigger: "open_palm_hold".into(),
                    record_at_ms,
                },
            )
        };
        let mut m = model();
        m.apply(&started(0.0));
        m.apply(&clip_requested(2.0, 5_000));
        assert_eq!((m.scene().countdown, m.scene().recording), (Some(3), None));
        // A second request while counting changes nothing.
        m.apply(&clip_requested(3.5, 6_500));
        m.advance(4.5);
        assert_eq!((m.scene().countdown, m.scene().recording), (Some(1), None));
        m.apply(&ev(
            5.0,
            EventKind::ClipStarted {
                session: "s1".into(),
                clip: "c1".into(),
                duration_s: 2.0,
            },
        ));
        let mut seen = vec![(m.now(), m.scene().countdown, m.scene().recording)];
        while let Some(t) = m.next_change() {
            m.advance(t);
            seen.push((m.now(), m.scene().countdown, m.scene().recording));
        }
        assert_eq!(
            seen,
            vec![
                (5.0, None, Some(2)),
                (6.0, None, Some(1)),
                (7.0, None, None),
            ]
        );
        // clip_saved (or clip_refused) takes the indicator down at once.
        m.apply(&clip_requested(8.0, 8_000));
        m.apply(&ev(
            8.0,
            EventKind::ClipStarted {
                session: "s1".into(),
                clip: "c2".into(),
                duration_s: 6.0,
            },
        ));
        assert_eq!(m.scene().recording, Some(6));
        m.apply(&ev(
            9.0,
            EventKind::ClipRefused {
                session: "s1".into(),
                reason: "ffmpeg failed".into(),
            },
        ));
        assert_eq!(m.scene().recording, None);
    }

    #[test]
    fn feedback_kinds_and_expiry() {
        let mut m = model();
        m.apply(&started(0.0));
        m.apply(&ev(
            1.0,
            EventKind::Gesture {
                session: "s1".into(),
                gesture: GestureKind::Swipe,
                motion: Some(SwipeMotion::ImageLeftToRight),
                direction: Some(Side::Left),
                hand: Side::Right,
                confidence: 0.9,
            },
        ));
        // The swipe's own action keeps the swipe's arrow.
        m.apply(&switch(1.0, OutfitDirection::Next));
        assert_eq!(m.scene().feedback, Some(Feedback::ArrowLeft));
        m.advance(1.79);
        assert_eq!(m.scene().feedback, Some(Feedback::ArrowLeft));
        m.advance(1.8);
        assert_eq!(m.scene().feedback, None);
        m.apply(&switch(3.0, OutfitDirection::Previous));
        assert_eq!(m.scene().feedback, Some(Feedback::ArrowLeft));
        m.apply(&switch(5.0, OutfitDirection::Next));
        assert_eq!(m.scene().feedback, Some(Feedback::ArrowRight));
        m.apply(&ev(
            7.0,
            EventKind::PhotoDiscardRequested {
                session: "s1".into(),
            },
        ));
        assert_eq!(m.scene().feedback, Some(Feedback::Cross));
        m.apply(&saved(9.0, "p1"));
        assert_eq!(m.scene().feedback, Some(Feedback::Check));
    }

    #[test]
    fn selection_moves_wraps_and_survives_discard() {
        let mut m = model();
        m.apply(&started(0.0));
        for (i, p) in ["p1", "p2", "p3"].iter().enumerate() {
            m.apply(&saved(1.0 + i as f64, p));
        }
        assert_eq!(m.scene().thumbnails.len(), 3);
        assert_eq!(m.scene().selected, Some(2));
        m.apply(&switch(5.0, OutfitDirection::Previous));
        assert_eq!(m.scene().selected, Some(1));
        m.apply(&switch(6.0, OutfitDirection::Previous));
        m.apply(&switch(7.0, OutfitDirection::Previous));
        assert_eq!(m.scene().selected, Some(2), "wraps around");
        m.apply(&switch(8.0, OutfitDirection::Next));
        assert_eq!(m.scene().selected, Some(0));
        m.apply(&ev(
            9.0,
            EventKind::PhotoDiscarded {
                session: "s1".into(),
                photo: "p1".into(),
            },
        ));
        let scene = m.scene();
        assert_eq!(
            scene
                .thumbnails
                .iter()
                .map(|t| &*t.photo)
                .collect::<Vec<_>>(),
            ["p2", "p3"]
        );
        assert_eq!(scene.selected, Some(0));
        m.apply(&ev(
            9.5,
            EventKind::PhotoDiscarded {
                session: "s1".into(),
                photo: "p3".into(),
            },
        ));
        m.apply(&ev(
            9.6,
            EventKind::PhotoDiscarded {
                session: "s1".into(),
                photo: "p2".into(),
            },
        ));
        assert_eq!(m.scene().selected, None);
        assert!(m.scene().thumbnails.is_empty());
    }
}
