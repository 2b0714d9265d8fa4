//! Test support: servers as separate processes (this test binary run again as its
//! `child_server` test, so SIGKILL and fleets are real), a small HTTP client, and the rule for
//! tests that need an outside tool.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Carries the child server's flags (one per line).
pub const CHILD_ENV: &str = "CADENCE_SERVE_TEST_CHILD";
/// Set to 1 (CI does) to make tests whose tool is missing fail instead of skipping.
pub const REQUIRE_ENV: &str = "CADENCE_SERVE_REQUIRE_TOOLS";

/// Whether a test's outside tool is there. When it is not: a failure under
/// `CADENCE_SERVE_REQUIRE_TOOLS=1`, else `false` and a printed reason.
pub fn tool(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{what} is missing, and {REQUIRE_ENV}=1 requires it (.ci/run installs it)");
    }
    eprintln!("skipped: {what} is missing (set {REQUIRE_ENV}=1 to make this a failure)");
    false
}

/// Whether `program args...` runs and exits 0.
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `cadence serve --demo` process.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    args: Vec<String>,
}

impl Server {
    /// Starts a server on a free port and waits until it is ready.
    pub fn start(data_dir: &Path, args: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            data_dir: data_dir.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        server.restart();
        server
    }

    /// Starts the process again (same port, data and flags) and waits until it is ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        let mut flags = vec![
            "--demo".to_string(),
            "--bind".into(),
            format!("127.0.0.1:{}", self.port),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
        ];
        flags.extend(self.args.iter().cloned());
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_server",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, flags.join("\n"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let ready = self.url("/readyz");
        wait_for("the server to be ready", Duration::from_secs(60), || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the server exited ({status}):\n{}", self.log());
            }
            // Refused until the server listens.
            let status = request("GET", &ready, None).call().map(|r| r.status());
            matches!(status, Ok(200)).then_some(())
        });
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.join(format!("server-{}.log", self.port))
    }

    /// What the server printed, across its restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL: the process dies at once, mid-job or not.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is not running");
        assert!(runs("kill", &["-TERM", &child.id().to_string()]));
        wait_for("the server to exit", Duration::from_secs(60), || {
            child.try_wait().unwrap()
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error.code` of an OpenAI-shaped error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("HTTP request failed: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = response.header(&n).unwrap_or_default().to_string();
            (n, v)
        })
        .collect();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
    Reply {
        status,
        body,
        headers,
    }
}

fn request(method: &str, url: &str, key: Option<&str>) -> ureq::Request {
    let r = agent().request(method, url);
    match key {
        Some(k) => r.set("Authorization", &format!("Bearer {k}")),
        None => r,
    }
}

pub fn get(url: &str, key: Option<&str>) -> Reply {
    finish(request("GET", url, key).call())
}

pub fn get_with(url: &str, key: Option<&str>, header: (&str, &str)) -> Reply {
    finish(request("GET", url, key).set(header.0, header.1).call())
}

pub fn delete(url: &str, key: Option<&str>) -> Reply {
    finish(request("DELETE", url, key).call())
}

pub fn post(url: &str, key: Option<&str>, content_type: &str, body: &[u8]) -> Reply {
    finish(
        request("POST", url, key)
            .set("Content-Type", content_type)
            .send_bytes(body),
    )
}

pub fn post_json(url: &str, key: Option<&str>, json: &str) -> Reply {
    post(url, key, "application/json", json.as_bytes())
}

/// One part of a multipart body: a text field, or a file.
pub enum Part<'a> {
    Text(&'a str, &'a str),
    File(&'a str, &'a [u8]),
}

pub fn post_multipart(url: &str, key: Option<&str>, parts: &[Part]) -> Reply {
    const BOUNDARY: &str = "cadence-test-boundary-7b3f";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            Part::File(name, bytes) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\n\
                         Content-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
                body.extend_from_slice(b"\r\n");
            }
        }
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    post(
        url,
        key,
        &format!("multipart/form-data; boundary={BOUNDARY}"),
        &body,
    )
}

/// Queues a 1 s demo clip of `size` with `extra` JSON fields (`, "steps": 2`); returns its id.
pub fn submit(server: &Server, key: Option<&str>, size: &str, extra: &str) -> String {
    let body = format!(r#"{{"prompt": "a test clip", "size": "{size}", "seconds": "1"{extra}}}"#);
    let reply = post_json(&server.url("/v1/videos"), key, &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["id"].as_str().unwrap().to_string()
}

/// Polls a video until it is completed or failed; returns its object.
pub fn finished(
    server: &Server,
    key: Option<&str>,
    id: &str,
    timeout: Duration,
) -> serde_json::Value {
    let url = server.url(&format!("/v1/videos/{id}"));
    wait_for(&format!("{id} to finish"), timeout, || {
        let v = get(&url, key).json();
        matches!(v["status"].as_str(), Some("completed" | "failed")).then_some(v)
    })
}

/// A small PNG (a gradient) as a first frame.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}
