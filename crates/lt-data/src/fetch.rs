//! `lt data fetch` and `lt data verify`: downloading a dataset's published files, checking them
//! against the manifest's checksums, and unpacking archives safely.
//!
//! A download streams into a temporary file next to its destination while it is hashed; only a
//! file whose size and checksums match is renamed to its final name. A failed or corrupted
//! download therefore never leaves a half file under the final name, and never replaces a file
//! already in place. Archives are unpacked member by member the same way, extracting only the
//! members the manifest lists and refusing absolute paths, `..` and links.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;

use crate::atomic::AtomicFile;
use crate::checksum::{Digests, Hasher, digest_file, digest_reader};
use crate::error::{Error, IoContext};
use crate::gz::is_gzip;
use crate::manifest::{Manifest, RemoteFile};

/// How to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// A base URL to fetch every file from instead of the manifest's URLs (`BASE/FILE_NAME`):
    /// a local mirror, or a test server.
    pub mirror: Option<String>,
}

/// Progress of a fetch, for the caller to display.
#[derive(Debug)]
pub enum FetchEvent<'a> {
    /// A file is already in place and verified.
    Present {
        /// File name.
        file: &'a str,
    },
    /// A download starts.
    Start {
        /// File name.
        file: &'a str,
        /// URL.
        url: &'a str,
        /// Expected size, if known.
        total: Option<u64>,
    },
    /// Bytes received so far.
    Progress {
        /// File name.
        file: &'a str,
        /// Bytes so far.
        done: u64,
    },
    /// A source failed; the next one (if any) is tried.
    SourceFailed {
        /// File name.
        file: &'a str,
        /// The failure.
        error: &'a Error,
    },
    /// A file was downloaded and verified.
    Verified {
        /// File name.
        file: &'a str,
    },
    /// An archive member was extracted.
    Extracted {
        /// Member name.
        member: &'a str,
    },
}

/// Fetches every published file of `manifest` into `dest`, verifying each, and unpacks archives.
pub fn fetch(
    manifest: &Manifest,
    dest: &Path,
    options: &FetchOptions,
    on_event: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<(), Error> {
    if manifest.name == crate::miniature::NAME {
        return crate::miniature::generate(dest);
    }
    let downloadable: Vec<&RemoteFile> = manifest.files.iter().filter(|f| !f.urls.is_empty()).collect();
    if downloadable.is_empty() {
        return Err(Error::Config(format!(
            "dataset {} cannot be downloaded{}",
            manifest.name,
            manifest.notes.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
        )));
    }
    std::fs::create_dir_all(dest).at(dest)?;
    // Every file is tried even when one fails, so that one fetch gets all that can be had;
    // the first failure is returned at the end (each one was reported as it happened).
    let mut first_failure = None;
    for file in downloadable {
        let path = dest.join(&file.name);
        if path.is_file() && check_published(file, &path)?.is_ok() {
            on_event(FetchEvent::Present { file: &file.name });
        } else {
            let urls = match &options.mirror {
                Some(base) => vec![format!("{}/{}", base.trim_end_matches('/'), file.name)],
                None => file.urls.clone(),
            };
            let mut failures = Vec::new();
            for url in &urls {
                match download(url, file, &path, on_event) {
                    Ok(()) => {
                        on_event(FetchEvent::Verified { file: &file.name });
                        failures.clear();
                        break;
                    }
                    Err(e) => {
                        on_event(FetchEvent::SourceFailed { file: &file.name, error: &e });
                        failures.push(e);
                    }
                }
            }
            if !failures.is_empty() {
                first_failure.get_or_insert(Error::FetchFailed { file: file.name.clone(), failures });
                continue;
            }
        }
        if !file.members.is_empty() && file.members.iter().any(|m| !dest.join(m).is_file()) {
            extract(&path, dest, &file.members, on_event)?;
        }
    }
    first_failure.map_or(Ok(()), Err)
}

fn download(url: &str, file: &RemoteFile, dest: &Path, on_event: &mut dyn FnMut(FetchEvent<'_>)) -> Result<(), Error> {
    let fail = |message: String| Error::Download { url: url.into(), message };
    let response = ureq::get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => fail(format!("HTTP status {code}")),
        other => fail(other.to_string()),
    })?;
    on_event(FetchEvent::Start { file: &file.name, url, total: file.size });
    let mut reader = response.into_body().into_reader();
    let mut out = AtomicFile::create(dest)?;
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| fail(format!("connection broke off: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n]).at(out.temp_path())?;
        done += n as u64;
        on_event(FetchEvent::Progress { file: &file.name, done });
    }
    let digests = hasher.finish();
    if let Some(problem) = mismatch(file, &digests) {
        // `out` is dropped uncommitted: its temporary file is removed, `dest` is untouched.
        return Err(fail(problem));
    }
    out.commit()
}

/// What disagrees between the published file's manifest entry and `d`, if anything.
fn mismatch(file: &RemoteFile, d: &Digests) -> Option<String> {
    if let Some(size) = file.size.filter(|s| *s != d.len) {
        return Some(format!("size mismatch: expected {size} bytes, found {}", d.len));
    }
    if let Some(md5) = file.md5.as_ref().filter(|m| **m != d.md5) {
        return Some(format!("md5 checksum mismatch: expected {md5}, found {}", d.md5));
    }
    if let Some(sha) = file.sha256.as_ref().filter(|s| **s != d.sha256) {
        return Some(format!("sha256 checksum mismatch: expected {sha}, found {}", d.sha256));
    }
    None
}

/// Checks a file against its manifest entry as published: `Ok(Ok(()))` if it matches,
/// `Ok(Err(problem))` if it does not.
fn check_published(file: &RemoteFile, path: &Path) -> Result<Result<(), String>, Error> {
    let d = digest_file(path)?;
    Ok(mismatch(file, &d).map_or(Ok(()), Err))
}

fn extract(
    archive: &Path,
    dest: &Path,
    members: &[String],
    on_event: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<(), Error> {
    let refuse = |member: String, reason| Error::ArchiveMember { archive: archive.into(), member, reason };
    let reader = std::fs::File::open(archive).at(archive)?;
    let mut tar = tar::Archive::new(GzDecoder::new(reader));
    let mut found = Vec::new();
    for entry in tar.entries().at(archive)? {
        let mut entry = entry.at(archive)?;
        let name = entry.path().at(archive)?.to_string_lossy().into_owned();
        let path = PathBuf::from(&name);
        if path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(refuse(name, "absolute path or `..`"));
        }
        let name = name.trim_start_matches("./").to_string();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !members.contains(&name) {
            continue;
        }
        if !kind.is_file() {
            return Err(refuse(name, "not a regular file (links are not extracted)"));
        }
        let target = dest.join(&name);
        let mut out = AtomicFile::create(&target)?;
        std::io::copy(&mut entry, &mut out).at(archive)?;
        out.commit()?;
        on_event(FetchEvent::Extracted { member: &name });
        found.push(name);
    }
    if let Some(missing) = members.iter().find(|m| !found.contains(m) && !dest.join(m).is_file()) {
        return Err(Error::Format {
            path: archive.into(),
            what: "archive members",
            expected: missing.clone(),
            found: "no such member".into(),
        });
    }
    Ok(())
}

/// The verification status of one published file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Matches the published checksums.
    Ok,
    /// A recompressed copy whose decompressed content matches the published content.
    Recompressed,
    /// Only the decompressed file is present, and it matches.
    RawOk,
    /// The archive is absent but all its members are present.
    Unpacked,
    /// Present, but there is no checksum to check against.
    Unverified,
    /// Not present.
    Missing,
    /// Present, and wrong.
    Mismatch(String),
}

impl FileStatus {
    /// Whether this status is acceptable.
    pub fn is_ok(&self) -> bool {
        !matches!(self, FileStatus::Missing | FileStatus::Mismatch(_))
    }
}

impl std::fmt::Display for FileStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileStatus::Ok => f.write_str("ok (checksum matches)"),
            FileStatus::Recompressed => f.write_str("ok (recompressed; decompressed content matches)"),
            FileStatus::RawOk => f.write_str("ok (decompressed copy matches)"),
            FileStatus::Unpacked => f.write_str("ok (archive removed; members present)"),
            FileStatus::Unverified => f.write_str("present (no checksum known)"),
            FileStatus::Missing => f.write_str("missing"),
            FileStatus::Mismatch(m) => write!(f, "MISMATCH: {m}"),
        }
    }
}

/// Verifies every published file of `manifest` found in `dir`.
pub fn verify(manifest: &Manifest, dir: &Path) -> Result<Vec<(String, FileStatus)>, Error> {
    manifest.files.iter().map(|file| Ok((file.name.clone(), verify_file(file, dir)?))).collect()
}

fn verify_file(file: &RemoteFile, dir: &Path) -> Result<FileStatus, Error> {
    let path = dir.join(&file.name);
    if path.is_file() {
        if file.size.is_none() && file.md5.is_none() && file.sha256.is_none() {
            return Ok(FileStatus::Unverified);
        }
        let problem = match check_published(file, &path)? {
            Ok(()) => return Ok(FileStatus::Ok),
            Err(problem) => problem,
        };
        if let (true, Some(raw)) = (is_gzip(&path), &file.raw) {
            let raw_digests = digest_reader(GzDecoder::new(std::fs::File::open(&path).at(&path)?), &path);
            if let Ok(d) = raw_digests
                && raw_matches(raw, &d)
            {
                return Ok(FileStatus::Recompressed);
            }
        }
        return Ok(FileStatus::Mismatch(problem));
    }
    if let (Some(raw), Some(stem)) = (&file.raw, file.name.strip_suffix(".gz")) {
        let raw_path = dir.join(stem);
        if raw_path.is_file() {
            let d = digest_file(&raw_path)?;
            return Ok(if raw_matches(raw, &d) {
                FileStatus::RawOk
            } else {
                FileStatus::Mismatch(format!(
                    "{}: decompressed content differs from the published one",
                    raw_path.display()
                ))
            });
        }
    }
    if !file.members.is_empty() && file.members.iter().all(|m| dir.join(m).is_file()) {
        return Ok(FileStatus::Unpacked);
    }
    Ok(FileStatus::Missing)
}

fn raw_matches(raw: &crate::manifest::RawDigest, d: &Digests) -> bool {
    raw.size == d.len
        && raw.md5.as_ref().is_none_or(|m| *m == d.md5)
        && raw.sha256.as_ref().is_none_or(|s| *s == d.sha256)
        && (raw.md5.is_some() || raw.sha256.is_some())
}
