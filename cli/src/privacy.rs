//! `rapport privacy ...`: answering a person's data-protection request
//! from the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use rapport_node::consent::{Enrolled, Objection};
use rapport_node::erasure::{ErasureReport, ErasureStatus};
use rapport_node::ops::Request;
use rapport_node::privacy::PersonExport;
use rapport_node::retention::{RetentionRule, RuleRun};

#[derive(Debug, Clone, Subcommand)]
pub enum PrivacyCmd {
    /// Everything this device holds about a person (GDPR articles 15 and 20): their
    /// record, what refers to them, their history and a vCard, with a README, written
    /// into DIR (which must be empty or new).
    Export {
        /// The person (name, e-mail, id or id prefix).
        person: String,
        /// The directory to write the files into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Erases a person (GDPR article 17) on every node of their space: a signed erase
    /// statement that members and relays apply, then confirm. Needs the admin or
    /// privacy role. The bytes leave this disk at `rapport privacy compact`.
    Erase {
        /// The person (name, e-mail, id or id prefix); any record can be erased.
        person: String,
        /// Erase the activities that refer to them too (calls, meetings, notes).
        #[arg(long, conflicts_with = "field")]
        with_activities: bool,
        /// Erase only this field of a record that stays (a company's former phone number):
        /// its history is rebuilt without it on every node of the space.
        #[arg(long, value_name = "FIELD")]
        field: Option<String>,
        /// Why (kept in the space's history with the record ids, never the data):
        /// for example "request of 2026-11-30, ticket 4411".
        #[arg(long)]
        reason: String,
    },
    /// Which members and relays have applied an erasure (ERASE-ID as `rapport privacy
    /// erase` printed it); every erasure without one.
    Status {
        #[arg(value_name = "ERASE-ID")]
        erasure: Option<String>,
    },
    /// Rewrites the journal and the store without what was erased, so that its bytes
    /// leave the disk; also removes kept uploads, old stores moved aside, and erased
    /// records from import and merge logs. Stop the node first.
    Compact,
    /// Who withdrew consent or objected (GDPR article 21), to what, since when, and which
    /// campaigns still list them.
    Objections,
    /// Retention rules: how long records are kept. `run` lists what they would erase
    /// (a dry run) and with --apply erases it, by the same erasure as `erase`.
    #[command(subcommand)]
    Retention(RetentionCmd),
}

#[derive(Debug, Clone, Subcommand)]
pub enum RetentionCmd {
    /// Add a rule (or replace the one of that name):
    /// `rapport privacy retention add leads --kind person --where tags=lead --inactive-months 24`.
    Add {
        name: String,
        /// The kind of record it erases.
        #[arg(long)]
        kind: String,
        /// Only records whose FIELD equals VALUE (the comparisons of `rapport list --where`).
        #[arg(long = "where", value_name = "FIELD=VALUE")]
        filters: Vec<String>,
        /// Erase when neither the record nor an activity about it changed or took place
        /// for this many months.
        #[arg(long, value_name = "MONTHS")]
        inactive_months: u32,
    },
    /// The rules of this device.
    List,
    /// Remove a rule.
    Remove { name: String },
    /// What the rules (or the one named) would erase; nothing is erased without --apply.
    Run {
        name: Option<String>,
        /// Erase what the rules select (needs --reason; admins and privacy officers of
        /// each space).
        #[arg(long, requires = "reason")]
        apply: bool,
        /// Why, kept with each erasure (the rule's name is added).
        #[arg(long)]
        reason: Option<String>,
    },
}

impl PrivacyCmd {
    /// The operation, or `None` for `compact`, which the CLI runs itself.
    pub fn request(&self) -> Result<Option<Request>> {
        Ok(Some(match self {
            PrivacyCmd::Export { person, .. } => Request::PrivacyExport {
                person: person.clone(),
            },
            PrivacyCmd::Erase {
                person,
                with_activities,
                field,
                reason,
            } => Request::PrivacyErase {
                person: person.clone(),
                with_activities: *with_activities,
                field: field.clone(),
                reason: reason.clone(),
            },
            PrivacyCmd::Status { erasure } => Request::Erasures {
                erasure: erasure.clone(),
            },
            PrivacyCmd::Objections => Request::Objections,
            PrivacyCmd::Retention(RetentionCmd::Add {
                name,
                kind,
                filters,
                inactive_months,
            }) => Request::SetRetentionRule(RetentionRule {
                name: name.clone(),
                kind: kind.parse()?,
                filters: crate::commands::assignments(filters)?,
                inactive_months: *inactive_months,
            }),
            PrivacyCmd::Retention(RetentionCmd::List) => Request::RetentionRules,
            PrivacyCmd::Retention(RetentionCmd::Remove { name }) => {
                Request::RemoveRetentionRule { name: name.clone() }
            }
            PrivacyCmd::Retention(RetentionCmd::Run {
                name,
                apply,
                reason,
            }) => Request::Retention {
                name: name.clone(),
                apply: *apply,
                reason: reason.clone(),
            },
            PrivacyCmd::Compact => return Ok(None),
        }))
    }
}

/// Prints what an erasure did.
pub fn print_erased(out: &mut String, r: &ErasureReport, json: bool) -> Result<()> {
    if json {
        return crate::commands::to_json(out, r);
    }
    outln!(
        out,
        "Erased {} record(s) in {} (erasure {}).",
        r.ids.len(),
        r.space,
        r.erasure
    );
    if r.space == "private" {
        outln!(
            out,
            "Run `rapport privacy compact` (with the node stopped) to remove the bytes from disk."
        );
    } else {
        outln!(
            out,
            "{} member(s) and relay(s) have still to apply it; `rapport privacy status {}` shows who.",
            r.waiting,
            r.erasure
        );
        outln!(
            out,
            "Each node removes the bytes from its disk at `rapport privacy compact`."
        );
    }
    Ok(())
}

/// Prints what `rapport campaign enroll` did.
pub fn print_enrolled(out: &mut String, e: &Enrolled, json: bool) -> Result<()> {
    if json {
        return crate::commands::to_json(out, e);
    }
    let names = |list: &[(rapport_model::RecordId, String)]| {
        list.iter()
            .map(|(_, n)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!(
        out,
        "{}: {} added{}",
        e.campaign.title(),
        e.added.len(),
        if e.added.is_empty() {
            String::new()
        } else {
            format!(" ({})", names(&e.added))
        }
    );
    if !e.already.is_empty() {
        outln!(out, "  already members: {}", names(&e.already));
    }
    if !e.skipped.is_empty() {
        outln!(out, "  left out for want of consent:");
        for (_, name, why) in &e.skipped {
            outln!(out, "    {name}: {why}");
        }
    }
    Ok(())
}

/// Prints the retention rules.
pub fn print_rules(out: &mut String, rules: &[RetentionRule], json: bool) -> Result<()> {
    if json {
        return crate::commands::to_json(out, &rules);
    }
    if rules.is_empty() {
        outln!(
            out,
            "No retention rules; `rapport privacy retention add` makes one."
        );
    }
    for r in rules {
        let filters: Vec<String> = r.filters.iter().map(|(f, v)| format!("{f}={v}")).collect();
        outln!(
            out,
            "{}: {} records{} with no activity for {} months",
            r.name,
            r.kind,
            if filters.is_empty() {
                String::new()
            } else {
                format!(" where {}", filters.join(", "))
            },
            r.inactive_months
        );
    }
    Ok(())
}

/// Prints what retention rules would erase, or erased.
pub fn print_retention(out: &mut String, runs: &[RuleRun], json: bool) -> Result<()> {
    if json {
        return crate::commands::to_json(out, &runs);
    }
    for run in runs {
        let erased = !run.erasures.is_empty();
        outln!(
            out,
            "{}: {} {} record(s){}",
            run.rule.name,
            if erased { "erased" } else { "would erase" },
            run.candidates.len(),
            if run.candidates.is_empty() { "" } else { ":" }
        );
        for c in &run.candidates {
            outln!(
                out,
                "  {}  {}  last active {}",
                c.id,
                c.title,
                crate::output::local_time(c.last_active)
            );
        }
        for e in &run.erasures {
            outln!(out, "  erasure {} in {}", e.erasure, e.space);
        }
    }
    if runs.iter().all(|r| r.erasures.is_empty()) && runs.iter().any(|r| !r.candidates.is_empty()) {
        outln!(
            out,
            "Nothing was erased: run again with --apply --reason \"...\" to erase them."
        );
    }
    Ok(())
}

/// Prints `rapport privacy objections`.
pub fn print_objections(out: &mut String, all: &[Objection], json: bool) -> Result<()> {
    if json {
        return crate::commands::to_json(out, &all);
    }
    if all.is_empty() {
        outln!(out, "Nobody has withdrawn consent or objected.");
        return Ok(());
    }
    for o in all {
        outln!(
            out,
            "{}: {} {} on {}{}",
            o.name,
            o.standing.status,
            o.purpose,
            o.standing.date,
            o.standing
                .source
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
        for (_, title) in &o.campaigns {
            outln!(out, "  still a member of campaign {title}");
        }
    }
    Ok(())
}

/// Prints erasures and who confirmed them.
pub fn print_erasures(out: &mut String, all: &[ErasureStatus], json: bool) -> Result<()> {
    if json {
        return crate::commands::to_json(out, &all);
    }
    if all.is_empty() {
        outln!(out, "No erasures in the spaces this node holds.");
        return Ok(());
    }
    for s in all {
        let done = s.nodes.iter().filter(|n| n.confirmed.is_some()).count();
        outln!(
            out,
            "Erasure {} in {}: {} record(s), by {} at {}: {}",
            s.erasure,
            s.space,
            s.ids.len(),
            s.by,
            crate::output::local_time(s.at),
            s.reason
        );
        outln!(out, "  confirmed by {done} of {} node(s)", s.nodes.len());
        for n in &s.nodes {
            match n.confirmed {
                Some(at) => outln!(
                    out,
                    "  ✓ {} ({}) at {}",
                    n.label,
                    n.role,
                    crate::output::local_time(at)
                ),
                None => outln!(out, "  · {} ({}) not yet", n.label, n.role),
            }
        }
    }
    Ok(())
}

/// `rapport privacy compact`.
pub fn compact(out: &mut String, dir: &Path, json: bool) -> Result<()> {
    if crate::client::node_running(dir) {
        bail!(
            "the running node holds the store open: stop it (Ctrl-C where `rapport up` runs), \
             then run `rapport privacy compact`"
        );
    }
    let bar = indicatif::ProgressBar::new(0);
    let report = rapport_node::recovery::privacy_compact(dir, &|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if json {
        return crate::commands::to_json(out, &report);
    }
    outln!(
        out,
        "Compacted: the journal went from {} to {}, the store was rebuilt from it, and the old store removed.",
        rapport_node::limits::human_bytes(report.journal_before),
        rapport_node::limits::human_bytes(report.journal_after)
    );
    outln!(
        out,
        "  {} erased record(s) known; {} file(s) removed; {} log(s) rewritten without them.",
        report.erased,
        report.files_removed,
        report.logs_rewritten
    );
    outln!(
        out,
        "Backups made before the erasure still hold the data: delete them, or restore them only with `rapport restore`, which applies the erasures again."
    );
    Ok(())
}

/// Writes the export's files into `dir`, refusing to overwrite anything.
pub fn write_export(out: &mut String, export: &PersonExport, dir: &Path, json: bool) -> Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: give a new or empty directory, so that no file of another export is mixed in",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for f in &export.files {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        let names: Vec<&str> = export.files.iter().map(|f| f.name.as_str()).collect();
        return crate::commands::to_json(
            out,
            &serde_json::json!({"person": export.person, "dir": dir, "files": names}),
        );
    }
    outln!(
        out,
        "Wrote {} files to {}:",
        export.files.len(),
        dir.display()
    );
    for f in &export.files {
        outln!(out, "  {:<13} {}", f.name, f.about);
    }
    Ok(())
}
