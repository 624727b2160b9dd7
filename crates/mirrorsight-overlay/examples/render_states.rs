//! Renders the overlay's main states to PNGs, for the README:
//!
//! ```sh
//! cargo run -p mirrorsight-overlay --example render_states -- OUT_DIR [--width 1920 --height 1080]
//!     [--rotation 0] [--position bottom_right] [--url https://shop.example/s/abc]
//! ```
//!
//! Writes `idle.png`, `qr.png`, `countdown.png`, `thumbnails.png`, `compare.png`, `recording.png`,
//! `offline.png`. The README's screenshots: `--width 960 --height 540` for the first four, the
//! defaults for `compare.png` and `recording.png`, `--width 1080 --height 1920` for
//! `compare-portrait.png`. The scenes
//! come from a scripted event stream through the real model, so they are what a replay shows.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mirrorsight_contract::events::{
    CompareCloseReason, Event, EventKind, GestureKind, OutfitDirection, QrSource, Side, SwipeMotion,
};
use mirrorsight_overlay::{Dim, Font, OverlayConfig, OverlayModel, Renderer};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("render_states: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut cfg = OverlayConfig {
        width: Dim::Px(1920),
        height: Dim::Px(1080),
        ..Default::default()
    };
    let mut url = "https://shop.example/s/7Kq2mX9d".to_owned();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--width" => cfg.width = Dim::Px(value()?.parse()?),
            "--height" => cfg.height = Dim::Px(value()?.parse()?),
            "--rotation" => cfg.rotation = value()?.parse()?,
            "--position" => {
                cfg.qr_position = serde_json::from_value(serde_json::Value::String(value()?))?
            }
            "--url" => url = value()?,
            "-h" | "--help" => {
                println!(
                    "usage: render_states OUT_DIR [--width W --height H] [--rotation 0|90|180|270] [--position P] [--url U]"
                );
                return Ok(());
            }
            _ if out.is_none() && !arg.starts_with('-') => out = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}").into()),
        }
    }
    let out = out.ok_or("give an output directory")?;
    cfg.validate().map_err(|e| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    std::fs::create_dir_all(&out)?;
    let photos = tempfile::tempdir()?;

    let font = Font::for_config(&cfg)?;
    let (w, h) = cfg.fixed_size().ok_or("width and height are fixed above")?;
    let mut renderer = Renderer::new(&cfg, font, w, h);
    let mut model = OverlayModel::new(&cfg);
    let mut shoot = |name: &str, model: &OverlayModel| -> Result<(), Box<dyn std::error::Error>> {
        let path = out.join(format!("{name}.png"));
        let t0 = std::time::Instant::now();
        let frame = renderer.render(&model.scene());
        let render_ms = t0.elapsed().as_secs_f64() * 1000.0;
        frame.write_png(&path)?;
        println!("{}  (render {render_ms:.1} ms)", path.display());
        Ok(())
    };
    let s = || "demo".to_owned();

    shoot("idle", &model)?;

    model.apply(&Event::new(1.0, EventKind::SessionStarted { session: s() }));
    model.apply(&Event::new(
        1.002,
        EventKind::QrMinted {
            session: s(),
            scene: "7Kq2mX9d".into(),
            url,
            expires_at: 0,
            source: QrSource::Pool,
            image: None,
        },
    ));
    shoot("qr", &model)?;

    model.apply(&Event::new(
        5.0,
        EventKind::PhotoRequested {
            session: s(),
            trigger: "thumbs_up".into(),
            capture_at_ms: 8_000,
        },
    ));
    model.advance(6.2);
    shoot("countdown", &model)?;

    for (i, hue) in [(0u32, 0xC0392Bu32), (1, 0x2E86C1), (2, 0x27AE60)] {
        let path = photos.path().join(format!("p{i}.jpg"));
        write_demo_photo(&path, hue)?;
        model.apply(&Event::new(
            10.0 + i as f64,
            EventKind::PhotoSaved {
                session: s(),
                scene: "7Kq2mX9d".into(),
                photo: format!("p{i}"),
                path: path.display().to_string(),
                trigger: "thumbs_up".into(),
            },
        ));
    }
    model.apply(&Event::new(
        20.0,
        EventKind::Gesture {
            session: s(),
            gesture: GestureKind::Swipe,
            motion: Some(SwipeMotion::ImageRightToLeft),
            direction: Some(Side::Left),
            hand: Side::Right,
            confidence: 0.93,
        },
    ));
    model.apply(&Event::new(
        20.0,
        EventKind::OutfitSwitch {
            session: s(),
            direction: OutfitDirection::Previous,
        },
    ));
    shoot("thumbnails", &model)?;

    // The compare view: a swipe opened it on the second of three photos, the shopper stands
    // on the mirror's left, so the photo is on the right.
    model.apply(&Event::new(
        21.0,
        EventKind::CompareShown {
            session: s(),
            photo: "p1".into(),
            index: 2,
            count: 3,
            side: Side::Right,
            subject_x: Some(0.5),
        },
    ));
    shoot("compare", &model)?;

    // A turn-around clip two seconds into its six: the red dot, REC and the seconds left.
    model.apply(&Event::new(
        29.0,
        EventKind::CompareClosed {
            session: s(),
            reason: CompareCloseReason::Idle,
        },
    ));
    model.apply(&Event::new(
        29.0,
        EventKind::ClipRequested {
            session: s(),
            trigger: "open_palm_hold".into(),
            record_at_ms: 32_000,
        },
    ));
    model.apply(&Event::new(
        32.0,
        EventKind::ClipStarted {
            session: s(),
            clip: "c0".into(),
            duration_s: 6.0,
        },
    ));
    model.advance(34.0);
    shoot("recording", &model)?;

    model.apply(&Event::new(
        40.0,
        EventKind::SessionStarted {
            session: "offline".into(),
        },
    ));
    model.apply(&Event::new(
        40.01,
        EventKind::QrFailed {
            session: "offline".into(),
            reason: "network unreachable".into(),
        },
    ));
    shoot("offline", &model)?;
    Ok(())
}

/// A stand-in outfit photo: a plain backdrop and a figure in the outfit's colour.
fn write_demo_photo(path: &Path, outfit: u32) -> Result<(), Box<dyn std::error::Error>> {
    let (w, h) = (600u16, 800u16);
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    let (cx, fw, fh) = (w as f32 / 2.0, w as f32, h as f32);
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f32, y as f32);
            let head =
                ((xf - cx) / (fw * 0.09)).powi(2) + ((yf - fh * 0.2) / (fh * 0.08)).powi(2) <= 1.0;
            let body =
                (xf - cx).abs() < fw * (0.12 + 0.1 * (yf / fh)) && yf > fh * 0.3 && yf < fh * 0.95;
            let c = if head {
                0xE0B89A
            } else if body {
                outfit
            } else {
                let g = 200 - (yf / fh * 60.0) as u32;
                g << 16 | g << 8 | (g - 10)
            };
            rgb.extend_from_slice(&[(c >> 16) as u8, (c >> 8) as u8, c as u8]);
        }
    }
    jpeg_encoder::Encoder::new_file(path, 85)?.encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)?;
    Ok(())
}
