//! Reading and removing videos: retrieve, list, delete, content (with HTTP ranges) and the
//! progress events.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::json;

use super::{check_id, unknown, video_response, ApiError, Shared, VideoObject};
use crate::store::{BlobKind, Status};

/// How often the events stream looks at its job (it reads the store, so it follows jobs that
/// run on any server of a fleet).
const EVENTS_POLL: Duration = Duration::from_millis(250);
/// Largest `limit` of a list.
const MAX_LIST: i64 = 100;

/// `GET /v1/videos/{id}`.
pub async fn retrieve(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let row = s.store.get(&id).await?.ok_or_else(|| unknown(&id))?;
    Ok(video_response(&row))
}

/// A 400 for a query string that does not parse; `takes` names the parameters.
fn query_error(e: &QueryRejection, takes: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        format!("{}; this endpoint takes {takes}", e.body_text()),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
    order: Option<String>,
}

/// `GET /v1/videos?after=&limit=&order=`: newest first unless `order=asc`.
pub async fn list(
    State(s): State<Shared>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| query_error(&e, "after, limit and order"))?;
    let limit = match &q.limit {
        None => 20,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIST).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_value",
                    format!("limit {l:?} is not a number from 1 to {MAX_LIST}"),
                )
            })?,
    };
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!("order {o:?} is neither \"asc\" nor \"desc\""),
            ))
        }
    };
    if let Some(after) = &q.after {
        check_id(after)?;
    }
    let (rows, has_more) = s
        .store
        .list(q.after.as_deref(), limit, ascending)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_value",
                format!(
                    "after: no video with id {}",
                    q.after.as_deref().unwrap_or_default()
                ),
            )
        })?;
    let data: Vec<VideoObject> = rows.iter().map(VideoObject::from).collect();
    Ok(Json(json!({
        "object": "list",
        "first_id": rows.first().map(|r| &r.video.id),
        "last_id": rows.last().map(|r| &r.video.id),
        "has_more": has_more,
        "data": data,
    }))
    .into_response())
}

/// `DELETE /v1/videos/{id}`: removes the video and its files; a running job stops within one
/// denoising step.
pub async fn delete(State(s): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    check_id(&id)?;
    if !s.store.delete(&id).await? {
        return Err(unknown(&id));
    }
    tracing::info!("deleted {id}");
    Ok(Json(json!({"id": id, "object": "video.deleted", "deleted": true})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentQuery {
    variant: Option<String>,
}

/// `GET /v1/videos/{id}/content?variant=video|thumbnail`, with single byte ranges.
pub async fn content(
    State(s): State<Shared>,
    Path(id): Path<String>,
    query: Result<Query<ContentQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let Query(q) = query.map_err(|e| query_error(&e, "variant"))?;
    let (kind, mime) = match q.variant.as_deref() {
        None | Some("video") => (BlobKind::Video, "video/mp4"),
        Some("thumbnail") => (BlobKind::Thumbnail, "image/jpeg"),
        Some(v) => {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!("variant {v:?} is not available; ask for video or thumbnail"),
            ))
        }
    };
    let row = s.store.get(&id).await?.ok_or_else(|| unknown(&id))?;
    if row.status != Status::Completed {
        return Err(ApiError::bad_request(
            "video_not_ready",
            format!(
                "video {id} is {}; its content exists once its status is completed",
                row.status.as_str()
            ),
        ));
    }
    let len = s
        .store
        .blob_len(&id, kind)
        .await?
        .ok_or_else(|| unknown(&id))?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| http_range_header::parse_range_header(v).and_then(|r| r.validate(len)));
    let (status, start, end) = match range {
        // A single satisfiable range.
        Some(Ok(ranges)) if ranges.len() == 1 => (
            StatusCode::PARTIAL_CONTENT,
            *ranges[0].start(),
            *ranges[0].end(),
        ),
        Some(Err(http_range_header::RangeUnsatisfiableError::Unsatisfiable)) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response());
        }
        // No range, several, or a malformed one (which a server may ignore): everything.
        _ => (StatusCode::OK, 0, len.saturating_sub(1)),
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    let bytes = s.store.read_range(&id, kind, start, count).await?;
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
            (header::CACHE_CONTROL, "private, max-age=3600".to_string()),
        ],
        Body::from(bytes),
    )
        .into_response();
    if status == StatusCode::PARTIAL_CONTENT {
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{len}")
                .parse()
                .expect("a Content-Range of digits is a valid header"),
        );
    }
    Ok(response)
}

/// Where an events stream is.
struct Watch {
    s: Shared,
    id: String,
    /// What was last sent: status, progress, stage, step.
    last: Option<(Status, i64, Option<String>, Option<i64>)>,
    first: bool,
    done: bool,
}

/// `GET /v1/videos/{id}/events`: `progress` events (status, percent, stage, step) as they
/// change, then one `done` event with the video object, or `gone` if it is deleted (not `error`, which
/// `EventSource` reserves for its own connection errors).
pub async fn events(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    check_id(&id)?;
    s.store.get(&id).await?.ok_or_else(|| unknown(&id))?;
    let watch = Watch {
        s,
        id,
        last: None,
        first: true,
        done: false,
    };
    let stream = futures_util::stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            if !w.first {
                let mut shutdown = w.s.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(EVENTS_POLL) => {}
                    // Ends the stream, so a graceful shutdown is not held open by it.
                    _ = shutdown.wait_for(|stopping| *stopping) => return None,
                }
            }
            w.first = false;
            let row = match w.s.store.get(&w.id).await {
                Ok(row) => row,
                Err(e) => {
                    tracing::warn!("events of {}: {e}", w.id);
                    continue;
                }
            };
            let Some(row) = row else {
                w.done = true;
                let data = json!({"message": format!("video {} was deleted", w.id)});
                return Some((Ok(Event::default().event("gone").data(data.to_string())), w));
            };
            let key = (row.status, row.progress, row.stage.clone(), row.step);
            if w.last.as_ref() == Some(&key) {
                continue;
            }
            w.last = Some(key);
            let event = if matches!(row.status, Status::Completed | Status::Failed) {
                w.done = true;
                let object = serde_json::to_string(&VideoObject::from(&row)).unwrap_or_default();
                Event::default().event("done").data(object)
            } else {
                let data = json!({
                    "id": row.video.id,
                    "status": row.status.as_str(),
                    "progress": row.progress,
                    "stage": row.stage,
                    "step": row.step,
                    "steps": row.steps,
                });
                Event::default().event("progress").data(data.to_string())
            };
            return Some((Ok(event), w));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
