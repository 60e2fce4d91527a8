//! Google's attestation status list, kept fresh: fetched on a schedule with HTTP caching,
//! stored in the data directory with its fetch time so that a restart works offline, and put in
//! force in the service. A failed or garbage fetch keeps the last good list; how old a list may
//! get before Google-anchored chains are refused is the service's rule
//! (docs/decisions/0015-revocation-list-freshness.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use attest_android::{MAX_STATUS_LIST_BYTES, StatusList};
use attest_core::{Clock, UnixTime};
use attest_service::{Service, write_atomically};
use serde::{Deserialize, Serialize};

/// Where Google publishes the list (developer.android.com, key attestation guide).
pub const GOOGLE_STATUS_URL: &str = "https://android.googleapis.com/attestation/status";
/// Default time between fetches.
pub const DEFAULT_REFRESH_SECS: u64 = 3600;
/// Shortest wait between fetches, whatever `Cache-Control` says.
const MIN_REFRESH_SECS: u64 = 60;
/// Wait before retrying after a failure (or the refresh interval, when shorter).
const RETRY_SECS: u64 = 300;
/// The cached copy and its metadata, in the data directory.
const CACHE_FILE: &str = "google-status-list.json";
const META_FILE: &str = "google-status-list.meta.json";

/// Where the list comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An `http://` or `https://` URL (Google's by default).
    Url(String),
    /// A file the operator keeps current (offline deployments); its modification time is the
    /// list's fetch time, so whatever writes it must write only lists it has just fetched.
    File(PathBuf),
}

impl Source {
    /// `file:PATH`, an `https://` URL, or an `http://` URL on loopback (a local mirror or a
    /// test): a list that decides revocation is not fetched over plain HTTP across a network.
    pub fn parse(s: &str) -> Result<Source, String> {
        if let Some(path) = s.strip_prefix("file:") {
            return Ok(Source::File(PathBuf::from(path)));
        }
        if s.starts_with("https://") {
            return Ok(Source::Url(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("http://") {
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            let name = match host.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => host,
            };
            if ["127.0.0.1", "localhost", "[::1]"].contains(&name) {
                return Ok(Source::Url(s.to_owned()));
            }
            return Err(format!(
                "revocation_source {s:?}: plain http:// only on loopback; use https://"
            ));
        }
        Err(format!(
            "revocation_source {s:?} is neither an https:// URL nor file:PATH"
        ))
    }

    fn describe(&self) -> String {
        match self {
            Source::Url(u) => u.clone(),
            Source::File(p) => format!("file:{}", p.display()),
        }
    }
}

/// Where the fetched list goes: the service (a trait so that the fetcher is tested alone).
pub trait StatusSink: Send + Sync {
    /// A new list, fetched at `at`.
    fn put(&self, list: StatusList, at: UnixTime);
    /// The list in force was confirmed unchanged at `at`.
    fn confirm(&self, at: UnixTime);
    /// The result of the attempt at `at`.
    fn note(&self, at: UnixTime, result: String);
}

impl StatusSink for Service {
    fn put(&self, list: StatusList, at: UnixTime) {
        self.set_google_status_list(list, at);
    }
    fn confirm(&self, at: UnixTime) {
        self.confirm_google_status_list(at);
    }
    fn note(&self, at: UnixTime, result: String) {
        self.note_google_status_fetch(at, result);
    }
}

#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
struct Meta {
    source: String,
    fetched_at: i64,
    /// SHA-256 (hex) of the kept list: a list file that does not match is not loaded.
    sha256: String,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Share of skipped (non-serial) keys above which a list is refused as not Google's format.
const MAX_SKIPPED_PER_MILLE: usize = 100;

fn sha256_hex(bytes: &[u8]) -> String {
    attest_core::hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// What one attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new list is in force (its entry count).
    Updated(usize),
    /// The server said the list is unchanged.
    NotModified,
    /// Nothing changed; the last good list stays.
    Failed(String),
}

/// Fetches the list and keeps it.
pub struct Fetcher {
    source: Source,
    refresh: Duration,
    data_dir: PathBuf,
    client: reqwest::Client,
    sink: Arc<dyn StatusSink>,
    clock: Arc<dyn Clock>,
    meta: Meta,
    /// Entries of the last good list, to refuse one that suddenly lost most of them.
    last_good_entries: Option<usize>,
}

fn cache_control_max_age(v: &str) -> Option<u64> {
    v.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|n| n.trim().parse().ok())
}

impl Fetcher {
    /// A fetcher from `source` every `refresh`, caching in `data_dir`, with HTTP timeouts of
    /// `timeout`.
    pub fn new(
        source: Source,
        refresh: Duration,
        timeout: Duration,
        data_dir: &Path,
        sink: Arc<dyn StatusSink>,
        clock: Arc<dyn Clock>,
    ) -> Result<Fetcher, String> {
        let client = reqwest::Client::builder()
            // A redirect could lead anywhere, plain HTTP included: the source is what is fetched.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("enigm-attest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Fetcher {
            meta: Meta {
                source: source.describe(),
                ..Meta::default()
            },
            source,
            refresh,
            data_dir: data_dir.to_path_buf(),
            client,
            sink,
            clock,
            last_good_entries: None,
        })
    }

    /// Puts the copy kept in the data directory in force, with the time it was fetched, when
    /// it came from the same source and is the very list that was recorded (its SHA-256).
    /// Returns its entry count. The cache validators are not restored: the first fetch after a
    /// start is unconditional, so a kept copy is never confirmed by a 304 it did not earn.
    pub fn load_cached(&mut self) -> Option<usize> {
        let meta: Meta = std::fs::read(self.data_dir.join(META_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        if meta.source != self.meta.source {
            return None;
        }
        let bytes = std::fs::read(self.data_dir.join(CACHE_FILE)).ok()?;
        if sha256_hex(&bytes) != meta.sha256 {
            tracing::warn!("the kept status list does not match its recorded SHA-256; not loaded");
            return None;
        }
        let list = StatusList::from_json(&bytes).ok()?;
        let n = list.len();
        self.sink.put(list, UnixTime::from_secs(meta.fetched_at));
        self.last_good_entries = Some(n);
        self.meta = Meta {
            etag: None,
            last_modified: None,
            ..meta
        };
        Some(n)
    }

    /// One attempt; returns what happened and how long to wait before the next.
    pub async fn fetch_once(&mut self) -> (Outcome, Duration) {
        let now = self.clock.now();
        let (outcome, max_age) = match self.source.clone() {
            Source::File(path) => (self.read_file(&path), None),
            Source::Url(url) => self.get_url(&url, now).await,
        };
        let result = match &outcome {
            Outcome::Updated(_) => "ok".to_owned(),
            Outcome::NotModified => "not_modified".to_owned(),
            Outcome::Failed(why) => why.clone(),
        };
        match &outcome {
            Outcome::Failed(why) => {
                tracing::warn!(source = %self.meta.source, error = %why, "status list fetch failed; the last good list stays")
            }
            Outcome::Updated(n) => {
                tracing::info!(source = %self.meta.source, entries = n, "status list updated")
            }
            Outcome::NotModified => {
                tracing::debug!(source = %self.meta.source, "status list unchanged")
            }
        }
        self.sink.note(now, result);
        let wait = match (&outcome, max_age) {
            (Outcome::Failed(_), _) => self.refresh.min(Duration::from_secs(RETRY_SECS)),
            (_, Some(age)) => self
                .refresh
                .min(Duration::from_secs(age.max(MIN_REFRESH_SECS))),
            (_, None) => self.refresh,
        };
        (outcome, wait)
    }

    /// Fetches forever.
    pub async fn run(mut self) {
        loop {
            let (_, wait) = self.fetch_once().await;
            tokio::time::sleep(wait).await;
        }
    }

    fn read_file(&mut self, path: &Path) -> Outcome {
        let modified = std::fs::metadata(path).and_then(|m| m.modified());
        let bytes = match (modified, std::fs::read(path)) {
            (Ok(m), Ok(b)) => (m, b),
            (Err(e), _) | (_, Err(e)) => {
                return Outcome::Failed(format!("{}: {e}", path.display()));
            }
        };
        let at = bytes
            .0
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.accept(&bytes.1, UnixTime::from_secs(at), None, None)
    }

    async fn get_url(&mut self, url: &str, now: UnixTime) -> (Outcome, Option<u64>) {
        let mut req = self.client.get(url);
        if let Some(etag) = &self.meta.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &self.meta.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return (Outcome::Failed(format!("request failed: {e}")), None),
        };
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let max_age = header(reqwest::header::CACHE_CONTROL)
            .as_deref()
            .and_then(cache_control_max_age);
        let etag = header(reqwest::header::ETAG);
        let last_modified = header(reqwest::header::LAST_MODIFIED);
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            if self.meta.etag.is_none() && self.meta.last_modified.is_none() {
                return (
                    Outcome::Failed("HTTP 304 to an unconditional request".to_owned()),
                    max_age,
                );
            }
            self.sink.confirm(now);
            self.meta.fetched_at = now.as_secs();
            self.persist_meta();
            return (Outcome::NotModified, max_age);
        }
        if !status.is_success() {
            return (
                Outcome::Failed(format!("HTTP {}", status.as_u16())),
                max_age,
            );
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_STATUS_LIST_BYTES as u64)
        {
            return (
                Outcome::Failed(format!("larger than {MAX_STATUS_LIST_BYTES} bytes")),
                max_age,
            );
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_STATUS_LIST_BYTES {
                        return (
                            Outcome::Failed(format!("larger than {MAX_STATUS_LIST_BYTES} bytes")),
                            max_age,
                        );
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return (Outcome::Failed(format!("reading the body: {e}")), max_age),
            }
        }
        (self.accept(&body, now, etag, last_modified), max_age)
    }

    /// Parses, stores and puts in force a list fetched at `at`.
    fn accept(
        &mut self,
        bytes: &[u8],
        at: UnixTime,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> Outcome {
        let list = match StatusList::from_json(bytes) {
            Ok(l) => l,
            Err(e) => return Outcome::Failed(format!("not a status list: {e}")),
        };
        let (skipped, count) = list.skipped();
        if count > 0 {
            tracing::warn!(count, examples = ?skipped, "status list keys that are not serial numbers were skipped");
        }
        let n = list.len();
        // A response that parses but would switch revocation off is not a good list: empty,
        // mostly keys that are not serials, or suddenly missing most of its entries.
        if n == 0 {
            return Outcome::Failed("refused: the list has no entries".to_owned());
        }
        if count * 1000 > (n + count) * MAX_SKIPPED_PER_MILLE {
            return Outcome::Failed(format!(
                "refused: {count} of {} keys are not serial numbers",
                n + count
            ));
        }
        if let Some(last) = self.last_good_entries {
            if n < last / 2 {
                return Outcome::Failed(format!(
                    "refused: {n} entries where the last good list had {last}"
                ));
            }
        }
        // The metadata (fetch time, validators, hash) is written only once the list it
        // describes is: the two never disagree.
        match write_atomically(&self.data_dir.join(CACHE_FILE), bytes) {
            Ok(()) => {
                self.meta.fetched_at = at.as_secs();
                self.meta.sha256 = sha256_hex(bytes);
                self.meta.etag = etag;
                self.meta.last_modified = last_modified;
                self.persist_meta();
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not keep the status list in the data directory");
                // Without a kept copy, a 304 must not confirm anything after a restart.
                self.meta.etag = None;
                self.meta.last_modified = None;
            }
        }
        self.last_good_entries = Some(n);
        self.sink.put(list, at);
        Outcome::Updated(n)
    }

    fn persist_meta(&self) {
        let written = serde_json::to_vec(&self.meta)
            .map_err(std::io::Error::other)
            .and_then(|b| write_atomically(&self.data_dir.join(META_FILE), &b));
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not record the status list's fetch time");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use std::sync::Mutex;

    use attest_core::ManualClock;
    use attest_device::testing::TempDir;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// 2026-11-01T00:00:00Z.
    const START: UnixTime = UnixTime::from_secs(1_793_491_200);
    /// Twenty serials and one key that is not a serial.
    fn list_json(serials: u32) -> String {
        let mut entries: Vec<String> = (0..serials)
            .map(|i| format!(r#""{:x}": {{"status": "REVOKED"}}"#, 0x2c8c_dddf_u32 + i))
            .collect();
        entries.push(r#""not-hex": {"status": "REVOKED"}"#.to_owned());
        format!(r#"{{"entries": {{{}}}}}"#, entries.join(", "))
    }

    #[derive(Default)]
    struct Recorder {
        puts: Mutex<Vec<(usize, UnixTime)>>,
        confirms: Mutex<Vec<UnixTime>>,
        notes: Mutex<Vec<String>>,
    }

    impl StatusSink for Recorder {
        fn put(&self, list: StatusList, at: UnixTime) {
            self.puts.lock().unwrap().push((list.len(), at));
        }
        fn confirm(&self, at: UnixTime) {
            self.confirms.lock().unwrap().push(at);
        }
        fn note(&self, _at: UnixTime, result: String) {
            self.notes.lock().unwrap().push(result);
        }
    }

    /// A loopback HTTP server answering each connection with the next canned response (a
    /// `None` delay means answer at once); it records the request heads it saw.
    async fn server(replies: Vec<(Option<Duration>, String)>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            for (delay, reply) in replies {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap();
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase());
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        (format!("http://{addr}/attestation/status"), seen)
    }

    fn ok(body: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    fn status(code: u16, body: &str) -> String {
        format!(
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn fetcher(url: &str, dir: &Path, sink: Arc<Recorder>, clock: Arc<ManualClock>) -> Fetcher {
        Fetcher::new(
            Source::Url(url.to_owned()),
            Duration::from_secs(3600),
            Duration::from_millis(500),
            dir,
            sink,
            clock,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn fresh_then_not_modified_then_failures_keep_the_last_good_list() {
        let dir = TempDir::new("revocation-fetch").unwrap();
        let list = list_json(20);
        let (url, seen) = server(vec![
            (
                None,
                ok(
                    &list,
                    "ETag: \"v1\"\r\nCache-Control: public, max-age=600\r\n",
                ),
            ),
            (
                None,
                "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_owned(),
            ),
            (None, status(500, "oops")),
            (None, ok("<html>not json</html>", "")),
            (None, ok(r#"{"entries": {"01": {"reason": "x"}}}"#, "")),
            (None, ok(r#"{"entries": {}}"#, "")),
            (None, ok(r#"{"entries": {"0x2002": {"status": "REVOKED"}, " 2003": {"status": "REVOKED"}, "1": {"status": "REVOKED"}}}"#, "")),
            (None, ok(r#"{"entries": {"a1": {"status": "REVOKED"}, "a2": {"status": "REVOKED"}, "a3": {"status": "REVOKED"}}}"#, "")),
            (None, "HTTP/1.1 302 Found\r\nLocation: http://example.invalid/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()),
            (Some(Duration::from_secs(2)), ok(&list, "")),
        ])
        .await;
        let sink = Arc::new(Recorder::default());
        let clock = Arc::new(ManualClock::new(START));
        let mut f = fetcher(&url, dir.path(), Arc::clone(&sink), Arc::clone(&clock));

        let (outcome, wait) = f.fetch_once().await;
        assert_eq!(
            outcome,
            Outcome::Updated(20),
            "the non-hex key is skipped, not fatal"
        );
        assert_eq!(
            wait,
            Duration::from_secs(600),
            "Cache-Control max-age is honoured"
        );
        assert_eq!(sink.puts.lock().unwrap().as_slice(), &[(20, START)]);

        clock.advance(3600);
        let (outcome, _) = f.fetch_once().await;
        assert_eq!(outcome, Outcome::NotModified);
        assert!(seen.lock().unwrap()[1].contains("if-none-match: \"v1\""));
        assert_eq!(
            sink.confirms.lock().unwrap().as_slice(),
            &[START.saturating_add_secs(3600)]
        );

        for want in [
            "HTTP 500",
            "not a status list",
            "not a status list",
            "no entries",
            "are not serial numbers",
            "where the last good list had 20",
            "HTTP 302",
            "request failed",
        ] {
            let (outcome, wait) = f.fetch_once().await;
            match outcome {
                Outcome::Failed(why) => assert!(why.contains(want), "{why}"),
                other => panic!("expected a failure ({want}), got {other:?}"),
            }
            assert_eq!(wait, Duration::from_secs(RETRY_SECS));
        }
        // Nothing but the first list was ever put in force.
        assert_eq!(sink.puts.lock().unwrap().len(), 1);
        assert_eq!(
            sink.notes.lock().unwrap()[..2],
            ["ok".to_owned(), "not_modified".to_owned()]
        );
    }

    #[tokio::test]
    async fn a_restart_works_offline_from_the_kept_copy_with_its_fetch_time() {
        let dir = TempDir::new("revocation-restart").unwrap();
        let list = list_json(20);
        let (url, _) = server(vec![(
            None,
            ok(
                &list,
                "ETag: \"v7\"\r\nLast-Modified: Tue, 01 Dec 2026 00:00:00 GMT\r\n",
            ),
        )])
        .await;
        let clock = Arc::new(ManualClock::new(START));
        let first = Arc::new(Recorder::default());
        let mut f = fetcher(&url, dir.path(), Arc::clone(&first), Arc::clone(&clock));
        assert_eq!(f.fetch_once().await.0, Outcome::Updated(20));

        // Later, the network is gone: the kept copy comes back with its original fetch time, so
        // its age keeps counting from then.
        clock.advance(7200);
        let second = Arc::new(Recorder::default());
        let mut g = fetcher(&url, dir.path(), Arc::clone(&second), Arc::clone(&clock));
        assert_eq!(g.load_cached(), Some(20));
        assert_eq!(second.puts.lock().unwrap().as_slice(), &[(20, START)]);
        assert_eq!(
            g.meta.etag, None,
            "the first fetch after a start is unconditional"
        );
        assert!(matches!(g.fetch_once().await.0, Outcome::Failed(_)));

        // A kept list that is not the one recorded (edited, or half-written) is not loaded.
        std::fs::write(dir.path().join(CACHE_FILE), r#"{"entries": {}}"#).unwrap();
        let fourth = Arc::new(Recorder::default());
        let mut k = fetcher(&url, dir.path(), Arc::clone(&fourth), Arc::clone(&clock));
        assert_eq!(k.load_cached(), None);
        assert!(fourth.puts.lock().unwrap().is_empty());

        // Another source does not reuse it.
        let third = Arc::new(Recorder::default());
        let mut h = fetcher(
            "http://127.0.0.1:9/elsewhere",
            dir.path(),
            Arc::clone(&third),
            clock,
        );
        assert_eq!(h.load_cached(), None);
        assert!(third.puts.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_file_source_counts_age_from_its_modification_time() {
        let dir = TempDir::new("revocation-file").unwrap();
        let path = dir.path().join("status.json");
        std::fs::write(&path, list_json(20)).unwrap();
        let sink = Arc::new(Recorder::default());
        let mut f = Fetcher::new(
            Source::File(path.clone()),
            Duration::from_secs(3600),
            Duration::from_secs(1),
            dir.path(),
            Arc::clone(&sink) as Arc<dyn StatusSink>,
            Arc::new(ManualClock::new(START)),
        )
        .unwrap();
        assert_eq!(f.fetch_once().await.0, Outcome::Updated(20));
        let (_, at) = sink.puts.lock().unwrap()[0];
        let now = attest_core::SystemClock.now();
        assert!(
            (now.as_secs() - at.as_secs()).abs() < 60,
            "mtime, not the manual clock"
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(f.fetch_once().await.0, Outcome::Failed(_)));
        assert_eq!(sink.puts.lock().unwrap().len(), 1);
    }

    #[test]
    fn sources_parse() {
        assert_eq!(
            Source::parse("file:/etc/status.json").unwrap(),
            Source::File(PathBuf::from("/etc/status.json"))
        );
        assert!(Source::parse(GOOGLE_STATUS_URL).is_ok());
        assert!(Source::parse("http://127.0.0.1:8081/status").is_ok());
        assert!(Source::parse("http://localhost/status").is_ok());
        assert!(Source::parse("http://android.googleapis.com/attestation/status").is_err());
        assert!(Source::parse("http://127.0.0.1.example.com/status").is_err());
        assert!(Source::parse("ftp://x").is_err());
        assert_eq!(cache_control_max_age("public, max-age=3600"), Some(3600));
        assert_eq!(cache_control_max_age("no-cache"), None);
    }
}
