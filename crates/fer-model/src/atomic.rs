//! Writing a file so that a crash at any instant leaves the old file or the new one, never half
//! of one: models, checkpoints and every run file go through here.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that a crash at any instant leaves either the old file or the
/// new one: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_on(&mut RealDisk, path, bytes)
}

/// The file-system steps of [`write_atomic`], a seam so tests can make any step fail the way
/// disks do (full, read-only, I/O error) without needing such a disk.
pub trait Disk {
    /// Creates `path`, writes all of `bytes` and flushes them to the device (fsync).
    fn write_synced(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
    fn rename(&mut self, from: &Path, to: &Path) -> std::io::Result<()>;
    fn remove(&mut self, path: &Path) -> std::io::Result<()>;
}

/// The machine's file system.
pub struct RealDisk;

impl Disk for RealDisk {
    fn write_synced(&mut self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }
}

/// [`write_atomic`] through `disk`. When a step fails, the temp file is removed (best effort),
/// the target is untouched, and the error says which step failed.
pub fn write_atomic_on(disk: &mut dyn Disk, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let step = |what: &str, e: std::io::Error| std::io::Error::new(e.kind(), format!("{what} {}: {e}", tmp.display()));
    if let Err(e) = disk.write_synced(&tmp, bytes) {
        let _ = disk.remove(&tmp);
        return Err(step("writing", e));
    }
    if let Err(e) = disk.rename(&tmp, path) {
        let _ = disk.remove(&tmp);
        return Err(std::io::Error::new(e.kind(), format!("renaming {} over it: {e}", tmp.display())));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
