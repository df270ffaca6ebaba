//! The key transparency log's rows in the metadata store (migration 6):
//! log entries, signed checkpoints, what the directory last published,
//! auditors' cosignatures and the publisher's lease.

use keyhold_core::{AccountId, CollectionId};
use sqlx::Row;

use crate::store::{MetaStore, StoreError, array, to_i64, to_u64};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What taking the publisher's lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This process held it and still does.
    Renewed,
    /// This process holds it now, and did not just before (another process
    /// may have published meanwhile).
    Acquired,
    /// Another process holds it.
    Other,
}

impl MetaStore {
    /// Log entries from index `from` on, in order.
    pub async fn kt_entries(&self, from: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        sqlx::query("SELECT idx, entry FROM kt_log WHERE idx >= $1 ORDER BY idx")
            .bind(to_i64(from, "log index")?)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| Ok((to_u64(r.get(0), "log index")?, r.get(1))))
            .collect()
    }

    /// Appends entry `idx`; `false` if that index is taken (another
    /// publisher wrote it).
    pub async fn kt_append(&self, idx: u64, entry: &[u8], now: i64) -> Result<bool> {
        let inserted = sqlx::query("INSERT INTO kt_log (idx, entry, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(to_i64(idx, "log index")?)
            .bind(entry)
            .bind(now)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }

    /// Stores the signed checkpoint of `size` entries (replacing one of the
    /// same size: the same tree, cosigned again).
    pub async fn kt_put_checkpoint(&self, size: u64, note: &[u8], now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO kt_checkpoints (size, note, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (size) DO UPDATE SET note = excluded.note, created_at = excluded.created_at",
        )
        .bind(to_i64(size, "checkpoint size")?)
        .bind(note)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest checkpoint: (size, signed note).
    pub async fn kt_latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>> {
        sqlx::query("SELECT size, note FROM kt_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?
            .map(|r| Ok((to_u64(r.get(0), "checkpoint size")?, r.get(1))))
            .transpose()
    }

    /// The checkpoint of `size` entries.
    pub async fn kt_checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query("SELECT note FROM kt_checkpoints WHERE size = $1")
            .bind(to_i64(size, "checkpoint size")?)
            .fetch_optional(self.pool())
            .await?
            .map(|r| r.get(0)))
    }

    /// Every label's last published value: (label, value).
    pub async fn kt_published(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(sqlx::query("SELECT label, value FROM kt_published")
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Records what epoch `epoch` published.
    pub async fn kt_set_published(&self, rows: &[(Vec<u8>, Vec<u8>)], epoch: u64) -> Result<()> {
        let epoch = to_i64(epoch, "epoch")?;
        let mut tx = self.pool().begin().await?;
        for (label, value) in rows {
            sqlx::query(
                "INSERT INTO kt_published (label, value, epoch) VALUES ($1, $2, $3) \
                 ON CONFLICT (label) DO UPDATE SET value = excluded.value, epoch = excluded.epoch",
            )
            .bind(label.as_slice())
            .bind(value.as_slice())
            .bind(epoch)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Keeps auditor `name`'s cosignature of the checkpoint of `size`, if
    /// it is newer than the one kept.
    pub async fn kt_put_audit(&self, name: &str, size: u64, line: &[u8], now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO kt_audits (auditor, size, line, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (auditor) DO UPDATE SET size = excluded.size, line = excluded.line, created_at = excluded.created_at \
             WHERE kt_audits.size <= excluded.size",
        )
        .bind(name)
        .bind(to_i64(size, "checkpoint size")?)
        .bind(line)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Each auditor's newest cosignature: (size, line).
    pub async fn kt_audits(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        sqlx::query("SELECT size, line FROM kt_audits ORDER BY auditor")
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| Ok((to_u64(r.get(0), "checkpoint size")?, r.get(1))))
            .collect()
    }

    /// Takes (or renews) the publisher's lease for `lease_ms`.
    pub async fn kt_take_lease(&self, holder: &[u8; 16], now: i64, lease_ms: i64) -> Result<Lease> {
        let until = now.saturating_add(lease_ms);
        sqlx::query("INSERT INTO kt_lease (id, holder, expires_at) VALUES (1, $1, 0) ON CONFLICT (id) DO NOTHING")
            .bind(holder.as_slice())
            .execute(self.pool())
            .await?;
        let mut tx = self.pool().begin().await?;
        let before: Vec<u8> = sqlx::query("SELECT holder FROM kt_lease WHERE id = 1").fetch_one(&mut *tx).await?.get(0);
        let taken =
            sqlx::query("UPDATE kt_lease SET holder = $1, expires_at = $2 WHERE id = 1 AND (holder = $1 OR expires_at < $3)")
                .bind(holder.as_slice())
                .bind(until)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(match (taken, before.as_slice() == holder.as_slice()) {
            (1, true) => Lease::Renewed,
            (1, false) => Lease::Acquired,
            _ => Lease::Other,
        })
    }

    /// Gives the publisher's lease up (on shutdown), so that the next
    /// process publishes at once.
    pub async fn kt_release_lease(&self, holder: &[u8; 16]) -> Result<()> {
        sqlx::query("UPDATE kt_lease SET expires_at = 0 WHERE id = 1 AND holder = $1")
            .bind(holder.as_slice())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Every account's device chain head: (account, seq, entry id).
    pub async fn kt_chain_heads(&self) -> Result<Vec<(AccountId, u64, [u8; 32])>> {
        sqlx::query(
            "SELECT c.account_id, c.seq, c.entry_id FROM device_chain c \
             JOIN (SELECT account_id, MAX(seq) AS seq FROM device_chain GROUP BY account_id) h \
             ON c.account_id = h.account_id AND c.seq = h.seq",
        )
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|r| Ok((AccountId(array(r.get(0), "account id")?), to_u64(r.get(1), "chain seq")?, array(r.get(2), "entry id")?)))
        .collect()
    }

    /// Every collection's head: (account, collection, seq, revision id).
    pub async fn kt_collection_heads(&self) -> Result<Vec<(AccountId, CollectionId, u64, [u8; 32])>> {
        sqlx::query("SELECT account_id, collection_id, seq, revision_id FROM heads")
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| {
                Ok((
                    AccountId(array(r.get(0), "account id")?),
                    CollectionId(array(r.get(1), "collection id")?),
                    to_u64(r.get(2), "head seq")?,
                    array(r.get(3), "revision id")?,
                ))
            })
            .collect()
    }
}
