//! The blob store: packs, as opaque bytes, through `object_store`: a local
//! folder by default, or an S3-compatible bucket. Object paths are built
//! only from parsed, fixed-length ids, never from client text (SECURITY G6).

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::S3Config;
use crate::local_packs::{LocalPacks, Staging};
use keyhold_proto::{AccountId, ObjectId};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Blob store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The object is not there.
    #[error("blob not found")]
    NotFound,
    /// The backend failed.
    #[error("blob store")]
    Backend(#[from] object_store::Error),
}

/// An object being stored (see [`BlobStore::begin`]).
pub struct BlobUpload(Upload);

enum Upload {
    /// Streamed to a staging file in the local folder.
    Local(Staging),
    /// Collected, then sent in one request.
    Remote { store: Arc<dyn ObjectStore>, path: ObjectPath, frames: Vec<Bytes> },
}

impl BlobUpload {
    /// Appends the next bytes.
    pub async fn write(&mut self, frame: Bytes) -> Result<(), BlobError> {
        match &mut self.0 {
            Upload::Local(staging) => staging.write(&frame).await.map_err(local_error),
            Upload::Remote { frames, .. } => {
                frames.push(frame);
                Ok(())
            }
        }
    }

    /// Makes the object visible, durably, under its path.
    pub async fn publish(self) -> Result<(), BlobError> {
        match self.0 {
            Upload::Local(staging) => staging.publish().await.map_err(local_error),
            Upload::Remote { store, path, frames } => {
                store.put(&path, frames.into_iter().collect::<PutPayload>()).await?;
                Ok(())
            }
        }
    }
}

fn local_error(e: std::io::Error) -> BlobError {
    BlobError::Backend(object_store::Error::Generic { store: "local", source: Box::new(e) })
}

/// Where packs live.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// For a local folder: writes packs and reads their ranges itself (see `local_packs`).
    local: Option<Arc<LocalPacks>>,
}

fn location(account: AccountId, id: ObjectId) -> ObjectPath {
    ObjectPath::from(format!("{}/{}", account.to_hex(), id.to_hex()))
}

fn not_found(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        other => BlobError::Backend(other),
    }
}

impl BlobStore {
    /// A store in a local folder (created if missing).
    pub fn local(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(local_error)?;
        // A pack is durable before its row is committed, as on S3: a crash or a
        // power cut never leaves metadata naming a torn pack (F3).
        let store = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        // The same folder as `LocalFileSystem` resolved (canonical), so both
        // name an object by the same file.
        let root = std::fs::canonicalize(dir).map_err(local_error)?;
        Ok(BlobStore { store: Arc::new(store), local: Some(Arc::new(LocalPacks::new(root))) })
    }

    /// A store in an S3-compatible bucket. A successful `PUT` there is
    /// durable and atomic, as the local store's fsync makes it.
    pub fn s3(config: &S3Config) -> Result<Self, BlobError> {
        // Its HTTP client is rustls without a built-in provider: the same
        // ring provider the server's TLS uses (a no-op if already set).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        Ok(BlobStore { store: Arc::new(builder.build()?), local: None })
    }

    /// For `keyhold serve --check-config`: lists one object, which needs the
    /// store to be reachable and (for S3) the bucket and credentials right.
    pub async fn probe(&self) -> Result<(), BlobError> {
        use futures::StreamExt;
        match self.store.list(None).next().await {
            Some(Err(e)) => Err(BlobError::Backend(e)),
            Some(Ok(_)) | None => Ok(()),
        }
    }

    /// Stores an object (atomically: readers see all of it or nothing).
    pub async fn put(&self, account: AccountId, id: ObjectId, frames: Vec<Bytes>) -> Result<(), BlobError> {
        let mut upload = self.begin(account, id).await?;
        for frame in frames {
            upload.write(frame).await?;
        }
        upload.publish().await
    }

    /// Starts storing an object whose bytes arrive piece by piece: in a
    /// local folder they go to disk as they come (see `local_packs`); an
    /// S3 object is sent whole at [`BlobUpload::publish`]. Nothing is
    /// visible before then, and dropping the upload leaves nothing behind.
    pub async fn begin(&self, account: AccountId, id: ObjectId) -> Result<BlobUpload, BlobError> {
        let path = location(account, id);
        Ok(BlobUpload(match &self.local {
            Some(local) => Upload::Local(local.stage(path.as_ref()).await.map_err(local_error)?),
            None => Upload::Remote { store: self.store.clone(), path, frames: Vec::new() },
        }))
    }

    /// Removes an object (gone already is fine).
    pub async fn delete(&self, account: AccountId, id: ObjectId) -> Result<(), BlobError> {
        match self.store.delete(&location(account, id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BlobError::Backend(e)),
        }
    }

    /// Reads a whole object as a stream of frames, with its length (a
    /// large object is served without being held in memory).
    pub async fn stream(
        &self,
        account: AccountId,
        id: ObjectId,
    ) -> Result<(u64, futures::stream::BoxStream<'static, Result<Bytes, object_store::Error>>), BlobError> {
        let found = self.store.get(&location(account, id)).await.map_err(not_found)?;
        Ok((found.meta.size, found.into_stream()))
    }

    /// Reads an object, or a byte range of it.
    pub async fn get(&self, account: AccountId, id: ObjectId, range: Option<Range<u64>>) -> Result<Bytes, BlobError> {
        let path = location(account, id);
        match (range, &self.local) {
            (Some(r), Some(local)) => local.read_range(path.as_ref(), r).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => BlobError::NotFound,
                _ => local_error(e),
            }),
            (Some(r), None) => self.store.get_range(&path, r).await.map_err(not_found),
            (None, _) => self.store.get(&path).await.map_err(not_found)?.bytes().await.map_err(not_found),
        }
    }
}
