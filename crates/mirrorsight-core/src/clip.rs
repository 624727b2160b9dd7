//! When to record a turn-around clip and which frames go into it.
//!
//! Runs on the vision thread beside the capture scheduler, driven by the events vision emits
//! and by frame time: `clip_requested` starts a countdown (the scheduler writes its end into
//! the event's `record_at_ms`, and the screen follows that); at its end recording starts
//! (the clip action names the clip and emits `clip_started`), and every frame of the next
//! `duration_s` is handed on (handles only; the pipeline's frames share
//! their pixels) with the shopper's region fixed at the start, so the picture does not jump.
//! Encoding happens elsewhere (see `actions::clips`). One clip at a time: a request while one
//! is counting down or recording is ignored.

use mirrorsight_contract::events::{Event, EventKind, media_ms, media_seconds};

use crate::frame::Timed;

/// What the encoder is asked to do, in stream order.
#[derive(Debug, Clone)]
pub enum ClipWork<F> {
    /// Recording starts with this frame's time: crop every frame to `region` (image pixels,
    /// xmin, ymin, xmax, ymax; `None`: the whole frame).
    Start {
        session: String,
        /// The gesture that asked for the clip (`clip_requested`'s `trigger`).
        trigger: String,
        t: f64,
        duration_s: f64,
        region: Option<[f32; 4]>,
    },
    /// One frame of the clip.
    Frame(F),
    /// The clip is complete: encode and keep it.
    Finish { t: f64 },
    /// The shopper left while recording: throw it away.
    Abort,
}

#[derive(Debug, Clone)]
struct Pending {
    session: String,
    trigger: String,
    due: f64,
}

#[derive(Debug, Clone)]
struct Recording {
    session: String,
    start: f64,
    end: f64,
}

#[derive(Debug)]
pub struct ClipScheduler {
    countdown_s: f64,
    duration_s: f64,
    pending: Option<Pending>,
    recording: Option<Recording>,
}

impl ClipScheduler {
    /// `countdown_s`: the overlay's countdown before recording; `duration_s`: `clips.duration_s`.
    pub fn new(countdown_s: f64, duration_s: f64) -> Self {
        let clean = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        Self {
            countdown_s: clean(countdown_s),
            duration_s: clean(duration_s),
            pending: None,
            recording: None,
        }
    }

    /// Whether a clip is being recorded.
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Feeds one processed frame and the events vision emitted for it, before anyone else
    /// sees them: each `clip_requested` gets its `record_at_ms` (the end of the countdown; for
    /// a request ignored because a clip is already under way, that clip's start). Returns the
    /// encoder's work for this frame.
    pub fn on_frame<F: Timed + Clone>(
        &mut self,
        frame: &F,
        events: &mut [Event],
        region: Option<[f32; 4]>,
    ) -> Vec<ClipWork<F>> {
        let mut work = Vec::new();
        for e in events.iter_mut() {
            let t = e.t;
            match &mut e.kind {
                EventKind::ClipRequested {
                    session,
                    trigger,
                    record_at_ms,
                } => {
                    if let Some(under_way) = self
                        .pending
                        .as_ref()
                        .map(|p| p.due)
                        .or(self.recording.as_ref().map(|r| r.start))
                    {
                        *record_at_ms = media_ms(under_way);
                    } else {
                        *record_at_ms = media_ms(t + self.countdown_s);
                        self.pending = Some(Pending {
                            session: session.clone(),
                            trigger: trigger.clone(),
                            due: media_seconds(*record_at_ms),
                        });
                    }
                }
                EventKind::SessionEnded { session, .. } => {
                    if self.pending.as_ref().is_some_and(|p| p.session == *session) {
                        self.pending = None;
                    }
                    if self.recording.take_if(|r| r.session == *session).is_some() {
                        work.push(ClipWork::Abort);
                    }
                }
                _ => {}
            }
        }
        let t = frame.t();
        if let Some(p) = self.pending.take_if(|p| p.due <= t + 1e-6) {
            work.push(ClipWork::Start {
                session: p.session.clone(),
                trigger: p.trigger,
                t,
                duration_s: self.duration_s,
                region,
            });
            self.recording = Some(Recording {
                session: p.session,
                start: t,
                end: t + self.duration_s,
            });
        }
        if let Some(r) = &self.recording {
            if t < r.end - 1e-6 {
                work.push(ClipWork::Frame(frame.clone()));
            } else {
                self.recording = None;
                work.push(ClipWork::Finish { t });
            }
        }
        work
    }

    /// The stream ended: a clip being recorded is kept as far as it got; a countdown is dropped.
    pub fn finish<F>(&mut self, t: f64) -> Vec<ClipWork<F>> {
        self.pending = None;
        self.recording
            .take()
            .map(|_| ClipWork::Finish { t })
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameMeta;

    fn frame(t: f64) -> FrameMeta {
        FrameMeta {
            seq: (t * 10.0).round() as u64,
            t,
            width: 4,
            height: 4,
        }
    }

    fn requested(t: f64) -> Event {
        Event::new(
            t,
            EventKind::ClipRequested {
                session: "s".into(),
                trigger: "open_palm_hold".into(),
                record_at_ms: 0,
            },
        )
    }

    fn kinds(work: &[ClipWork<FrameMeta>]) -> String {
        work.iter()
            .map(|w| match w {
                ClipWork::Start { .. } => "S",
                ClipWork::Frame(_) => "f",
                ClipWork::Finish { .. } => "F",
                ClipWork::Abort => "A",
            })
            .collect()
    }

    #[test]
    fn countdown_then_duration_s_of_frames_then_finish() {
        let mut s = ClipScheduler::new(1.0, 0.5);
        let mut all = Vec::new();
        for i in 0..30 {
            let t = i as f64 * 0.1;
            let mut events = match i {
                2 => vec![requested(t)],
                // Ignored: one clip at a time.
                5 | 13 => vec![requested(t)],
                _ => vec![],
            };
            all.extend(s.on_frame(&frame(t), &mut events, Some([1.0, 1.0, 3.0, 3.0])));
            for e in &events {
                let EventKind::ClipRequested { record_at_ms, .. } = e.kind else {
                    panic!("{e:?}")
                };
                // The countdown's end, also for the requests that were ignored.
                assert_eq!(record_at_ms, 1200, "request at frame {i}");
            }
        }
        assert_eq!(kinds(&all), "SfffffF");
        let times: Vec<f64> = all
            .iter()
            .filter_map(|w| match w {
                ClipWork::Frame(frame) => Some((frame.t * 10.0).round() / 10.0),
                _ => None,
            })
            .collect();
        assert_eq!(times, [1.2, 1.3, 1.4, 1.5, 1.6]);
        let ClipWork::Start { region, t, .. } = &all[0] else {
            panic!()
        };
        assert_eq!(*region, Some([1.0, 1.0, 3.0, 3.0]));
        assert!((t - 1.2).abs() < 1e-9, "after the countdown: {t}");
    }

    #[test]
    fn leaving_aborts_and_the_end_of_the_stream_keeps_what_was_recorded() {
        let mut s = ClipScheduler::new(0.0, 5.0);
        let w = s.on_frame(&frame(0.0), &mut [requested(0.0)], None);
        assert_eq!(kinds(&w), "Sf");
        let ended = Event::new(
            0.5,
            EventKind::SessionEnded {
                session: "s".into(),
                reason: mirrorsight_contract::events::EndReason::Absent,
                duration_s: 1.0,
            },
        );
        assert_eq!(kinds(&s.on_frame(&frame(0.5), &mut [ended], None)), "A");
        assert!(!s.is_recording());

        s.on_frame(&frame(1.0), &mut [requested(1.0)], None);
        assert_eq!(kinds(&s.finish::<FrameMeta>(1.1)), "F");
        assert!(s.finish::<FrameMeta>(1.2).is_empty());
    }
}
