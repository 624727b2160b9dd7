//! `mirrorsight run` as systemd runs it: a clip paced like a camera, health, metrics and the
//! event stream over HTTP, and a clean SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 GET; returns (status, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn counter(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn run_serves_health_metrics_and_events_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let events_file = dir.path().join("events.jsonl");
    let config = dir.path().join("mirrorsight.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"{}\"\nrealtime = true\n[session]\nexit_after_s = 2.0\n\
             [events]\nfile = \"{}\"\n[service]\nlisten = \"127.0.0.1:{port}\"\n[display]\nmode = \"none\"\n\
             [storage]\ndir = \"{}\"\n[photos]\nspool_dir = \"{}\"\n",
            demo_clip().display(),
            events_file.display(),
            dir.path().join("state").display(),
            dir.path().join("state/spool").display(),
        ),
    )
    .unwrap();
    let mut child = bin()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .spawn()
        .unwrap();

    // Healthy while frames flow.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut healthy = false;
    while Instant::now() < deadline && !healthy {
        healthy = get(port, "/healthz").is_some_and(|(status, _)| status == 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(healthy, "/healthz never answered 200");

    // The event stream, as the mirror's other software reads it.
    let sse = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        write!(s, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains("session_started") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });

    // Metrics parse as Prometheus text and the frame counter advances.
    let (status, first) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    for line in first
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        assert!(
            name.chars().next().unwrap().is_ascii_alphabetic(),
            "bad name in {line}"
        );
    }
    let a = counter(&first, "mirrorsight_frames_processed_total").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let b = counter(
        &get(port, "/metrics").unwrap().1,
        "mirrorsight_frames_processed_total",
    )
    .unwrap();
    assert!(b > a, "frame counter did not advance: {a} → {b}");

    let seen = sse.join().unwrap();
    assert!(
        seen.contains("data: {\"type\":\"session_started\""),
        "{seen}"
    );

    // SIGTERM: clean exit 0, and the events file is complete.
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let events = parse_events(&std::fs::read(&events_file).unwrap());
    assert_eq!(
        events.last().unwrap().type_name(),
        "source_ended",
        "{events:?}"
    );
    let ended = of_type(&events, "session_ended");
    assert_eq!(
        ended.len(),
        of_type(&events, "session_started").len(),
        "every session closed: {events:?}"
    );
}

#[test]
fn run_refuses_a_bad_config_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[service]\nlisten = \"not an address\"\n").unwrap();
    let out = bin()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("service.listen"), "{stderr}");
}
