//! The renderer, checked on its pixels: QR codes decode back, nothing stray is lit.

mod common;

use std::sync::Arc;

use common::*;
use mirrorsight_contract::events::OutfitDirection;
use mirrorsight_overlay::{
    Dim, Feedback, OverlayConfig, OverlayError, OverlayModel, QrPosition, QrView, Rect, Renderer,
    Scene, render_qr_png,
};

fn cfg(w: u32, h: u32, rotation: u16, position: QrPosition) -> OverlayConfig {
    OverlayConfig {
        width: Dim::Px(w),
        height: Dim::Px(h),
        rotation,
        qr_position: position,
        ..Default::default()
    }
}

fn qr_scene(url: &str) -> Scene {
    Scene {
        qr: QrView::Code(Arc::from(url)),
        ..Default::default()
    }
}

#[test]
fn qr_decodes_at_every_position_rotation_and_size_with_black_elsewhere() {
    let font = font(&OverlayConfig::default());
    for (w, h) in [(1920, 1080), (1080, 1920)] {
        for rotation in [0, 90, 180, 270] {
            for position in QrPosition::ALL {
                let c = cfg(w, h, rotation, position);
                let mut r = Renderer::new(&c, font.clone(), w, h);
                let fb = r.render(&qr_scene(URL)).clone();
                let what = format!("{w}x{h} rotation {rotation} {position:?}");
                assert_eq!((fb.width, fb.height), (w as usize, h as usize), "{what}");
                assert_eq!(decode_qr(&fb), vec![URL.to_owned()], "{what}");
                let layout = r.layout().clone();
                let card = layout.qr_card.unwrap_or_else(|| panic!("{what}: no card"));
                let caption = layout
                    .caption
                    .unwrap_or_else(|| panic!("{what}: no caption"));
                // Card side: (modules + 2 * 4 quiet modules) * 12 px.
                assert_eq!(card.w % 12, 0, "{what}");
                assert!(card.w >= (21 + 8) * 12, "{what}: card {card:?}");
                let (n, first) = lit_outside(&fb, &[card, caption]);
                assert_eq!(
                    n, 0,
                    "{what}: lit pixels outside the QR card and caption, e.g. {first:?}"
                );
                // The quiet zone is white all round the code.
                let q = 4 * 12;
                for (x, y) in [
                    (card.x + q / 2, card.y + card.h / 2),
                    (card.right() - q / 2, card.y + card.h / 2),
                ] {
                    assert_eq!(
                        fb.pixel(x as usize, y as usize),
                        0xFFFFFF,
                        "{what}: quiet zone at ({x},{y})"
                    );
                }
            }
        }
    }
}

#[test]
fn unrotated_positions_land_in_their_corner() {
    let font = font(&OverlayConfig::default());
    let (w, h) = (1080u32, 1920u32);
    for position in QrPosition::ALL {
        let mut r = Renderer::new(&cfg(w, h, 0, position), font.clone(), w, h);
        let fb = r.render(&qr_scene(URL)).clone();
        let b = lit_bounds(&fb).expect("something is drawn");
        let (cx, cy) = b.center();
        let (left, top) = (cx < w as f32 / 3.0, cy < h as f32 / 3.0);
        let (right, bottom) = (cx > w as f32 * 2.0 / 3.0, cy > h as f32 * 2.0 / 3.0);
        let ok = match position {
            QrPosition::TopLeft => left && top,
            QrPosition::TopRight => right && top,
            QrPosition::BottomLeft => left && bottom,
            QrPosition::BottomRight => right && bottom,
            QrPosition::Center => !left && !right && !top && !bottom,
        };
        assert!(ok, "{position:?}: drawn at {b:?}");
    }
}

#[test]
fn rotation_90_draws_the_upright_layout_turned_clockwise() {
    let font = font(&OverlayConfig::default());
    // A portrait mirror made from a landscape monitor: top_left of the shopper's view is the
    // top-right corner of the monitor after a clockwise turn.
    let mut r = Renderer::new(&cfg(1920, 1080, 90, QrPosition::TopLeft), font, 1920, 1080);
    let fb = r.render(&qr_scene(URL)).clone();
    let b = lit_bounds(&fb).expect("drawn");
    assert!(
        b.right() > 1800 && b.y < 100,
        "expected the top-right corner, got {b:?}"
    );
    assert_eq!(decode_qr(&fb), vec![URL.to_owned()]);
}

#[test]
fn large_modules_shrink_to_fit_instead_of_overflowing() {
    let font = font(&OverlayConfig::default());
    let c = OverlayConfig {
        qr_module_px: 64,
        ..cfg(640, 480, 0, QrPosition::Center)
    };
    let mut r = Renderer::new(&c, font, 640, 480);
    let fb = r.render(&qr_scene(URL)).clone();
    let card = r.layout().qr_card.expect("card");
    assert!(
        card.bottom() <= 480 && card.right() <= 640 && card.x >= 0 && card.y >= 0,
        "{card:?}"
    );
    assert_eq!(decode_qr(&fb), vec![URL.to_owned()]);
}

#[test]
fn blank_scene_is_entirely_black_and_flash_entirely_white() {
    let c = cfg(1280, 720, 0, QrPosition::BottomRight);
    let mut r = Renderer::new(&c, font(&c), 1280, 720);
    assert!(r.render(&Scene::default()).is_black());
    let flash = Scene {
        flash: true,
        ..qr_scene(URL)
    };
    assert!(r.render(&flash).pixels.iter().all(|&p| p == 0xFFFFFF));
    // And back to black: nothing lingers from the previous frame.
    assert!(r.render(&Scene::default()).is_black());
}

#[test]
fn render_qr_png_keeps_the_quiet_zone_and_decodes() {
    let png = render_qr_png(URL, 12, 4).expect("encodes");
    let fb = read_png(&png);
    assert_eq!(fb.width, fb.height);
    assert_eq!(fb.width % 12, 0);
    let modules = fb.width / 12 - 8;
    assert!(
        modules >= 21 && (modules - 17).is_multiple_of(4),
        "{modules} is not a QR size"
    );
    for i in 0..fb.width {
        for d in 0..4 * 12 {
            for (x, y) in [
                (i, d),
                (d, i),
                (i, fb.height - 1 - d),
                (fb.width - 1 - d, i),
            ] {
                assert_eq!(fb.pixel(x, y), 0xFFFFFF, "quiet zone at ({x},{y})");
            }
        }
    }
    assert_eq!(decode_qr(&fb), vec![URL.to_owned()]);
    assert!(matches!(
        render_qr_png(URL, 0, 4),
        Err(OverlayError::Qr { .. })
    ));
    assert!(matches!(
        render_qr_png(&"x".repeat(8000), 4, 4),
        Err(OverlayError::Qr { .. })
    ));
}

#[test]
fn countdown_digits_then_flash_at_the_right_media_times() {
    let c = cfg(1280, 720, 0, QrPosition::BottomRight);
    let mut r = Renderer::new(&c, font(&c), 1280, 720);
    let mut m = OverlayModel::new(&c);
    m.apply(&started(1.0, "s"));
    m.apply(&minted(1.0, "s", URL));
    m.apply(&photo_requested(10.0, "s"));
    m.advance(10.9); // the check mark has expired, the digit is alone
    let mut frames = Vec::new();
    for (t, digit) in [(10.9, Some(3)), (11.5, Some(2)), (12.999, Some(1))] {
        m.advance(t);
        let scene = m.scene();
        assert_eq!(scene.countdown, digit, "at {t}");
        assert!(!scene.flash);
        let fb = r.render(&scene).clone();
        let stage = r.layout().stage;
        let card = r
            .layout()
            .qr_card
            .expect("QR stays up during the countdown");
        let caption = r.layout().caption.expect("caption");
        let (lit, _) = lit_outside(&fb, &[card, caption]);
        assert!(lit > 1000, "digit {digit:?} at {t} is drawn ({lit} px)");
        assert_eq!(
            lit_outside(&fb, &[card, caption, stage]).0,
            0,
            "the digit stays in the stage"
        );
        assert!(
            !stage.intersects(&card.union(&caption)),
            "stage {stage:?} overlaps the QR"
        );
        frames.push(fb);
    }
    assert_ne!(frames[0], frames[1]);
    assert_ne!(frames[1], frames[2]);
    m.advance(13.0);
    assert!(m.scene().flash, "flash at the end of the countdown");
    assert!(r.render(&m.scene()).pixels.iter().all(|&p| p == 0xFFFFFF));
    m.advance(13.2);
    let after = m.scene();
    assert!(!after.flash && after.countdown.is_none());
    assert_eq!(decode_qr(r.render(&after)), vec![URL.to_owned()]);
}

#[test]
fn feedback_icons_are_drawn_in_the_stage() {
    let c = cfg(1920, 1080, 0, QrPosition::Center);
    let mut r = Renderer::new(&c, font(&c), 1920, 1080);
    let mut pictures = Vec::new();
    for f in [
        Feedback::ArrowLeft,
        Feedback::ArrowRight,
        Feedback::Check,
        Feedback::Cross,
    ] {
        let fb = r
            .render(&Scene {
                feedback: Some(f),
                ..qr_scene(URL)
            })
            .clone();
        let l = r.layout().clone();
        let (card, caption) = (l.qr_card.expect("card"), l.caption.expect("caption"));
        assert!(
            !l.stage.intersects(&card.union(&caption)),
            "{f:?}: stage {:?} overlaps the QR",
            l.stage
        );
        let lit = lit_outside(&fb, &[card, caption]).0;
        assert!(lit > 500, "{f:?} drawn");
        assert_eq!(
            lit_outside(&fb, &[card, caption, l.stage]).0,
            0,
            "{f:?} stays in the stage"
        );
        assert_eq!(
            decode_qr(&fb),
            vec![URL.to_owned()],
            "{f:?} leaves the QR readable"
        );
        pictures.push(fb);
    }
    for i in 0..pictures.len() {
        for j in i + 1..pictures.len() {
            assert_ne!(pictures[i], pictures[j], "icons {i} and {j} look the same");
        }
    }
}

#[test]
fn offline_notice_replaces_the_code() {
    let c = cfg(1280, 720, 0, QrPosition::TopLeft);
    let mut r = Renderer::new(&c, font(&c), 1280, 720);
    let fb = r
        .render(&Scene {
            qr: QrView::Offline,
            ..Default::default()
        })
        .clone();
    let notice = r.layout().offline.expect("notice drawn");
    assert!(r.layout().qr_card.is_none());
    assert!(lit_outside(&fb, &[]).0 > 500, "text is drawn");
    assert_eq!(lit_outside(&fb, &[notice]).0, 0);
    assert!(notice.x < 100 && notice.y < 100, "{notice:?} is top-left");
    assert!(decode_qr(&fb).is_empty());
}

#[test]
fn recording_shows_a_red_dot_and_the_seconds_left_at_the_top_and_hides_the_strip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("p.jpg");
    write_jpeg(&photo, 600, 800, 0x2060C0);
    let c = cfg(1920, 1080, 0, QrPosition::BottomRight);
    let mut r = Renderer::new(&c, font(&c), 1920, 1080);
    let scene = Scene {
        thumbnails: vec![mirrorsight_overlay::Thumbnail {
            photo: "a".into(),
            path: photo.display().to_string().into(),
        }],
        selected: Some(0),
        recording: Some(6),
        ..qr_scene(URL)
    };
    let six = r.render(&scene).clone();
    let l = r.layout().clone();
    let rec = l.recording.expect("indicator drawn");
    assert!(l.strip.is_none(), "the strip is hidden while recording");
    assert!(rec.y < 100, "{rec:?} is along the top");
    assert!((rec.x + rec.w / 2 - 960).abs() < 20, "{rec:?} is centred");
    let block = l.qr_block().expect("QR");
    assert_eq!(lit_outside(&six, &[rec, block]).0, 0, "nothing else is lit");
    let red = (rec.y..rec.bottom())
        .flat_map(|y| (rec.x..rec.right()).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let p = six.pixel(x as usize, y as usize);
            p >> 16 & 0xFF > 180 && p >> 8 & 0xFF < 80 && p & 0xFF < 80
        })
        .count();
    assert!(red > 50, "a red dot ({red} red pixels)");
    assert_eq!(decode_qr(&six), vec![URL.to_owned()]);
    // The seconds left change the picture; without recording the strip is back.
    let five = r
        .render(&Scene {
            recording: Some(5),
            ..scene.clone()
        })
        .clone();
    assert_ne!(six, five);
    r.render(&Scene {
        recording: None,
        ..scene
    });
    assert!(r.layout().strip.is_some() && r.layout().recording.is_none());
}

#[test]
fn thumbnail_strip_shows_photos_and_moves_the_highlight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let colors = [0xC03020u32, 0x2060C0, 0x20A040];
    let mut paths = Vec::new();
    for (i, &c) in colors.iter().enumerate() {
        let p = dir.path().join(format!("p{i}.jpg"));
        write_jpeg(&p, 600, 800, c);
        paths.push(p);
    }
    let broken = dir.path().join("broken.jpg");
    std::fs::write(&broken, b"not a jpeg").expect("write");

    let c = cfg(1920, 1080, 0, QrPosition::BottomRight);
    let mut r = Renderer::new(&c, font(&c), 1920, 1080);
    let mut m = OverlayModel::new(&c);
    m.apply(&started(0.0, "s"));
    m.apply(&minted(0.0, "s", URL));
    for (i, p) in paths.iter().enumerate() {
        m.apply(&photo_saved(1.0 + i as f64, "s", &format!("p{i}"), p));
    }
    m.apply(&photo_saved(4.0, "s", "broken", &broken));
    m.advance(10.0);

    let frame_px = 160 / 32;
    let ring_is_white = |fb: &mirrorsight_overlay::Framebuffer, rect: Rect| {
        let o = rect.outset(frame_px / 2 + 1);
        [
            (o.x, rect.y + rect.h / 2),
            (o.right() - 1, rect.y + rect.h / 2),
            (rect.x + rect.w / 2, o.y),
        ]
        .iter()
        .all(|&(x, y)| fb.pixel(x as usize, y as usize) == 0xFFFFFF)
    };
    let mut selected_seen = Vec::new();
    for step in 0..6 {
        let scene = m.scene();
        let sel = scene.selected.expect("a selection");
        let fb = r.render(&scene).clone();
        let layout = r.layout().clone();
        assert_eq!(layout.thumbnails.len(), 4, "all four fit");
        for &(i, rect) in &layout.thumbnails {
            assert_eq!(rect.h, 160, "thumbnail height from config");
            assert_eq!(
                ring_is_white(&fb, rect),
                i == sel,
                "step {step}: highlight on {i}? selected is {sel}"
            );
            let centre = fb.pixel(
                (rect.x + rect.w / 2) as usize,
                (rect.y + rect.h / 2) as usize,
            );
            if i < 3 {
                assert_eq!(rect.w, 120, "3:4 photo keeps its aspect");
                let want = if i == sel {
                    colors[i]
                } else {
                    mirrorsight_overlay_mix(colors[i])
                };
                assert!(
                    close(centre, want, 12),
                    "photo {i}: {centre:06x} vs {want:06x}"
                );
            } else {
                let (r, g, b) = (centre >> 16 & 0xFF, centre >> 8 & 0xFF, centre & 0xFF);
                assert!(
                    r == g && g == b && r > 0,
                    "placeholder cross is grey, got {centre:06x}"
                );
                assert_eq!(rect.w, 120, "placeholder is 3:4");
            }
        }
        // The strip stays clear of the QR block.
        let block = layout.qr_block().expect("QR");
        assert!(!layout.strip.expect("strip").intersects(&block));
        assert_eq!(decode_qr(&fb), vec![URL.to_owned()]);
        selected_seen.push(sel);
        m.apply(&switch(20.0 + step as f64, "s", OutfitDirection::Next));
    }
    assert_eq!(selected_seen, [3, 0, 1, 2, 3, 0]);
    m.apply(&switch(30.0, "s", OutfitDirection::Previous));
    assert_eq!(m.scene().selected, Some(0), "back from 1 to 0");
}

/// Unselected thumbnails are dimmed to 45%.
fn mirrorsight_overlay_mix(c: u32) -> u32 {
    let ch = |s: u32| ((((c >> s) & 0xFF) as f32 * 0.45).round() as u32) << s;
    ch(16) | ch(8) | ch(0)
}

#[test]
fn many_photos_scroll_to_keep_the_selection_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = cfg(1280, 720, 0, QrPosition::BottomRight);
    let mut r = Renderer::new(&c, font(&c), 1280, 720);
    let mut m = OverlayModel::new(&c);
    m.apply(&started(0.0, "s"));
    for i in 0..12 {
        let p = dir.path().join(format!("p{i}.jpg"));
        write_jpeg(&p, 300, 400, 0x808080);
        m.apply(&photo_saved(1.0 + i as f64, "s", &format!("p{i}"), &p));
    }
    for step in 0..12 {
        let scene = m.scene();
        let sel = scene.selected.expect("selection");
        r.render(&scene);
        let l = r.layout();
        let strip = l.strip.expect("strip");
        assert!(l.thumbnails.len() < 12, "not all fit");
        assert!(
            l.thumbnails.iter().any(|&(i, _)| i == sel),
            "step {step}: selected {sel} visible"
        );
        for &(_, rect) in &l.thumbnails {
            assert!(
                rect.x >= strip.x && rect.right() <= strip.right(),
                "{rect:?} inside {strip:?}"
            );
        }
        m.apply(&switch(20.0 + step as f64, "s", OutfitDirection::Next));
    }
}

#[test]
fn missing_font_errors_name_the_fix() {
    let cfg = OverlayConfig {
        font: Some("/nonexistent/font.ttc".into()),
        ..Default::default()
    };
    let msg = mirrorsight_overlay::Font::for_config(&cfg)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("overlay.font"), "{msg}");
    assert!(msg.contains("/nonexistent/font.ttc"), "{msg}");
    assert!(
        msg.contains("install fonts-noto-cjk or fonts-wqy-microhei, or set overlay.font"),
        "{msg}"
    );

    let latin = std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
    if latin.is_file() {
        let cfg = OverlayConfig {
            font: Some(latin.into()),
            ..Default::default()
        };
        let msg = mirrorsight_overlay::Font::for_config(&cfg)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("has no glyph for") && msg.contains('扫'),
            "{msg}"
        );
        assert!(msg.contains("install fonts-noto-cjk"), "{msg}");
        // A Latin font is fine when every configured text is Latin.
        let english = OverlayConfig {
            font: Some(latin.into()),
            caption: "Scan for your photos".into(),
            offline_text: "Offline".into(),
            ..Default::default()
        };
        assert!(mirrorsight_overlay::Font::for_config(&english).is_ok());
    } else {
        println!(
            "skipped the Latin-only font case: {} not installed",
            latin.display()
        );
    }

    let err = mirrorsight_overlay::Font::search(&[], false, "扫码").unwrap_err();
    assert!(
        err.to_string()
            .contains("install fonts-noto-cjk or fonts-wqy-microhei"),
        "{err}"
    );
}

#[test]
fn ttc_collections_load_face_zero() {
    let ttc = mirrorsight_overlay::FONT_CANDIDATES
        .iter()
        .map(std::path::Path::new)
        .find(|p| p.extension().is_some_and(|e| e == "ttc") && p.is_file());
    let Some(ttc) = ttc else {
        println!("skipped: no .ttc CJK font installed");
        return;
    };
    let font = mirrorsight_overlay::Font::load_checked(ttc, "扫码领取试衣照片").expect("loads");
    let (w, h) = font.measure("扫码", 40.0);
    assert!(w > 60.0 && h > 30.0, "{w}x{h}");
}

#[test]
fn tiny_and_odd_screens_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("p.jpg");
    write_jpeg(&photo, 64, 48, 0x808080);
    let thumbs = vec![
        mirrorsight_overlay::Thumbnail {
            photo: "a".into(),
            path: photo.display().to_string().into(),
        },
        mirrorsight_overlay::Thumbnail {
            photo: "b".into(),
            path: "/nonexistent.jpg".into(),
        },
    ];
    let everything = Scene {
        qr: QrView::Code(Arc::from(URL)),
        feedback: Some(Feedback::Check),
        countdown: Some(10),
        flash: false,
        thumbnails: thumbs.clone(),
        selected: Some(1),
        compare: None,
        recording: Some(6),
    };
    let offline = Scene {
        qr: QrView::Offline,
        countdown: Some(3),
        feedback: None,
        recording: None,
        ..everything.clone()
    };
    let base = OverlayConfig::default();
    let font = font(&base);
    for (w, h) in [(64, 64), (64, 1000), (1000, 64), (333, 777)] {
        for rotation in [0, 90, 180, 270] {
            for position in QrPosition::ALL {
                let c = OverlayConfig {
                    thumbnail_height: 32,
                    ..cfg(w, h, rotation, position)
                };
                let mut r = Renderer::new(&c, font.clone(), w, h);
                for scene in [&everything, &offline] {
                    let fb = r.render(scene);
                    assert_eq!((fb.width, fb.height), (w as usize, h as usize));
                }
            }
        }
    }
}

/// The grayscale PNG a mini-program code stands for here: a QR of `content` drawn 430 px wide
/// like WeChat's default, as RGBA with a transparent margin (what `is_hyaline` codes look like).
fn code_png(content: &str) -> Vec<u8> {
    let qr = read_png(&render_qr_png(content, 10, 4).expect("encodes"));
    let side = 430;
    let off = (side - qr.width) / 2;
    let mut rgba = vec![0u8; side * side * 4];
    for y in 0..qr.height {
        for x in 0..qr.width {
            let v = (qr.pixel(x, y) & 0xFF) as u8;
            let i = ((y + off) * side + x + off) * 4;
            rgba[i..i + 4].copy_from_slice(&[v, v, v, 255]);
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&rgba).unwrap();
    w.finish().unwrap();
    out
}

#[test]
fn a_mini_program_code_image_is_drawn_scaled_like_the_qr_and_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("scene-1.png");
    std::fs::write(&png_path, code_png("scene-1")).unwrap();
    let jpg_path = dir.path().join("scene-2.jpg");
    {
        let fb = read_png(&code_png("scene-2"));
        let rgb: Vec<u8> = fb
            .pixels
            .iter()
            .flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8])
            .collect();
        jpeg_encoder::Encoder::new_file(&jpg_path, 95)
            .unwrap()
            .encode(
                &rgb,
                fb.width as u16,
                fb.height as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
    }
    let font = font(&OverlayConfig::default());
    for (path, content) in [(&png_path, "scene-1"), (&jpg_path, "scene-2")] {
        for (w, h, rotation) in [(1920, 1080, 0), (1080, 1920, 90), (640, 360, 0)] {
            let c = cfg(w, h, rotation, QrPosition::BottomRight);
            let mut r = Renderer::new(&c, font.clone(), w, h);
            let scene = Scene {
                qr: QrView::Image(Arc::from(path.to_str().unwrap())),
                ..Default::default()
            };
            let fb = r.render(&scene).clone();
            let what = format!("{} at {w}x{h} rotation {rotation}", path.display());
            assert_eq!(decode_qr(&fb), vec![content.to_owned()], "{what}");
            let layout = r.layout().clone();
            let card = layout.qr_card.unwrap_or_else(|| panic!("{what}: no card"));
            let caption = layout
                .caption
                .unwrap_or_else(|| panic!("{what}: no caption"));
            // As wide as a version-3 QR's card at qr_module_px, unless the screen is smaller.
            let want = (29 + 8) * c.qr_module_px as i32;
            let card_side = card.w.min(card.h);
            assert!(
                card.w == want || (card_side < want && h <= 360),
                "{what}: card {card:?}, want {want} px wide"
            );
            assert_eq!(card.w, card.h, "{what}: square image, square card");
            let (n, first) = lit_outside(&fb, &[card, caption]);
            assert_eq!(n, 0, "{what}: lit outside the code, e.g. {first:?}");
        }
    }
    // A file that is not an image (or is gone) draws nothing rather than failing the frame.
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"<html>502 Bad Gateway</html>").unwrap();
    for path in [junk, dir.path().join("gone.png")] {
        let c = cfg(1280, 720, 0, QrPosition::BottomRight);
        let mut r = Renderer::new(&c, font.clone(), 1280, 720);
        let scene = Scene {
            qr: QrView::Image(Arc::from(path.to_str().unwrap())),
            ..Default::default()
        };
        let fb = r.render(&scene).clone();
        assert!(lit_bounds(&fb).is_none(), "{}", path.display());
        assert_eq!(r.layout().qr_card, None);
    }
}
