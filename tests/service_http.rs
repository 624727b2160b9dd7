//! The health, metrics and events endpoints over real HTTP on loopback, driven by a fake
//! frame feed and a fake clock (the end-to-end `mirrorsight run` test lives elsewhere).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mirrorsight::events::{Event, EventKind};
use mirrorsight::frame::{Frame, RgbImage};
use mirrorsight::metrics::Metrics;
use mirrorsight::service::http::PrometheusText;
use mirrorsight::service::{Health, HealthSettings, HttpServer, HttpState};
use mirrorsight::sinks::{EventSink, SseBroadcast};
use mirrorsight::source::{Source, SourceError, SourceInfo};

/// A clock the test moves by hand.
#[derive(Clone)]
struct FakeClock(Arc<Mutex<Instant>>);

impl FakeClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

/// Delivers frames while the test lets it, then "freezes" (returns nothing new).
struct FakeCamera {
    info: SourceInfo,
    seq: u64,
}

impl Source for FakeCamera {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let frame = Frame {
            seq: self.seq,
            t: self.seq as f64 / 30.0,
            image: Arc::new(RgbImage::filled(4, 4, [9, 9, 9])),
        };
        self.seq += 1;
        Ok(Some(frame))
    }
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // HTTP/1.0: the body is delimited by the connection closing, no chunked framing to undo.
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read reply");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn start(state: HttpState) -> HttpServer {
    HttpServer::start_on_own_thread("127.0.0.1:0".parse().unwrap(), state).expect("server starts")
}

#[test]
fn healthz_is_200_while_frames_flow_and_503_after_the_source_freezes() {
    let clock = FakeClock::new();
    let c = clock.clone();
    let health = Arc::new(Health::with_clock(
        HealthSettings {
            stall_after: Duration::from_secs(2),
            max_lag: Duration::from_secs(1),
        },
        Arc::new(move || c.now()),
    ));
    let metrics = Arc::new(Metrics::new());
    let server = start(HttpState::new(metrics.clone(), health.clone()));
    let addr = server.local_addr();

    let r = get(addr, "/healthz");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("waiting for the first frame"), "{}", r.body);

    // A tiny pipeline: the tapped source reports captures, "vision" reports processing.
    let mut source = health.tap(Box::new(FakeCamera {
        info: SourceInfo {
            name: "fake".into(),
            width: 4,
            height: 4,
            fps: 30.0,
            frames: None,
        },
        seq: 0,
    }));
    let mut step = |n: usize| {
        for _ in 0..n {
            let frame = source.next_frame().unwrap().unwrap();
            clock.advance(Duration::from_millis(10));
            health.frame_processed(frame.seq, clock.now());
            Metrics::inc(&metrics.frames_processed);
            clock.advance(Duration::from_millis(23));
        }
    };
    step(60);
    let r = get(addr, "/healthz");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers.contains("content-type: application/json"),
        "{}",
        r.headers
    );
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["frames_processed"], 60);
    assert_eq!(json["lag_s"], 0.01);

    // The camera freezes: no frames while the clock runs on.
    clock.advance(Duration::from_millis(1500));
    assert_eq!(get(addr, "/healthz").status, 200);
    clock.advance(Duration::from_millis(1000));
    let r = get(addr, "/healthz");
    assert_eq!(r.status, 503, "{}", r.body);
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(json["status"], "unhealthy");
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .starts_with("no frame processed for"),
        "{json}"
    );

    // And back.
    step(1);
    assert_eq!(get(addr, "/healthz").status, 200);
    server.shutdown();
}

struct SpoolGauge;

impl PrometheusText for SpoolGauge {
    fn render_prometheus(&self, out: &mut String) {
        out.push_str(
            "# HELP mirrorsight_spool_photos Photos waiting.\n# TYPE mirrorsight_spool_photos gauge\nmirrorsight_spool_photos 3\n",
        );
    }
}

/// Checks one exposition line `name{labels} value` (labels optional).
fn check_sample(line: &str) -> Result<(String, f64), String> {
    let bad = |why: &str| Err(format!("{why}: {line:?}"));
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return bad("bad metric name");
    }
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        let close = labels.find('}').ok_or("unclosed labels")?;
        for pair in labels[..close].split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or("label without =")?;
            let valid_key = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
            if !(valid_key && quoted) {
                return bad("bad label");
            }
        }
        rest = &labels[close + 1..];
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let v: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
    };
    Ok((name.to_string(), v))
}

fn scrape(addr: SocketAddr) -> Vec<(String, f64)> {
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in r.body.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(_), Some(_)) => {}
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    assert!(typed.insert(name.to_string()), "TYPE twice: {line}");
                }
                _ => panic!("bad comment line {line:?}"),
            }
            continue;
        }
        samples.push(check_sample(line).unwrap_or_else(|e| panic!("{e}")));
    }
    // Every sample belongs to a declared family.
    for (name, _) in &samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "no TYPE for {name}");
    }
    samples
}

fn value(samples: &[(String, f64)], name: &str) -> f64 {
    samples
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn metrics_parse_as_prometheus_text_and_counters_advance() {
    let health = Arc::new(Health::new(HealthSettings::default()));
    let metrics = Arc::new(Metrics::new());
    let events = SseBroadcast::new(16);
    let server = start(
        HttpState::new(metrics.clone(), health.clone())
            .with_events(events.subscriber())
            .with_metrics(Arc::new(SpoolGauge)),
    );
    let addr = server.local_addr();

    let first = scrape(addr);
    assert_eq!(value(&first, "mirrorsight_frames_processed_total"), 0.0);
    assert_eq!(value(&first, "mirrorsight_healthy"), 0.0);
    assert!(value(&first, "mirrorsight_last_frame_age_seconds").is_nan());
    assert_eq!(value(&first, "mirrorsight_spool_photos"), 3.0);
    assert_eq!(value(&first, "mirrorsight_event_clients"), 0.0);

    let now = Instant::now();
    for seq in 0..5 {
        health.frame_captured(seq, now);
        health.frame_processed(seq, now);
        Metrics::inc(&metrics.frames_processed);
    }
    let second = scrape(addr);
    assert_eq!(value(&second, "mirrorsight_frames_processed_total"), 5.0);
    assert_eq!(value(&second, "mirrorsight_healthy"), 1.0);
    assert!(value(&second, "mirrorsight_processed_fps") > 0.0);
    server.shutdown();
}

fn event(i: u64) -> Event {
    Event::new(i as f64 * 0.5, EventKind::SourceEnded { frames: i })
}

/// Reads from an SSE response until `done(text so far)` or the timeout.
fn read_until(s: &mut TcpStream, seen: &mut String, done: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !done(seen) {
        if Instant::now() > deadline {
            return false;
        }
        match s.read(&mut buf) {
            Ok(0) => return done(seen),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    true
}

#[test]
fn events_streams_sink_events_as_sse_and_ends_with_the_stream() {
    let health = Arc::new(Health::new(HealthSettings::default()));
    let metrics = Arc::new(Metrics::new());
    let mut sink = SseBroadcast::new(64);
    let subscriber = sink.subscriber();
    let server = start(HttpState::new(metrics, health).with_events(subscriber.clone()));
    let addr = server.local_addr();

    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(s, "GET /events HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut seen = String::new();
    assert!(read_until(&mut s, &mut seen, |t| t.contains(": mirrorsight events")));
    assert!(
        seen.starts_with("HTTP/1.0 200") || seen.starts_with("HTTP/1.1 200"),
        "{seen}"
    );
    assert!(
        seen.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{seen}"
    );
    assert_eq!(subscriber.clients(), 1);

    let sent: Vec<Event> = (0..3).map(event).collect();
    for e in &sent {
        sink.handle(e).unwrap();
    }
    let want: Vec<String> = sent
        .iter()
        .map(|e| format!("data: {}\n\n", e.to_json_line()))
        .collect();
    assert!(
        read_until(&mut s, &mut seen, |t| want
            .iter()
            .all(|w| t.contains(w.as_str()))),
        "{seen}"
    );
    // In order, and each parses back to the event that was sent.
    let got: Vec<Event> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    assert_eq!(got, sent);

    // The dispatcher finishes (drops its sink): the stream ends after the last event.
    sink.handle(&event(9)).unwrap();
    drop(sink);
    let tail = format!("data: {}\n\n", event(9).to_json_line());
    let mut closed = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
    }
    assert!(closed, "the SSE response should end with the event stream");
    assert!(seen.contains(&tail), "{seen}");
    assert_eq!(get(addr, "/events").status, 503);
    let started = Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn shutdown_ends_open_event_streams_promptly() {
    let health = Arc::new(Health::new(HealthSettings::default()));
    let sink = SseBroadcast::new(8);
    let server =
        start(HttpState::new(Arc::new(Metrics::new()), health).with_events(sink.subscriber()));
    let addr = server.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(s, "GET /events HTTP/1.0\r\n\r\n").unwrap();
    let mut seen = String::new();
    assert!(read_until(&mut s, &mut seen, |t| t.contains(": mirrorsight events")));

    let started = Instant::now();
    server.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut rest = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert!(s.read_to_end(&mut rest).is_ok(), "stream should be closed");
    // The port is free again.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
    drop(sink);
}

#[test]
fn listen_conflict_names_the_key() {
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap();
    let health = Arc::new(Health::new(HealthSettings::default()));
    let err =
        HttpServer::start_on_own_thread(addr, HttpState::new(Arc::new(Metrics::new()), health))
            .err()
            .expect("port taken");
    assert!(err.to_string().contains("service.listen"), "{err}");
}
