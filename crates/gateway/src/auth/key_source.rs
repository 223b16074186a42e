//! An identity provider's keys, kept fresh: read from its JWKS file or URL at an interval, and
//! soon after a token names a key the document lacks (the provider may just have rotated), but
//! never more often than a floor, since such tokens cost an attacker nothing to send. A failed
//! read keeps the keys read last, so an outage of the provider does not lock buyers out.

use super::keys::{parse_jwks, KeySet, KeysError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The largest JWKS document read (providers publish a few keys, a few KiB).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where an identity provider's keys come from, and the keys read from there last.
pub struct KeySource {
    origin: Origin,
    keys: RwLock<Arc<KeySet>>,
    /// The document the keys were read from, to tell a change from a read of the same keys.
    document: Mutex<String>,
    /// Told when a token names a key the set lacks.
    missing_key: tokio::sync::Notify,
    /// Bumped with every change of the keys: a token remembered under an older generation is
    /// verified again.
    generation: AtomicU64,
}

enum Origin {
    File(PathBuf),
    Url {
        url: String,
        client: reqwest::Client,
    },
}

impl KeySource {
    /// The keys of the JWKS document at `path`, none read yet.
    pub(super) fn file(path: PathBuf) -> Self {
        Self::new(Origin::File(path))
    }

    /// The keys of the JWKS document at `url`, none fetched yet.
    pub(super) fn url(url: String) -> Result<Self, KeysError> {
        // An https URL is never followed to http (a redirect could otherwise downgrade it).
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .https_only(url.starts_with("https://"))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| KeysError::Unusable {
                key: "auth.jwks_url",
                origin: url.clone(),
                problem: format!("no HTTP client: {e}"),
            })?;
        Ok(Self::new(Origin::Url { url, client }))
    }

    fn new(origin: Origin) -> Self {
        Self {
            origin,
            keys: RwLock::default(),
            document: Mutex::default(),
            missing_key: tokio::sync::Notify::new(),
            generation: AtomicU64::new(0),
        }
    }

    /// Whether it holds keys (it does once a read succeeded): the gateway's readiness.
    pub fn has_keys(&self) -> bool {
        !self.current().is_empty()
    }

    /// The keys read last.
    pub(super) fn current(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The generation of the keys: bumped whenever they change.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Tells [`keep_fresh`](Self::keep_fresh) that a token named a key the set lacks.
    pub(super) fn report_missing_key(&self) {
        self.missing_key.notify_one();
    }

    fn problem(&self, problem: String) -> KeysError {
        let (key, origin) = match &self.origin {
            Origin::File(path) => ("auth.jwks_file", path.display().to_string()),
            Origin::Url { url, .. } => ("auth.jwks_url", url.clone()),
        };
        KeysError::Unusable {
            key,
            origin,
            problem,
        }
    }

    /// Reads the document from the file now (start-up: a file that cannot serve stops it).
    pub(super) fn load_file_now(&self) -> Result<(), KeysError> {
        let Origin::File(path) = &self.origin else {
            return Ok(());
        };
        self.replace(self.read_file(path)?).map(|_| ())
    }

    fn read_file(&self, path: &std::path::Path) -> Result<String, KeysError> {
        std::fs::read_to_string(path).map_err(|e| self.problem(e.to_string()))
    }

    /// Reads the document again; whether its keys changed.
    async fn reload(&self) -> Result<bool, KeysError> {
        let text = match &self.origin {
            Origin::File(path) => self.read_file(path)?,
            Origin::Url { url, client } => {
                let mut response = client
                    .get(url)
                    .header(reqwest::header::ACCEPT, "application/json")
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| self.problem(e.to_string()))?;
                let too_large = || self.problem("the document is larger than 1 MiB".into());
                if response
                    .content_length()
                    .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
                {
                    return Err(too_large());
                }
                // Read chunk by chunk: a server that sends no length is stopped at the limit.
                let mut body = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| self.problem(e.to_string()))?
                {
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                String::from_utf8(body)
                    .map_err(|_| self.problem("the document is not UTF-8".into()))?
            }
        };
        self.replace(text)
    }

    /// Keeps the keys fresh until `stop`: reads the document every `every`, soon (not before
    /// `soonest`, at least a second, after the last read) when a token names a key it lacks,
    /// and every `soonest` until a first read succeeds. A failed read keeps the keys read last.
    /// When the keys change, a token verified with the old ones is verified again on its next
    /// use (the keys' generation). Each read is counted in `reads` by outcome.
    pub async fn keep_fresh(
        self: Arc<Self>,
        every: Duration,
        soonest: Duration,
        reads: prometheus::IntCounterVec,
        stop: CancellationToken,
    ) {
        // Unknown kids cost no signature: whatever the settings, never more than a read a second.
        let soonest = soonest.max(Duration::from_secs(1));
        let mut last_read = self.has_keys().then(Instant::now);
        loop {
            let due = match last_read {
                None => Instant::now(),
                Some(at) if self.has_keys() => at + every,
                Some(at) => at + soonest,
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep_until(due) => {}
                () = self.missing_key.notified() => {
                    let soonest_read = last_read.map_or_else(Instant::now, |at| at + soonest);
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep_until(soonest_read) => {}
                    }
                }
            }
            last_read = Some(Instant::now());
            let read = self.reload().await;
            // Tokens that named a missing key before this read are answered by it.
            let _ = futures::FutureExt::now_or_never(self.missing_key.notified());
            let outcome = match read {
                Ok(true) => {
                    let kids: Vec<String> = self.current().keys().cloned().collect();
                    tracing::info!(?kids, "identity provider keys read");
                    "changed"
                }
                Ok(false) => {
                    tracing::debug!("identity provider keys unchanged");
                    "unchanged"
                }
                Err(error) => {
                    tracing::warn!(%error, "identity provider keys not read; the last ones serve");
                    "failed"
                }
            };
            reads.with_label_values(&[outcome]).inc();
        }
    }

    /// Takes the keys of `text` unless it is the document already read; whether they changed.
    /// A document that cannot serve changes nothing.
    fn replace(&self, text: String) -> Result<bool, KeysError> {
        let mut document = self.document.lock().unwrap_or_else(PoisonError::into_inner);
        if *document == text {
            return Ok(false);
        }
        let keys = parse_jwks(&text).map_err(|problem| self.problem(problem))?;
        let mut current = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(current);
        *document = text;
        Ok(true)
    }
}
