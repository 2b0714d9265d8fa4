//! Bad requests of every kind get the right status code and an OpenAI-shaped error naming the
//! problem, and the server keeps serving; the API's limits, ids and key checks.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::{delete, get, get_with, post, post_json, post_multipart, Part, Reply, Server};

const KEY: &str = "sk-battery";

fn check(what: &str, reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    assert_eq!(reply.error_code(), code, "{what}: {}", reply.text());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.len() > 20,
        "{what}: the message should say what is wrong: {message:?}"
    );
}

#[test]
fn bad_requests_get_the_right_status_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    // No worker: accepted jobs stay queued, so the queue limit can be reached.
    let server = Server::start(
        dir.path(),
        &[
            "--no-worker",
            "--api-key",
            KEY,
            "--max-upload-bytes",
            "200000",
            "--max-prompt-chars",
            "500",
            "--max-queue",
            "2",
        ],
    );
    let videos = server.url("/v1/videos");
    let k = Some(KEY);

    // Keys.
    check("no key", &get(&videos, None), 401, "invalid_api_key");
    check(
        "wrong key",
        &get(&videos, Some("sk-wrong")),
        401,
        "invalid_api_key",
    );
    // The refusal reaches a client that sends a body, which the server reads and discards.
    let body = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(150_000));
    check(
        "wrong key with a body",
        &post_json(&videos, Some("sk-wrong"), &body),
        401,
        "invalid_api_key",
    );
    let r = get(&videos, None);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let by_cookie = get_with(&videos, None, ("Cookie", &format!("cadence_api_key={KEY}")));
    assert_eq!(by_cookie.status, 200, "{}", by_cookie.text());
    assert_eq!(
        get(&server.url("/healthz"), None).status,
        200,
        "health needs no key"
    );

    // Bodies that are not a request.
    check(
        "malformed JSON",
        &post_json(&videos, k, r#"{"prompt": "#),
        400,
        "invalid_json",
    );
    check(
        "prompt of the wrong type",
        &post_json(&videos, k, r#"{"prompt": 5}"#),
        400,
        "invalid_json",
    );
    check(
        "seconds of the wrong type",
        &post_json(&videos, k, r#"{"prompt": "a", "seconds": [4]}"#),
        400,
        "invalid_json",
    );
    check(
        "no prompt",
        &post_json(&videos, k, r#"{"size": "64x64"}"#),
        400,
        "invalid_json",
    );
    check(
        "unknown field",
        &post_json(&videos, k, r#"{"prompt": "a", "colour": "red"}"#),
        400,
        "invalid_json",
    );
    check(
        "plain text",
        &post(&videos, k, "text/plain", b"a cat"),
        400,
        "invalid_content_type",
    );

    // Values out of range.
    let bad_values = [
        (r#"{"prompt": "   "}"#, "prompt"),
        (&format!(r#"{{"prompt": "{}"}}"#, "a".repeat(501)), "prompt"),
        (r#"{"prompt": "a", "seconds": "99"}"#, "seconds"),
        (r#"{"prompt": "a", "seconds": "1.5"}"#, "seconds"),
        (r#"{"prompt": "a", "size": "720x1280"}"#, "size"),
        (r#"{"prompt": "a", "size": "big"}"#, "size"),
        (r#"{"prompt": "a", "model": "sora-2"}"#, "model"),
        (r#"{"prompt": "a", "steps": 0}"#, "steps"),
        (r#"{"prompt": "a", "precision": "fp8"}"#, "precision"),
        (
            r#"{"prompt": "a", "negative_prompt": "blurry"}"#,
            "negative_prompt",
        ),
    ];
    for (body, param) in bad_values {
        let r = post_json(&videos, k, body);
        check(param, &r, 400, "invalid_value");
        assert_eq!(r.json()["error"]["param"], param, "{}", r.text());
    }
    let r = post_json(&videos, k, r#"{"prompt": "a", "size": "720x1280"}"#);
    assert!(
        r.text().contains("448x256"),
        "the 400 lists what can be made: {}",
        r.text()
    );
    let r = post_json(&videos, k, r#"{"prompt": "a", "model": "sora-2"}"#);
    assert!(r.text().contains("magihuman-distilled"), "{}", r.text());

    // Uploads.
    let huge = vec![7u8; 300_000];
    check(
        "huge JSON",
        &post_json(
            &videos,
            k,
            &format!(r#"{{"prompt": "{}"}}"#, "a".repeat(300_000)),
        ),
        413,
        "request_too_large",
    );
    // Far over the limit: the server reads and discards the body before it answers, so a
    // client that writes all of it still gets the 413 rather than a broken pipe.
    let far = vec![b' '; 20 << 20];
    check(
        "body far over the limit",
        &post(&videos, k, "application/json", &far),
        413,
        "request_too_large",
    );
    check(
        "huge upload",
        &post_multipart(
            &videos,
            k,
            &[
                Part::Text("prompt", "a"),
                Part::File("input_reference", &huge),
            ],
        ),
        413,
        "request_too_large",
    );
    check(
        "non-image upload",
        &post_multipart(
            &videos,
            k,
            &[
                Part::Text("prompt", "a"),
                Part::Text("size", "64x64"),
                Part::File("input_reference", b"GIF89a not really"),
            ],
        ),
        400,
        "invalid_value",
    );
    check(
        "non-audio upload",
        &post_multipart(
            &videos,
            k,
            &[
                Part::Text("prompt", "a"),
                Part::File("input_audio", b"RIFF....WAVEjunk"),
            ],
        ),
        400,
        "invalid_value",
    );
    check(
        "unknown multipart field",
        &post_multipart(
            &videos,
            k,
            &[Part::Text("prompt", "a"), Part::Text("quality", "hd")],
        ),
        400,
        "unknown_parameter",
    );
    check(
        "seed that is not a number",
        &post_multipart(
            &videos,
            k,
            &[Part::Text("prompt", "a"), Part::Text("seed", "-1")],
        ),
        400,
        "invalid_value",
    );
    check(
        "truncated multipart",
        &post(
            &videos,
            k,
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nabc",
        ),
        400,
        "invalid_body",
    );

    // Ids: never a path, unknown ones 404.
    let unknown = "video_0123456789abcdef0123456789abcdef";
    check(
        "unknown id",
        &get(&server.url(&format!("/v1/videos/{unknown}")), k),
        404,
        "not_found",
    );
    check(
        "delete unknown",
        &delete(&server.url(&format!("/v1/videos/{unknown}")), k),
        404,
        "not_found",
    );
    check(
        "content of unknown",
        &get(&server.url(&format!("/v1/videos/{unknown}/content")), k),
        404,
        "not_found",
    );
    check(
        "events of unknown",
        &get(&server.url(&format!("/v1/videos/{unknown}/events")), k),
        404,
        "not_found",
    );
    for bad in [
        "video_XYZ",
        "..%2F..%2Fetc%2Fpasswd",
        "video_0123456789abcdef0123456789ABCDEF",
        "%00",
    ] {
        check(
            bad,
            &get(&server.url(&format!("/v1/videos/{bad}")), k),
            400,
            "invalid_id",
        );
    }
    check(
        "nested path",
        &get(&server.url("/v1/videos/a/b/c"), k),
        404,
        "not_found",
    );
    check(
        "wrong method",
        &post_json(&server.url(&format!("/v1/videos/{unknown}")), k, "{}"),
        405,
        "method_not_allowed",
    );

    // Lists.
    check(
        "limit 0",
        &get(&server.url("/v1/videos?limit=0"), k),
        400,
        "invalid_value",
    );
    check(
        "order",
        &get(&server.url("/v1/videos?order=sideways"), k),
        400,
        "invalid_value",
    );
    check(
        "after unknown",
        &get(&server.url(&format!("/v1/videos?after={unknown}")), k),
        400,
        "invalid_value",
    );
    check(
        "unknown query",
        &get(&server.url("/v1/videos?colour=red"), k),
        400,
        "invalid_query",
    );

    // A good request with an image, then the queue limit.
    let ok = post_multipart(
        &videos,
        k,
        &[
            Part::Text("prompt", "a"),
            Part::Text("size", "64x64"),
            Part::File("input_reference", &crate::support::png(80, 60)),
        ],
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("openai-poll-after-ms"), Some("500"));
    let queued = ok.json();
    assert_eq!(
        (queued["status"].as_str(), queued["size"].as_str()),
        (Some("queued"), Some("64x64"))
    );
    let id = queued["id"].as_str().unwrap().to_string();
    check(
        "content before completion",
        &get(&server.url(&format!("/v1/videos/{id}/content")), k),
        400,
        "video_not_ready",
    );
    check(
        "unknown content parameter",
        &get(
            &server.url(&format!("/v1/videos/{id}/content?format=webm")),
            k,
        ),
        400,
        "invalid_query",
    );
    check(
        "spritesheet",
        &get(
            &server.url(&format!("/v1/videos/{id}/content?variant=spritesheet")),
            k,
        ),
        400,
        "invalid_value",
    );
    assert_eq!(
        post_json(&videos, k, r#"{"prompt": "b", "size": "64x64"}"#).status,
        200
    );
    let full = post_json(&videos, k, r#"{"prompt": "c", "size": "64x64"}"#);
    check("queue full", &full, 429, "queue_full");
    assert_eq!(full.header("retry-after"), Some("10"));

    // Deleting a queued job frees its place and its upload.
    let r = delete(&server.url(&format!("/v1/videos/{id}")), k);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"id": id, "object": "video.deleted", "deleted": true})
    );
    assert!(!dir
        .path()
        .join("uploads")
        .join(format!("{id}.image"))
        .exists());
    assert_eq!(
        post_json(&videos, k, r#"{"prompt": "c", "size": "64x64"}"#).status,
        200
    );

    // A client that stops sending half-way does not stop the server.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(stream, "POST /v1/videos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"prom").unwrap();
    drop(stream);
    // A request line that is not HTTP.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");

    // Still serving.
    let list = get(&server.url("/v1/videos?limit=10&order=asc"), k);
    assert_eq!(list.status, 200);
    assert_eq!(
        list.json()["data"].as_array().unwrap().len(),
        2,
        "{}",
        list.text()
    );
    assert_eq!(get(&server.url("/readyz"), None).status, 200);
}
