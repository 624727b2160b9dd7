//! The bounded hand-over between capture and vision.
//!
//! Replay never drops: the capture thread waits for vision, so every frame is processed and
//! results do not depend on CPU speed. A live camera (or `--realtime`) must never fall
//! behind: when vision is busy the oldest queued frame is dropped and counted, so vision
//! always works on the newest picture.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::frame::Frame;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Block the producer when full (replay).
    Block,
    /// Drop the oldest frame when full (live camera, realtime replay).
    DropOldest,
}

/// Producer side.
pub struct FrameQueue {
    tx: Sender<Frame>,
    /// Lets the producer evict the oldest frame itself.
    evict: Receiver<Frame>,
    policy: QueuePolicy,
    dropped: Arc<AtomicU64>,
}

/// Consumer side.
#[derive(Clone)]
pub struct FrameReceiver {
    rx: Receiver<Frame>,
    dropped: Arc<AtomicU64>,
}

impl FrameQueue {
    pub fn new(capacity: usize, policy: QueuePolicy) -> (Self, FrameReceiver) {
        let (tx, rx) = bounded(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        (
            Self {
                tx,
                evict: rx.clone(),
                policy,
                dropped: dropped.clone(),
            },
            FrameReceiver { rx, dropped },
        )
    }

    /// Hands a frame over. Returns false once the consumer is gone.
    pub fn push(&self, frame: Frame) -> bool {
        match self.policy {
            QueuePolicy::Block => self.tx.send(frame).is_ok(),
            QueuePolicy::DropOldest => {
                let mut frame = frame;
                loop {
                    match self.tx.try_send(frame) {
                        Ok(()) => return true,
                        Err(TrySendError::Disconnected(_)) => return false,
                        Err(TrySendError::Full(back)) => {
                            frame = back;
                            if self.evict.try_recv().is_ok() {
                                self.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
        }
    }
}

impl FrameQueue {
    /// Frames dropped so far because vision was busy.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl FrameReceiver {
    /// The next frame; `None` once the producer is gone and the queue is empty.
    pub fn recv(&self) -> Option<Frame> {
        self.rx.recv().ok()
    }

    /// Frames dropped because vision was busy.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::RgbImage;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            t: seq as f64,
            image: Arc::new(RgbImage::filled(2, 2, [0, 0, 0])),
        }
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts() {
        let (q, rx) = FrameQueue::new(2, QueuePolicy::DropOldest);
        for i in 0..5 {
            assert!(q.push(frame(i)));
        }
        drop(q);
        let seen: Vec<u64> = std::iter::from_fn(|| rx.recv()).map(|f| f.seq).collect();
        assert_eq!(seen, [3, 4]);
        assert_eq!(rx.dropped(), 3);
    }

    #[test]
    fn block_never_drops() {
        let (q, rx) = FrameQueue::new(1, QueuePolicy::Block);
        let producer = std::thread::spawn(move || {
            for i in 0..50 {
                q.push(frame(i));
            }
        });
        let seen: Vec<u64> = std::iter::from_fn(|| rx.recv()).map(|f| f.seq).collect();
        producer.join().unwrap();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert_eq!(rx.dropped(), 0);
    }
}
