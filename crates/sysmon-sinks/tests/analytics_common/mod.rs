//! Checks shared by the SQLite and PostgreSQL analytics tests: both stores must
//! behave the same through `AnalyticsSink` and `AnalyticsReader`.
#![allow(dead_code)]

use sysmon_analytics::{AnalyticsRecord, AnalyticsSink};
use sysmon_core::alert::Episode;
use sysmon_core::read::AnalyticsReader;

fn episode(id: &str, start: f64, end: f64, open: bool) -> Episode {
    Episode {
        machine_id: id.into(),
        start,
        end,
        peak_at: start,
        peak_score: 0.9,
        samples: (end - start) as u32 + 1,
        metrics: vec!["cpu_usage".into()],
        reasons: vec!["cpu_usage 97.0 % vs usual 20.0".into()],
        open,
    }
}

fn record(episodes: Vec<Episode>) -> AnalyticsRecord {
    AnalyticsRecord {
        episodes,
        ..AnalyticsRecord::default()
    }
}

/// Episodes are stored, an open one is updated in place as it grows and
/// closes, and reads filter by machine and by end time, newest start first.
pub async fn episodes_round_trip<S: AnalyticsSink + AnalyticsReader>(store: &S, t0: f64) {
    store
        .record(&record(vec![
            episode("web-01", t0, t0 + 2.0, true),
            episode("db-01", t0 + 50.0, t0 + 60.0, false),
        ]))
        .await
        .unwrap();
    // The open episode grows and closes: the same row, updated.
    store
        .record(&record(vec![episode("web-01", t0, t0 + 9.0, false)]))
        .await
        .unwrap();

    let all = store.episodes(None, 0.0, 10).await.unwrap();
    assert_eq!(
        all,
        vec![
            episode("db-01", t0 + 50.0, t0 + 60.0, false),
            episode("web-01", t0, t0 + 9.0, false),
        ]
    );
    let mine = store.episodes(Some("web-01"), 0.0, 10).await.unwrap();
    assert_eq!(mine, vec![episode("web-01", t0, t0 + 9.0, false)]);
    // `since` is compared with the end: an episode still going on counts.
    let recent = store.episodes(None, t0 + 30.0, 10).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].machine_id, "db-01");
    assert_eq!(store.episodes(None, 0.0, 1).await.unwrap().len(), 1);
}
