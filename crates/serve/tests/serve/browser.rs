//! The built-in page in a real browser: headless Chromium, driven through chromedriver's
//! WebDriver API, submits a prompt, sees the progress bar move and plays (and seeks) the clip.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{free_port, get, post_json, runs, tool, wait_for, Server};

/// WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session.
struct Browser {
    driver: Child,
    session: String,
    base: String,
}

impl Browser {
    fn start(profile: &std::path::Path) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--autoplay-policy=no-user-gesture-required",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let reply = post_json(&format!("{base}/session"), None, &capabilities.to_string());
        assert_eq!(reply.status, 200, "no browser session: {}", reply.text());
        let session = reply.json()["value"]["sessionId"]
            .as_str()
            .unwrap()
            .to_string();
        Self {
            driver,
            session,
            base,
        }
    }

    fn command(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let reply = post_json(&url, None, &body.to_string());
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        reply.json()["value"].clone()
    }

    fn open(&self, url: &str) {
        self.command("/url", json!({ "url": url }));
    }

    fn element(&self, css: &str) -> String {
        let found = self.command("/element", json!({"using": "css selector", "value": css}));
        found[ELEMENT].as_str().unwrap().to_string()
    }

    /// Replaces an input's value by typing.
    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.command(&format!("/element/{e}/clear"), json!({}));
        self.command(&format!("/element/{e}/value"), json!({ "text": text }));
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.command(&format!("/element/{e}/click"), json!({}));
    }

    fn script(&self, body: &str) -> Value {
        self.command("/execute/sync", json!({"script": body, "args": []}))
    }

    fn script_async(&self, body: &str) -> Value {
        self.command("/execute/async", json!({"script": body, "args": []}))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = ureq::delete(&url).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_page_submits_a_prompt_shows_progress_and_plays_the_clip() {
    if !tool(
        "Chromium and chromedriver (Debian: chromium chromium-driver)",
        runs("chromium", &["--version"]) && runs("chromedriver", &["--version"]),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--api-key", "sk-page"]);
    let browser = Browser::start(&dir.path().join("profile"));
    browser.open(&server.url("/"));
    browser.type_into(
        "#prompt",
        "A presenter smiles and says: hello from the page.",
    );
    browser.type_into("#size", "64x64");
    browser.type_into("#seconds", "1");
    browser.type_into("#steps", "60");
    browser.type_into("#key", "sk-page");
    browser.click("#submit");

    // The progress bar, watched until the player has the clip.
    let mut seen: Vec<f64> = Vec::new();
    wait_for(
        "the player to load the clip",
        Duration::from_secs(120),
        || {
            let state = browser.script(
                "const p = document.getElementById('player');
             return [document.getElementById('progress').value, p.readyState,
                     document.getElementById('error').textContent];",
            );
            assert_eq!(state[2], "", "the page shows an error");
            let value = state[0].as_f64().unwrap();
            if seen.last() != Some(&value) {
                seen.push(value);
            }
            (state[1].as_i64().unwrap() >= 2).then_some(())
        },
    );
    let moving: Vec<f64> = seen
        .iter()
        .copied()
        .filter(|v| *v > 0.0 && *v < 100.0)
        .collect();
    assert!(
        moving.len() >= 2,
        "the bar should pass through several values: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the bar went backwards: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&100.0), "{seen:?}");

    // It plays, and seeks (the server answers byte ranges).
    let played = browser.script_async(
        "const done = arguments[arguments.length - 1];
         const v = document.getElementById('player');
         v.muted = true;
         v.play().then(() => setTimeout(() => {
             v.pause();
             const t = v.currentTime;
             v.addEventListener('seeked', () =>
                 done([t, v.videoWidth, v.duration, v.currentTime, v.error ? v.error.code : 0]),
                 { once: true });
             v.currentTime = 0.5;
         }, 400)).catch((e) => done(String(e)));",
    );
    let played = played
        .as_array()
        .unwrap_or_else(|| panic!("playback failed: {played}"));
    assert!(
        played[0].as_f64().unwrap() > 0.0,
        "playback did not advance: {played:?}"
    );
    assert_eq!(played[1], 64, "{played:?}");
    assert!(
        (played[2].as_f64().unwrap() - 1.0).abs() < 0.2,
        "duration: {played:?}"
    );
    assert!(
        (played[3].as_f64().unwrap() - 0.5).abs() < 0.1,
        "seek: {played:?}"
    );
    assert_eq!(played[4], 0, "media error: {played:?}");

    // The clip is in the list of past clips, with its thumbnail.
    let ids = get(&server.url("/v1/videos"), Some("sk-page")).json();
    let id = ids["data"][0]["id"].as_str().unwrap().to_string();
    let listed = wait_for("the list to show the clip", Duration::from_secs(10), || {
        let v = browser.script(&format!(
            "const li = document.querySelector('#clips li[data-id=\"{id}\"]');
             const img = li && li.querySelector('img');
             return li ? [li.textContent, img.complete && img.naturalWidth] : null;"
        ));
        (!v.is_null()).then_some(v)
    });
    assert!(
        listed[0].as_str().unwrap().contains("completed"),
        "{listed}"
    );
    assert_eq!(listed[1], 64, "thumbnail: {listed}");
}
