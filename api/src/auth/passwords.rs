//! argon2id password hashing, off the async threads, and the gate that bounds how many
//! hashes run at once: each takes about 19 MiB (argon2's default `m = 19456 KiB`), so forty
//! concurrent logins must not mean 760 MiB.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash::rand_core::OsRng};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Memory one argon2 computation holds with the default parameters.
pub const HASH_MEMORY_BYTES: u64 = 19 * 1024 * 1024;
/// How long a request waits for a free slot before it is answered 503 with `Retry-After`.
pub const QUEUE_WAIT: Duration = Duration::from_secs(3);

/// The share of the process's memory argon2 may use at once: a quarter of the cgroup limit,
/// or of the memory available at start-up when there is none.
const MEMORY_SHARE: u64 = 4;

/// Bounds concurrent argon2 work. Every hash and verification (sign-up, login, user creation,
/// password changes) goes through it.
#[derive(Debug, Clone)]
pub struct PasswordWork {
    permits: Arc<Semaphore>,
    size: usize,
    wait: Duration,
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("too many password checks at once; try again shortly")]
    Busy,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<WorkError> for crate::error::ApiError {
    fn from(e: WorkError) -> Self {
        match e {
            WorkError::Busy => crate::error::ApiError::Unavailable(e.to_string()),
            WorkError::Failed(e) => crate::error::ApiError::Internal(e),
        }
    }
}

impl PasswordWork {
    /// `permits = clamp(memory budget / 19 MiB, 1, 2 × cores)`, the budget being
    /// [`memory_budget`].
    pub fn sized_from_memory() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let by_memory = memory_budget().map_or(cores, |b| (b / HASH_MEMORY_BYTES) as usize);
        Self::new(by_memory.clamp(1, 2 * cores), QUEUE_WAIT)
    }

    pub fn new(permits: usize, wait: Duration) -> Self {
        let size = permits.max(1);
        PasswordWork {
            permits: Arc::new(Semaphore::new(size)),
            size,
            wait,
        }
    }

    /// How many hashes may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, WorkError> {
        tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| WorkError::Busy)?
            .map_err(|_| WorkError::Busy)
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, WorkError> {
        let permit = self.permit().await?;
        let hashed = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_blocking(password.expose_secret())
        })
        .await
        .map_err(|e| anyhow::anyhow!("password hashing task failed: {e}"))??;
        Ok(hashed)
    }

    /// Whether `password` matches `phc`; the full argon2 work either way.
    pub async fn verify(&self, password: SecretString, phc: String) -> Result<bool, WorkError> {
        let permit = self.permit().await?;
        Ok(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_blocking(password.expose_secret(), &phc)
        })
        .await
        .unwrap_or(false))
    }
}

/// Bytes argon2 may hold at once: a quarter of the cgroup's memory limit, else of
/// `MemAvailable`. `None` when neither can be read.
pub fn memory_budget() -> Option<u64> {
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    .filter_map(|text| text.trim().parse::<u64>().ok())
    // cgroup v1 reports "no limit" as a huge number.
    .find(|limit| *limit < (1 << 50));
    let available = || {
        std::fs::read_to_string("/proc/meminfo")
            .ok()?
            .lines()
            .find_map(|line| {
                let kib = line
                    .strip_prefix("MemAvailable:")?
                    .trim()
                    .strip_suffix("kB")?;
                kib.trim().parse::<u64>().ok().map(|k| k * 1024)
            })
    };
    cgroup.or_else(available).map(|bytes| bytes / MEMORY_SHARE)
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// A hash of a random password with the same parameters as real ones, verified against
/// when an email is unknown so that a miss costs what a wrong password costs.
pub fn dummy_hash() -> String {
    let random = tributary_worker::secrets::random_token::<24>();
    hash_blocking(&random).expect("argon2 with default parameters cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let work = PasswordWork::new(2, QUEUE_WAIT);
        let phc = work
            .hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let check = |p: &str, phc: &str| work.verify(SecretString::from(p), phc.to_string());
        assert!(check("correct horse battery", &phc).await.unwrap());
        assert!(!check("wrong", &phc).await.unwrap());
        assert!(!check("x", "not a phc").await.unwrap());
    }

    #[tokio::test]
    async fn the_gate_refuses_rather_than_queue_forever() {
        let work = PasswordWork::new(1, Duration::from_millis(50));
        let held = work.permit().await.unwrap();
        assert!(matches!(
            work.hash(SecretString::from("correct horse battery")).await,
            Err(WorkError::Busy)
        ));
        drop(held);
        let phc = work
            .hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();
        assert!(
            work.verify(SecretString::from("correct horse battery"), phc)
                .await
                .unwrap()
        );
        let sized = PasswordWork::sized_from_memory();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!((1..=2 * cores).contains(&sized.size()));
    }
}
