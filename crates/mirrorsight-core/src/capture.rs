//! When to take a photo and which frames it may come from.
//!
//! Runs on the vision thread, driven by the events vision emits and by frame time, so the
//! countdown and the choice of frames are the same in replay as on the live mirror. The
//! countdown's length (`photos.countdown_s`) lives here alone: the scheduler writes the moment
//! each photo will be taken into its `photo_requested` event, and the screen follows that. Only
//! handles to recent frames are kept (the pipeline's frames share their pixels); picking the sharpest, encoding and writing happen on the
//! dispatcher thread (see `actions::photos`).

use std::collections::VecDeque;

use mirrorsight_contract::events::{Event, EventKind, media_ms, media_seconds};

use crate::frame::Timed;

/// A photo to take now: candidate frames from just before the moment, and where the shopper is.
/// `F` is the pipeline's frame type; the scheduler only reads its media time.
#[derive(Debug, Clone)]
pub struct Capture<F> {
    pub session: String,
    pub trigger: String,
    /// Media time the photo was due (end of the countdown).
    pub t: f64,
    /// Oldest first; all within `window_s` of `t`.
    pub frames: Vec<F>,
    /// The shopper's body in image pixels (xmin, ymin, xmax, ymax), if known.
    pub region: Option<[f32; 4]>,
}

#[derive(Debug, Clone)]
struct Pending {
    session: String,
    trigger: String,
    due: f64,
}

#[derive(Debug)]
pub struct CaptureScheduler<F> {
    ring: VecDeque<F>,
    capacity: usize,
    window_s: f64,
    countdown_s: f64,
    on_outfit_switch: bool,
    pending: Vec<Pending>,
}

impl<F: Timed + Clone> CaptureScheduler<F> {
    pub fn new(
        ring_frames: usize,
        window_s: f64,
        countdown_s: f64,
        on_outfit_switch: bool,
    ) -> Self {
        Self {
            ring: VecDeque::with_capacity(ring_frames.max(1)),
            capacity: ring_frames.max(1),
            window_s,
            countdown_s,
            on_outfit_switch,
            pending: Vec::new(),
        }
    }

    /// Feeds one processed frame and the events vision emitted for it, before anyone else
    /// sees them: each `photo_requested` gets its `capture_at_ms` (the end of the countdown).
    /// Returns the photos due now.
    pub fn on_frame(
        &mut self,
        frame: &F,
        events: &mut [Event],
        region: Option<[f32; 4]>,
    ) -> Vec<Capture<F>> {
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(frame.clone());
        for e in events.iter_mut() {
            let t = e.t;
            match &mut e.kind {
                EventKind::PhotoRequested {
                    session,
                    trigger,
                    capture_at_ms,
                } => {
                    *capture_at_ms = media_ms(t + self.countdown_s);
                    self.pending.push(Pending {
                        session: session.clone(),
                        trigger: trigger.clone(),
                        due: media_seconds(*capture_at_ms),
                    })
                }
                EventKind::OutfitSwitch { session, .. } if self.on_outfit_switch => {
                    self.pending.push(Pending {
                        session: session.clone(),
                        trigger: "outfit_switch".into(),
                        due: e.t,
                    })
                }
                // A shopper who walked away before the countdown ended does not get photographed.
                EventKind::SessionEnded { session, .. } => {
                    self.pending.retain(|p| &p.session != session)
                }
                _ => {}
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = self
            .pending
            .drain(..)
            .partition(|p| p.due <= frame.t() + 1e-6);
        self.pending = later;
        due.into_iter().map(|p| self.capture(p, region)).collect()
    }

    /// The stream ended: photos still counting down are taken from the last frames.
    pub fn finish(&mut self, region: Option<[f32; 4]>) -> Vec<Capture<F>> {
        let pending = std::mem::take(&mut self.pending);
        pending
            .into_iter()
            .map(|p| self.capture(p, region))
            .collect()
    }

    fn capture(&self, p: Pending, region: Option<[f32; 4]>) -> Capture<F> {
        let newest = self.ring.back().map_or(p.due, |f| f.t().min(p.due));
        let frames = self
            .ring
            .iter()
            .filter(|f| f.t() <= p.due + 1e-6 && f.t() >= newest - self.window_s - 1e-6)
            .cloned()
            .collect();
        Capture {
            session: p.session,
            trigger: p.trigger,
            t: newest,
            frames,
            region,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameMeta;

    fn frame(t: f64) -> FrameMeta {
        FrameMeta {
            seq: (t * 10.0) as u64,
            t,
            width: 4,
            height: 4,
        }
    }

    fn requested(t: f64) -> Event {
        Event::new(
            t,
            EventKind::PhotoRequested {
                session: "s".into(),
                trigger: "thumbs_up".into(),
                // The recognizer does not know the countdown; the scheduler sets this.
                capture_at_ms: media_ms(t),
            },
        )
    }

    #[test]
    fn photo_is_taken_when_the_countdown_ends_from_the_frames_just_before() {
        let mut sched = CaptureScheduler::new(8, 0.25, 3.0, false);
        let mut taken = Vec::new();
        for i in 0..50 {
            let t = i as f64 * 0.1;
            let mut events = if i == 10 { vec![requested(t)] } else { vec![] };
            taken.extend(sched.on_frame(&frame(t), &mut events, None));
            if i == 10 {
                assert!(
                    matches!(
                        events[0].kind,
                        EventKind::PhotoRequested {
                            capture_at_ms: 4000,
                            ..
                        }
                    ),
                    "the event says when: {:?}",
                    events[0]
                );
            }
        }
        assert_eq!(taken.len(), 1);
        let c = &taken[0];
        assert!((c.t - 4.0).abs() < 1e-9, "due at 1.0 + 3.0: {}", c.t);
        let times: Vec<f64> = c
            .frames
            .iter()
            .map(|f| (f.t * 10.0).round() / 10.0)
            .collect();
        assert_eq!(times, [3.8, 3.9, 4.0]);
    }

    #[test]
    fn leaving_cancels_and_end_of_stream_flushes() {
        let mut sched = CaptureScheduler::new(4, 0.5, 3.0, false);
        assert!(
            sched
                .on_frame(&frame(0.0), &mut [requested(0.0)], None)
                .is_empty()
        );
        let ended = Event::new(
            0.5,
            EventKind::SessionEnded {
                session: "s".into(),
                reason: mirrorsight_contract::events::EndReason::Absent,
                duration_s: 1.0,
            },
        );
        assert!(sched.on_frame(&frame(0.5), &mut [ended], None).is_empty());
        assert!(sched.finish(None).is_empty(), "cancelled by session end");

        sched.on_frame(&frame(1.0), &mut [requested(1.0)], None);
        let flushed = sched.finish(Some([0.0, 0.0, 4.0, 4.0]));
        assert_eq!(flushed.len(), 1);
        assert!(!flushed[0].frames.is_empty());
        assert_eq!(flushed[0].region, Some([0.0, 0.0, 4.0, 4.0]));
    }

    #[test]
    fn outfit_switch_photos_are_optional_and_immediate() {
        let switch = Event::new(
            2.0,
            EventKind::OutfitSwitch {
                session: "s".into(),
                direction: mirrorsight_contract::events::OutfitDirection::Next,
            },
        );
        let mut off = CaptureScheduler::new(4, 0.5, 3.0, false);
        assert!(
            off.on_frame(&frame(2.0), &mut [switch.clone()], None)
                .is_empty()
        );
        let mut on = CaptureScheduler::new(4, 0.5, 3.0, true);
        let taken = on.on_frame(&frame(2.0), &mut [switch], None);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].trigger, "outfit_switch");
    }
}
