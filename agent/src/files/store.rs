//! The file store on disk, one directory per bucket:
//!
//! ```text
//! <root>/<bucket>/blobs/<id>          an object's bytes, written once, never changed
//! <root>/<bucket>/index/<key>.json    {blob, size, etag, content_type, modified_ms}
//! <root>/<bucket>/tmp/                writes in progress (emptied at start)
//! ```
//!
//! A PUT streams the body into `tmp/` (counting against the bucket's size limit and hashing
//! for the ETag), fsyncs it and renames it into `blobs/`; then the key's index entry is
//! written the same way (temp, fsync, rename). The index rename is the one step that makes
//! the new object visible, so a reader sees the old object or the new one, never a part;
//! a failed or refused write (too large, disk full, client gone) removes its temp file and
//! changes nothing. The replaced blob is removed after the rename (a reader that opened it
//! keeps reading it). Keys are checked by [`super::key`] before they get here.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::key::ObjectKey;

/// What the store keeps of an object besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The file under `blobs/`.
    pub blob: String,
    pub size: u64,
    /// Quoted strong ETag: the first 128 bits of the SHA-256 of the bytes, hex.
    pub etag: String,
    pub content_type: String,
    pub modified_ms: u64,
}

/// Why a write did not happen (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("no bucket `{0}` on this board")]
    NoBucket(String),
    #[error("the object is larger than bucket `{bucket}` allows ({limit} bytes)")]
    TooLarge { bucket: String, limit: u64 },
    #[error("the disk is full: nothing was written")]
    DiskFull,
    #[error("the upload broke off: {0}")]
    Body(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A body arriving in chunks (an HTTP request's; a list in tests).
pub trait Chunks {
    /// The next chunk; None at the end; Err when the sender broke off.
    fn next_chunk(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<bytes::Bytes, String>>>;
}

/// One bucket's settings, as the store needs them.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub name: String,
    pub max_object_bytes: u64,
    /// `host:port` of the other board holding it (see [`super::http`]).
    pub replica: Option<String>,
}

/// The store of one files board.
pub struct Store {
    root: PathBuf,
    buckets: Vec<Bucket>,
    /// Per bucket: when its usage was last counted, and what it was (a walk of `blobs/` is
    /// not done for every stats request: the collector asks every second).
    usage: std::sync::Mutex<std::collections::HashMap<String, Counted>>,
}

/// When a bucket's (objects, bytes) were counted, and what they were.
type Counted = (std::time::Instant, (u64, u64));

/// How long a counted usage is reused.
const USAGE_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

impl Store {
    /// Creates the buckets' directories (and empties their `tmp/`).
    pub async fn open(root: &Path, buckets: Vec<Bucket>) -> std::io::Result<Store> {
        for b in &buckets {
            let dir = root.join(&b.name);
            let tmp = dir.join("tmp");
            match tokio::fs::remove_dir_all(&tmp).await {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for sub in ["blobs", "index", "tmp"] {
                tokio::fs::create_dir_all(dir.join(sub)).await?;
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
            buckets,
            usage: Default::default(),
        })
    }

    pub fn bucket(&self, name: &str) -> Option<&Bucket> {
        self.buckets.iter().find(|b| b.name == name)
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    fn dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    fn index(&self, bucket: &str, key: &ObjectKey) -> PathBuf {
        self.dir(bucket).join("index").join(key.index_path())
    }

    /// The path of `meta`'s bytes.
    pub fn blob_path(&self, bucket: &str, meta: &Meta) -> PathBuf {
        self.dir(bucket).join("blobs").join(&meta.blob)
    }

    /// The object's metadata, None when there is no such object.
    pub async fn meta(&self, bucket: &str, key: &ObjectKey) -> std::io::Result<Option<Meta>> {
        match tokio::fs::read(self.index(bucket, key)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            // A directory where the entry would be cannot happen (see ObjectKey::index_path),
            // but a key whose parent is a file, or none, is simply not there.
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Stores `body` under `key`. `declared`: the Content-Length, refused at once when over
    /// the limit.
    pub async fn put(
        &self,
        bucket: &str,
        key: &ObjectKey,
        content_type: &str,
        declared: Option<u64>,
        body: &mut impl Chunks,
    ) -> Result<Meta, PutError> {
        let limit = self
            .bucket(bucket)
            .ok_or_else(|| PutError::NoBucket(bucket.to_string()))?
            .max_object_bytes;
        let too_large = || PutError::TooLarge {
            bucket: bucket.to_string(),
            limit,
        };
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let id = unique_id()?;
        let tmp = self.dir(bucket).join("tmp").join(&id);
        let written = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(disk)?;
            let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
            let mut size = 0u64;
            while let Some(chunk) = body.next_chunk().await {
                let chunk = chunk.map_err(PutError::Body)?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(too_large());
                }
                hash.update(&chunk);
                file.write_all(&chunk).await.map_err(disk)?;
            }
            file.sync_all().await.map_err(disk)?;
            Ok((size, hash.finish()))
        }
        .await;
        let (size, digest) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let blob = self.dir(bucket).join("blobs").join(&id);
        if let Err(e) = tokio::fs::rename(&tmp, &blob).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(disk(e));
        }
        let meta = Meta {
            blob: id,
            size,
            etag: format!("\"{}\"", hex(&digest.as_ref()[..16])),
            content_type: content_type.to_string(),
            modified_ms: now_ms(),
        };
        let old = self.meta(bucket, key).await.ok().flatten();
        if let Err(e) = self.write_index(bucket, key, &meta).await {
            let _ = tokio::fs::remove_file(&blob).await;
            return Err(e);
        }
        if let Some(old) = old {
            let _ = tokio::fs::remove_file(self.blob_path(bucket, &old)).await;
        }
        Ok(meta)
    }

    async fn write_index(
        &self,
        bucket: &str,
        key: &ObjectKey,
        meta: &Meta,
    ) -> Result<(), PutError> {
        let path = self.index(bucket, key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(disk)?;
        }
        let tmp = self
            .dir(bucket)
            .join("tmp")
            .join(format!("{}.json", meta.blob));
        let bytes = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
        let done = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            file.write_all(&bytes).await?;
            file.sync_all().await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = done {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(disk(e));
        }
        Ok(())
    }

    /// Removes the object; false when there was none.
    pub async fn delete(&self, bucket: &str, key: &ObjectKey) -> std::io::Result<bool> {
        let Some(meta) = self.meta(bucket, key).await? else {
            return Ok(false);
        };
        match tokio::fs::remove_file(self.index(bucket, key)).await {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            other => other?,
        }
        let _ = tokio::fs::remove_file(self.blob_path(bucket, &meta)).await;
        Ok(true)
    }

    /// (objects, bytes) held by `bucket`, counted at most every [`USAGE_FRESH`].
    pub async fn usage(&self, bucket: &str) -> std::io::Result<(u64, u64)> {
        let now = std::time::Instant::now();
        let known = self
            .usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(bucket)
            .copied();
        if let Some((at, counted)) = known {
            if now.duration_since(at) < USAGE_FRESH {
                return Ok(counted);
            }
        }
        let counted = self.count_usage(bucket).await?;
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bucket.to_string(), (now, counted));
        Ok(counted)
    }

    /// (objects, bytes): the sum of the bucket's blobs, counted now.
    pub async fn count_usage(&self, bucket: &str) -> std::io::Result<(u64, u64)> {
        let mut entries = tokio::fs::read_dir(self.dir(bucket).join("blobs")).await?;
        let (mut objects, mut bytes) = (0u64, 0u64);
        while let Some(entry) = entries.next_entry().await? {
            if let Ok(m) = entry.metadata().await {
                objects += 1;
                bytes += m.len();
            }
        }
        Ok((objects, bytes))
    }
}

/// A full disk is its own answer (507); anything else is an I/O error.
fn disk(e: std::io::Error) -> PutError {
    if e.kind() == ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        PutError::DiskFull
    } else {
        PutError::Io(e)
    }
}

/// 128 random bits, hex: a blob's name.
fn unique_id() -> std::io::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("no system randomness"))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct List(std::vec::IntoIter<Result<bytes::Bytes, String>>);

    impl Chunks for List {
        async fn next_chunk(&mut self) -> Option<Result<bytes::Bytes, String>> {
            self.0.next()
        }
    }

    fn chunks(parts: Vec<&'static [u8]>) -> List {
        let parts: Vec<_> = parts
            .into_iter()
            .map(|p| Ok(bytes::Bytes::from_static(p)))
            .collect();
        List(parts.into_iter())
    }

    async fn store(dir: &Path, limit: u64) -> Store {
        let buckets = vec![Bucket {
            name: "avatars".into(),
            max_object_bytes: limit,
            replica: None,
        }];
        Store::open(dir, buckets).await.expect("open")
    }

    fn leftovers(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("avatars/tmp"))
            .expect("tmp")
            .count()
    }

    #[tokio::test]
    async fn put_replace_delete_and_nothing_left_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path(), 1 << 20).await;
        let key = ObjectKey::parse("u/1.png").expect("key");
        let first = store
            .put(
                "avatars",
                &key,
                "image/png",
                None,
                &mut chunks(vec![b"ab", b"c"]),
            )
            .await
            .expect("put");
        assert_eq!(first.size, 3);
        // SHA-256("abc") starts ba7816bf8f01cfea414140de5dae2223.
        assert_eq!(first.etag, "\"ba7816bf8f01cfea414140de5dae2223\"");
        let read = store.meta("avatars", &key).await.expect("meta");
        assert_eq!(read.as_ref(), Some(&first));
        let bytes = std::fs::read(store.blob_path("avatars", &first)).expect("blob");
        assert_eq!(bytes, b"abc");

        let second = store
            .put(
                "avatars",
                &key,
                "image/png",
                Some(2),
                &mut chunks(vec![b"xy"]),
            )
            .await
            .expect("replace");
        assert!(
            !store.blob_path("avatars", &first).exists(),
            "old blob removed"
        );
        assert_eq!(store.count_usage("avatars").await.expect("usage"), (1, 2));
        assert!(store.delete("avatars", &key).await.expect("delete"));
        assert!(!store.blob_path("avatars", &second).exists());
        assert!(!store.delete("avatars", &key).await.expect("again"));
        assert_eq!(store.meta("avatars", &key).await.expect("meta"), None);
        assert_eq!(leftovers(dir.path()), 0);
    }

    #[tokio::test]
    async fn too_large_and_broken_uploads_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path(), 4).await;
        let key = ObjectKey::parse("a").expect("key");
        store
            .put(
                "avatars",
                &key,
                "text/plain",
                None,
                &mut chunks(vec![b"keep"]),
            )
            .await
            .expect("put");
        let declared = store
            .put(
                "avatars",
                &key,
                "text/plain",
                Some(5),
                &mut chunks(vec![b"12345"]),
            )
            .await;
        assert!(
            matches!(declared, Err(PutError::TooLarge { .. })),
            "{declared:?}"
        );
        let streamed = store
            .put(
                "avatars",
                &key,
                "text/plain",
                None,
                &mut chunks(vec![b"123", b"45"]),
            )
            .await;
        assert!(
            matches!(streamed, Err(PutError::TooLarge { .. })),
            "{streamed:?}"
        );
        let parts = vec![
            Ok(bytes::Bytes::from_static(b"1")),
            Err("reset".to_string()),
        ];
        let broken = store
            .put(
                "avatars",
                &key,
                "text/plain",
                None,
                &mut List(parts.into_iter()),
            )
            .await;
        assert!(matches!(broken, Err(PutError::Body(_))), "{broken:?}");
        let missing = store
            .put("videos", &key, "text/plain", None, &mut chunks(vec![b"x"]))
            .await;
        assert!(matches!(missing, Err(PutError::NoBucket(_))), "{missing:?}");
        // The first object is whole and alone.
        let meta = store
            .meta("avatars", &key)
            .await
            .expect("meta")
            .expect("kept");
        assert_eq!(
            std::fs::read(store.blob_path("avatars", &meta)).expect("blob"),
            b"keep"
        );
        assert_eq!(store.count_usage("avatars").await.expect("usage"), (1, 4));
        assert_eq!(leftovers(dir.path()), 0);
    }
}
