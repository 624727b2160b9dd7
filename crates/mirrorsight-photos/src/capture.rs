//! The photo thread's one call: encode the chosen frame and spool it.

use std::time::Duration;

use mirrorsight_contract::events::EventKind;
use thiserror::Error;

use crate::encode::{EncodeError, JpegEncoder};
use crate::select::Best;
use crate::spool::{PhotoId, PhotoMeta, SavedPhoto, Spool, SpoolError};

#[derive(Debug, Error)]
pub enum TakeError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl TakeError {
    /// A short stable word for the `reason` of a `photo_refused` event.
    pub fn reason(&self) -> &'static str {
        match self {
            TakeError::Encode(_) => "encode_failed",
            TakeError::Spool(e) => e.reason(),
        }
    }

    pub fn refused_event(&self, session: &str) -> EventKind {
        EventKind::PhotoRefused {
            session: session.to_string(),
            reason: self.reason().to_string(),
        }
    }
}

/// A photo that is durably in the spool.
#[derive(Debug, Clone)]
pub struct Taken {
    pub saved: SavedPhoto,
    pub width: u32,
    pub height: u32,
    pub sharpness: f64,
    /// Time spent in the JPEG encoder.
    pub encode: Duration,
}

/// Encodes `best.frame` and writes it to the spool. `meta.t` is replaced by the chosen frame's
/// media time. Blocking (encode ≈5 ms at 1080p, then fsyncs): call it from a photo thread,
/// not from the vision loop.
pub fn take_photo(
    encoder: &mut JpegEncoder,
    spool: &Spool,
    best: &Best,
    meta: &PhotoMeta,
    photo: PhotoId,
) -> Result<Taken, TakeError> {
    let encoded = encoder.encode(&best.frame)?;
    let meta = PhotoMeta {
        t: best.frame.t(),
        ..meta.clone()
    };
    let saved = spool.save(&meta, &encoded.jpeg, photo)?;
    tracing::info!(
        photo = %saved.photo,
        bytes = saved.bytes,
        encode_ms = encoded.duration.as_secs_f64() * 1000.0,
        sharpness = best.sharpness,
        "photo taken"
    );
    Ok(Taken {
        saved,
        width: encoded.width,
        height: encoded.height,
        sharpness: best.sharpness,
        encode: encoded.duration,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::select::tests::{blurred_rgb, textured_rgb};
    use crate::select::{Frame, FrameRing, PixelFormat, Region};
    use crate::spool::SpoolOptions;

    #[test]
    fn ring_to_spool_keeps_the_sharp_frame_at_full_resolution() {
        let (w, h) = (320, 240);
        let sharp = textured_rgb(w, h, 21);
        let soft = blurred_rgb(&sharp, w, h, 2);
        let mut ring = FrameRing::new(4);
        for (i, data) in [soft.clone(), sharp, soft].into_iter().enumerate() {
            ring.push(Arc::new(
                Frame::new(w, h, PixelFormat::Rgb8, data, 10.0 + i as f64 * 0.1).unwrap(),
            ));
        }
        let best = ring.best(Region::new(40, 20, 200, 200), 0.5).unwrap();
        assert_eq!(best.frame.t(), 10.1);

        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(SpoolOptions {
            dir: dir.path().to_path_buf(),
            quota_bytes: 1 << 30,
            retention: Duration::from_secs(60),
        })
        .unwrap();
        let meta = PhotoMeta {
            session: "s".into(),
            scene: "s".into(),
            taken_at: 1,
            t: 0.0,
            trigger: "thumbs_up".into(),
        };
        let taken = take_photo(
            &mut JpegEncoder::new(90).unwrap(),
            &spool,
            &best,
            &meta,
            PhotoId::from_bytes([1; 16]),
        )
        .unwrap();
        assert_eq!((taken.width, taken.height), (w, h));
        assert_eq!(spool.get(&taken.saved.photo).unwrap().t, 10.1);
        let back = turbojpeg::decompress(
            &std::fs::read(&taken.saved.path).unwrap(),
            turbojpeg::PixelFormat::RGB,
        )
        .unwrap();
        assert_eq!((back.width, back.height), (w as usize, h as usize));
    }
}
