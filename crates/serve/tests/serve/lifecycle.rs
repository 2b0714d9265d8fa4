//! Jobs survive: SIGKILL mid-job and restart, SIGTERM with requeue, expiry.

use std::time::Duration;

use crate::support::{finished, get, submit, wait_for, Server};

/// Waits until `id` is being denoised.
fn denoising(server: &Server, id: &str) {
    let url = server.url(&format!("/v1/videos/{id}"));
    wait_for("the job to be denoising", Duration::from_secs(60), || {
        let v = get(&url, None).json();
        assert_ne!(
            v["status"], "completed",
            "the job finished before it could be interrupted"
        );
        // The denoising steps cover 8-80 % of a clip without super-resolution.
        let progress = v["progress"].as_i64().unwrap_or(0);
        (v["status"] == "in_progress" && (9..70).contains(&progress)).then_some(())
    });
}

/// A job long enough to be caught running: 100 steps at 128x128.
fn long_job(server: &Server) -> String {
    submit(server, None, "128x128", r#", "steps": 100"#)
}

#[test]
fn a_server_killed_mid_job_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--max-attempts", "2"]);
    let victim = long_job(&server);
    let waiting: Vec<String> = (0..2).map(|_| submit(&server, None, "64x64", "")).collect();
    denoising(&server, &victim);
    server.kill();
    server.restart();
    for id in std::iter::once(&victim).chain(&waiting) {
        let v = finished(&server, None, id, Duration::from_secs(120));
        assert_eq!(v["status"], "completed", "{v}\n{}", server.log());
    }
    assert!(
        server.log().contains("1 interrupted job(s) requeued"),
        "{}",
        server.log()
    );
}

#[test]
fn a_job_interrupted_too_often_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--max-attempts", "1"]);
    let victim = long_job(&server);
    denoising(&server, &victim);
    server.kill();
    server.restart();
    let v = finished(&server, None, &victim, Duration::from_secs(30));
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "worker_lost", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped before it finished"),
        "{v}"
    );
    // The server goes on with new work.
    let next = submit(&server, None, "64x64", "");
    assert_eq!(
        finished(&server, None, &next, Duration::from_secs(60))["status"],
        "completed"
    );
}

#[test]
fn sigterm_requeues_the_running_job_and_a_restart_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--grace", "0"]);
    let id = long_job(&server);
    denoising(&server, &id);
    let status = server.terminate();
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(
        server
            .log()
            .contains(&format!("requeued {id} (shutting down)")),
        "{}",
        server.log()
    );
    server.restart();
    let v = finished(&server, None, &id, Duration::from_secs(120));
    assert_eq!(v["status"], "completed", "{v}");
}

#[test]
fn expired_videos_are_deleted_with_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--retention", "1"]);
    let id = submit(&server, None, "64x64", "");
    let v = finished(&server, None, &id, Duration::from_secs(60));
    assert_eq!(v["status"], "completed");
    assert_eq!(
        v["expires_at"].as_i64().unwrap() - v["completed_at"].as_i64().unwrap(),
        1
    );
    let clip = dir.path().join("clips").join(format!("{id}.mp4"));
    assert!(clip.exists());
    let url = server.url(&format!("/v1/videos/{id}"));
    let thumbnail = dir.path().join("clips").join(format!("{id}.jpg"));
    // The sweep deletes the row first and the files right after it (a GET never finds a row
    // without its files), so a 404 can come a moment before the files are gone; a file that
    // outlives its video times this out.
    wait_for(
        "the video, its clip and its thumbnail to be deleted",
        Duration::from_secs(20),
        || (get(&url, None).status == 404 && !clip.exists() && !thumbnail.exists()).then_some(()),
    );
}
