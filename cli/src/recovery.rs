//! `rapport backup`, `rapport restore FILE` and `rapport repair`: printing
//! what `rapport_node::recovery` did.

use std::io::Read;
use std::path::Path;

use anyhow::{Result, bail};
use rapport_node::recovery::{self, BACKUP_MAGIC, RebuildReport};

use crate::commands::print_json;

/// Whether `path` is a file that starts like a backup (rather than a
/// record reference for `rapport restore`).
pub fn is_backup(path: &Path) -> bool {
    let mut magic = vec![0u8; BACKUP_MAGIC.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == BACKUP_MAGIC
}

pub fn restore(out: &mut String, dir: &Path, file: &Path, json: bool) -> Result<()> {
    if crate::client::node_running(dir) {
        bail!(
            "a node is running on this data directory; restore makes a new one: \
             `rapport restore FILE --data-dir NEW_DIR`"
        );
    }
    let bar = indicatif::ProgressBar::new(0);
    let report = recovery::restore(file, dir, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if json {
        return print_json(out, &serde_json::to_value(&report)?);
    }
    outln!(
        out,
        "Restored {} into {}: {} journal entries, {} records and {} shared spaces rebuilt in {:.1} s.",
        file.display(),
        report.dir.display(),
        report.entries,
        report.rebuild.records,
        report.rebuild.spaces,
        report.rebuild.elapsed.as_secs_f64()
    );
    outln!(
        out,
        "Start it with `rapport up --data-dir {}`: it catches up with its peers like after any time offline.",
        report.dir.display()
    );
    Ok(())
}

pub fn repair(out: &mut String, dir: &Path, compact: bool, json: bool) -> Result<()> {
    if crate::client::node_running(dir) {
        bail!(
            "the running node holds the store open: stop it (Ctrl-C where `rapport up` runs), \
             then run `rapport repair`"
        );
    }
    let bar = indicatif::ProgressBar::new(0);
    let (report, compacted) = recovery::repair(dir, compact, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(c), Some(map)) = (&compacted, v.as_object_mut()) {
            map.insert(
                "compacted".into(),
                serde_json::json!({
                    "kept": c.kept,
                    "dropped": c.dropped,
                    "bytes_before": c.bytes_before,
                    "bytes_after": c.bytes_after,
                }),
            );
        }
        return print_json(out, &v);
    }
    print_rebuild(out, &report);
    if let Some(c) = compacted {
        outln!(
            out,
            "Journal compacted: {} entries kept, {} dropped, {} → {}.",
            c.kept,
            c.dropped,
            rapport_node::limits::human_bytes(c.bytes_before),
            rapport_node::limits::human_bytes(c.bytes_after)
        );
    }
    Ok(())
}

fn print_rebuild(out: &mut String, r: &RebuildReport) {
    outln!(out, "Rebuilt the store from the journal ({}).", r.reason);
    outln!(
        out,
        "  journal entries   {}{}",
        r.entries,
        if r.torn_bytes > 0 {
            format!(
                " (a torn last entry of {} bytes was cut: it was never acknowledged)",
                r.torn_bytes
            )
        } else {
            String::new()
        }
    );
    outln!(out, "  records rebuilt   {}", r.records);
    outln!(out, "  shared spaces     {}", r.spaces);
    if r.refused + r.held > 0 {
        outln!(
            out,
            "  refused / held    {} / {} (by the same rules as when they arrived)",
            r.refused,
            r.held
        );
    }
    if let Some(aside) = &r.moved_aside {
        outln!(
            out,
            "  old store         moved to {} (delete it once you are satisfied)",
            aside.display()
        );
    }
    outln!(out, "  time              {:.1} s", r.elapsed.as_secs_f64());
}
