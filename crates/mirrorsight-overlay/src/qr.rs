//! QR matrices and the standalone PNG used by `mirrorsight mint --png`.

use qrcode::{Color, EcLevel, QrCode};

use crate::canvas::encode_png;
use crate::error::OverlayError;

/// The quiet zone the QR standard asks for, in modules.
pub const QUIET_ZONE_MODULES: u32 = 4;

/// Dark/light modules of one code, without quiet zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrMatrix {
    /// Modules per side.
    pub size: usize,
    dark: Vec<bool>,
}

impl QrMatrix {
    /// Level M: scene URLs are short, so the code stays small while a smudge on the glass
    /// (up to 15% of modules) still reads.
    pub fn encode(url: &str) -> Result<Self, OverlayError> {
        let code =
            QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M).map_err(|e| {
                OverlayError::Qr {
                    url: url.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        let size = code.width();
        let dark = code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect();
        Ok(Self { size, dark })
    }

    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.size + x]
    }
}

/// A grayscale PNG of the code for `url`: dark modules on white, `module_px` pixels per
/// module, with `quiet_zone_modules` of white around it (use [`QUIET_ZONE_MODULES`]).
pub fn render_qr_png(
    url: &str,
    module_px: u32,
    quiet_zone_modules: u32,
) -> Result<Vec<u8>, OverlayError> {
    if module_px == 0 || module_px > 256 {
        return Err(OverlayError::Qr {
            url: url.to_owned(),
            reason: format!("module size {module_px} px is out of range 1..=256"),
        });
    }
    if quiet_zone_modules > 64 {
        return Err(OverlayError::Qr {
            url: url.to_owned(),
            reason: format!("quiet zone of {quiet_zone_modules} modules is out of range 0..=64"),
        });
    }
    let m = QrMatrix::encode(url)?;
    let side_modules = m.size + 2 * quiet_zone_modules as usize;
    let side = side_modules * module_px as usize;
    let mut gray = vec![255u8; side * side];
    let q = quiet_zone_modules as usize;
    let mp = module_px as usize;
    for my in 0..m.size {
        for mx in 0..m.size {
            if m.is_dark(mx, my) {
                let (x0, y0) = ((mx + q) * mp, (my + q) * mp);
                for y in y0..y0 + mp {
                    gray[y * side + x0..y * side + x0 + mp].fill(0);
                }
            }
        }
    }
    encode_png(&gray, side as u32, side as u32, png::ColorType::Grayscale)
}
