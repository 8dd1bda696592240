//! `rapport privacy ...`: answering a person's data-protection request
//! from the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use rapport_node::ops::Request;
use rapport_node::privacy::PersonExport;

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
}

impl PrivacyCmd {
    pub fn request(&self) -> Request {
        let PrivacyCmd::Export { person, .. } = self;
        Request::PrivacyExport {
            person: person.clone(),
        }
    }

    pub fn out(&self) -> &Path {
        let PrivacyCmd::Export { out, .. } = self;
        out
    }
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
