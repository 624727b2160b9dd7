//! The compare view: which of the session's photos the mirror shows large beside the shopper's
//! reflection, on which side, and when the view closes.
//!
//! Events and media time in, `compare_shown` / `compare_closed` out. It lives before the
//! actions and the screen so that both follow the same decision: the overlay draws the photo
//! a `compare_shown` names, and a thumbs down discards exactly that photo.
//!
//! - After the session's first photo, a swipe (its `outfit_switch`) opens the view on the
//!   newest photo; further swipes step through the photos (`next` = the following photo,
//!   wrapping around), in the direction `gestures.swipe_next_direction` gives the hand.
//! - A new photo keeps the one shown and updates the count; a discarded one is replaced by its
//!   successor (or predecessor when it was the last); no photos left closes the view.
//! - The view closes `idle_s` after the last gesture of the session, and when the session ends.
//! - The photo goes on the half of the mirror away from the shopper's body, moving over only
//!   when the shopper clearly crosses the middle.

use mirrorsight_contract::events::{CompareCloseReason, Event, EventKind, OutfitDirection, Side};

/// The shopper must be this far past the middle of the mirror (as a fraction of its width)
/// before the photo changes sides, so someone standing in the middle does not make it jump.
const SIDE_HYSTERESIS: f64 = 0.1;

#[derive(Debug, Clone)]
struct Photo {
    id: String,
    /// Where the shopper's body was, as a fraction of the image's width, when it was taken.
    subject_x: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    /// 0-based index into the session's photos.
    index: usize,
    side: Side,
    last_gesture: f64,
}

#[derive(Debug, Clone)]
struct SessionState {
    id: String,
    photos: Vec<Photo>,
    open: Option<Open>,
}

/// The compare view's state machine for one mirror.
#[derive(Debug, Clone)]
pub struct CompareBrowser {
    idle_s: f64,
    mirrored: bool,
    now: f64,
    /// The middle of the shopper's body in the latest frame, as a fraction of the image's
    /// width (as recorded); `None` while nobody is seen.
    shopper_x: Option<f64>,
    session: Option<SessionState>,
}

impl CompareBrowser {
    /// `idle_s`: `overlay.compare_idle_s`; `mirrored`: `camera.mirrored` (frames are flipped
    /// like a mirror image).
    pub fn new(idle_s: f64, mirrored: bool) -> Self {
        Self {
            idle_s: if idle_s.is_finite() {
                idle_s.max(0.0)
            } else {
                0.0
            },
            mirrored,
            now: 0.0,
            shopper_x: None,
            session: None,
        }
    }

    /// Whether the view is open, and on which photo (0-based index).
    pub fn shown(&self) -> Option<(usize, &str)> {
        let s = self.session.as_ref()?;
        let open = s.open?;
        s.photos
            .get(open.index)
            .map(|p| (open.index, p.id.as_str()))
    }

    /// Where the shopper's body is in the latest frame: the middle of its bounding box as a
    /// fraction of the image's width, as recorded (`None`: nobody seen). Call once per frame,
    /// before [`poll`](Self::poll).
    pub fn observe_shopper(&mut self, image_x: Option<f64>) {
        // Three decimals: plenty for a crop, and event lines stay short and byte-stable.
        self.shopper_x = image_x
            .filter(|x| x.is_finite())
            .map(|x| (x.clamp(0.0, 1.0) * 1000.0).round() / 1000.0);
    }

    /// Media time moved on to `t`: closes an idle view, and moves the photo to the other side
    /// when the shopper crossed over.
    pub fn poll(&mut self, t: f64, emit: &mut Vec<Event>) {
        if t.is_finite() && t > self.now {
            self.now = t;
        }
        let now = self.now;
        let idle_s = self.idle_s;
        let side = self.side_for(self.current_side());
        let Some(s) = &mut self.session else { return };
        let Some(open) = &mut s.open else { return };
        if now >= open.last_gesture + idle_s - 1e-9 {
            s.open = None;
            emit.push(Event::new(
                now,
                EventKind::CompareClosed {
                    session: s.id.clone(),
                    reason: CompareCloseReason::Idle,
                },
            ));
            return;
        }
        if side != open.side {
            open.side = side;
            emit.push(shown_event(now, s));
        }
    }

    /// Follows the event stream (every event, including those the actions emit).
    pub fn on_event(&mut self, event: &Event, emit: &mut Vec<Event>) {
        if event.t.is_finite() && event.t > self.now {
            self.now = event.t;
        }
        let t = event.t;
        match &event.kind {
            EventKind::SessionStarted { session } => {
                self.session = Some(SessionState {
                    id: session.clone(),
                    photos: Vec::new(),
                    open: None,
                });
            }
            EventKind::SessionEnded { session, .. } => {
                if let Some(s) = self.active(session) {
                    if s.open.is_some() {
                        emit.push(Event::new(
                            t,
                            EventKind::CompareClosed {
                                session: session.clone(),
                                reason: CompareCloseReason::SessionEnded,
                            },
                        ));
                    }
                    self.session = None;
                }
            }
            EventKind::PhotoSaved { session, photo, .. } => {
                let subject_x = self.shopper_x;
                if let Some(s) = self.active(session)
                    && s.photos.iter().all(|p| p.id != *photo)
                {
                    s.photos.push(Photo {
                        id: photo.clone(),
                        subject_x,
                    });
                    if s.open.is_some() {
                        emit.push(shown_event(t, s));
                    }
                }
            }
            EventKind::PhotoDiscarded { session, photo } => {
                if let Some(s) = self.active(session) {
                    let Some(i) = s.photos.iter().position(|p| p.id == *photo) else {
                        return;
                    };
                    s.photos.remove(i);
                    let Some(open) = &mut s.open else { return };
                    if s.photos.is_empty() {
                        s.open = None;
                        emit.push(Event::new(
                            t,
                            EventKind::CompareClosed {
                                session: session.clone(),
                                reason: CompareCloseReason::NoPhotos,
                            },
                        ));
                        return;
                    }
                    if open.index > i || open.index >= s.photos.len() {
                        open.index = open.index.saturating_sub(1);
                    }
                    emit.push(shown_event(t, s));
                }
            }
            EventKind::OutfitSwitch { session, direction } => {
                let side = self.side_for(None);
                let Some(s) = self.active(session) else {
                    return;
                };
                let n = s.photos.len();
                if n == 0 {
                    return;
                }
                match &mut s.open {
                    None => {
                        s.open = Some(Open {
                            index: n - 1,
                            side,
                            last_gesture: t,
                        });
                    }
                    Some(open) => {
                        open.index = match direction {
                            OutfitDirection::Next => (open.index + 1) % n,
                            OutfitDirection::Previous => (open.index + n - 1) % n,
                        };
                        open.last_gesture = t;
                    }
                }
                emit.push(shown_event(t, s));
            }
            EventKind::Gesture { session, .. } => {
                if let Some(s) = self.active(session)
                    && let Some(open) = &mut s.open
                {
                    open.last_gesture = t;
                }
            }
            _ => {}
        }
    }

    fn active(&mut self, session: &str) -> Option<&mut SessionState> {
        self.session.as_mut().filter(|s| s.id == session)
    }

    fn current_side(&self) -> Option<Side> {
        self.session.as_ref()?.open.map(|o| o.side)
    }

    /// The side away from the shopper. `current`: the side the photo is on now, kept unless
    /// the shopper is clearly on it. Nobody seen: keep it, or the right.
    fn side_for(&self, current: Option<Side>) -> Side {
        let Some(x) = self.shopper_x else {
            return current.unwrap_or(Side::Right);
        };
        // An unflipped camera faces the shopper: its left edge is the mirror's right edge as
        // the shopper sees it.
        let mirror_x = if self.mirrored { x } else { 1.0 - x };
        let margin = if current.is_some() {
            SIDE_HYSTERESIS
        } else {
            0.0
        };
        match current {
            Some(Side::Right) if mirror_x < 0.5 + margin => Side::Right,
            Some(Side::Left) if mirror_x > 0.5 - margin => Side::Left,
            _ if mirror_x < 0.5 => Side::Right,
            _ => Side::Left,
        }
    }
}

fn shown_event(t: f64, s: &SessionState) -> Event {
    let open = s.open.unwrap_or(Open {
        index: 0,
        side: Side::Right,
        last_gesture: t,
    });
    let index = open.index.min(s.photos.len().saturating_sub(1));
    let photo = s.photos.get(index);
    Event::new(
        t,
        EventKind::CompareShown {
            session: s.id.clone(),
            photo: photo.map(|p| p.id.clone()).unwrap_or_default(),
            index: index as u32 + 1,
            count: s.photos.len() as u32,
            side: open.side,
            subject_x: photo.and_then(|p| p.subject_x),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirrorsight_contract::events::{EndReason, GestureKind};

    fn ev(t: f64, kind: EventKind) -> Event {
        Event::new(t, kind)
    }

    fn started(t: f64) -> Event {
        ev(
            t,
            EventKind::SessionStarted {
                session: "s".into(),
            },
        )
    }

    fn saved(t: f64, photo: &str) -> Event {
        ev(
            t,
            EventKind::PhotoSaved {
                session: "s".into(),
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
                session: "s".into(),
                direction,
            },
        )
    }

    fn thumbs(t: f64) -> Event {
        ev(
            t,
            EventKind::Gesture {
                session: "s".into(),
                gesture: GestureKind::ThumbsUp,
                motion: None,
                direction: None,
                hand: Side::Right,
                confidence: 0.9,
            },
        )
    }

    /// (index, count, photo, side) of a `compare_shown`, or the close reason.
    #[derive(Debug, PartialEq)]
    enum Out {
        Shown(u32, u32, String, Side),
        Closed(CompareCloseReason),
    }

    fn outs(events: &[Event]) -> Vec<Out> {
        events
            .iter()
            .map(|e| match &e.kind {
                EventKind::CompareShown {
                    index,
                    count,
                    photo,
                    side,
                    ..
                } => Out::Shown(*index, *count, photo.clone(), *side),
                EventKind::CompareClosed { reason, .. } => Out::Closed(*reason),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn feed(b: &mut CompareBrowser, e: Event) -> Vec<Out> {
        let mut out = Vec::new();
        b.on_event(&e, &mut out);
        outs(&out)
    }

    #[test]
    fn a_swipe_without_photos_opens_nothing() {
        let mut b = CompareBrowser::new(5.0, false);
        feed(&mut b, started(0.0));
        assert_eq!(feed(&mut b, switch(1.0, OutfitDirection::Next)), []);
        assert_eq!(b.shown(), None);
    }

    #[test]
    fn opens_on_the_newest_then_steps_and_wraps() {
        let mut b = CompareBrowser::new(5.0, false);
        feed(&mut b, started(0.0));
        for (i, p) in ["p1", "p2", "p3"].iter().enumerate() {
            assert_eq!(feed(&mut b, saved(1.0 + i as f64, p)), []);
        }
        let r = Side::Right;
        assert_eq!(
            feed(&mut b, switch(5.0, OutfitDirection::Next)),
            [Out::Shown(3, 3, "p3".into(), r)]
        );
        assert_eq!(
            feed(&mut b, switch(6.0, OutfitDirection::Next)),
            [Out::Shown(1, 3, "p1".into(), r)]
        );
        assert_eq!(
            feed(&mut b, switch(7.0, OutfitDirection::Previous)),
            [Out::Shown(3, 3, "p3".into(), r)]
        );
        assert_eq!(
            feed(&mut b, switch(8.0, OutfitDirection::Previous)),
            [Out::Shown(2, 3, "p2".into(), r)]
        );
        assert_eq!(b.shown(), Some((1, "p2")));
        // A new photo keeps the one shown; the count grows.
        assert_eq!(
            feed(&mut b, saved(9.0, "p4")),
            [Out::Shown(2, 4, "p2".into(), r)]
        );
    }

    #[test]
    fn closes_after_idle_time_since_the_last_gesture_and_at_session_end() {
        let mut b = CompareBrowser::new(4.0, false);
        feed(&mut b, started(0.0));
        feed(&mut b, saved(1.0, "p1"));
        feed(&mut b, switch(2.0, OutfitDirection::Next));
        let mut out = Vec::new();
        b.poll(5.9, &mut out);
        assert!(out.is_empty());
        // Any gesture of the shopper keeps it open.
        feed(&mut b, thumbs(5.0));
        b.poll(8.9, &mut out);
        assert!(out.is_empty());
        b.poll(9.0, &mut out);
        assert_eq!(outs(&out), [Out::Closed(CompareCloseReason::Idle)]);
        assert_eq!(out[0].t, 9.0);
        assert_eq!(b.shown(), None);

        feed(&mut b, switch(10.0, OutfitDirection::Next));
        let ended = ev(
            11.0,
            EventKind::SessionEnded {
                session: "s".into(),
                reason: EndReason::Absent,
                duration_s: 11.0,
            },
        );
        assert_eq!(
            feed(&mut b, ended),
            [Out::Closed(CompareCloseReason::SessionEnded)]
        );
        let mut out = Vec::new();
        b.poll(30.0, &mut out);
        assert!(out.is_empty(), "nothing left to close");
    }

    #[test]
    fn a_discard_shows_the_next_photo_and_the_last_one_closes() {
        let mut b = CompareBrowser::new(5.0, false);
        feed(&mut b, started(0.0));
        for p in ["p1", "p2", "p3"] {
            feed(&mut b, saved(1.0, p));
        }
        feed(&mut b, switch(2.0, OutfitDirection::Next));
        feed(&mut b, switch(2.5, OutfitDirection::Next)); // p1
        let discarded = |p: &str| {
            ev(
                3.0,
                EventKind::PhotoDiscarded {
                    session: "s".into(),
                    photo: p.into(),
                },
            )
        };
        let r = Side::Right;
        assert_eq!(
            feed(&mut b, discarded("p1")),
            [Out::Shown(1, 2, "p2".into(), r)]
        );
        feed(&mut b, switch(3.5, OutfitDirection::Next)); // p3
        assert_eq!(
            feed(&mut b, discarded("p3")),
            [Out::Shown(1, 1, "p2".into(), r)]
        );
        assert_eq!(
            feed(&mut b, discarded("p2")),
            [Out::Closed(CompareCloseReason::NoPhotos)]
        );
    }

    #[test]
    fn the_photo_goes_on_the_side_away_from_the_shopper() {
        // Unflipped camera: a shopper on the image's left stands on the mirror's right.
        let mut b = CompareBrowser::new(50.0, false);
        feed(&mut b, started(0.0));
        b.observe_shopper(Some(0.2));
        feed(&mut b, saved(1.0, "p1"));
        assert_eq!(
            feed(&mut b, switch(2.0, OutfitDirection::Next)),
            [Out::Shown(1, 1, "p1".into(), Side::Left)]
        );
        // Near the middle: the photo stays put.
        b.observe_shopper(Some(0.55));
        let mut out = Vec::new();
        b.poll(3.0, &mut out);
        assert!(out.is_empty());
        // Clearly across: it moves over.
        b.observe_shopper(Some(0.8));
        b.poll(4.0, &mut out);
        assert_eq!(outs(&out), [Out::Shown(1, 1, "p1".into(), Side::Right)]);

        // A mirrored (selfie) view shows the shopper where the mirror does.
        let mut m = CompareBrowser::new(50.0, true);
        feed(&mut m, started(0.0));
        m.observe_shopper(Some(0.2));
        feed(&mut m, saved(1.0, "p1"));
        assert_eq!(
            feed(&mut m, switch(2.0, OutfitDirection::Next)),
            [Out::Shown(1, 1, "p1".into(), Side::Right)]
        );
    }

    #[test]
    fn photos_remember_where_the_shopper_stood() {
        let mut b = CompareBrowser::new(50.0, false);
        feed(&mut b, started(0.0));
        b.observe_shopper(Some(0.25));
        feed(&mut b, saved(1.0, "p1"));
        b.observe_shopper(None);
        let mut out = Vec::new();
        b.on_event(&switch(2.0, OutfitDirection::Next), &mut out);
        let EventKind::CompareShown { subject_x, .. } = &out[0].kind else {
            panic!("{out:?}")
        };
        assert_eq!(*subject_x, Some(0.25));
    }

    #[test]
    fn other_sessions_are_ignored() {
        let mut b = CompareBrowser::new(5.0, false);
        feed(&mut b, started(0.0));
        feed(&mut b, saved(1.0, "p1"));
        let other = ev(
            2.0,
            EventKind::OutfitSwitch {
                session: "x".into(),
                direction: OutfitDirection::Next,
            },
        );
        assert_eq!(feed(&mut b, other), []);
    }
}
