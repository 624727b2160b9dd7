//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;

use mirrorsight_contract::events::{EndReason, Event, EventKind, OutfitDirection, QrSource};
use mirrorsight_overlay::{Font, Framebuffer, OverlayConfig, Rect};

pub const URL: &str = "https://shop.example/s/7Kq2mX9dQa";

/// The installed CJK font; every rendering test needs one (scripts/setup.sh installs it).
pub fn font(cfg: &OverlayConfig) -> Font {
    match Font::for_config(cfg) {
        Ok(f) => f,
        Err(e) => panic!("rendering tests need a CJK font: {e}"),
    }
}

/// Every QR code rqrr finds in the picture.
pub fn decode_qr(fb: &Framebuffer) -> Vec<String> {
    decode_gray(fb.width, fb.height, |x, y| fb.luma(x, y))
}

pub fn decode_gray(w: usize, h: usize, luma: impl Fn(usize, usize) -> u8) -> Vec<String> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, luma);
    img.detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, s)| s))
        .collect()
}

/// Decodes a PNG into a framebuffer (any colour type, 8 or 16 bit).
pub fn read_png(bytes: &[u8]) -> Framebuffer {
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().expect("PNG header");
    let mut buf = vec![0u8; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let mut fb = Framebuffer::new(w, h);
    for i in 0..w * h {
        let p = &buf[i * channels..(i + 1) * channels];
        fb.pixels[i] = match channels {
            1 | 2 => (p[0] as u32) * 0x010101,
            _ => (p[0] as u32) << 16 | (p[1] as u32) << 8 | p[2] as u32,
        };
    }
    fb
}

pub fn read_png_file(path: &Path) -> Framebuffer {
    read_png(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Non-black pixels outside every rectangle in `allowed`, as (count, first example).
pub fn lit_outside(fb: &Framebuffer, allowed: &[Rect]) -> (usize, Option<(usize, usize, u32)>) {
    let mut count = 0;
    let mut first = None;
    for y in 0..fb.height {
        for x in 0..fb.width {
            let p = fb.pixel(x, y);
            if p != 0 && !allowed.iter().any(|r| r.contains(x as i32, y as i32)) {
                count += 1;
                first.get_or_insert((x, y, p));
            }
        }
    }
    (count, first)
}

/// Bounding box of everything not black.
pub fn lit_bounds(fb: &Framebuffer) -> Option<Rect> {
    let mut b: Option<Rect> = None;
    for y in 0..fb.height {
        for x in 0..fb.width {
            if fb.pixel(x, y) != 0 {
                let r = Rect::new(x as i32, y as i32, 1, 1);
                b = Some(b.map_or(r, |b| b.union(&r)));
            }
        }
    }
    b
}

pub fn started(t: f64, s: &str) -> Event {
    Event::new(t, EventKind::SessionStarted { session: s.into() })
}

pub fn ended(t: f64, s: &str) -> Event {
    Event::new(
        t,
        EventKind::SessionEnded {
            session: s.into(),
            reason: EndReason::Absent,
            duration_s: t,
        },
    )
}

pub fn minted(t: f64, s: &str, url: &str) -> Event {
    Event::new(
        t,
        EventKind::QrMinted {
            session: s.into(),
            scene: "scene".into(),
            url: url.into(),
            expires_at: 0,
            source: QrSource::Pool,
            image: None,
        },
    )
}

/// A photo asked for at `t`, taken 3 s later (the default `photos.countdown_s`).
pub fn photo_requested(t: f64, s: &str) -> Event {
    Event::new(
        t,
        EventKind::PhotoRequested {
            session: s.into(),
            trigger: "thumbs_up".into(),
            capture_at_ms: mirrorsight_contract::events::media_ms(t + 3.0),
        },
    )
}

pub fn photo_saved(t: f64, s: &str, photo: &str, path: &Path) -> Event {
    Event::new(
        t,
        EventKind::PhotoSaved {
            session: s.into(),
            scene: "scene".into(),
            photo: photo.into(),
            path: path.display().to_string(),
            trigger: "thumbs_up".into(),
        },
    )
}

pub fn switch(t: f64, s: &str, direction: OutfitDirection) -> Event {
    Event::new(
        t,
        EventKind::OutfitSwitch {
            session: s.into(),
            direction,
        },
    )
}

/// A flat-colour JPEG, so a thumbnail's pixels can be checked against it.
pub fn write_jpeg(path: &Path, w: u16, h: u16, rgb: u32) {
    let px: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|_| [(rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8])
        .collect();
    jpeg_encoder::Encoder::new_file(path, 90)
        .expect("create JPEG")
        .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
        .expect("encode JPEG");
}

pub fn close(a: u32, b: u32, tol: i32) -> bool {
    [16, 8, 0]
        .iter()
        .all(|&s| (((a >> s) & 0xFF) as i32 - ((b >> s) & 0xFF) as i32).abs() <= tol)
}
