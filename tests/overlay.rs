//! What the mirror shows, checked on the headless renderer's snapshots of a real replay.

mod common;

use common::*;

fn load(path: &std::path::Path) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let grey = (0..w * h)
        .map(|i| {
            buf[i * channels..i * channels + channels.min(3)]
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
        })
        .collect();
    (w, h, grey)
}

fn decode(w: usize, h: usize, grey: &[u8]) -> Option<String> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| grey[y * w + x]);
    img.detect_grids()
        .first()
        .and_then(|g| g.decode().ok())
        .map(|(_, s)| s)
}

#[test]
fn the_mirror_shows_the_session_code_and_is_black_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = dir.path().join("snaps");
    let out = run_ok(
        bin()
            .arg("replay")
            .arg(demo_clip())
            .args([
                "--config",
                "assets/demo.toml",
                "--display",
                "headless",
                "--snapshot-dir",
            ])
            .arg(&snaps)
            .current_dir(repo()),
    );
    let events = parse_events(&out.stdout);
    let started = of_type(&events, "session_started")[0].t;
    let ended = of_type(&events, "session_ended")[0].t;
    let minted = of_type(&events, "qr_minted");
    let mirrorsight::events::EventKind::QrMinted { url, .. } = &minted[0].kind else {
        panic!()
    };

    let mut names: Vec<_> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let mut saw_code = false;
    for path in &names {
        let t: f64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let (w, h, grey) = load(path);
        let lit: Vec<(usize, usize)> = (0..w * h)
            .filter(|&i| grey[i] > 0)
            .map(|i| (i % w, i / w))
            .collect();
        if t < started || t >= ended {
            assert!(
                lit.is_empty(),
                "{}: the mirror must be black between sessions",
                path.display()
            );
            continue;
        }
        // During the session: the code decodes to the minted URL ...
        assert_eq!(
            decode(w, h, &grey).as_deref(),
            Some(url.as_str()),
            "{}",
            path.display()
        );
        saw_code = true;
        // ... and everything lit sits in one corner block (QR card and caption); the rest is black.
        let (x0, x1) = (
            lit.iter().map(|p| p.0).min().unwrap(),
            lit.iter().map(|p| p.0).max().unwrap(),
        );
        let (y0, y1) = (
            lit.iter().map(|p| p.1).min().unwrap(),
            lit.iter().map(|p| p.1).max().unwrap(),
        );
        assert!(
            x0 > w / 2 && y0 > h / 4,
            "lit block starts at ({x0},{y0}) in {}",
            path.display()
        );
        assert!(
            (x1 - x0) * (y1 - y0) < w * h / 5,
            "lit block too large in {}",
            path.display()
        );
    }
    assert!(saw_code);
}
