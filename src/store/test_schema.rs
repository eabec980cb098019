//! A PostgreSQL schema of its own for one test, dropped when the guard goes. Used by the store's unit
//! tests and by the integration tests (`tests/util.rs`) when `RTCTL_TEST_DATABASE_URL` names a server;
//! not part of the product.

use std::io::Write;

use sqlx::Connection;

/// A fresh schema in the database at `base`; [`TestSchema::url`] reaches it.
pub struct TestSchema {
    base: String,
    name: String,
}

impl TestSchema {
    /// Creates `{prefix}_{random}` in the database at `base`.
    pub async fn create(base: &str, prefix: &str) -> Self {
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(base).await.expect("connect to RTCTL_TEST_DATABASE_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .expect("create a test schema");
        Self { base: base.to_owned(), name }
    }

    /// The database URL with this schema as the search path, and as the application name that
    /// [`Drop`] finds its connections by.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{separator}options[search_path]={name}&application_name={name}", self.base, name = self.name)
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // The test's runtime may be gone or about to be: drop it from a runtime of our own. A hub
        // stopped mid-transaction may still hold a lock; give up after a moment rather than hang.
        let (base, name) = (self.base.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
                // A hub the test did not wait for may still be migrating this schema, holding locks on
                // it: its connections go first (best effort: the drop is still worth trying without).
                let _ =
                    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
                        .bind(&name)
                        .execute(&mut conn)
                        .await;
                sqlx::query("SET lock_timeout = '2s'").execute(&mut conn).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE"))).execute(&mut conn).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            // Written to the stream, not with `eprintln!`: the test harness captures that for tests
            // that pass, and a leaked schema went unseen that way.
            let _ = writeln!(std::io::stderr(), "could not drop test schema {}: drop it by hand", self.name);
        }
    }
}
