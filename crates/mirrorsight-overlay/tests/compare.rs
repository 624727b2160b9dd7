//! The compare view, checked on its pixels: a session photo large (≥ 40 % of the screen's
//! height) on the half away from the shopper, its "2 / 4" below, the QR code still readable,
//! in landscape and portrait.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use mirrorsight_contract::events::{CompareCloseReason, Event, EventKind, Side};
use mirrorsight_overlay::{
    CompareView, Dim, OverlayConfig, OverlayModel, QrPosition, QrView, Rect, Renderer, Scene,
    Thumbnail,
};

const RED: u32 = 0xD03020;

fn cfg(w: u32, h: u32, rotation: u16, position: QrPosition) -> OverlayConfig {
    OverlayConfig {
        width: Dim::Px(w),
        height: Dim::Px(h),
        rotation,
        qr_position: position,
        ..Default::default()
    }
}

fn thumb(path: &Path, id: &str) -> Thumbnail {
    Thumbnail {
        photo: Arc::from(id),
        path: Arc::from(path.display().to_string().as_str()),
    }
}

fn compare_scene(photo: Thumbnail, index: u32, side: Side, subject_x: Option<f64>) -> Scene {
    Scene {
        qr: QrView::Code(Arc::from(URL)),
        thumbnails: vec![photo.clone()],
        selected: Some(0),
        compare: Some(CompareView {
            photo,
            index,
            count: 4,
            side,
            subject_x,
        }),
        ..Default::default()
    }
}

/// A JPEG whose left half is `left` and right half `right`.
fn write_halves(path: &Path, w: u16, h: u16, left: u32, right: u32) {
    let px: Vec<u8> = (0..w as usize * h as usize)
        .flat_map(|i| {
            let c = if i % w as usize <= w as usize / 2 {
                left
            } else {
                right
            };
            [(c >> 16) as u8, (c >> 8) as u8, c as u8]
        })
        .collect();
    jpeg_encoder::Encoder::new_file(path, 95)
        .expect("create JPEG")
        .encode(&px, w, h, jpeg_encoder::ColorType::Rgb)
        .expect("encode JPEG");
}

fn lit_in(fb: &mirrorsight_overlay::Framebuffer, r: Rect) -> usize {
    let mut n = 0;
    for y in r.y.max(0)..r.bottom().min(fb.height as i32) {
        for x in r.x.max(0)..r.right().min(fb.width as i32) {
            if fb.pixel(x as usize, y as usize) != 0 {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn the_photo_is_large_on_the_far_side_with_its_index_and_the_code_still_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("p.jpg");
    write_jpeg(&photo, 1280, 720, RED);
    let font = font(&OverlayConfig::default());
    for (w, h) in [(1920u32, 1080u32), (1080, 1920)] {
        for position in [QrPosition::BottomRight, QrPosition::TopLeft] {
            for side in [Side::Left, Side::Right] {
                let what = format!("{w}x{h} {position:?} photo on the {side:?}");
                let mut r = Renderer::new(&cfg(w, h, 0, position), font.clone(), w, h);
                let fb = r
                    .render(&compare_scene(thumb(&photo, "p"), 2, side, None))
                    .clone();
                let layout = r.layout().clone();
                let shown = layout.compare.unwrap_or_else(|| panic!("{what}: no photo"));
                assert!(
                    shown.h as f32 >= 0.4 * h as f32,
                    "{what}: photo {shown:?} is under 40 % of the height"
                );
                match side {
                    Side::Left => assert!(shown.right() <= w as i32 / 2, "{what}: {shown:?}"),
                    Side::Right => assert!(shown.x >= w as i32 / 2, "{what}: {shown:?}"),
                }
                let (cx, cy) = shown.center();
                assert!(
                    close(fb.pixel(cx as usize, cy as usize), RED, 12),
                    "{what}: the photo's pixels"
                );
                assert!(layout.thumbnails.is_empty(), "{what}: the strip is hidden");
                assert_eq!(decode_qr(&fb), vec![URL.to_owned()], "{what}");
                let card = layout.qr_card.expect("card");
                assert!(!card.intersects(&shown), "{what}: photo over the code");
                let index = layout.compare_index.expect("index");
                assert!(index.y >= shown.bottom(), "{what}: index under the photo");
                assert!(lit_in(&fb, index) > 0, "{what}: index drawn");
                let frame = (h as i32 / 360).max(2);
                let caption = layout.caption.expect("caption");
                let (n, first) = lit_outside(&fb, &[shown.outset(frame), index, card, caption]);
                assert_eq!(n, 0, "{what}: stray pixels, e.g. {first:?}");

                // The index is what the scene says: "1 / 4" draws other pixels there.
                let other = r
                    .render(&compare_scene(thumb(&photo, "p"), 1, side, None))
                    .clone();
                let differs = (index.y..index.bottom()).any(|y| {
                    (index.x..index.right()).any(|x| {
                        fb.pixel(x as usize, y as usize) != other.pixel(x as usize, y as usize)
                    })
                });
                assert!(differs, "{what}: 2 / 4 and 1 / 4 look the same");
            }
        }
    }
}

#[test]
fn a_portrait_mirror_on_a_turned_monitor_shows_it_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("p.jpg");
    write_jpeg(&photo, 1280, 720, RED);
    let font = font(&OverlayConfig::default());
    let mut r = Renderer::new(
        &cfg(1920, 1080, 90, QrPosition::BottomRight),
        font,
        1920,
        1080,
    );
    let fb = r
        .render(&compare_scene(thumb(&photo, "p"), 3, Side::Left, None))
        .clone();
    let shown = r.layout().compare.expect("photo");
    // Turned clockwise, the portrait layout's height runs along the monitor's width.
    assert!(shown.w as f32 >= 0.4 * 1920.0, "{shown:?}");
    let (cx, cy) = shown.center();
    assert!(close(fb.pixel(cx as usize, cy as usize), RED, 12));
    assert_eq!(decode_qr(&fb), vec![URL.to_owned()]);
}

#[test]
fn a_narrow_view_crops_around_where_the_shopper_stood() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photo = dir.path().join("halves.jpg");
    let (green, blue) = (0x20C040, 0x2040D0);
    write_halves(&photo, 1280, 720, green, blue);
    let font = font(&OverlayConfig::default());
    let (w, h) = (1080u32, 1920u32);
    let mut r = Renderer::new(&cfg(w, h, 0, QrPosition::BottomRight), font, w, h);
    for (subject_x, expect) in [(Some(0.15), green), (Some(0.85), blue)] {
        let fb = r
            .render(&compare_scene(
                thumb(&photo, "p"),
                1,
                Side::Right,
                subject_x,
            ))
            .clone();
        let shown = r.layout().compare.expect("photo");
        assert!(shown.w < shown.h, "portrait crop: {shown:?}");
        let (cx, cy) = shown.center();
        assert!(
            close(fb.pixel(cx as usize, cy as usize), expect, 16),
            "subject at {subject_x:?}: {:06x}",
            fb.pixel(cx as usize, cy as usize)
        );
    }
}

#[test]
fn the_model_follows_compare_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p1, p2) = (dir.path().join("1.jpg"), dir.path().join("2.jpg"));
    let mut m = OverlayModel::with_timing(0.2, 0.8);
    m.apply(&started(0.0, "s"));
    m.apply(&photo_saved(1.0, "s", "p1", &p1));
    m.apply(&photo_saved(2.0, "s", "p2", &p2));
    let shown = |t: f64, photo: &str, index: u32| {
        Event::new(
            t,
            EventKind::CompareShown {
                session: "s".into(),
                photo: photo.into(),
                index,
                count: 2,
                side: Side::Left,
                subject_x: Some(0.3),
            },
        )
    };
    m.apply(&shown(3.0, "p1", 1));
    let view = m.scene().compare.expect("open");
    assert_eq!((&*view.photo.photo, view.index, view.count), ("p1", 1, 2));
    assert_eq!(&*view.photo.path, p1.display().to_string());
    assert_eq!(view.side, Side::Left);
    // An unknown photo cannot be drawn: the view stays closed rather than showing nothing.
    m.apply(&shown(3.5, "nope", 2));
    assert_eq!(m.scene().compare, None);
    m.apply(&shown(4.0, "p2", 2));
    assert_eq!(m.scene().selected, Some(1));
    m.apply(&Event::new(
        5.0,
        EventKind::CompareClosed {
            session: "s".into(),
            reason: CompareCloseReason::Idle,
        },
    ));
    assert_eq!(m.scene().compare, None);
    m.apply(&shown(6.0, "p2", 2));
    m.apply(&Event::new(
        6.5,
        EventKind::PhotoDiscarded {
            session: "s".into(),
            photo: "p2".into(),
        },
    ));
    assert_eq!(m.scene().compare, None, "the discarded photo is not drawn");
    m.apply(&shown(7.0, "p2", 2));
    m.apply(&ended(8.0, "s"));
    assert!(m.scene().is_blank());
}
