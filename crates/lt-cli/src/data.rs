//! `lt data ...`: the dataset commands.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use lt_data::{Dataset, FetchEvent, FetchOptions, Locations, Manifest};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// List the registered datasets and where each is found on this machine.
    List,
    /// Show a dataset: where it was found, its splits, counts, shape, classes and checksums.
    Info {
        /// Dataset name (see `lt data list`).
        name: String,
    },
    /// Check every file of a dataset against the manifest's checksums and read every split in full.
    Verify {
        /// Dataset name.
        name: String,
    },
    /// Download a dataset from its official URLs, verify the checksums, and unpack archives.
    Fetch {
        /// Dataset name.
        name: String,
        /// Fetch every file from this base URL instead (a local mirror): BASE/FILE_NAME.
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
    },
    /// Pack a dataset tree into memory-mapped shards.
    #[command(subcommand)]
    Pack(PackCommand),
}

#[derive(Debug, Subcommand)]
pub enum PackCommand {
    /// ImageNet: SRC holds train/<wnid>/*.JPEG and val/<wnid>/*.JPEG; OUT receives index.json and shards.
    Imagenet {
        /// The ImageNet tree.
        src: PathBuf,
        /// The output folder (must not hold a pack already). Default: where `lt` looks for
        /// `imagenet` (DATA_DIR/imagenet with `--data-dir`, else the user cache).
        out: Option<PathBuf>,
        /// Shorter side of the stored images, in pixels.
        #[arg(long, default_value_t = 256)]
        short_side: u32,
        /// Images per shard file.
        #[arg(long, default_value_t = 5000)]
        shard_images: usize,
        /// Leave out files that cannot be decoded (each is listed, and beside its shard in
        /// SPLIT-NNNNN.skipped) instead of stopping at the first. An interrupted pack resumes
        /// either way: run the same command again.
        #[arg(long)]
        skip_unreadable: bool,
    },
}

pub fn run(cmd: DataCommand, loc: &Locations) -> Result<std::process::ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        DataCommand::List => list(&mut out, loc)?,
        DataCommand::Info { name } => info(&mut out, &name, loc)?,
        DataCommand::Verify { name } => return verify(&mut out, &name, loc),
        DataCommand::Fetch { name, mirror } => fetch(&mut out, &name, mirror, loc)?,
        DataCommand::Pack(PackCommand::Imagenet { src, out: dest, short_side, shard_images, skip_unreadable }) => {
            let dest = dest.unwrap_or_else(|| loc.fetch_dir("imagenet"));
            let options = lt_data::PackOptions { short_side, shard_images, skip_unreadable, ..Default::default() };
            let bar = ProgressBar::new(0).with_style(bar_style("{pos}/{len} images  {per_sec}")?);
            let report = lt_data::pack_imagenet(&src, &dest, &options, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .with_context(|| format!("packing {} into {}", src.display(), dest.display()))?;
            bar.finish_and_clear();
            if report.resumed > 0 {
                writeln!(out, "resumed: {} images were packed by an earlier, interrupted run", report.resumed)?;
            }
            for (split, n) in report.counts {
                writeln!(out, "{split}: {n} images")?;
            }
            if !report.skipped.is_empty() {
                writeln!(
                    out,
                    "skipped {} unreadable file(s) (listed in {}/*.skipped):",
                    report.skipped.len(),
                    dest.display()
                )?;
                for (path, why) in report.skipped.iter().take(20) {
                    writeln!(out, "  {}: {why}", path.display())?;
                }
                if report.skipped.len() > 20 {
                    writeln!(out, "  ... and {} more", report.skipped.len() - 20)?;
                }
            }
            writeln!(out, "{} classes; packed into {}", report.classes, dest.display())?;
            writeln!(out, "{}", where_lt_finds(&dest, "imagenet", loc))?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Whether `lt` finds dataset `name` at `dest` as things stand, and what to pass where it does not.
fn where_lt_finds(dest: &std::path::Path, name: &str, loc: &Locations) -> String {
    let same = |p: &std::path::Path| p.canonicalize().ok() == dest.canonicalize().ok();
    if let Some((origin, _)) = loc.candidates(name).into_iter().find(|(_, p)| same(p)) {
        return format!("`lt` finds it there ({origin})");
    }
    match (dest.file_name().and_then(|f| f.to_str()), dest.parent()) {
        (Some(f), Some(parent)) if f == name => {
            format!("`lt` finds it with `--data-dir {}` (or LT_DATA_DIR)", parent.display())
        }
        _ => format!(
            "`lt` looks for {name} in DIR/{name}/ of a data dir: move it to a folder named {name} and pass `--data-dir` its parent"
        ),
    }
}

fn bar_style(template: &str) -> Result<ProgressStyle> {
    Ok(ProgressStyle::with_template(&format!("{{spinner}} {{msg}} [{{bar:30}}] {template} ({{eta}})"))?
        .progress_chars("=> "))
}

fn list(out: &mut impl Write, loc: &Locations) -> Result<()> {
    writeln!(out, "{:<15} {:<8} {:<40} where", "name", "format", "title")?;
    for m in Manifest::builtin() {
        let found: Vec<String> = m
            .splits
            .keys()
            .filter_map(|split| lt_data::locate_split(&m, split, loc).ok().map(|(origin, dir, _)| (split, origin, dir)))
            .map(|(split, origin, dir)| format!("{split}: {} ({origin})", dir.display()))
            .collect();
        let found = if found.is_empty() { "not found".to_string() } else { found.join("; ") };
        writeln!(out, "{:<15} {:<8} {:<40} {found}", m.name, format!("{:?}", m.format).to_lowercase(), m.title)?;
    }
    Ok(())
}

fn info(out: &mut impl Write, name: &str, loc: &Locations) -> Result<()> {
    let m = Manifest::named(name)?;
    writeln!(out, "{} — {}", m.name, m.title)?;
    writeln!(out, "license:  {}", m.license)?;
    writeln!(out, "homepage: {}", m.homepage)?;
    writeln!(out, "shape:    {}x{}x{} (channels x height x width)", m.shape[0], m.shape[1], m.shape[2])?;
    let classes = if m.classes.is_empty() {
        format!("{}", m.num_classes())
    } else {
        format!("{} ({})", m.num_classes(), m.classes.join(", "))
    };
    writeln!(out, "classes:  {classes}")?;
    writeln!(out, "mean/std: {:?} / {:?}", m.mean, m.std)?;
    if let Some(notes) = &m.notes {
        writeln!(out, "notes:    {notes}")?;
    }
    let mut found_dir = None;
    for (split, spec) in &m.splits {
        match Dataset::open_manifest(m.clone(), split, loc) {
            Ok(d) => {
                let (dir, origin) = d.location();
                let note = if d.len() == spec.count {
                    String::new()
                } else {
                    format!(" (the official split has {})", spec.count)
                };
                writeln!(out, "split {split}: {} examples{note}, found in {} ({origin})", d.len(), dir.display())?;
                found_dir.get_or_insert(dir.to_path_buf());
            }
            Err(lt_data::Error::NotFound { missing, .. }) => {
                writeln!(out, "split {split}: not found ({missing} missing)")?
            }
            Err(e) => return Err(e).with_context(|| format!("opening split {split} of {name}")),
        }
    }
    match found_dir {
        Some(dir) => {
            for (file, status) in lt_data::verify(&m, &dir)? {
                writeln!(out, "file {file}: {status}")?;
            }
        }
        None => writeln!(out, "not on this machine: {}", fetch_hint(&m))?,
    }
    Ok(())
}

fn fetch_hint(m: &Manifest) -> String {
    match &m.notes {
        Some(notes) => notes.clone(),
        None => format!("run `lt data fetch {}`", m.name),
    }
}

fn verify(out: &mut impl Write, name: &str, loc: &Locations) -> Result<std::process::ExitCode> {
    let m = Manifest::named(name)?;
    let mut bad = 0;
    let mut dirs = Vec::new();
    for split in m.splits.keys() {
        match Dataset::open_manifest(m.clone(), split, loc) {
            Ok(d) => {
                match read_all(&d).err() {
                    None => writeln!(out, "split {split}: {} examples read, labels in range", d.len())?,
                    Some(e) => {
                        bad += 1;
                        writeln!(out, "split {split}: BAD: {e}")?;
                    }
                }
                let dir = d.location().0.to_path_buf();
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            Err(lt_data::Error::NotFound { missing, .. }) => {
                writeln!(out, "split {split}: not found ({missing} missing)")?
            }
            Err(e) => {
                bad += 1;
                writeln!(out, "split {split}: BAD: {e}")?;
            }
        }
    }
    if dirs.is_empty() && bad == 0 {
        bail!("dataset {name} is not on this machine: {}", fetch_hint(&m));
    }
    for dir in &dirs {
        for (file, status) in lt_data::verify(&m, dir)? {
            // A folder that holds the dataset must hold all of it.
            if matches!(status, lt_data::FileStatus::Mismatch(_) | lt_data::FileStatus::Missing) {
                bad += 1;
            }
            writeln!(out, "{}: {status}", dir.join(&file).display())?;
        }
    }
    if bad > 0 {
        writeln!(out, "{bad} problem(s) found")?;
        return Ok(std::process::ExitCode::from(1));
    }
    writeln!(out, "{name}: ok")?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Reads every label and every image of a split once.
fn read_all(d: &Dataset) -> Result<(), lt_data::Error> {
    for i in 0..d.len() {
        d.label(i)?;
        d.image(i)?;
    }
    Ok(())
}

fn fetch(out: &mut impl Write, name: &str, mirror: Option<String>, loc: &Locations) -> Result<()> {
    let m = Manifest::named(name)?;
    let dest = loc.fetch_dir(name);
    writeln!(out, "fetching {name} into {}", dest.display())?;
    let bar = ProgressBar::new(0).with_style(bar_style("{bytes}/{total_bytes}")?);
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut lines = Vec::new();
    let result = lt_data::fetch(&m, &dest, &FetchOptions { mirror }, &mut |event| match event {
        FetchEvent::Present { file } => lines.push(format!("{file}: already present, checksum ok")),
        FetchEvent::Start { file, url, total } => {
            bar.set_message(file.to_string());
            bar.set_length(total.unwrap_or(0));
            bar.set_position(0);
            crate::say(&bar, format!("{file}: downloading {url}"));
        }
        FetchEvent::Progress { done, .. } => bar.set_position(done),
        FetchEvent::SourceFailed { file, error } => crate::say(&bar, format!("{file}: {error}")),
        FetchEvent::Verified { file } => lines.push(format!("{file}: downloaded, checksum ok")),
        FetchEvent::Extracted { member } => lines.push(format!("{member}: extracted")),
    });
    bar.finish_and_clear();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    result.with_context(|| format!("fetching {name} into {}", dest.display()))?;
    writeln!(out, "{name}: ok")?;
    Ok(())
}
