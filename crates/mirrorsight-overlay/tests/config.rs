//! The `[overlay]` section as it appears in mirrorsight.toml.

use std::path::PathBuf;

use mirrorsight_overlay::{Dim, OverlayConfig, QrPosition};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    overlay: OverlayConfig,
}

fn parse(toml_text: &str) -> Result<OverlayConfig, String> {
    toml::from_str::<File>(toml_text)
        .map(|f| f.overlay)
        .map_err(|e| e.to_string())
}

#[test]
fn every_key_parses() {
    let cfg = parse(
        r#"
        [overlay]
        width = 1080
        height = 1920
        rotation = 90
        display = 1
        qr_module_px = 14
        qr_position = "top_left"
        caption = "扫一扫 / Scan me"
        offline_text = "离线 / Offline"
        flash_s = 0.3
        feedback_s = 1.5
        thumbnail_height = 200
        compare_idle_s = 12.5
        font = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
        "#,
    )
    .expect("parses");
    assert_eq!(
        cfg,
        OverlayConfig {
            width: Dim::Px(1080),
            height: Dim::Px(1920),
            rotation: 90,
            display: 1,
            qr_module_px: 14,
            qr_position: QrPosition::TopLeft,
            caption: "扫一扫 / Scan me".into(),
            offline_text: "离线 / Offline".into(),
            flash_s: 0.3,
            feedback_s: 1.5,
            thumbnail_height: 200,
            compare_idle_s: 12.5,
            font: Some(PathBuf::from(
                "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
            )),
        }
    );
    assert_eq!(cfg.validate(), Ok(()));
}

#[test]
fn missing_keys_take_their_defaults() {
    let cfg = parse("[overlay]\nwidth = \"auto\"\n").expect("parses");
    assert_eq!(cfg, OverlayConfig::default());
    let d = OverlayConfig::default();
    assert_eq!(
        (d.width, d.height, d.rotation, d.display),
        (Dim::Auto, Dim::Auto, 0, 0)
    );
    assert_eq!(
        (d.qr_module_px, d.qr_position, d.thumbnail_height),
        (12, QrPosition::BottomRight, 160)
    );
    assert_eq!((d.flash_s, d.feedback_s), (0.2, 0.8));
    assert_eq!(d.caption, "扫码领取试衣照片 / Scan for your photos");
    assert!(d.font.is_none());
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let err = parse("[overlay]\nqr_size = 3\n").unwrap_err();
    assert!(err.contains("qr_size"), "{err}");
    let err = parse("[overlay]\nwidth = \"wide\"\n").unwrap_err();
    assert!(err.contains("auto"), "{err}");
    let err = parse("[overlay]\nqr_position = \"middle\"\n").unwrap_err();
    assert!(err.contains("middle"), "{err}");
    // The countdown is the photo stage's (`photos.countdown_s`); the screen follows the events.
    let err = parse("[overlay]\ncountdown_s = 3\n").unwrap_err();
    assert!(err.contains("countdown_s"), "{err}");

    let cfg = parse("[overlay]\nwidth = 10\nheight = 10\nthumbnail_height = 4\nflash_s = -1\n")
        .expect("parses");
    let errors: Vec<String> = cfg
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        errors.iter().any(|e| e.starts_with("overlay.width: ")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("overlay.height: ")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("overlay.thumbnail_height: ")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("overlay.flash_s: ")),
        "{errors:?}"
    );
}
