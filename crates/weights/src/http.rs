//! The HTTP conversation with the Hub: the `resolve` route, its metadata headers, and the
//! translation of failures into [`Error`]s that say what to do.
//!
//! The Hub serves every file at `{endpoint}/{repo}/resolve/{revision}/{path}`. A request with
//! `Range: bytes=0-0` that does not follow redirects yields the metadata: `X-Repo-Commit` (the
//! commit the revision points to), `X-Linked-Etag` or `ETag` (names the blob; for LFS files it
//! is the sha256 of the contents) and the size (`X-Linked-Size`, else the total of
//! `Content-Range`). Large files redirect to a CDN; relative redirects (renamed repositories)
//! are followed with the token, absolute ones without it. Errors carry `X-Error-Code`
//! (`GatedRepo`, `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`).

use std::time::Duration;

use crate::error::Error;
use crate::formats::is_sha256;
use crate::hub::HubSettings;
use crate::manifest::{Component, RemoteFile};
use crate::token::Token;

/// Most relative redirects followed while reading metadata.
const MAX_HOPS: usize = 5;

/// What the Hub says about a file before it is downloaded.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// The commit the requested revision resolves to.
    pub(crate) commit: String,
    /// Blob name in the cache.
    pub(crate) etag: String,
    /// Size in bytes.
    pub(crate) size: u64,
    /// The sha256 the Hub vouches for (LFS files only).
    pub(crate) sha256: Option<String>,
}

/// A failed request, before it is given a file's context.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection, a broken one, or a timeout.
    Transport(String),
    /// An error status.
    Status {
        code: u16,
        error_code: Option<String>,
        message: Option<String>,
    },
    /// A response the Hub never sends.
    Bad(String),
}

impl Failure {
    /// Worth another attempt: the network or the server may recover.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Failure::Transport(_) => true,
            Failure::Status { code, .. } => *code == 429 || *code >= 500,
            Failure::Bad(_) => false,
        }
    }
}

impl From<ureq::Error> for Failure {
    fn from(e: ureq::Error) -> Self {
        match e {
            ureq::Error::Status(code, resp) => Failure::Status {
                code,
                error_code: resp.header("x-error-code").map(str::to_string),
                message: resp.header("x-error-message").map(str::to_string),
            },
            ureq::Error::Transport(t) => Failure::Transport(t.to_string()),
        }
    }
}

/// HTTP client for one endpoint and token.
pub(crate) struct Http {
    follow: ureq::Agent,
    direct: ureq::Agent,
    token: Option<Token>,
    endpoint_authority: String,
}

/// `host[:port]` of a URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

impl Http {
    pub(crate) fn new(hub: &HubSettings) -> Self {
        let endpoint_authority = authority(&hub.endpoint).to_ascii_lowercase();
        // ureq does not read NO_PROXY; a local endpoint (a test server, a LAN mirror on this
        // host) must not be sent through a proxy.
        let local = endpoint_authority.starts_with("127.")
            || endpoint_authority.starts_with("localhost")
            || endpoint_authority.starts_with("[::1]");
        let agent = |redirects| {
            ureq::AgentBuilder::new()
                .redirects(redirects)
                .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
                .try_proxy_from_env(!local)
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(60))
                .user_agent(concat!("cadence-weights/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Self {
            follow: agent(10),
            direct: agent(0),
            token: hub.token.clone(),
            endpoint_authority,
        }
    }

    /// GET `url`, optionally with a `Range`; the token goes only to the endpoint's host.
    pub(crate) fn get(
        &self,
        url: &str,
        range: Option<&str>,
        follow: bool,
    ) -> Result<ureq::Response, Failure> {
        let agent = if follow { &self.follow } else { &self.direct };
        let mut req = agent.get(url).set("Accept-Encoding", "identity");
        if let Some(r) = range {
            req = req.set("Range", r);
        }
        if let Some(t) = &self.token {
            if authority(url).eq_ignore_ascii_case(&self.endpoint_authority) {
                req = req.set("Authorization", &format!("Bearer {}", t.secret()));
            }
        }
        Ok(req.call()?)
    }

    /// The metadata of the file at a `resolve` URL (see the module docs).
    pub(crate) fn metadata(&self, url: &str) -> Result<Meta, Failure> {
        let mut current = url.to_string();
        let mut resp = self.get(&current, Some("bytes=0-0"), false)?;
        for _ in 0..MAX_HOPS {
            if !(300..400).contains(&resp.status()) {
                break;
            }
            match resp.header("location") {
                Some(loc) if loc.starts_with('/') => {
                    current = format!("{}://{}{loc}", scheme(url), authority(url));
                    resp = self.get(&current, Some("bytes=0-0"), false)?;
                }
                _ => break,
            }
        }
        let header = |name: &str| resp.header(name).map(str::to_string);
        let commit = header("x-repo-commit")
            .ok_or_else(|| Failure::Bad("no X-Repo-Commit header".into()))?;
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Failure::Bad("no ETag header".into()))?;
        let sha256 = header("x-linked-etag")
            .map(|e| e.trim_matches('"').to_ascii_lowercase())
            .filter(|e| is_sha256(e));
        let size = match header("x-linked-size") {
            Some(s) => Some(s),
            None if (300..400).contains(&resp.status()) => {
                let loc = header("location")
                    .ok_or_else(|| Failure::Bad("redirect without Location".into()))?;
                let target = self.get(&loc, Some("bytes=0-0"), true)?;
                total_size(&target)
            }
            None => total_size(&resp),
        };
        let size = size
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Failure::Bad("no usable size (X-Linked-Size or Content-Range)".into())
            })?;
        Ok(Meta {
            commit,
            etag,
            size,
            sha256,
        })
    }
}

/// The scheme of a URL (`https` when absent).
fn scheme(url: &str) -> &str {
    url.split_once("://").map_or("https", |(s, _)| s)
}

/// The total size from `Content-Range: bytes 0-0/N`, else `Content-Length` of a full response.
fn total_size(resp: &ureq::Response) -> Option<String> {
    match resp.header("content-range") {
        Some(cr) => cr.rsplit_once('/').map(|(_, total)| total.to_string()),
        None if resp.status() == 200 => resp.header("content-length").map(str::to_string),
        None => None,
    }
}

/// Percent-encodes one URL path segment (keeps only RFC 3986 unreserved characters).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `resolve` URL of `path` (slash-separated) at `revision`.
pub(crate) fn resolve_url(endpoint: &str, repo: &str, revision: &str, path: &str) -> String {
    let path: Vec<String> = path.split('/').map(encode_segment).collect();
    format!(
        "{endpoint}/{repo}/resolve/{}/{}",
        encode_segment(revision),
        path.join("/")
    )
}

/// What a request was for, so a [`Failure`] becomes an [`Error`] naming the file and the fix.
pub(crate) struct Context<'a> {
    pub(crate) component: &'a Component,
    pub(crate) file: &'a RemoteFile,
    pub(crate) endpoint: &'a str,
    pub(crate) token: Option<&'a Token>,
    pub(crate) url: &'a str,
}

impl Context<'_> {
    /// The error for `failure`; `kept` bytes of the file stay on disk for a resume.
    pub(crate) fn error(&self, failure: Failure, kept: u64) -> Error {
        let repo = self.component.repo.clone();
        let (code, error_code, message) = match failure {
            Failure::Transport(detail) => {
                return Error::Network {
                    file: Box::new(self.file.clone()),
                    endpoint: self.endpoint.to_string(),
                    detail,
                    kept,
                }
            }
            Failure::Bad(detail) => {
                return Error::BadResponse {
                    url: self.url.to_string(),
                    detail,
                }
            }
            Failure::Status {
                code,
                error_code,
                message,
            } => (code, error_code, message),
        };
        let gated = error_code.as_deref() == Some("GatedRepo")
            || (self.component.gated && matches!(code, 401 | 403));
        let token_source = self.token.map(|t| t.source().to_string());
        if gated {
            return match (token_source, code) {
                (None, _) => Error::GatedNoToken { repo },
                (Some(token_source), 401) => Error::BadToken { repo, token_source },
                (Some(token_source), _) => Error::GatedNoAccess { repo, token_source },
            };
        }
        match (error_code.as_deref(), code, token_source) {
            (Some("RevisionNotFound"), _, _) => Error::RevisionNotFound {
                component: self.component.id.clone(),
                repo,
                revision: self.component.revision.clone(),
            },
            // Without a token the Hub answers 401 for a private repository as for a missing one.
            (Some("RepoNotFound"), _, _) | (None, 401, None) => Error::RepoNotFound {
                component: self.component.id.clone(),
                repo,
                endpoint: self.endpoint.to_string(),
            },
            (Some("EntryNotFound"), _, _) | (_, 404, _) => Error::FileNotFound {
                file: Box::new(self.file.clone()),
            },
            (_, 401, Some(token_source)) => Error::BadToken { repo, token_source },
            _ => Error::Http {
                url: self.url.to_string(),
                status: code,
                detail: message.map(|m| format!(" ({m})")).unwrap_or_default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_errors_with_the_right_fix() {
        let manifest = crate::Manifest::embedded().unwrap();
        let token = Token::explicit("hf_x");
        let classify = |id: &str, code: u16, error_code: Option<&str>, token: Option<&Token>| {
            let c = manifest.get(id).unwrap();
            let file = c.remote("f");
            let ctx = Context {
                component: c,
                file: &file,
                endpoint: "https://huggingface.co",
                token,
                url: "https://huggingface.co/x",
            };
            let failure = Failure::Status {
                code,
                error_code: error_code.map(str::to_string),
                message: Some("busy".into()),
            };
            ctx.error(failure, 0)
        };
        let t = Some(&token);
        assert!(matches!(
            classify("t5gemma", 401, Some("GatedRepo"), None),
            Error::GatedNoToken { .. }
        ));
        assert!(matches!(
            classify("t5gemma", 401, None, t),
            Error::BadToken { .. }
        ));
        assert!(matches!(
            classify("t5gemma", 403, Some("GatedRepo"), t),
            Error::GatedNoAccess { .. }
        ));
        // The Hub's code wins over the manifest's `gated` flag.
        assert!(matches!(
            classify("wan_vae", 403, Some("GatedRepo"), None),
            Error::GatedNoToken { .. }
        ));
        assert!(matches!(
            classify("wan_vae", 401, Some("RepoNotFound"), t),
            Error::RepoNotFound { .. }
        ));
        assert!(matches!(
            classify("wan_vae", 401, None, None),
            Error::RepoNotFound { .. }
        ));
        assert!(matches!(
            classify("wan_vae", 401, None, t),
            Error::BadToken { .. }
        ));
        assert!(matches!(
            classify("wan_vae", 404, Some("RevisionNotFound"), t),
            Error::RevisionNotFound { .. }
        ));
        assert!(matches!(
            classify("wan_vae", 404, None, None),
            Error::FileNotFound { .. }
        ));
        let err = classify("wan_vae", 503, None, None);
        assert_eq!(
            err.to_string(),
            "https://huggingface.co/x answered HTTP 503 (busy): try again later (a partial download is kept and resumes)"
        );
        let msg = classify("t5gemma", 401, None, t).to_string();
        assert!(
            msg.contains("token from the command line was rejected"),
            "{msg}"
        );
    }

    #[test]
    fn urls_escape_revisions_and_segments() {
        assert_eq!(
            resolve_url("http://h", "o/n", "refs/pr/1", "sub/a b.json"),
            "http://h/o/n/resolve/refs%2Fpr%2F1/sub/a%20b.json"
        );
        assert_eq!(authority("https://huggingface.co/o/n"), "huggingface.co");
        assert_eq!(authority("http://127.0.0.1:8080/x?y"), "127.0.0.1:8080");
    }
}
