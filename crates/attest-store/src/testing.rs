//! Test support: a fresh PostgreSQL database per test, on the server named by
//! `ENIGM_ATTEST_TEST_DATABASE_URL` (`scripts/test-postgres start` runs one and prints it).
//! Without that variable the PostgreSQL tests are skipped, loudly, except under CI (`CI` set),
//! where a missing server fails them.

use sqlx::Connection;

/// The variable naming the test server (an admin URL; each test gets its own database).
pub const TEST_DATABASE_URL: &str = "ENIGM_ATTEST_TEST_DATABASE_URL";

/// A URL of a new, empty database on the test server; `None` (after saying so on standard
/// error) when no server is configured outside CI.
///
/// # Panics
///
/// Under CI without a server, or when the server cannot create the database: a test that
/// needs PostgreSQL must not pass without it there.
#[allow(clippy::panic)]
pub async fn fresh_postgres_database(tag: &str) -> Option<String> {
    let Ok(admin) = std::env::var(TEST_DATABASE_URL) else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{TEST_DATABASE_URL} is not set: CI must run the PostgreSQL tests (.ci/run starts a server)"
            );
        }
        eprintln!(
            "SKIPPED on PostgreSQL ({tag}): set {TEST_DATABASE_URL}, e.g. eval \"$(scripts/test-postgres start)\""
        );
        return None;
    };
    // Unique per test: process, time and a counter.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let safe: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(30)
        .collect::<String>()
        .to_ascii_lowercase();
    let name = format!("t_{safe}_{}_{nanos}_{n}", std::process::id());
    sqlx::any::install_default_drivers();
    let mut conn = match sqlx::AnyConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => panic!("{TEST_DATABASE_URL}: {e}"),
    };
    if let Err(e) =
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await
    {
        panic!("CREATE DATABASE {name}: {e}");
    }
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}
