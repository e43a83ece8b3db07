//! The tenant registry in a SQLite file, for a self-hosted `serve` and the admin commands
//! (`--tenants-db FILE`): one row per tenant, the record as JSON, the same rules as the DynamoDB table
//! (an id is added once, replaced only when present).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{RegistryError, TenantId, TenantRecord, TenantRegistry};
use crate::failure::Failure;

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS tenants (
        id TEXT PRIMARY KEY NOT NULL,
        record TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
";

#[derive(Clone)]
pub struct SqliteRegistry {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteRegistry").finish_non_exhaustive()
    }
}

fn refused(e: rusqlite::Error) -> RegistryError {
    RegistryError::Refused(Failure::new("the tenants database").with_source(e))
}

impl SqliteRegistry {
    /// Opens (creating when missing) the registry file.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let conn = Connection::open(path).map_err(|e| {
            RegistryError::Refused(
                Failure::new(format!(
                    "cannot open the tenants database {}",
                    path.display()
                ))
                .with_source(e),
            )
        })?;
        Self::with_connection(conn)
    }

    pub fn in_memory() -> Result<Self, RegistryError> {
        Self::with_connection(Connection::open_in_memory().map_err(refused)?)
    }

    fn with_connection(conn: Connection) -> Result<Self, RegistryError> {
        conn.busy_timeout(Duration::from_secs(5)).map_err(refused)?;
        conn.execute_batch(SCHEMA).map_err(refused)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection off the async threads (SQLite blocks).
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| {
            RegistryError::Unavailable(Failure::new("the tenants database").with_source(e))
        })?
    }
}

impl SqliteRegistry {
    /// One conditional write of `record` (`?1` id, `?2` record, `?3` updated at); `unchanged` is the
    /// error when it wrote no row.
    async fn write(
        &self,
        sql: &'static str,
        record: &TenantRecord,
        unchanged: fn(TenantId) -> RegistryError,
    ) -> Result<(), RegistryError> {
        let (id, text, at) = (
            record.id.clone(),
            encode(record)?,
            record.updated_at.clone(),
        );
        self.with(move |c| {
            let n = c
                .execute(sql, params![id.as_str(), text, at])
                .map_err(refused)?;
            if n == 0 {
                return Err(unchanged(id));
            }
            Ok(())
        })
        .await
    }
}

fn encode(record: &TenantRecord) -> Result<String, RegistryError> {
    serde_json::to_string(record).map_err(|e| RegistryError::Corrupt(e.to_string()))
}

fn decode(id: &str, text: &str) -> Result<TenantRecord, RegistryError> {
    serde_json::from_str(text).map_err(|e| RegistryError::Corrupt(format!("tenant {id:?}: {e}")))
}

#[async_trait]
impl TenantRegistry for SqliteRegistry {
    async fn add(&self, record: &TenantRecord) -> Result<(), RegistryError> {
        const SQL: &str =
            "INSERT OR IGNORE INTO tenants (id, record, updated_at) VALUES (?1, ?2, ?3)";
        self.write(SQL, record, RegistryError::Exists).await
    }

    async fn replace(&self, record: &TenantRecord) -> Result<(), RegistryError> {
        const SQL: &str = "UPDATE tenants SET record = ?2, updated_at = ?3 WHERE id = ?1";
        self.write(SQL, record, RegistryError::NotFound).await
    }

    async fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, RegistryError> {
        let id = id.clone();
        self.with(move |c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT record FROM tenants WHERE id = ?1",
                    params![id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(refused)?;
            text.map(|t| decode(id.as_str(), &t)).transpose()
        })
        .await
    }

    async fn list(&self) -> Result<Vec<TenantRecord>, RegistryError> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT id, record FROM tenants ORDER BY id")
                .map_err(refused)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(refused)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, text) = row.map_err(refused)?;
                out.push(decode(&id, &text)?);
            }
            Ok(out)
        })
        .await
    }

    async fn remove(&self, id: &TenantId) -> Result<bool, RegistryError> {
        let id = id.clone();
        self.with(move |c| {
            let n = c
                .execute("DELETE FROM tenants WHERE id = ?1", params![id.as_str()])
                .map_err(refused)?;
            Ok(n > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::tests::record;

    #[tokio::test]
    async fn a_tenant_is_added_once_replaced_only_when_present_listed_in_order_and_removed() {
        let reg = SqliteRegistry::in_memory().unwrap();
        let acme = record("acme");
        reg.add(&acme).await.unwrap();
        assert!(matches!(
            reg.add(&acme).await,
            Err(RegistryError::Exists(_))
        ));
        assert_eq!(reg.get(&acme.id).await.unwrap(), Some(acme.clone()));

        let ghost = record("ghost");
        assert!(matches!(
            reg.replace(&ghost).await,
            Err(RegistryError::NotFound(_))
        ));
        let mut renamed = acme.clone();
        renamed.name = Some("Acme Corp".into());
        reg.replace(&renamed).await.unwrap();
        assert_eq!(
            reg.get(&acme.id).await.unwrap().unwrap().name.as_deref(),
            Some("Acme Corp")
        );

        reg.add(&record("beta")).await.unwrap();
        reg.add(&record("alpha")).await.unwrap();
        let ids: Vec<String> = reg
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id.to_string())
            .collect();
        assert_eq!(ids, ["acme", "alpha", "beta"]);

        assert!(reg.remove(&acme.id).await.unwrap());
        assert!(!reg.remove(&acme.id).await.unwrap());
        assert_eq!(reg.get(&acme.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_file_keeps_the_tenants_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.db");
        SqliteRegistry::open(&path)
            .unwrap()
            .add(&record("acme"))
            .await
            .unwrap();
        let again = SqliteRegistry::open(&path).unwrap();
        assert_eq!(again.list().await.unwrap().len(), 1);
    }
}
