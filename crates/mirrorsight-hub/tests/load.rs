//! A small, bounded load on loopback (8 mirrors × 3 sessions × 4 photos of 200 KB, 40 signed
//! pushes/s, at most 10 s): concurrent mirrors minting and uploading with retries while scans
//! are pushed. Asserts correctness only — nothing lost, nothing duplicated, every request
//! answered as the contract says, every scan answered with its `news` — never timings; the
//! figures are printed (`--nocapture`). `cargo bench -p mirrorsight-hub --bench load` runs a
//! bigger load and prints the same table.

#[path = "support/load.rs"]
mod load;

use std::time::Duration;

use load::{Backends, Kind, LoadConfig};

mod support {
    pub mod hub;
    pub mod pg;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mirrors_and_scans_lose_and_duplicate_nothing() {
    let config = LoadConfig::default();
    let report = load::run_with(&config, Backends::sqlite).await.unwrap();
    check(&config, &report);
}

/// The same load with the metadata in PostgreSQL, as a chain runs it.
#[test]
fn the_same_load_on_postgres_loses_and_duplicates_nothing() {
    // Opened and dropped outside the runtime: the PostgreSQL driver blocks.
    let Some(db) = support::pg::TestDb::create("load") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        store: db.store(),
        blobs: std::sync::Arc::new(
            mirrorsight_hub::store::LocalBlobStore::open(dir.path()).unwrap(),
        ),
        label: "PostgreSQL + local dir".into(),
    };
    let config = LoadConfig::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(load::run(&config, backends)).unwrap();
    drop(runtime);
    check(&config, &report);
}

fn check(config: &LoadConfig, report: &load::LoadReport) {
    println!("{}", report.table());

    assert_eq!(report.errors, 0, "{}", report.table());
    assert!(report.correct(), "{}", report.table());
    let v = &report.verification;
    assert_eq!(
        (v.photos_missing, v.photos_duplicated, v.extra, v.bad_bytes),
        (0, 0, 0, 0)
    );
    assert_eq!(v.photos_ok, report.photos);
    // The cap is a bound on a hung hub, not a performance requirement: if a slow machine hit
    // it, what was acknowledged must still be exactly what is stored (checked above).
    if report.timed_out {
        eprintln!("note: the {:?} cap cut the run short", config.duration_cap);
        assert!(report.photos > 0, "nothing was uploaded before the cap");
    } else {
        assert!(report.complete(), "{}", report.table());
        assert_eq!(report.scenes, config.mirrors * config.sessions_per_mirror);
    }
    // Retries and re-sends happened and were absorbed.
    assert!(report.stats(Kind::UploadRetry).requests > 0);
    assert!(report.stats(Kind::Push).requests > 0);
    assert!(report.stats(Kind::PushResend).requests > 0);
    assert_eq!(v.events_recorded, v.distinct_pushes);
    assert_eq!(
        report.pushes_answered,
        report.stats(Kind::Push).requests + report.stats(Kind::PushResend).requests,
        "every push answered with its news"
    );
}

#[test]
fn payloads_are_sized_distinct_and_repeatable() {
    for size in [8, 9, 15, 16, 17, 1000] {
        let p = load::payload(1, 0, 0, 0, size);
        assert_eq!(p.len(), size);
        assert_eq!(&p[..2], &[0xFF, 0xD8]);
        assert_eq!(&p[size - 2..], &[0xFF, 0xD9]);
    }
    assert_eq!(
        load::payload(1, 2, 3, 4, 100),
        load::payload(1, 2, 3, 4, 100)
    );
    assert_ne!(
        load::payload(1, 2, 3, 4, 100),
        load::payload(1, 2, 3, 5, 100)
    );
}

#[test]
fn nearest_rank_percentiles() {
    let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    let s = load::kind_stats(&mut samples, 0);
    assert_eq!(
        (s.p50, s.p95, s.p99, s.max),
        (
            Duration::from_millis(50),
            Duration::from_millis(95),
            Duration::from_millis(99),
            Duration::from_millis(100)
        )
    );
}
