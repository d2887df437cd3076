//! A jar store in a directory: master-local (not HA) or a folder mounted at the same path on
//! every master (`file://`, typically NFS). The code is the same; only what it promises differs.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::fs;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::{name, ByteStream, JarStore, JarStoreError, StoredJar};

const PARTIAL_DIR: &str = ".partial";

pub struct FsJarStore {
    root: PathBuf,
    shared: bool,
}

impl FsJarStore {
    /// A folder on this master only.
    pub fn local(root: PathBuf) -> FsJarStore {
        FsJarStore { root, shared: false }
    }

    /// A folder every master mounts at the same path (`file://`).
    pub fn shared(root: PathBuf) -> FsJarStore {
        FsJarStore { root, shared: true }
    }

    fn unavailable(&self, what: &str, error: &std::io::Error) -> JarStoreError {
        let hint = match error.raw_os_error() {
            Some(28) => " (the disk is full)",
            Some(30) => " (the file system is read-only)",
            Some(13) => " (permission denied for the master's user)",
            _ => "",
        };
        JarStoreError::Unavailable { store: self.describe(), cause: format!("{what}: {error}{hint}") }
    }

    /// A missing shared folder usually means the NFS mount is not there: creating it would
    /// silently put jars on this master's local disk, where no other master sees them.
    async fn require_mounted(&self) -> Result<(), JarStoreError> {
        if self.shared && !fs::try_exists(&self.root).await.unwrap_or(false) {
            return Err(JarStoreError::Unavailable {
                store: self.describe(),
                cause: "the folder does not exist (is the shared file system mounted?)".into(),
            });
        }
        Ok(())
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, JarStoreError> {
        name::validate(key)?;
        Ok(self.root.join(key))
    }

    async fn write_partial(
        &self,
        partial: &Path,
        mut body: ByteStream,
        max_size: u64,
    ) -> Result<(u64, String), JarStoreError> {
        let mut file =
            fs::File::create(partial).await.map_err(|e| self.unavailable("creating the upload file", &e))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(JarStoreError::Upload)?;
            size += chunk.len() as u64;
            if size > max_size {
                return Err(JarStoreError::TooLarge { limit: max_size });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| self.unavailable("writing the jar", &e))?;
        }
        // Durable before it becomes visible: a master that acknowledges a jar must not lose it.
        file.sync_all().await.map_err(|e| self.unavailable("syncing the jar to disk", &e))?;
        Ok((size, hex::encode(hasher.finalize())))
    }
}

#[async_trait]
impl JarStore for FsJarStore {
    fn describe(&self) -> String {
        if self.shared {
            format!("file://{}", self.root.display())
        } else {
            format!("{} (local to this master)", self.root.display())
        }
    }

    fn is_highly_available(&self) -> bool {
        self.shared
    }

    async fn put(&self, key: &str, body: ByteStream, max_size: u64) -> Result<StoredJar, JarStoreError> {
        let target = self.path_of(key)?;
        self.require_mounted().await?;
        let partial_dir = self.root.join(PARTIAL_DIR);
        fs::create_dir_all(&partial_dir)
            .await
            .map_err(|e| self.unavailable("creating the upload folder", &e))?;
        let partial = partial_dir.join(format!("{key}.{:016x}", rand::random::<u64>()));
        let written = self.write_partial(&partial, body, max_size).await;
        let result = match written {
            Ok((size, sha256)) => match publish(&partial, &target).await {
                Ok(()) => {
                    sync_dir(&self.root).await;
                    return Ok(StoredJar { key: key.to_string(), size, sha256 });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(JarStoreError::AlreadyExists(key.to_string()))
                }
                Err(e) => Err(self.unavailable("moving the finished upload into place", &e)),
            },
            Err(e) => Err(e),
        };
        let _ = fs::remove_file(&partial).await;
        result
    }

    async fn get(&self, key: &str) -> Result<ByteStream, JarStoreError> {
        let path = self.path_of(key)?;
        match fs::File::open(&path).await {
            Ok(file) => Ok(Box::pin(ReaderStream::with_capacity(file, 256 * 1024))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(JarStoreError::NotFound(key.to_string()))
            }
            Err(e) => Err(self.unavailable("opening the jar", &e)),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, JarStoreError> {
        let path = self.path_of(key)?;
        fs::try_exists(&path).await.map_err(|e| self.unavailable("looking up the jar", &e))
    }

    async fn delete(&self, key: &str) -> Result<(), JarStoreError> {
        let path = self.path_of(key)?;
        match fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.unavailable("deleting the jar", &e)),
        }
    }

    async fn list(&self) -> Result<Vec<String>, JarStoreError> {
        let mut entries = match fs::read_dir(&self.root).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.unavailable("listing the store", &e)),
        };
        let mut keys = Vec::new();
        while let Some(entry) =
            entries.next_entry().await.map_err(|e| self.unavailable("listing the store", &e))?
        {
            let Ok(key) = entry.file_name().into_string() else { continue };
            if !key.starts_with('.') && entry.file_type().await.is_ok_and(|t| t.is_file()) {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), JarStoreError> {
        self.require_mounted().await?;
        let partial_dir = self.root.join(PARTIAL_DIR);
        fs::create_dir_all(&partial_dir)
            .await
            .map_err(|e| self.unavailable("creating the store folder", &e))?;
        let probe = partial_dir.join(format!("probe.{:016x}", rand::random::<u64>()));
        fs::write(&probe, b"probe").await.map_err(|e| self.unavailable("writing a probe file", &e))?;
        let _ = fs::remove_file(&probe).await;
        Ok(())
    }
}

/// Moves the finished upload to its key without ever replacing a file there: `rename` would
/// silently overwrite another upload's jar (two masters sharing one NFS folder, or a key
/// reused). A hard link fails with `AlreadyExists` atomically, on NFS too; where the file
/// system has no hard links, `renameat2(RENAME_NOREPLACE)` does the same on local disks.
async fn publish(partial: &Path, target: &Path) -> std::io::Result<()> {
    let (partial, target) = (partial.to_path_buf(), target.to_path_buf());
    tokio::task::spawn_blocking(move || match std::fs::hard_link(&partial, &target) {
        Ok(()) => {
            // The jar is in place; a leftover link in the hidden upload folder harms nobody.
            let _ = std::fs::remove_file(&partial);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            nix::fcntl::renameat2(None, &partial, None, &target, nix::fcntl::RenameFlags::RENAME_NOREPLACE)
                .map_err(std::io::Error::from)
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Makes a rename durable; a failure here only weakens durability on exotic file systems.
async fn sync_dir(dir: &Path) {
    if let Ok(handle) = fs::File::open(dir).await {
        let _ = handle.sync_all().await;
    }
}
