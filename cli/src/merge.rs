//! `rapport merge`: arguments and how merges are shown.

use anyhow::Result;
use clap::{Args, Subcommand};
use rapport_model::RecordView;
use rapport_node::merge::{MergeRecord, MergeUndone};
use rapport_node::ops::Request;

use crate::commands::to_json;
use crate::output::{local_time, table};

/// Merge duplicates into one record, list past merges, or undo one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MergeArgs {
    #[command(subcommand)]
    pub cmd: Option<MergeCmd>,
    /// The record to keep (id, prefix or name).
    pub keep: Option<String>,
    /// The records merged into it; they become tombstones that redirect to it.
    pub others: Vec<String>,
    /// Take FIELD from this record instead of the one kept (FIELD=REF, repeatable).
    #[arg(long, value_name = "FIELD=REF")]
    pub prefer: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MergeCmd {
    /// The merges made on this device, newest first.
    List,
    /// Bring the merged records back and put back what the merge changed
    /// (fields someone changed since are left alone).
    Undo { id: String },
}

impl MergeArgs {
    pub fn request(&self) -> Result<Request> {
        Ok(match &self.cmd {
            Some(MergeCmd::List) => Request::Merges,
            Some(MergeCmd::Undo { id }) => Request::MergeUndo { id: id.clone() },
            None => {
                let Some(keep) = self.keep.clone() else {
                    anyhow::bail!(
                        "name the record to keep and those to merge into it: `rapport merge KEEP OTHER...`"
                    );
                };
                if self.others.is_empty() {
                    anyhow::bail!(
                        "name at least one record to merge into {keep}: `rapport merge {keep} OTHER...`"
                    );
                }
                let mut prefer = Vec::new();
                for p in &self.prefer {
                    prefer.push(rapport_node::parse_assignment(p)?);
                }
                Request::Merge {
                    keep,
                    others: self.others.clone(),
                    prefer,
                }
            }
        })
    }
}

pub fn merged(
    out: &mut String,
    merge: &MergeRecord,
    record: &RecordView,
    json: bool,
) -> Result<()> {
    if json {
        return to_json(out, merge);
    }
    outln!(
        out,
        "Merged {} record{} into {} {} ({}): {} field{} filled, {} reference{} moved.",
        merge.merged.len(),
        if merge.merged.len() == 1 { "" } else { "s" },
        record.kind,
        record.title(),
        record.id,
        merge.fields.len(),
        if merge.fields.len() == 1 { "" } else { "s" },
        merge.repointed.len(),
        if merge.repointed.len() == 1 { "" } else { "s" },
    );
    outln!(out, "Undo: rapport merge undo {}", merge.id);
    Ok(())
}

pub fn list(out: &mut String, merges: &[MergeRecord], json: bool) -> Result<()> {
    if json {
        return to_json(out, &merges);
    }
    if merges.is_empty() {
        outln!(out, "No merges yet.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = merges
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                local_time(m.at),
                m.title.clone(),
                m.merged.len().to_string(),
                m.undone.map_or(String::new(), local_time),
            ]
        })
        .collect();
    outln!(
        out,
        "{}",
        table(&["id", "when", "kept", "merged", "undone"], &rows)
    );
    Ok(())
}

pub fn undone(out: &mut String, r: &MergeUndone, json: bool) -> Result<()> {
    if json {
        return to_json(out, r);
    }
    outln!(
        out,
        "Undid the merge: {} records back, {} fields restored, {} fields kept (changed since the merge).",
        r.restored_records,
        r.restored_fields,
        r.kept_fields
    );
    Ok(())
}
