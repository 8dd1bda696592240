//! Changes from other nodes: what a peer lacks, and applying what a peer
//! sent after verifying and authorizing every change.
//!
//! The rules (also in `docs/PROTOCOL.md`):
//!
//! 1. The envelope decodes, its signature verifies strictly, and the
//!    change's actor is its signer.
//! 2. The signer is a member of the space (as this node knows the space).
//!    For the space document itself, the signer must be a member in the
//!    document that results, and the document must name that space.
//! 3. A record document must say it belongs to the space it arrived in,
//!    and keep saying so.
//!
//! A change that breaks a rule is dropped, logged and recorded as a
//! rejection; the others from the same batch still apply. Changes whose
//! dependencies have not arrived yet are kept and applied once they have.

use jiff::Timestamp;
use rapport_model::automerge::{AutoCommit, Change, ChangeHash};
use rapport_model::space::{self, is_space_doc, space_of};
use rapport_model::{RecordId, RecordView, SpaceId};
use rapport_proto::{SignedChange, hex};
use rapport_store::{Indexed, RecordWrite, Rejection};
use rapport_sync::Replica;
use rapport_trust::{DeviceId, verify_change};

use crate::{NodeError, Repo};

/// What happened to a batch of changes from a peer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// Waiting for changes they depend on.
    pub pending: usize,
}

impl Repo {
    /// Encoded signed changes of `record` that a peer with `peer_heads` lacks.
    pub fn changes_for(
        &self,
        space: SpaceId,
        record: RecordId,
        peer_heads: &[[u8; 32]],
    ) -> Result<Vec<Vec<u8>>, NodeError> {
        if self.store().heads(space, record)?.is_none() {
            return Ok(Vec::new());
        }
        let mut doc = self.load_doc(record)?;
        let known: Vec<ChangeHash> = peer_heads
            .iter()
            .map(|h| ChangeHash(*h))
            .filter(|h| doc.get_change_by_hash(h).is_some())
            .collect();
        let mut out = Vec::new();
        for change in doc.get_changes(&known) {
            match self.store().signed_change(&change.hash().0)? {
                Some(signed) => out.push(signed.encode()),
                None => tracing::warn!(%record, "a change has no stored signature; not sending it"),
            }
        }
        Ok(out)
    }

    /// Verifies, authorizes and applies changes a peer sent for `record`,
    /// durably.
    pub fn apply_remote(
        &self,
        space: SpaceId,
        record: RecordId,
        encoded: Vec<Vec<u8>>,
        from: DeviceId,
    ) -> Result<ApplyReport, NodeError> {
        let report = self.apply_remote_deferred(space, record, encoded, from)?;
        self.store().flush()?;
        Ok(report)
    }

    /// Like [`Repo::apply_remote`], leaving the flush to the caller.
    pub fn apply_remote_deferred(
        &self,
        space: SpaceId,
        record: RecordId,
        encoded: Vec<Vec<u8>>,
        from: DeviceId,
    ) -> Result<ApplyReport, NodeError> {
        let SpaceId::Shared(space_id) = space else {
            return Err(NodeError::NotMember(space.to_string()));
        };
        let mut report = ApplyReport::default();
        let reject = |author: Option<[u8; 32]>, reason: String, report: &mut ApplyReport| {
            report.rejected += 1;
            tracing::warn!(%space, %record, from = %from.short(), %reason, "rejected a change");
            let _ = self.store().log_rejection(&Rejection {
                space: space.to_string(),
                record: record.to_string(),
                author: author.map(|a| hex(&a)),
                from: from.to_string(),
                reason,
                at: Timestamp::now().as_second(),
            });
        };
        let mut verified: Vec<(SignedChange, Change)> = Vec::new();
        for bytes in encoded {
            let signed = match SignedChange::decode(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    reject(None, format!("malformed envelope: {e}"), &mut report);
                    continue;
                }
            };
            match verify_change(&signed) {
                Ok(change) => verified.push((signed, change)),
                Err(e) => reject(Some(signed.author), e.to_string(), &mut report),
            }
        }
        let is_space_record = record == space_id;
        let _guard = self.write_guard();
        let members = self.space(space_id)?;
        // Authors must already be members. The one exception is the first
        // download of a space document by a node that is joining: it has
        // no member list yet, and checks the result instead (below).
        if !is_space_record || members.is_some() {
            verified.retain(|(signed, _)| {
                let ok = members
                    .as_ref()
                    .is_some_and(|m| m.is_member(&hex(&signed.author)));
                if !ok {
                    reject(
                        Some(signed.author),
                        "the author is not a member of the space".into(),
                        &mut report,
                    );
                }
                ok
            });
        }

        let existing = self.store().doc(record)?;
        let mut doc = match &existing {
            Some(bytes) => AutoCommit::load(bytes).map_err(|e| NodeError::Damaged {
                path: self.dir().to_path_buf(),
                reason: format!("document of {record} does not load: {e}"),
            })?,
            None => AutoCommit::new(),
        };
        if existing.is_some() && space_of(&doc).ok() != Some(space) {
            // Rule 3: a document never moves between spaces.
            for (signed, _) in &verified {
                reject(
                    Some(signed.author),
                    "the document belongs to another space".into(),
                    &mut report,
                );
            }
            return Ok(report);
        }
        let old_view = if existing.is_some() && !is_space_record {
            RecordView::read(&mut doc, record, None).ok()
        } else {
            None
        };
        // Changes kept earlier while their dependencies were missing.
        let mut fresh: Vec<(Vec<u8>, SignedChange, Change)> = Vec::new();
        for hash in self.store().change_hashes(record)? {
            let Ok(h) = <[u8; 32]>::try_from(hash.as_slice()) else {
                continue;
            };
            if doc.get_change_by_hash(&ChangeHash(h)).is_none()
                && let Some(signed) = self.store().signed_change(&hash)?
                && let Ok(change) = verify_change(&signed)
            {
                fresh.push((hash, signed, change));
            }
        }
        for (signed, change) in verified {
            let hash = change.hash();
            if doc.get_change_by_hash(&hash).is_some() || fresh.iter().any(|(h, ..)| h == &hash.0) {
                report.duplicates += 1;
                continue;
            }
            fresh.push((hash.0.to_vec(), signed, change));
        }
        if fresh.is_empty() {
            return Ok(report);
        }
        if let Err(e) = doc.apply_changes(fresh.iter().map(|(_, _, c)| c.clone())) {
            // Malformed history from a peer (e.g. a reused sequence number):
            // its fault, not damage here; refuse the batch and go on.
            for (_, signed, _) in &fresh {
                reject(
                    Some(signed.author),
                    format!("the change does not apply: {e}"),
                    &mut report,
                );
            }
            return Ok(report);
        }
        let missing = !doc.get_missing_deps(&[]).is_empty();
        let changes: Vec<(Vec<u8>, SignedChange)> = fresh
            .iter()
            .map(|(h, s, _)| (h.clone(), s.clone()))
            .collect();
        if missing || doc.get_heads().is_empty() {
            // Keep them aside; they apply when what they build on arrives.
            report.pending += changes.len();
            self.store().keep_pending(record, &changes)?;
            return Ok(report);
        }

        // Rules 2 and 3: the document must belong to this space, and for
        // the space document, every signer must be a member of the result.
        let reject_all = |reason: &str, report: &mut ApplyReport| {
            for (_, signed) in &changes {
                reject(Some(signed.author), reason.to_string(), report);
            }
        };
        if space_of(&doc).ok() != Some(space) {
            reject_all("the document does not belong to this space", &mut report);
            return Ok(report);
        }
        let (space_view, record_view);
        let index = if is_space_record {
            space_view = match is_space_doc(&doc).then(|| space::read_space(&doc)) {
                Some(Ok(v)) => v,
                _ => {
                    reject_all("not a valid space document", &mut report);
                    return Ok(report);
                }
            };
            if changes
                .iter()
                .any(|(_, s)| !space_view.is_member(&hex(&s.author)))
            {
                reject_all("an author is not a member of the space", &mut report);
                return Ok(report);
            }
            Indexed::Space(&space_view)
        } else {
            record_view = match RecordView::read(&mut doc, record, None) {
                Ok(v) => v,
                Err(e) => {
                    reject_all(&format!("not a valid record: {e}"), &mut report);
                    return Ok(report);
                }
            };
            Indexed::Record {
                view: &record_view,
                previous: old_view.as_ref(),
            }
        };
        let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
        self.store().write_deferred(&RecordWrite {
            id: record,
            space,
            doc: &doc.save(),
            heads: &heads,
            changes: &changes,
            index,
        })?;
        report.applied += changes.len();
        Ok(report)
    }

    /// The storage side of a catch-up session with `peer`.
    pub fn replica(&self, peer: DeviceId) -> SyncReplica<'_> {
        SyncReplica {
            repo: self,
            peer,
            report: ApplyReport::default(),
        }
    }
}

/// [`Replica`] over a [`Repo`], for one session with one peer.
#[derive(Debug)]
pub struct SyncReplica<'a> {
    repo: &'a Repo,
    peer: DeviceId,
    /// What the session applied and rejected so far.
    pub report: ApplyReport,
}

fn text(e: NodeError) -> String {
    e.to_string()
}

impl Replica for SyncReplica<'_> {
    fn items(&self, space: SpaceId) -> Result<Vec<(RecordId, Vec<[u8; 32]>)>, String> {
        // Nothing of a space goes to a peer that is not a member of it,
        // whichever side dialed.
        if !self.may_sync(space) {
            return Ok(Vec::new());
        }
        self.repo
            .store()
            .space_items(space)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    }

    fn heads(&self, space: SpaceId, record: RecordId) -> Result<Option<Vec<[u8; 32]>>, String> {
        if !self.may_sync(space) {
            return Ok(None);
        }
        self.repo
            .store()
            .heads(space, record)
            .map_err(|e| e.to_string())
    }

    fn changes_for(
        &self,
        space: SpaceId,
        record: RecordId,
        peer_heads: &[[u8; 32]],
    ) -> Result<Vec<Vec<u8>>, String> {
        if !self.may_sync(space) {
            return Ok(Vec::new());
        }
        self.repo
            .changes_for(space, record, peer_heads)
            .map_err(text)
    }

    fn apply(
        &mut self,
        space: SpaceId,
        record: RecordId,
        changes: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        let r = self
            .repo
            .apply_remote(space, record, changes, self.peer)
            .map_err(text)?;
        self.report.applied += r.applied;
        self.report.duplicates += r.duplicates;
        self.report.rejected += r.rejected;
        self.report.pending += r.pending;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        self.repo.store().flush().map_err(|e| e.to_string())
    }

    /// Both ends must be members: this node (or it has nothing to share)
    /// and the peer (or it gets nothing).
    fn may_sync(&self, space: SpaceId) -> bool {
        let SpaceId::Shared(id) = space else {
            return false;
        };
        match self.repo.space(id) {
            Ok(Some(v)) => {
                v.is_member(&self.peer.to_string())
                    && v.is_member(&self.repo.device_id().to_string())
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenMode;
    use crate::repo::tests::input;
    use rapport_model::Kind;
    use rapport_sync::run_in_memory;

    fn node() -> (tempfile::TempDir, Repo) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(tmp.path(), OpenMode::Create).expect("open");
        (tmp, repo)
    }

    /// Syncs `space` from `a`'s point of view (a dials b).
    fn sync(a: &Repo, b: &Repo, space: SpaceId) -> rapport_sync::Traffic {
        let mut ra = a.replica(b.device_id());
        let mut rb = b.replica(a.device_id());
        run_in_memory(space, &mut ra, &mut rb).expect("session")
    }

    fn views(r: &Repo, kind: Kind) -> Vec<RecordView> {
        let mut v = r.list(kind, &[], false).expect("list");
        for x in &mut v {
            x.updated = 0;
        }
        v
    }

    #[test]
    fn two_members_converge_and_private_records_stay_home() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        a.add_member(shared.id, &b.device_id().to_string())
            .expect("add b");
        a.create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("c");
        a.create(
            Kind::Company,
            SpaceId::Private,
            &input(&[("name", "Secret Co")]),
        )
        .expect("p");

        sync(&b, &a, space);
        assert_eq!(b.spaces().expect("spaces").len(), 1, "b learned the space");
        let on_b = views(&b, Kind::Company);
        assert_eq!(on_b.len(), 1);
        assert_eq!(on_b[0].title(), "Acme");
        assert!(
            b.resolve("Secret Co").is_err(),
            "a private record reached b"
        );

        // Concurrent edits: different fields, and the same field.
        a.edit(
            "Acme",
            &input(&[("industry", "Steel"), ("owner", "Ann")]),
            &[],
        )
        .expect("a edits");
        b.edit(
            "Acme",
            &input(&[("domain", "acme.com"), ("owner", "Bob")]),
            &[],
        )
        .expect("b edits");
        sync(&a, &b, space);
        let (va, vb) = (views(&a, Kind::Company), views(&b, Kind::Company));
        let shared_a: Vec<_> = va.into_iter().filter(|v| v.space == space).collect();
        assert_eq!(shared_a, vb, "both nodes see the same record");
        let acme = &vb[0];
        assert_eq!(acme.text("industry"), Some("Steel"));
        assert_eq!(acme.text("domain"), Some("acme.com"));
        assert_eq!(
            acme.conflicts.get("owner").map(Vec::len),
            Some(2),
            "the conflict is visible"
        );
        assert_eq!(
            a.store().heads(space, acme.id).expect("heads"),
            b.store().heads(space, acme.id).expect("heads")
        );

        // A second session finds nothing to do, cheaply.
        let t = sync(&a, &b, space);
        assert_eq!(t.messages, 4, "identical spaces: one round trip");
        assert!(t.bytes < 400, "{} bytes", t.bytes);
    }

    #[test]
    fn forged_and_unauthorized_changes_are_rejected_and_recorded() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_tm, mallory) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        a.add_member(shared.id, &b.device_id().to_string())
            .expect("add b");
        let acme = a
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("c");
        sync(&b, &a, space);

        // Mallory is not a member; it writes a change to Acme (on a copy of
        // the document it somehow got) and offers it to b.
        let mut doc = a
            .load_doc(acme.id)
            .expect("doc")
            .with_actor(mallory.device_id().actor_id());
        rapport_model::doc::edit(
            &mut doc,
            &[rapport_model::Edit::Set(
                "name".into(),
                rapport_model::FieldValue::Text("Hacked".into()),
            )],
            Timestamp::now(),
        )
        .expect("edit");
        let change = doc.get_last_local_change().expect("change");
        let signed = mallory.key().sign_change(&change).expect("sign");
        let report = b
            .apply_remote(space, acme.id, vec![signed.encode()], mallory.device_id())
            .expect("apply");
        assert_eq!(report.rejected, 1);
        assert_eq!(report.applied, 0);

        // A member's change with a broken signature is rejected too.
        let mut doc = a.load_doc(acme.id).expect("doc");
        rapport_model::doc::edit(
            &mut doc,
            &[rapport_model::Edit::Set(
                "industry".into(),
                rapport_model::FieldValue::Text("X".into()),
            )],
            Timestamp::now(),
        )
        .expect("edit");
        let mut forged = a
            .key()
            .sign_change(&doc.get_last_local_change().expect("c"))
            .expect("sign");
        forged.signature[5] ^= 0x40;
        let report = b
            .apply_remote(
                space,
                acme.id,
                vec![forged.encode(), b"junk".to_vec()],
                a.device_id(),
            )
            .expect("apply");
        assert_eq!(report.rejected, 2);

        let on_b = b.resolve(&acme.id.to_string()).expect("acme");
        assert_eq!(on_b.text("name"), Some("Acme"));
        assert_eq!(on_b.get("industry"), None);
        let log = b.store().rejections().expect("log");
        assert!(log.len() >= 3);
        assert!(log[0].reason.contains("not a member"), "{:?}", log[0]);
        assert!(log[1].reason.contains("signature"), "{:?}", log[1]);

        // Nor can Mallory make itself a member by editing the space
        // document: only members may change it.
        let mut space_doc = a
            .load_doc(shared.id)
            .expect("space doc")
            .with_actor(mallory.device_id().actor_id());
        rapport_model::space::add_member(
            &mut space_doc,
            &mallory.device_id().to_string(),
            Timestamp::now(),
        )
        .expect("add");
        let change = space_doc.get_last_local_change().expect("change");
        let signed = mallory.key().sign_change(&change).expect("sign");
        let report = b
            .apply_remote(space, shared.id, vec![signed.encode()], mallory.device_id())
            .expect("apply");
        assert_eq!((report.rejected, report.applied), (1, 0));
        let members = b.space(shared.id).expect("space").expect("known");
        assert!(!members.is_member(&mallory.device_id().to_string()));

        // And a non-member cannot even open a session.
        let mut rm = mallory.replica(a.device_id());
        let mut ra = a.replica(mallory.device_id());
        let err = run_in_memory(space, &mut rm, &mut ra).expect_err("refused");
        assert!(matches!(err, rapport_sync::SyncError::Refused(_)), "{err}");
        assert!(mallory.spaces().expect("spaces").is_empty());
    }
}
