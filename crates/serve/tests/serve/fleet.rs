//! Two servers on one PostgreSQL queue: 50 jobs submitted across both, each done exactly once,
//! none lost, every clip readable from either server.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use crate::support::{finished, get, submit, tool, Server};

/// The URL of a PostgreSQL database the test may create databases from (.ci/run starts a
/// throwaway cluster and sets it).
const URL_ENV: &str = "CADENCE_TEST_POSTGRES_URL";
const JOBS: usize = 50;

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (server, _) = base
        .rsplit_once('/')
        .expect("a PostgreSQL URL ends with /DATABASE");
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// The `cadence_clips_completed_total` of a server.
fn clips_completed(server: &Server) -> usize {
    let text = get(&server.url("/metrics"), None).text();
    let line = text
        .lines()
        .find(|l| l.starts_with("cadence_clips_completed_total "))
        .unwrap_or_else(|| panic!("no clip counter in\n{text}"));
    line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as usize
}

#[test]
fn two_servers_on_one_postgres_queue_do_each_job_exactly_once() {
    let url = std::env::var(URL_ENV).ok();
    if !tool(
        &format!("a PostgreSQL server in {URL_ENV}, and psql"),
        url.is_some() && crate::support::runs("psql", &["--version"]),
    ) {
        return;
    }
    let url = url.unwrap();
    let name = format!("cadence_fleet_{}", std::process::id());
    psql(&url, &format!("DROP DATABASE IF EXISTS {name}"));
    psql(&url, &format!("CREATE DATABASE {name}"));
    let queue = with_database(&url, &name);

    let dir = tempfile::tempdir().unwrap();
    let flags = ["--queue", queue.as_str(), "--max-queue", "200"];
    let a = Server::start(&dir.path().join("a"), &flags);
    let b = Server::start(&dir.path().join("b"), &flags);
    let ids: Vec<(String, usize)> = (0..JOBS)
        .map(|i| {
            let server = if i % 2 == 0 { &a } else { &b };
            (
                submit(
                    server,
                    None,
                    "64x64",
                    &format!(r#", "steps": 2, "seed": {i}"#),
                ),
                i % 2,
            )
        })
        .collect();
    for (id, submitted_to) in &ids {
        // Read through the other server: every server sees every job and clip.
        let other = if *submitted_to == 0 { &b } else { &a };
        let v = finished(other, None, id, Duration::from_secs(600));
        assert_eq!(v["status"], "completed", "{v}");
        let clip = get(&other.url(&format!("/v1/videos/{id}/content")), None);
        assert_eq!(clip.status, 200);
        assert_eq!(&clip.body[4..8], b"ftyp", "not an MP4");
    }

    // Exactly once: every job was started once, each clip stored once, and the two servers'
    // completions add up to the jobs; both took part.
    assert_eq!(
        psql(&queue, "SELECT count(*) FROM videos WHERE attempts <> 1"),
        "0"
    );
    assert_eq!(
        psql(&queue, "SELECT count(*) FROM blobs WHERE kind = 'video'"),
        JOBS.to_string()
    );
    let (by_a, by_b) = (clips_completed(&a), clips_completed(&b));
    assert_eq!(by_a + by_b, JOBS, "a completed {by_a}, b {by_b}");
    assert!(by_a > 0 && by_b > 0, "a completed {by_a}, b {by_b}");
    let mut completions: HashMap<String, usize> = HashMap::new();
    for log in [a.log(), b.log()] {
        for line in log.lines().filter(|l| l.contains(": completed video_")) {
            let id = line.rsplit(' ').next().unwrap().to_string();
            *completions.entry(id).or_default() += 1;
        }
    }
    assert_eq!(completions.len(), JOBS);
    assert!(completions.values().all(|&n| n == 1), "{completions:?}");

    drop((a, b));
    psql(&url, &format!("DROP DATABASE {name} WITH (FORCE)"));
}
