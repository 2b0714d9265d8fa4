//! The durable job store: one `videos` table that is both the API's video objects and the
//! queue, on an SQLite file or PostgreSQL, through sqlx's `any` driver so each query is written
//! once (`$N` placeholders work on both).
//!
//! * Claiming: one `UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING`; PostgreSQL adds
//!   `FOR UPDATE SKIP LOCKED` so concurrent workers never take the same row; SQLite serialises
//!   writers, which makes the statement atomic there.
//! * Ownership: a claimed row names its server (`owner`, host:port) and worker (device) and
//!   carries a lease that heartbeats extend. Every later write of the worker is fenced on
//!   those, so a worker that lost its lease cannot overwrite the row's new state.
//! * Recovery: rows held by this server's own name are from its previous, dead life (a live
//!   one would hold the port); rows whose lease expired belong to a vanished server. Both
//!   are requeued, or failed with a reason after `--max-attempts`.
//! * Blobs (uploads, clip, thumbnail): files under `--data-dir` with SQLite; in the database
//!   with PostgreSQL, so every server of a fleet reads every clip without a shared file
//!   system and deleting a video deletes its blobs in the same statement (a foreign key with
//!   `ON DELETE CASCADE`). Stored uncompressed (`STORAGE EXTERNAL`: MP4 does not compress),
//!   so a byte range is read without reading the whole clip.

use std::path::{Path, PathBuf};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::generator::{Generated, Update, Uploads};

/// Store failures; the message names the database or file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch: every time in the store. Leases compare times written
/// by different machines, so a fleet's clocks must agree (NTP) to well under `--lease`.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A video's state, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    InProgress,
    Completed,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Queued,
        Status::InProgress,
        Status::Completed,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| StoreError::Db(sqlx::Error::Decode(format!("status {s:?}").into())))
    }
}

/// One row of `videos`: the video and its state.
#[derive(Debug, Clone)]
pub struct VideoRow {
    pub video: Video,
    pub status: Status,
    pub progress: i64,
    pub stage: Option<String>,
    pub step: Option<i64>,
    pub steps: Option<i64>,
    pub completed_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
}

const COLUMNS: &str = "id, status, progress, stage, step, steps, model, prompt, seconds, size, \
    input, created_at, completed_at, expires_at, error_code, error_message, attempts";

impl VideoRow {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            video: Video {
                id: row.try_get("id")?,
                model: row.try_get("model")?,
                prompt: row.try_get("prompt")?,
                seconds: row.try_get("seconds")?,
                size: row.try_get("size")?,
                input: row.try_get("input")?,
                created_at: row.try_get("created_at")?,
            },
            status: Status::parse(&row.try_get::<String, _>("status")?)?,
            progress: row.try_get("progress")?,
            stage: row.try_get("stage")?,
            step: row.try_get("step")?,
            steps: row.try_get("steps")?,
            completed_at: row.try_get("completed_at")?,
            expires_at: row.try_get("expires_at")?,
            error_code: row.try_get("error_code")?,
            error_message: row.try_get("error_message")?,
            attempts: row.try_get("attempts")?,
        })
    }
}

/// A video as it was asked for (size and seconds become what was made once it completes).
#[derive(Debug, Clone)]
pub struct Video {
    pub id: String,
    pub model: String,
    pub prompt: String,
    pub seconds: String,
    pub size: String,
    /// The [`crate::generator::JobInput`] as JSON.
    pub input: String,
    /// Milliseconds since the Unix epoch, as every time here.
    pub created_at: i64,
}

/// Who holds a claimed job: the server (host:port) and its worker (device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub owner: String,
    pub worker: String,
}

/// The stored files of a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Image,
    Audio,
    Video,
    Thumbnail,
}

impl BlobKind {
    fn name(self) -> &'static str {
        match self {
            BlobKind::Image => "image",
            BlobKind::Audio => "audio",
            BlobKind::Video => "video",
            BlobKind::Thumbnail => "thumbnail",
        }
    }

    /// The file's place under the data folder (ids are checked by the caller).
    fn file(self, root: &Path, id: &str) -> PathBuf {
        match self {
            BlobKind::Image => root.join("uploads").join(format!("{id}.image")),
            BlobKind::Audio => root.join("uploads").join(format!("{id}.audio")),
            BlobKind::Video => root.join("clips").join(format!("{id}.mp4")),
            BlobKind::Thumbnail => root.join("clips").join(format!("{id}.jpg")),
        }
    }
}

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The job database and the blobs.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// `--data-dir`: the SQLite file, blob files (SQLite) and scratch files.
    data_dir: PathBuf,
}

const VIDEOS_TABLE: &str = "CREATE TABLE IF NOT EXISTS videos (
    seq {SEQ},
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    stage TEXT,
    step BIGINT,
    steps BIGINT,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    seconds TEXT NOT NULL,
    size TEXT NOT NULL,
    input TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    expires_at BIGINT,
    error_code TEXT,
    error_message TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    owner TEXT,
    worker TEXT,
    lease_until BIGINT
)";
const STATUS_INDEX: &str = "CREATE INDEX IF NOT EXISTS videos_status ON videos (status, seq)";
const BLOBS_TABLE: &str = "CREATE TABLE IF NOT EXISTS blobs (
    video_id TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (video_id, kind)
)";

/// Resets a row to waiting (the columns a claim sets).
const UNCLAIM: &str = "status = 'queued', owner = NULL, worker = NULL, lease_until = NULL, \
    progress = 0, stage = NULL, step = NULL, steps = NULL";

/// Matches the row a claimant holds.
const HELD: &str = "id = $1 AND owner = $2 AND worker = $3 AND status = 'in_progress'";

impl Store {
    /// Opens (creating when needed) the store: PostgreSQL at `queue`, else an SQLite file in
    /// `data_dir`.
    pub async fn open(queue: Option<&str>, data_dir: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        for sub in ["", "clips", "uploads", "tmp"] {
            let dir = data_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let data_dir = data_dir.canonicalize().map_err(io(data_dir))?;
        let (url, backend) = match queue {
            Some(url) => (url.to_string(), Backend::Postgres),
            None => (sqlite_url(&data_dir.join("jobs.db")), Backend::Sqlite),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await?;
        let store = Self {
            pool,
            backend,
            data_dir,
        };
        store.create_schema().await?;
        Ok(store)
    }

    async fn create_schema(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        match self.backend {
            Backend::Sqlite => {
                let table = VIDEOS_TABLE.replace("{SEQ}", "INTEGER PRIMARY KEY AUTOINCREMENT");
                sqlx::query(&table).execute(&mut *tx).await?;
            }
            Backend::Postgres => {
                // Servers of a fleet may start together; one creates the schema at a time.
                sqlx::query("SELECT pg_advisory_xact_lock(7745033)")
                    .execute(&mut *tx)
                    .await?;
                let table = VIDEOS_TABLE.replace("{SEQ}", "BIGSERIAL PRIMARY KEY");
                sqlx::query(&table).execute(&mut *tx).await?;
                sqlx::query(BLOBS_TABLE).execute(&mut *tx).await?;
                sqlx::query("ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL")
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(STATUS_INDEX).execute(&mut *tx).await?;
        tx.commit().await?;
        if self.backend == Backend::Sqlite {
            // Readers (the API) then never wait for the writer (a worker's progress).
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// A folder for files being written (same file system as the clips).
    pub fn scratch_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// Queues a video with its uploads; the uploads are in place before a worker can see it.
    pub async fn create(&self, video: &Video, uploads: &Uploads) -> Result<()> {
        let blobs = [
            (BlobKind::Image, &uploads.image),
            (BlobKind::Audio, &uploads.audio),
        ];
        let insert = sqlx::query(
            "INSERT INTO videos (id, status, model, prompt, seconds, size, input, created_at) \
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7)",
        )
        .bind(&video.id)
        .bind(&video.model)
        .bind(&video.prompt)
        .bind(&video.seconds)
        .bind(&video.size)
        .bind(&video.input)
        .bind(video.created_at);
        match self.backend {
            Backend::Sqlite => {
                for (kind, bytes) in blobs {
                    if let Some(bytes) = bytes {
                        let path = kind.file(&self.data_dir, &video.id);
                        write_atomic(&path, bytes, &self.scratch_dir()).await?;
                    }
                }
                if let Err(e) = insert.execute(&self.pool).await {
                    self.remove_files(&video.id).await;
                    return Err(e.into());
                }
            }
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                insert.execute(&mut *tx).await?;
                for (kind, bytes) in blobs {
                    if let Some(bytes) = bytes {
                        sqlx::query("INSERT INTO blobs (video_id, kind, data) VALUES ($1, $2, $3)")
                            .bind(&video.id)
                            .bind(kind.name())
                            .bind(bytes.as_slice())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Option<VideoRow>> {
        let sql = format!("SELECT {COLUMNS} FROM videos WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(VideoRow::from_row).transpose()
    }

    /// Up to `limit` videos after the one with id `after` (in `ascending` creation order, or
    /// the reverse), and whether more follow; `None` when `after` is unknown.
    pub async fn list(
        &self,
        after: Option<&str>,
        limit: i64,
        ascending: bool,
    ) -> Result<Option<(Vec<VideoRow>, bool)>> {
        let cursor = match after {
            None if ascending => 0,
            None => i64::MAX,
            Some(id) => {
                let seq = sqlx::query("SELECT seq FROM videos WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                match seq {
                    Some(row) => row.try_get::<i64, _>("seq")?,
                    None => return Ok(None),
                }
            }
        };
        let (cmp, order) = if ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM videos WHERE seq {cmp} $1 ORDER BY seq {order} LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(cursor)
            .bind(limit + 1)
            .fetch_all(&self.pool)
            .await?;
        let mut videos = rows
            .iter()
            .map(VideoRow::from_row)
            .collect::<Result<Vec<_>>>()?;
        let more = videos.len() as i64 > limit;
        videos.truncate(limit as usize);
        Ok(Some((videos, more)))
    }

    /// Deletes a video and its blobs; a worker running it notices at its next write and
    /// stops. Returns whether it existed.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM videos WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        self.remove_files(id).await;
        Ok(true)
    }

    /// Videos by status.
    pub async fn counts(&self) -> Result<Vec<(Status, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM videos GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<(Status, i64)> = Status::ALL.iter().map(|s| (*s, 0)).collect();
        for row in rows {
            let status = Status::parse(&row.try_get::<String, _>("status")?)?;
            let n: i64 = row.try_get("n")?;
            if let Some(slot) = out.iter_mut().find(|(s, _)| *s == status) {
                slot.1 = n;
            }
        }
        Ok(out)
    }

    /// Jobs waiting to run.
    pub async fn queue_depth(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM videos WHERE status = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Takes the oldest queued job of one of `models`, holding it until `lease_until`. The
    /// outer `status` test makes a claim that raced another (and waited for its row lock)
    /// take nothing rather than the same row.
    pub async fn claim(
        &self,
        who: &Claimant,
        models: &[String],
        now: i64,
        lease_until: i64,
    ) -> Result<Option<VideoRow>> {
        let placeholders: Vec<String> = (0..models.len()).map(|i| format!("${}", i + 5)).collect();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE videos SET status = 'in_progress', owner = $1, worker = $2, lease_until = $3, \
             started_at = $4, attempts = attempts + 1, progress = 0, stage = NULL, step = NULL, \
             steps = NULL \
             WHERE id = (SELECT id FROM videos WHERE status = 'queued' AND model IN ({}) \
             ORDER BY seq LIMIT 1{lock}) AND status = 'queued' RETURNING {COLUMNS}",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(&who.owner)
            .bind(&who.worker)
            .bind(lease_until)
            .bind(now);
        for m in models {
            query = query.bind(m);
        }
        let row = query.fetch_optional(&self.pool).await?;
        row.as_ref().map(VideoRow::from_row).transpose()
    }

    /// The uploads of a video.
    pub async fn uploads(&self, id: &str) -> Result<Uploads> {
        Ok(Uploads {
            image: self.read_all(id, BlobKind::Image).await?,
            audio: self.read_all(id, BlobKind::Audio).await?,
        })
    }

    /// Records progress and extends the lease; `false` when the job is no longer this
    /// worker's (deleted, or taken over after a lost lease).
    pub async fn progress(
        &self,
        id: &str,
        who: &Claimant,
        update: &Update,
        lease_until: i64,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE videos SET progress = $4, stage = $5, step = $6, steps = $7, \
             lease_until = $8 WHERE {HELD}"
        );
        let done = sqlx::query(&sql)
            .bind(id)
            .bind(&who.owner)
            .bind(&who.worker)
            .bind(i64::from(update.percent))
            .bind(update.stage)
            .bind(update.step as i64)
            .bind(update.steps.map(|s| s as i64))
            .bind(lease_until)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends the lease; `false` when the job is no longer this worker's.
    pub async fn heartbeat(&self, id: &str, who: &Claimant, lease_until: i64) -> Result<bool> {
        let sql = format!("UPDATE videos SET lease_until = $4 WHERE {HELD}");
        let done = sqlx::query(&sql)
            .bind(id)
            .bind(&who.owner)
            .bind(&who.worker)
            .bind(lease_until)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Where a worker writes the clip of `id` (moved into place by [`Store::complete`]).
    pub fn clip_path(&self, id: &str) -> PathBuf {
        match self.backend {
            Backend::Sqlite => BlobKind::Video.file(&self.data_dir, id),
            Backend::Postgres => self.scratch_dir().join(format!("{id}.mp4")),
        }
    }

    /// Stores the clip (written at [`Store::clip_path`]) and its thumbnail and marks the job
    /// completed; `false` (and nothing kept) when the job is no longer this worker's.
    pub async fn complete(
        &self,
        id: &str,
        who: &Claimant,
        made: &Generated,
        now: i64,
        expires_at: i64,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE videos SET status = 'completed', progress = 100, stage = NULL, step = NULL, \
             steps = NULL, completed_at = $4, expires_at = $5, size = $6, seconds = $7, \
             lease_until = NULL WHERE {HELD}"
        );
        let update = sqlx::query(&sql)
            .bind(id)
            .bind(&who.owner)
            .bind(&who.worker)
            .bind(now)
            .bind(expires_at)
            .bind(format!("{}x{}", made.width, made.height))
            .bind(made.seconds.to_string());
        let clip = self.clip_path(id);
        let held = match self.backend {
            Backend::Sqlite => {
                let thumb = BlobKind::Thumbnail.file(&self.data_dir, id);
                write_atomic(&thumb, &made.thumbnail, &self.scratch_dir()).await?;
                let held = update.execute(&self.pool).await?.rows_affected() == 1;
                if !held {
                    self.remove_files(id).await;
                }
                held
            }
            Backend::Postgres => {
                let bytes = tokio::fs::read(&clip).await.map_err(io(&clip))?;
                let _ = tokio::fs::remove_file(&clip).await;
                let mut tx = self.pool.begin().await?;
                let held = update.execute(&mut *tx).await?.rows_affected() == 1;
                if held {
                    for (kind, data) in [
                        (BlobKind::Video, &bytes),
                        (BlobKind::Thumbnail, &made.thumbnail),
                    ] {
                        sqlx::query("INSERT INTO blobs (video_id, kind, data) VALUES ($1, $2, $3)")
                            .bind(id)
                            .bind(kind.name())
                            .bind(data.as_slice())
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                }
                held
            }
        };
        Ok(held)
    }

    /// Marks the job failed with a reason; `false` when it is no longer this worker's.
    pub async fn fail(
        &self,
        id: &str,
        who: &Claimant,
        code: &str,
        message: &str,
        expires_at: i64,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE videos SET status = 'failed', error_code = $4, error_message = $5, \
             expires_at = $6, lease_until = NULL WHERE {HELD}"
        );
        let done = sqlx::query(&sql)
            .bind(id)
            .bind(&who.owner)
            .bind(&who.worker)
            .bind(code)
            .bind(message)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        let _ = tokio::fs::remove_file(self.clip_path(id)).await;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a job this worker stopped (shutdown) back in the queue, as if never started.
    pub async fn requeue(&self, id: &str, who: &Claimant) -> Result<bool> {
        let sql = format!("UPDATE videos SET {UNCLAIM}, attempts = attempts - 1 WHERE {HELD}");
        let done = sqlx::query(&sql)
            .bind(id)
            .bind(&who.owner)
            .bind(&who.worker)
            .execute(&self.pool)
            .await?;
        let _ = tokio::fs::remove_file(self.clip_path(id)).await;
        Ok(done.rows_affected() == 1)
    }

    /// Jobs whose worker died: those of `owner` (this server's earlier life, when given) and
    /// those whose lease ended before `now`. They are requeued, or failed once they have been started
    /// `max_attempts` times. Returns (requeued, failed).
    pub async fn recover(
        &self,
        owner: Option<&str>,
        now: i64,
        max_attempts: u32,
        expires_at: i64,
    ) -> Result<(u64, u64)> {
        let lost = "status = 'in_progress' AND (owner = $1 OR lease_until < $2)";
        let message = format!(
            "the server running this job stopped before it finished, {max_attempts} time(s); \
             it is not retried again (--max-attempts)"
        );
        let failed = sqlx::query(&format!(
            "UPDATE videos SET status = 'failed', error_code = 'worker_lost', error_message = $4, \
             expires_at = $5, lease_until = NULL WHERE {lost} AND attempts >= $3"
        ))
        .bind(owner.unwrap_or_default())
        .bind(now)
        .bind(i64::from(max_attempts))
        .bind(&message)
        .bind(expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let requeued = sqlx::query(&format!(
            "UPDATE videos SET {UNCLAIM} WHERE {lost} AND attempts < $3"
        ))
        .bind(owner.unwrap_or_default())
        .bind(now)
        .bind(i64::from(max_attempts))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((requeued, failed))
    }

    /// Deletes the videos (and blobs) that expired before `now`; returns how many.
    pub async fn expire(&self, now: i64) -> Result<u64> {
        let rows = sqlx::query("DELETE FROM videos WHERE expires_at < $1 RETURNING id")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            let id: String = row.try_get("id")?;
            self.remove_files(&id).await;
        }
        Ok(rows.len() as u64)
    }

    /// The byte length of a stored blob, `None` when absent.
    pub async fn blob_len(&self, id: &str, kind: BlobKind) -> Result<Option<u64>> {
        match self.backend {
            Backend::Sqlite => {
                let path = kind.file(&self.data_dir, id);
                match tokio::fs::metadata(&path).await {
                    Ok(m) => Ok(Some(m.len())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&path)(e)),
                }
            }
            Backend::Postgres => {
                let row = sqlx::query(
                    "SELECT CAST(octet_length(data) AS BIGINT) AS n FROM blobs \
                     WHERE video_id = $1 AND kind = $2",
                )
                .bind(id)
                .bind(kind.name())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row
                    .map(|r| r.try_get::<i64, _>("n"))
                    .transpose()?
                    .map(|n| n as u64))
            }
        }
    }

    /// `len` bytes of a blob from `start` (the caller checked the range against its length).
    pub async fn read_range(
        &self,
        id: &str,
        kind: BlobKind,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>> {
        match self.backend {
            Backend::Sqlite => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let path = kind.file(&self.data_dir, id);
                let mut file = tokio::fs::File::open(&path).await.map_err(io(&path))?;
                file.seek(std::io::SeekFrom::Start(start))
                    .await
                    .map_err(io(&path))?;
                let mut out = vec![0; len as usize];
                file.read_exact(&mut out).await.map_err(io(&path))?;
                Ok(out)
            }
            Backend::Postgres => {
                let row = sqlx::query(
                    "SELECT substring(data FROM $3 FOR $4) AS part FROM blobs \
                     WHERE video_id = $1 AND kind = $2",
                )
                .bind(id)
                .bind(kind.name())
                .bind(start as i32 + 1)
                .bind(len as i32)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("part")?)
            }
        }
    }

    async fn read_all(&self, id: &str, kind: BlobKind) -> Result<Option<Vec<u8>>> {
        match self.blob_len(id, kind).await? {
            Some(len) => Ok(Some(self.read_range(id, kind, 0, len).await?)),
            None => Ok(None),
        }
    }

    /// Removes a video's blob files (SQLite); a missing file is fine.
    async fn remove_files(&self, id: &str) {
        if self.backend == Backend::Sqlite {
            for kind in [
                BlobKind::Image,
                BlobKind::Audio,
                BlobKind::Video,
                BlobKind::Thumbnail,
            ] {
                let _ = tokio::fs::remove_file(kind.file(&self.data_dir, id)).await;
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in `scratch`, so a reader never sees a
/// partial file.
async fn write_atomic(path: &Path, bytes: &[u8], scratch: &Path) -> Result<()> {
    let target = path.to_path_buf();
    let (bytes, scratch) = (bytes.to_vec(), scratch.to_path_buf());
    let write = move || -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&scratch)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(&target).map_err(|e| e.error)?;
        Ok(())
    };
    tokio::task::spawn_blocking(write)
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(io(path))
}

/// sqlx's SQLite URL for a file, creating it when missing. The path is percent-encoded where
/// the URL syntax needs it.
fn sqlite_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            ' ' => url.push_str("%20"),
            c => url.push(c),
        }
    }
    url.push_str("?mode=rwc");
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::Generated;

    fn video(id: &str, created_at: i64) -> Video {
        Video {
            id: id.into(),
            model: "m".into(),
            prompt: "p".into(),
            seconds: "1".into(),
            size: "64x64".into(),
            input: "{}".into(),
            created_at,
        }
    }

    #[tokio::test]
    async fn a_lost_lease_is_taken_over_and_fences_the_old_worker() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        let id = "video_00000000000000000000000000000001";
        store
            .create(&video(id, 1), &Uploads::default())
            .await
            .unwrap();
        let models = ["m".to_string()];
        let old = Claimant {
            owner: "host-a:1".into(),
            worker: "cpu".into(),
        };
        let new = Claimant {
            owner: "host-b:1".into(),
            worker: "cpu".into(),
        };
        assert!(store
            .claim(&old, &["other".into()], 10, 20)
            .await
            .unwrap()
            .is_none());
        let row = store.claim(&old, &models, 10, 20).await.unwrap().unwrap();
        assert_eq!((row.status, row.attempts), (Status::InProgress, 1));
        assert!(
            store.claim(&new, &models, 10, 20).await.unwrap().is_none(),
            "claimed twice"
        );

        // The lease runs to 20: not lost at 15, lost at 25.
        assert_eq!(store.recover(None, 15, 3, 99).await.unwrap(), (0, 0));
        assert_eq!(store.recover(None, 25, 3, 99).await.unwrap(), (1, 0));
        let row = store.claim(&new, &models, 30, 60).await.unwrap().unwrap();
        assert_eq!(row.attempts, 2);

        // The old worker comes back: every write of it is refused.
        let update = Update {
            stage: "denoise_base",
            step: 1,
            steps: Some(8),
            percent: 20,
        };
        assert!(!store.progress(id, &old, &update, 90).await.unwrap());
        assert!(!store.heartbeat(id, &old, 90).await.unwrap());
        assert!(!store.fail(id, &old, "x", "y", 99).await.unwrap());
        assert!(!store.requeue(id, &old).await.unwrap());
        let made = Generated {
            width: 64,
            height: 64,
            seconds: 1,
            thumbnail: vec![1, 2, 3],
            stages: Vec::new(),
        };
        assert!(!store.complete(id, &old, &made, 40, 99).await.unwrap());
        assert!(store.progress(id, &new, &update, 90).await.unwrap());
        assert_eq!(store.get(id).await.unwrap().unwrap().progress, 20);

        // A second loss after the last attempt fails the job with a reason.
        assert_eq!(store.recover(None, 100, 2, 999).await.unwrap(), (0, 1));
        let row = store.get(id).await.unwrap().unwrap();
        assert_eq!(row.status, Status::Failed);
        assert_eq!(row.error_code.as_deref(), Some("worker_lost"));
        assert_eq!(row.expires_at, Some(999));
    }

    #[tokio::test]
    async fn lists_page_in_both_orders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        let ids: Vec<String> = (1..=5).map(|i| format!("video_{i:032x}")).collect();
        for (i, id) in ids.iter().enumerate() {
            store
                .create(&video(id, i as i64), &Uploads::default())
                .await
                .unwrap();
        }
        let names = |rows: Vec<VideoRow>| rows.into_iter().map(|r| r.video.id).collect::<Vec<_>>();
        let (rows, more) = store.list(None, 2, false).await.unwrap().unwrap();
        assert_eq!(
            (names(rows), more),
            (vec![ids[4].clone(), ids[3].clone()], true)
        );
        let (rows, more) = store.list(Some(&ids[1]), 5, false).await.unwrap().unwrap();
        assert_eq!((names(rows), more), (vec![ids[0].clone()], false));
        let (rows, more) = store.list(Some(&ids[1]), 2, true).await.unwrap().unwrap();
        assert_eq!(
            (names(rows), more),
            (vec![ids[2].clone(), ids[3].clone()], true)
        );
        assert!(store
            .list(Some("video_nope"), 2, true)
            .await
            .unwrap()
            .is_none());
    }
}
