//! `POST /v1/videos` and `POST /v1/videos/sync`: a request as JSON or multipart (the SDK sends
//! multipart, with the image as `input_reference`), checked, then queued.

use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{video_response, ApiError, Shared};
use crate::generator::{check_uploads, Requested, Uploads};
use crate::store::{now_ms, BlobKind, Status, Video, VideoRow};

/// How often `POST /v1/videos/sync` looks at its job.
const SYNC_POLL: Duration = Duration::from_millis(200);
/// Seconds a client told the queue is full should wait.
const QUEUE_FULL_RETRY_SECONDS: u64 = 10;

/// The multipart fields and JSON keys a request may carry.
const FIELDS: &str = "prompt, model, seconds, size, input_reference, input_audio, seed, steps, \
                      negative_prompt, precision";

/// `POST /v1/videos`: queues the clip and answers with its video object.
pub async fn create(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let row = submit(&s, req).await?;
    Ok(video_response(&row))
}

/// `POST /v1/videos/sync`: queues the clip, waits for it and answers with the MP4.
pub async fn sync(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let id = submit(&s, req).await?.video.id;
    let mut shutdown = s.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SYNC_POLL) => {}
            // A graceful shutdown must not wait for a job that will be requeued.
            _ = shutdown.wait_for(|stopping| *stopping) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    format!("the server is shutting down; video {id} stays queued: fetch it \
                             later with GET /v1/videos/{id}"),
                ));
            }
        }
        let row = s.store.get(&id).await?.ok_or_else(|| {
            ApiError::not_found(format!("video {id} was deleted before it finished"))
        })?;
        match row.status {
            Status::Completed => break,
            Status::Failed => return Err(failure(&row)),
            Status::Queued | Status::InProgress => {}
        }
    }
    let len = s
        .store
        .blob_len(&id, BlobKind::Video)
        .await?
        .ok_or_else(|| super::unknown(&id))?;
    let bytes = s.store.read_range(&id, BlobKind::Video, 0, len).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4".to_string()),
            (header::HeaderName::from_static("x-video-id"), id),
        ],
        Body::from(bytes),
    )
        .into_response())
}

/// The error answer of a failed job: the client's fault (400) or the server's (500).
fn failure(row: &VideoRow) -> ApiError {
    let message = format!(
        "video {} failed: {}",
        row.video.id,
        row.error_message.as_deref().unwrap_or("no reason recorded")
    );
    match row.error_code.as_deref() {
        Some("invalid_input") => ApiError::bad_request("invalid_input", message),
        _ => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generation_failed",
            message,
        ),
    }
}

/// Parses, checks and queues a request; returns the queued row.
async fn submit(s: &Shared, req: Request) -> Result<VideoRow, ApiError> {
    let (requested, uploads) = parse(s, req).await?;
    let job = s.catalog.resolve(&requested, random_seed()?)?;
    if uploads.image.is_some() || uploads.audio.is_some() {
        let (j, u) = (job.clone(), uploads.clone());
        tokio::task::spawn_blocking(move || check_uploads(&j, &u))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
    }
    let depth = s.store.queue_depth().await?;
    if depth >= s.limits.max_queue as i64 {
        return Err(ApiError {
            retry_after: Some(QUEUE_FULL_RETRY_SECONDS),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!(
                    "the queue holds {depth} jobs, this server's limit (--max-queue {}); retry \
                     in {QUEUE_FULL_RETRY_SECONDS} s",
                    s.limits.max_queue
                ),
            )
        });
    }
    let video = Video {
        id: new_id()?,
        model: job.model.clone(),
        prompt: job.prompt.clone(),
        seconds: job.seconds.to_string(),
        size: format!("{}x{}", job.width, job.height),
        input: serde_json::to_string(&job).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?,
        created_at: now_ms(),
    };
    s.store.create(&video, &uploads).await?;
    s.wake.notify_waiters();
    tracing::info!(
        "queued {} ({} {}, {} s)",
        video.id,
        video.model,
        video.size,
        video.seconds
    );
    s.store
        .get(&video.id)
        .await?
        .ok_or_else(|| super::unknown(&video.id))
}

/// The JSON form of a request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateJson {
    prompt: String,
    model: Option<String>,
    seconds: Option<Seconds>,
    size: Option<String>,
    seed: Option<u64>,
    steps: Option<usize>,
    negative_prompt: Option<String>,
    precision: Option<String>,
    /// Only as a multipart file; named here to say so.
    input_reference: Option<serde_json::Value>,
}

/// `seconds` as the API documents it (a string) or as a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Seconds {
    Text(String),
    Number(u64),
}

async fn parse(s: &Shared, req: Request) -> Result<(Requested, Uploads), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let Json(body) = Json::<CreateJson>::from_request(req, &())
            .await
            .map_err(|e| json_rejection(e, s.limits.max_upload_bytes))?;
        if body.input_reference.is_some() {
            return Err(ApiError {
                param: Some("input_reference"),
                ..ApiError::bad_request(
                    "invalid_value",
                    "input_reference is taken as a file only: send the request as \
                     multipart/form-data with the image in the input_reference field",
                )
            });
        }
        let requested = Requested {
            prompt: body.prompt,
            model: body.model,
            seconds: body.seconds.map(|s| match s {
                Seconds::Text(t) => t,
                Seconds::Number(n) => n.to_string(),
            }),
            size: body.size,
            seed: body.seed,
            steps: body.steps,
            negative_prompt: body.negative_prompt,
            precision: body.precision,
            image: false,
            audio: false,
        };
        Ok((requested, Uploads::default()))
    } else if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
        parse_multipart(multipart, s.limits.max_upload_bytes).await
    } else {
        Err(ApiError::bad_request(
            "invalid_content_type",
            format!(
                "Content-Type {content_type:?} is not accepted; send application/json or \
                 multipart/form-data"
            ),
        ))
    }
}

async fn parse_multipart(
    mut multipart: Multipart,
    limit: usize,
) -> Result<(Requested, Uploads), ApiError> {
    let mut text: Vec<(String, String)> = Vec::new();
    let mut uploads = Uploads::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|e| multipart_error(e, limit))?;
        let slot = match name.as_str() {
            "input_reference" => Some(&mut uploads.image),
            "input_audio" => Some(&mut uploads.audio),
            _ => None,
        };
        if let Some(slot) = slot {
            if bytes.is_empty() {
                return Err(field_error(&name, format!("{name} is an empty file")));
            }
            if slot.replace(bytes.to_vec()).is_some() {
                return Err(field_error(
                    &name,
                    format!("{name} was sent twice; send it once"),
                ));
            }
            continue;
        }
        if !FIELDS.split(", ").any(|f| f == name) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!(
                    "unknown field {:?}; the fields are {FIELDS}",
                    name.chars().take(80).collect::<String>()
                ),
            ));
        }
        if text.iter().any(|(n, _)| *n == name) {
            return Err(field_error(
                &name,
                format!("{name} was sent twice; send it once"),
            ));
        }
        let value = String::from_utf8(bytes.to_vec())
            .map_err(|_| field_error(&name, format!("{name} is not UTF-8 text")))?;
        text.push((name, value));
    }
    let take = |name: &str| text.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let number = |name: &'static str| -> Result<Option<u64>, ApiError> {
        take(name)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| field_error(name, format!("{name} {v:?} is not a whole number")))
            })
            .transpose()
    };
    let requested = Requested {
        prompt: take("prompt").ok_or_else(|| {
            field_error("prompt", "prompt is missing; describe the clip to generate")
        })?,
        model: take("model"),
        seconds: take("seconds"),
        size: take("size"),
        seed: number("seed")?,
        steps: number("steps")?.map(|n| n.min(usize::MAX as u64) as usize),
        negative_prompt: take("negative_prompt"),
        precision: take("precision"),
        image: uploads.image.is_some(),
        audio: uploads.audio.is_some(),
    };
    Ok((requested, uploads))
}

/// A 400 about one field.
fn field_error(param: &str, message: impl Into<String>) -> ApiError {
    let param = FIELDS.split(", ").find(|f| *f == param);
    ApiError {
        param,
        ..ApiError::bad_request("invalid_value", message)
    }
}

/// A body that could not be read: 413 when it is over the limit, else 400 with `code` and
/// `message`.
fn unreadable(status: StatusCode, code: &'static str, message: String, limit: usize) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::too_large(limit);
    }
    ApiError::bad_request(code, message)
}

fn json_rejection(e: JsonRejection, limit: usize) -> ApiError {
    let message = format!("{}; the fields are {FIELDS}", e.body_text());
    unreadable(e.status(), "invalid_json", message, limit)
}

fn multipart_error(e: MultipartError, limit: usize) -> ApiError {
    let message = format!("the multipart body is malformed: {}", e.body_text());
    unreadable(e.status(), "invalid_body", message, limit)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the operating system's random source failed: {e}"),
        )
    })?;
    Ok(bytes)
}

/// `video_` and 32 random hex digits.
fn new_id() -> Result<String, ApiError> {
    let hex: String = random_bytes::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("video_{hex}"))
}

/// A seed for requests that name none, short enough to type back.
fn random_seed() -> Result<u64, ApiError> {
    Ok(u64::from_le_bytes(random_bytes::<8>()?) % 1_000_000_000)
}
