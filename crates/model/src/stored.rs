//! A document's bytes as a node stores them.
//!
//! Automerge keeps a change whose dependencies are missing in a queue, and
//! by default `save` writes that queue out after the document, and `load`
//! queues it again. A node must not keep changes that way: a queued change
//! was never judged by the rules, may be forgotten from the store (refused
//! or expired) meanwhile, and still comes out of the document the moment
//! its dependencies arrive. Changes waiting for their dependencies live in
//! the store instead, where each settle judges them.

use automerge::{AutoCommit, AutomergeError, SaveOptions};

/// The document without the changes Automerge queues.
pub fn save(doc: &mut AutoCommit) -> Vec<u8> {
    doc.save_with_options(SaveOptions {
        deflate: true,
        retain_orphans: false,
    })
}

/// Loads stored bytes, dropping any queued change that an earlier version
/// saved with the document.
pub fn load(bytes: &[u8]) -> Result<AutoCommit, AutomergeError> {
    let mut doc = AutoCommit::load(bytes)?;
    if doc.get_missing_deps(&[]).is_empty() {
        return Ok(doc);
    }
    AutoCommit::load(&save(&mut doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};

    /// A change whose dependency is missing neither is saved nor comes
    /// back on load, whichever way the bytes were saved.
    #[test]
    fn changes_waiting_for_their_dependencies_are_not_kept_in_the_document() {
        let mut source = AutoCommit::new();
        source.put(ROOT, "name", "Acme").expect("put");
        source.commit();
        let mut later = source.fork();
        later.put(ROOT, "name", "Beta").expect("put");
        later.commit();
        let missing = later.get_last_local_change().expect("change").clone();
        later.put(ROOT, "name", "Gamma").expect("put");
        later.commit();
        let waiting = later.get_last_local_change().expect("change").clone();

        let mut doc = source.fork();
        doc.apply_changes([waiting]).expect("queued");
        assert!(!doc.get_missing_deps(&[]).is_empty(), "queued in Automerge");
        let old_style = doc.save();
        for bytes in [save(&mut doc), old_style] {
            let mut loaded = load(&bytes).expect("load");
            assert!(loaded.get_missing_deps(&[]).is_empty());
            loaded.apply_changes([missing.clone()]).expect("apply");
            let name = loaded
                .get(ROOT, "name")
                .expect("get")
                .map(|(v, _)| v.to_string());
            assert_eq!(
                name.as_deref(),
                Some("\"Beta\""),
                "the waiting change stays out"
            );
        }
    }
}
