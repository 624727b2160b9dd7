//! Horizontal swipes from the shopper's wrist trajectories.
//!
//! The pose model's wrist is the primary signal: it is found in nearly every frame, while the
//! hand-landmark model loses the hand in the motion blur of a fast stroke.
//!
//! **Everything is measured in the shopper's own frame of reference** ([`BodyRef`]): origin
//! between the shoulders, the first axis along the shoulder line, the second towards the feet,
//! one shoulder width as the unit. So a shopper at 1 m or at 3 m, in the middle of the picture
//! or at its edge, under a camera mounted a few degrees crooked, makes the same numbers; and
//! times are media seconds, never frame counts, so a 10 fps camera and a 30 fps one agree.
//! Left and right are one mirrored rule: nothing here knows which arm is which.
//!
//! Each arm's wrist path is cut into strokes (runs that keep one direction along the shoulder
//! line); a stroke is judged once, when it ends (the wrist turns back, stops, or is lost). A
//! swipe is a stroke that
//!
//! - covers `swipe_min_travel_shoulders` within `swipe_max_duration_s`,
//! - stays roughly level (its extent across the shoulder line small against its travel),
//! - is made with the hand raised (at or above a line just under the shoulders),
//! - is the wrist moving, not the whole body (the shoulders stay put),
//! - is not the return stroke of a swipe (see below), and
//! - has an open, flat hand seen by the hand model on its path, from just before it starts
//!   until shortly after it ends (`swipe_require_open_hand`, on by default).
//!
//! The return stroke of a swipe is the classic false trigger: the very next stroke of the same
//! arm, the other way, starting within `swipe_refractory_s` of the swipe's end. A swipe the
//! other way made on purpose comes after the hand was brought back into position (a stroke of
//! its own in between, a wind-up), or after a pause, so it is not mistaken for a return. Only a
//! swipe that fired has its return suppressed: a wind-up that was not a swipe must not swallow
//! the swipe that follows it. The return of a swipe that was missed has to pass every rule on
//! its own, and returns are usually lower (across the chest) and without an open palm.

use std::collections::VecDeque;

use mirrorsight_contract::events::SwipeMotion;

use super::config::GestureConfig;
use super::shape::ramp;

/// The shopper's body as a frame of reference for one video frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BodyRef {
    /// Between the shoulders, image pixels.
    pub origin: [f64; 2],
    /// Unit vector along the shoulder line, pointing to the image's right.
    pub axis: [f64; 2],
    /// One shoulder width in pixels (smoothed over recent frames).
    pub scale: f64,
}

impl BodyRef {
    /// A point in body units: along the shoulder line (towards the image's right) and across
    /// it (towards the feet), in shoulder widths from between the shoulders.
    pub fn to_body(&self, p: [f64; 2]) -> [f64; 2] {
        let d = [p[0] - self.origin[0], p[1] - self.origin[1]];
        let scale = self.scale.max(f64::EPSILON);
        [
            (d[0] * self.axis[0] + d[1] * self.axis[1]) / scale,
            (-d[0] * self.axis[1] + d[1] * self.axis[0]) / scale,
        ]
    }

    /// How far below the shoulder line a point is, in shoulder widths (negative: above).
    pub fn below_shoulders(&self, p: [f64; 2]) -> f64 {
        self.to_body(p)[1]
    }

    /// The body's tilt in the image: the shoulder line's angle, degrees, positive clockwise.
    pub fn tilt_deg(&self) -> f64 {
        self.axis[1].atan2(self.axis[0]).to_degrees()
    }
}

/// One reliable wrist position, with the body reference of the same frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WristSample {
    pub t: f64,
    /// Image pixels.
    pub x: f64,
    pub y: f64,
    pub body: BodyRef,
}

impl WristSample {
    /// Position in body units (see [`BodyRef::to_body`]).
    fn along(&self) -> f64 {
        self.body.to_body([self.x, self.y])[0]
    }

    fn across(&self) -> f64 {
        self.body.to_body([self.x, self.y])[1]
    }
}

/// A hand the landmark model saw, for confirming a stroke.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandSighting {
    pub t: f64,
    pub wrist: [f64; 2],
    /// The arm whose wrist it sits on, when the body's wrists were seen.
    pub arm: Option<usize>,
    /// Open/flat-hand membership (see [`super::shape::ShapeReading::flat`]).
    pub flat: f64,
}

/// A swipe that passed every rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Swipe {
    /// 0 = the pose model's left arm, 1 = its right arm.
    pub arm: usize,
    pub motion: SwipeMotion,
    pub start: f64,
    pub end: f64,
    /// Travel in shoulder widths.
    pub travel: f64,
    pub confidence: f64,
}

/// Why a stroke did not become a swipe (for tuning and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Short,
    Jump,
    Vertical,
    Low,
    BodyMoved,
    ReturnStroke,
    TooSoon,
    NotConfirmed,
}

/// Decisions about strokes, for offline tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct StrokeVerdict {
    pub arm: usize,
    pub dir: i8,
    pub start: f64,
    pub end: f64,
    /// Shoulder widths.
    pub travel: f64,
    /// Extent across the shoulder line over the travel.
    pub vertical_ratio: f64,
    /// Duration of the fastest segment, seconds.
    pub duration: f64,
    /// Fastest travel over any 0.15 s of the stroke, shoulder widths per second.
    pub peak_speed: f64,
    /// Median wrist height below the shoulder line, in shoulder widths.
    pub below_shoulder: f64,
    /// Every rule it broke; empty = a swipe.
    pub rejections: Vec<Rejection>,
}

/// A stroke ends when nothing new came for this long (points are pruned by time, so a fast
/// camera keeps more of them, never a longer stretch).
const MAX_STROKE_S: f64 = 2.0;
/// Movement along the shoulder line that starts a stroke, shoulder widths.
const START_EPS: f64 = 0.06;
/// Backward movement that ends a stroke (the wrist turned back), shoulder widths ...
const REVERSAL_EPS: f64 = 0.15;
/// ... or this share of the stroke's travel so far, when larger: a long stroke is not cut in
/// two by a landmark wobbling back for a frame (a 30 fps camera sees more of those).
const REVERSAL_SHARE: f64 = 0.25;
/// No new extreme for this long: the stroke has stopped.
const STALL_S: f64 = 0.2;
/// ... and this long once it has travelled as far as a swipe must: a swipe is over when the
/// hand stops, and waiting out the whole stall made swipes fire a quarter of a second after
/// their end (at 16 fps the first frame past 0.2 s). A stroke still short of a swipe keeps
/// the longer wait, so a wind-up that pauses is not cut off before the travel it needs.
const SETTLE_S: f64 = 0.1;
/// No reliable wrist for this long: the stroke is over. Within a swipe the wrist is lost for
/// at most a frame or two (0.13 s on the labelled footage, under every transform); a hand
/// lowered out of the picture between two gestures is gone for longer, and the stroke it
/// makes when raised again elsewhere must not be joined to the one before (a 1.25× faster
/// shopper shortens that pause to 0.25 s). One lost frame at 10 fps (0.2 s) still passes.
const MAX_GAP_S: f64 = 0.22;
/// No single step between two samples may carry more than this share of a swipe's travel: a
/// landmark jumping (left/right swap, a limb re-found elsewhere) is not a stroke. At 10 fps a
/// quick swipe is three or four samples, so the share must allow a third of the travel and
/// some.
const MAX_STEP_SHARE: f64 = 0.7;
/// Consecutive implausible points after which the wrist is believed to really be there.
const MAX_REJECTED_JUMPS: u32 = 3;
/// Two wrists closer than this (shoulder widths) are one. Two real hands come within 0.2 of
/// each other (one resting at the chest while the other swipes past it), and dropping the
/// swiping one there cuts its swipe in two.
const DUPLICATE_SHOULDER_WIDTHS: f64 = 0.15;
/// Open-hand sightings are kept this long for confirmation.
const SIGHTING_MEMORY_S: f64 = 2.0;
/// A confirming open hand may be seen from this long before the stroke starts (the hand is
/// raised and opened, then swipes; mid-stroke it is a blur).
const CONFIRM_LEAD_S: f64 = 0.5;
/// Strokes shorter than this share of the minimum travel are jitter: they neither count as
/// "the next stroke" after a swipe nor interrupt one.
const SIGNIFICANT_SHARE: f64 = 0.3;
/// A confirming hand must be this close (shoulder widths) to where the stroke's wrist was at
/// that moment (or where it started or ended, before and after it).
const CONFIRM_DISTANCE_SHOULDERS: f64 = 0.7;
/// Another arm's stroke starting this close (shoulder widths) to where a swipe ended is that
/// same hand, relabelled by the pose model.
const SAME_HAND_SHOULDER_WIDTHS: f64 = 0.5;

/// A swipe, which will be followed by its return stroke.
#[derive(Debug, Clone, Copy)]
struct Returnable {
    dir: i8,
    end: f64,
    /// This arm's count of significant strokes when it ended.
    index: u64,
}

#[derive(Debug, Clone, Default)]
struct Arm {
    /// The current stroke's points; the first is where it started.
    points: Vec<WristSample>,
    /// 0 until the wrist has moved enough to tell.
    dir: i8,
    /// Index of the farthest point along `dir`.
    extreme: usize,
    last: Option<WristSample>,
    /// The point before `last`, for the wrist's velocity.
    previous: Option<WristSample>,
    rejected_jumps: u32,
    /// Significant strokes judged so far.
    strokes: u64,
    /// The last swipe this arm made.
    last_swipe: Option<Returnable>,
}

/// A stroke that ended, with its points up to its farthest point.
#[derive(Debug, Clone)]
struct Stroke {
    dir: i8,
    points: Vec<WristSample>,
}

impl Arm {
    /// Adds a reliable wrist point; returns a stroke that this point ended.
    fn push(&mut self, s: WristSample, max_speed: f64, min_travel: f64) -> Option<Stroke> {
        let mut ended = None;
        if let Some(last) = self.last {
            let dt = s.t - last.t;
            if dt > MAX_GAP_S || dt <= 0.0 {
                ended = self.close();
                self.restart(s);
                return ended;
            }
            let step = (s.x - last.x).hypot(s.y - last.y) / s.body.scale.max(f64::EPSILON);
            let speed = step / dt;
            if speed > max_speed && self.rejected_jumps < MAX_REJECTED_JUMPS {
                self.rejected_jumps += 1;
                return None;
            }
            if self.rejected_jumps >= MAX_REJECTED_JUMPS && speed > max_speed {
                // The wrist stayed where it jumped to: start over from there.
                self.rejected_jumps = 0;
                ended = self.close();
                self.restart(s);
                return ended;
            }
        }
        self.rejected_jumps = 0;
        self.previous = self.last.replace(s);
        if self.points.is_empty() {
            self.restart(s);
            return None;
        }
        let u = s.along();
        if self.dir == 0 {
            let first = self.points[0];
            let moved = u - first.along();
            if moved.abs() >= START_EPS {
                self.dir = if moved > 0.0 { 1 } else { -1 };
                self.points.push(s);
                self.extreme = self.points.len() - 1;
            } else if s.t - first.t > STALL_S {
                // Resting or drifting slowly: the stroke starts when the motion does.
                self.restart(s);
            } else {
                self.points.push(s);
            }
            return None;
        }
        let d = f64::from(self.dir);
        let ext = self.points[self.extreme];
        let beyond = (u - ext.along()) * d;
        if beyond > 0.0 {
            self.points.push(s);
            self.extreme = self.points.len() - 1;
        } else if -beyond > REVERSAL_EPS.max(REVERSAL_SHARE * self.travel().abs()) {
            // Turned back: the stroke ended at its extreme; the new one starts there.
            let tail: Vec<WristSample> = self.points[self.extreme..].to_vec();
            ended = self.close();
            self.points = tail;
            self.points.push(s);
            self.dir = -self.dir;
            self.extreme = self.points.len() - 1;
        } else {
            self.points.push(s);
            if s.t - ext.t > self.stall_limit(min_travel) {
                let tail: Vec<WristSample> = self.points[self.extreme..].to_vec();
                ended = self.close();
                self.points = tail;
                self.dir = 0;
                self.extreme = 0;
            }
        }
        let oldest_kept = s.t - MAX_STROKE_S;
        let drop = self.points.iter().take_while(|p| p.t < oldest_kept).count();
        if drop > 0 {
            self.points.drain(..drop);
            self.extreme = self.extreme.saturating_sub(drop);
        }
        ended
    }

    /// How far the stroke has gone so far, from its first point to its farthest one along its
    /// direction, in shoulder widths (0 before it has a direction).
    fn travel(&self) -> f64 {
        match (self.points.first(), self.points.get(self.extreme)) {
            (Some(first), Some(ext)) => (ext.along() - first.along()) * f64::from(self.dir),
            _ => 0.0,
        }
    }

    /// How long the stroke may go without a new extreme before it counts as stopped:
    /// [`SETTLE_S`] once it has travelled as far as a swipe must (`min_travel`, shoulder
    /// widths), [`STALL_S`] before.
    fn stall_limit(&self, min_travel: f64) -> f64 {
        if self.dir != 0 && self.travel() >= min_travel {
            SETTLE_S
        } else {
            STALL_S
        }
    }

    /// No reliable wrist this frame. The stroke ends once the wrist has been lost for longer
    /// than a stroke may lose it, and sooner when what was seen already says it is over: no
    /// new extreme for the stall limit (as when the wrist is seen), or the wrist turned back
    /// before it vanished (a hand lowered after a swipe drops out of the picture; waiting for
    /// the gap to run out made those swipes fire 0.2 s late).
    fn idle(&mut self, t: f64, min_travel: f64) -> Option<Stroke> {
        let last = self.last?;
        let stall = self.stall_limit(min_travel);
        let over = t - last.t > MAX_GAP_S
            || (self.dir != 0
                && self.points.get(self.extreme).is_some_and(|ext| {
                    let back = (ext.along() - last.along()) * f64::from(self.dir);
                    t - ext.t > stall || back >= REVERSAL_EPS
                }));
        if !over {
            return None;
        }
        let ended = self.close();
        // Losing the wrist does not end the memory of its strokes.
        *self = Arm {
            last_swipe: self.last_swipe,
            strokes: self.strokes,
            ..Arm::default()
        };
        ended
    }

    fn restart(&mut self, s: WristSample) {
        self.points.clear();
        self.points.push(s);
        self.dir = 0;
        self.extreme = 0;
        self.previous = None;
        self.last = Some(s);
        self.rejected_jumps = 0;
    }

    fn close(&mut self) -> Option<Stroke> {
        if self.dir == 0 || self.points.len() < 2 {
            return None;
        }
        let points = self.points[..=self.extreme.min(self.points.len() - 1)].to_vec();
        Some(Stroke {
            dir: self.dir,
            points,
        })
    }
}

/// A stroke that passed the geometric rules and waits for the hand model's confirmation.
#[derive(Debug, Clone)]
struct Pending {
    swipe: Swipe,
    dir: i8,
    /// The stroke's wrist path: time and image position.
    path: Vec<(f64, [f64; 2])>,
    end_at: [f64; 2],
    scale: f64,
    /// The arm's stroke count when this one ended (see [`Returnable::index`]).
    index: u64,
    geometry_confidence: f64,
}

impl Pending {
    /// Where the stroke's wrist was at `t` (its ends before and after it).
    fn wrist_at(&self, t: f64) -> [f64; 2] {
        let path = &self.path;
        match path.iter().position(|(pt, _)| *pt >= t) {
            None => path.last().map_or(self.end_at, |p| p.1),
            Some(0) => path[0].1,
            Some(j) => {
                let ((t0, a), (t1, b)) = (path[j - 1], path[j]);
                let u = ((t - t0) / (t1 - t0).max(f64::EPSILON)).clamp(0.0, 1.0);
                [a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u]
            }
        }
    }
}

/// The last swipe that fired.
#[derive(Debug, Clone, Copy)]
struct Fired {
    arm: usize,
    dir: i8,
    end: f64,
    end_at: [f64; 2],
    scale: f64,
}

/// Swipe detection for both arms of one shopper.
#[derive(Debug, Clone, Default)]
pub struct SwipeDetector {
    arms: [Arm; 2],
    sightings: VecDeque<HandSighting>,
    pending: Vec<Pending>,
    last: Option<Fired>,
    /// Every stroke judged so far, newest last, when `trace` is on (offline tuning).
    pub trace: Option<Vec<StrokeVerdict>>,
}

/// The median of a few values (empty: NaN).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl SwipeDetector {
    pub fn reset(&mut self) {
        let trace = self.trace.take().map(|mut v| {
            v.clear();
            v
        });
        *self = Self::default();
        self.trace = trace;
    }

    /// One frame: the reliable wrist of each arm (or `None`), the open-hand sightings of this
    /// frame. Returns the swipes decided in this frame.
    pub fn update(
        &mut self,
        t: f64,
        wrists: [Option<WristSample>; 2],
        sightings: &[HandSighting],
        config: &GestureConfig,
    ) -> Vec<Swipe> {
        self.sightings.extend(sightings.iter().copied());
        while self
            .sightings
            .front()
            .is_some_and(|s| t - s.t > SIGHTING_MEMORY_S)
        {
            self.sightings.pop_front();
        }
        let mut wrists = wrists;
        self.drop_duplicate_wrist(&mut wrists);
        let mut out = Vec::new();
        for (arm, wrist) in wrists.into_iter().enumerate() {
            let ended = match wrist {
                Some(s) => self.arms[arm].push(
                    s,
                    config.max_wrist_speed_shoulders,
                    config.swipe_min_travel_shoulders,
                ),
                None => self.arms[arm].idle(t, config.swipe_min_travel_shoulders),
            };
            if let Some(stroke) = ended {
                self.judge(arm, &stroke, config);
            }
        }
        self.confirm(t, config, &mut out);
        out
    }

    /// The pose model sometimes puts both wrists on the one raised hand (the other arm being
    /// out of the picture): the wrist that jumped there is the copy, the one farther from
    /// where its arm was heading (its last position carried on at its last velocity, so the
    /// hand in the middle of a swipe is not mistaken for the copy because it moves fast). An
    /// arm whose wrist was lost for longer than a stroke may pause has no trustworthy last
    /// position; when neither arm has one, nothing tells the copy from the hand, so both stay
    /// (a stroke both arms make is one swipe: the cooldown holds between arms) and the next
    /// frame decides.
    fn drop_duplicate_wrist(&self, wrists: &mut [Option<WristSample>; 2]) {
        let [Some(a), Some(b)] = *wrists else {
            return;
        };
        let near = DUPLICATE_SHOULDER_WIDTHS * a.body.scale;
        if (a.x - b.x).hypot(a.y - b.y) > near {
            return;
        }
        let jump = |arm: usize, s: &WristSample| {
            let a = &self.arms[arm];
            let last = a.last.filter(|l| s.t - l.t <= MAX_GAP_S)?;
            let [x, y] = match a.previous {
                Some(p) if last.t > p.t && last.t - p.t <= MAX_GAP_S => {
                    let k = (s.t - last.t) / (last.t - p.t);
                    [last.x + k * (last.x - p.x), last.y + k * (last.y - p.y)]
                }
                _ => [last.x, last.y],
            };
            Some((s.x - x).hypot(s.y - y))
        };
        let drop = match (jump(0, &a), jump(1, &b)) {
            (None, None) => return,
            (None, Some(_)) => 0,
            (Some(_), None) => 1,
            (Some(ja), Some(jb)) => usize::from(ja <= jb),
        };
        wrists[drop] = None;
    }

    fn record(&mut self, v: StrokeVerdict) {
        if let Some(trace) = &mut self.trace {
            trace.push(v);
        }
    }

    fn judge(&mut self, arm: usize, stroke: &Stroke, config: &GestureConfig) {
        let p = &stroke.points;
        let d = f64::from(stroke.dir);
        // The longest travel within the allowed duration: a slow start or a slow finish
        // must not hide a fast stroke in the middle.
        let along: Vec<f64> = p.iter().map(WristSample::along).collect();
        let mut best = (0usize, 0usize, 0.0f64);
        for j in 0..p.len() {
            for i in (0..j).rev() {
                if p[j].t - p[i].t > config.swipe_max_duration_s {
                    break;
                }
                let travel = (along[j] - along[i]) * d;
                if travel > best.2 {
                    best = (i, j, travel);
                }
            }
        }
        let (i, j, travel) = best;
        let seg = &p[i..=j.max(i)];
        let features = Features::of(seg, travel);
        let significant = travel >= SIGNIFICANT_SHARE * config.swipe_min_travel_shoulders;
        if significant {
            self.arms[arm].strokes += 1;
        }
        let index = self.arms[arm].strokes;
        let rejections = self.rules(arm, stroke.dir, seg, &features, index, config);
        self.record(StrokeVerdict {
            arm,
            dir: stroke.dir,
            start: p[0].t,
            end: p[p.len() - 1].t,
            travel,
            vertical_ratio: features.vertical_ratio,
            duration: features.duration,
            peak_speed: features.peak_speed,
            below_shoulder: features.below,
            rejections: rejections.clone(),
        });
        if !rejections.is_empty() {
            return;
        }
        let travel_margin = ramp(
            travel,
            0.7 * config.swipe_min_travel_shoulders,
            1.5 * config.swipe_min_travel_shoulders,
        );
        let height_margin = ramp(
            features.below,
            config.swipe_max_below_shoulder + 0.5,
            config.swipe_max_below_shoulder - 0.5,
        );
        let geometry_confidence = 0.5 * (travel_margin + height_margin);
        let last = seg[seg.len() - 1];
        self.pending.push(Pending {
            swipe: Swipe {
                arm,
                motion: if stroke.dir > 0 {
                    SwipeMotion::ImageLeftToRight
                } else {
                    SwipeMotion::ImageRightToLeft
                },
                start: p[0].t,
                end: last.t,
                travel,
                confidence: geometry_confidence,
            },
            dir: stroke.dir,
            path: p.iter().map(|s| (s.t, [s.x, s.y])).collect(),
            end_at: [last.x, last.y],
            scale: seg.iter().map(|s| s.body.scale).fold(0.0, f64::max),
            index,
            geometry_confidence,
        });
    }

    /// Every rule the stroke's fastest segment breaks (all of them, not just the first, so a
    /// trace shows how many independent reasons reject a stroke).
    fn rules(
        &self,
        arm: usize,
        dir: i8,
        seg: &[WristSample],
        f: &Features,
        index: u64,
        config: &GestureConfig,
    ) -> Vec<Rejection> {
        let mut no = Vec::new();
        if f.travel < config.swipe_min_travel_shoulders {
            no.push(Rejection::Short);
        }
        if f.max_step > MAX_STEP_SHARE * f.travel {
            no.push(Rejection::Jump);
        }
        if f.vertical_ratio > config.swipe_max_vertical_ratio {
            no.push(Rejection::Vertical);
        }
        if f.below > config.swipe_max_below_shoulder {
            no.push(Rejection::Low);
        }
        if f.body_moved > config.swipe_max_body_ratio * f.travel {
            no.push(Rejection::BodyMoved);
        }
        let start = seg[0];
        let starts_within = |end: f64| start.t < end + config.swipe_refractory_s;
        // This arm's last swipe, if this is the very next stroke, the other way.
        let own_return = self.arms[arm]
            .last_swipe
            .is_some_and(|r| r.dir != dir && r.index + 1 == index && starts_within(r.end));
        // The other arm's swipe, if this stroke starts where it ended: the same hand, the
        // pose model having swapped the arms.
        let relabelled_return = self.last.is_some_and(|l| {
            l.arm != arm
                && l.dir != dir
                && starts_within(l.end)
                && (start.x - l.end_at[0]).hypot(start.y - l.end_at[1])
                    <= SAME_HAND_SHOULDER_WIDTHS * l.scale
        });
        if own_return || relabelled_return {
            no.push(Rejection::ReturnStroke);
        }
        if let Some(last) = self.last
            && seg[seg.len() - 1].t - last.end < config.swipe_cooldown_s
        {
            no.push(Rejection::TooSoon);
        }
        no
    }

    fn confirm(&mut self, t: f64, config: &GestureConfig, out: &mut Vec<Swipe>) {
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            let flat = if config.swipe_require_open_hand {
                self.confirmation(&p, config)
            } else {
                Some(1.0)
            };
            match flat {
                Some(flat) => {
                    // Another swipe may have fired meanwhile (the other arm): the cooldown
                    // holds against it too.
                    if let Some(last) = self.last
                        && (p.swipe.end - last.end).abs() < config.swipe_cooldown_s
                    {
                        self.reject_pending(&p, Rejection::TooSoon);
                        continue;
                    }
                    let mut swipe = p.swipe;
                    swipe.confidence = 0.5 * (p.geometry_confidence + flat);
                    self.arms[p.swipe.arm].last_swipe = Some(Returnable {
                        dir: p.dir,
                        end: p.swipe.end,
                        index: p.index,
                    });
                    self.last = Some(Fired {
                        arm: p.swipe.arm,
                        dir: p.dir,
                        end: p.swipe.end,
                        end_at: p.end_at,
                        scale: p.scale,
                    });
                    out.push(swipe);
                }
                None if t - p.swipe.end <= config.swipe_confirm_wait_s => self.pending.push(p),
                None => self.reject_pending(&p, Rejection::NotConfirmed),
            }
        }
    }

    fn reject_pending(&mut self, p: &Pending, why: Rejection) {
        if let Some(trace) = &mut self.trace
            && let Some(v) = trace.iter_mut().rev().find(|v| {
                v.arm == p.swipe.arm && v.end >= p.swipe.end - 1e-9 && v.rejections.is_empty()
            })
        {
            v.rejections.push(why);
        }
    }

    /// The best open-hand sighting of this stroke's own hand: from just before it started
    /// (the hand raised and opened) until just after it ended, where this arm's wrist was at
    /// that moment. Mid-stroke the hand is usually a blur, and how often the hand model looks
    /// is the vision stage's business, so any moment of the stroke will do; the return stroke,
    /// which this would let through, has its own rule. The other arm's hand confirms nothing.
    fn confirmation(&self, p: &Pending, config: &GestureConfig) -> Option<f64> {
        let reach = CONFIRM_DISTANCE_SHOULDERS * p.scale;
        self.sightings
            .iter()
            .filter(|s| {
                s.t >= p.swipe.start - CONFIRM_LEAD_S
                    && s.t <= p.swipe.end + config.swipe_confirm_wait_s
                    && s.arm.is_none_or(|a| a == p.swipe.arm)
                    && {
                        let w = p.wrist_at(s.t);
                        (s.wrist[0] - w[0]).hypot(s.wrist[1] - w[1]) <= reach
                    }
                    && s.flat >= config.min_confidence
            })
            .map(|s| s.flat)
            .fold(None, |acc: Option<f64>, f| {
                Some(acc.map_or(f, |a| a.max(f)))
            })
    }
}

/// What the rules look at, in body units.
#[derive(Debug, Clone, Copy)]
struct Features {
    /// Along the shoulder line, shoulder widths.
    travel: f64,
    /// Extent across the shoulder line over the travel; each point's height is the median of
    /// it and its neighbours, so one glitching landmark does not make a level stroke an arc.
    vertical_ratio: f64,
    /// Median height below the shoulder line, shoulder widths.
    below: f64,
    /// The largest step between two samples along the shoulder line, shoulder widths.
    max_step: f64,
    /// How far the shoulders moved, shoulder widths.
    body_moved: f64,
    duration: f64,
    /// Fastest travel along the shoulder line over any [`PEAK_WINDOW_S`], shoulder widths per
    /// second (a window, not a step, so the frame rate does not change it).
    peak_speed: f64,
}

/// The window of [`Features::peak_speed`].
const PEAK_WINDOW_S: f64 = 0.15;

impl Features {
    fn of(seg: &[WristSample], travel: f64) -> Self {
        let across: Vec<f64> = seg.iter().map(WristSample::across).collect();
        let smoothed: Vec<f64> = (0..across.len())
            .map(|i| {
                let lo = i.saturating_sub(1);
                let hi = (i + 2).min(across.len());
                median(across[lo..hi].to_vec())
            })
            .collect();
        let (vmin, vmax) = smoothed
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let max_step = seg
            .windows(2)
            .map(|w| (w[1].along() - w[0].along()).abs())
            .fold(0.0, f64::max);
        let (first, last) = (seg[0].body, seg[seg.len() - 1].body);
        let body_moved = (last.origin[0] - first.origin[0]).hypot(last.origin[1] - first.origin[1])
            / first.scale.max(f64::EPSILON);
        let along: Vec<f64> = seg.iter().map(WristSample::along).collect();
        let mut peak_speed: f64 = 0.0;
        for j in 1..seg.len() {
            // The shortest span ending at j that lasts at least the window (or all of it).
            let i = (0..j)
                .rev()
                .find(|&i| seg[j].t - seg[i].t >= PEAK_WINDOW_S)
                .unwrap_or(0);
            let dt = seg[j].t - seg[i].t;
            if dt > 0.0 {
                peak_speed = peak_speed.max((along[j] - along[i]).abs() / dt.max(PEAK_WINDOW_S));
            }
        }
        Self {
            travel,
            duration: seg[seg.len() - 1].t - seg[0].t,
            peak_speed,
            vertical_ratio: if travel > 0.0 && vmax >= vmin {
                (vmax - vmin) / travel
            } else {
                f64::INFINITY
            },
            below: median(across),
            max_step,
            body_moved,
        }
    }
}
