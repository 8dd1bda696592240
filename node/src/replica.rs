//! Serving peers: the storage side of a catch-up session
//! ([`rapport_sync::Replica`] over a [`Repo`]). Nothing of a space goes to
//! a peer that is not a member of it; what a peer sends is held to the
//! limits on rate and quota, then applied by [`crate::ingest`].

use std::time::Instant;

use rapport_model::automerge::ChangeHash;
use rapport_model::{RecordId, SpaceId};
use rapport_proto::{SignedChange, hex};
use rapport_sync::{ItemSet, Replica};
use rapport_trust::{DeviceId, chunk_hash};

use crate::addresses::Learned;
use crate::ingest::ApplyReport;
use crate::limits::{Limiter, human_bytes};
use crate::{NodeError, Repo};

impl Repo {
    /// Encoded signed changes of `record` that a peer with `peer_heads`
    /// lacks: those not below the heads this node knows (all of them if
    /// it knows none).
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
            .filter(|h| doc.get_change_meta_by_hash(h).is_some())
            .collect();
        self.encoded_changes_since(record, &mut doc, &known)
    }

    /// What [`Repo::changes_for`] gives if this node's document holds every
    /// one of `peer_heads` (then exactly what the peer lacks); `None` if
    /// one of them is new here.
    pub fn changes_if_known(
        &self,
        space: SpaceId,
        record: RecordId,
        peer_heads: &[[u8; 32]],
    ) -> Result<Option<Vec<Vec<u8>>>, NodeError> {
        if self.store().heads(space, record)?.is_none() {
            return Ok(peer_heads.is_empty().then(Vec::new));
        }
        // A change this node never stored is not in its document: that is
        // the common case (the peer edited the record), seen without
        // loading the document.
        for h in peer_heads {
            if self.store().signed_change(h)?.is_none() {
                return Ok(None);
            }
        }
        let mut doc = self.load_doc(record)?;
        let heads: Vec<ChangeHash> = peer_heads.iter().map(|h| ChangeHash(*h)).collect();
        if heads
            .iter()
            .any(|h| doc.get_change_meta_by_hash(h).is_none())
        {
            return Ok(None);
        }
        self.encoded_changes_since(record, &mut doc, &heads)
            .map(Some)
    }

    /// The record's heads, then the ancestors
    /// [`rapport_sync::ancestors_by_doubling`] picks: a peer that does not
    /// know the heads sends what is not below those of these it knows.
    pub fn heads_and_ancestors(
        &self,
        space: SpaceId,
        record: RecordId,
    ) -> Result<Option<Vec<[u8; 32]>>, NodeError> {
        let Some(mut out) = self.store().heads(space, record)? else {
            return Ok(None);
        };
        let mut doc = self.load_doc(record)?;
        // In the order the changes were applied: each after its
        // dependencies. Metadata only: no operation is decoded.
        let history: Vec<([u8; 32], Vec<[u8; 32]>)> = doc
            .get_changes_meta(&[])
            .into_iter()
            .map(|c| (c.hash.0, c.deps.iter().map(|d| d.0).collect()))
            .collect();
        for h in rapport_sync::ancestors_by_doubling(&history) {
            if !out.contains(&h) {
                out.push(h);
            }
        }
        Ok(Some(out))
    }

    /// The stored signed changes of `doc` not below `heads`, encoded, in
    /// the document's order (each after its dependencies).
    fn encoded_changes_since(
        &self,
        record: RecordId,
        doc: &mut rapport_model::automerge::AutoCommit,
        heads: &[ChangeHash],
    ) -> Result<Vec<Vec<u8>>, NodeError> {
        let mut out = Vec::new();
        for change in doc.get_changes(heads) {
            match self.store().signed_change(&change.hash().0)? {
                Some(signed) => out.push(signed.encode()),
                None => tracing::warn!(%record, "a change has no stored signature; not sending it"),
            }
        }
        Ok(out)
    }

    /// Verifies, authorizes and applies changes a peer sent for `record`,
    /// durably.
    /// The storage side of a catch-up session with `peer`.
    pub fn replica(&self, peer: DeviceId) -> SyncReplica<'_> {
        SyncReplica {
            repo: self,
            peer,
            limiter: None,
            report: ApplyReport::default(),
            learned: Vec::new(),
            addresses_refused: 0,
            on_learned: None,
        }
    }
}

/// [`Replica`] over a [`Repo`], for one session with one peer.
#[derive(Debug)]
pub struct SyncReplica<'a> {
    repo: &'a Repo,
    peer: DeviceId,
    limiter: Option<&'a Limiter>,
    /// What the session applied and rejected so far.
    pub report: ApplyReport,
    /// Members' addresses the peer passed on that were new here.
    pub learned: Vec<Learned>,
    /// Announcements the peer passed on that were refused.
    pub addresses_refused: usize,
    /// Told of each new address at once (instead of `learned`): what a
    /// session learned counts even if the session fails later.
    on_learned: Option<LearnedSink>,
}

/// Where a session's newly learned addresses go as they are taken.
#[derive(Clone)]
pub struct LearnedSink(pub std::sync::Arc<dyn Fn(Learned) + Send + Sync>);

impl std::fmt::Debug for LearnedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LearnedSink")
    }
}

impl<'a> SyncReplica<'a> {
    /// Hands each address the peer passes on, once taken, to `sink`.
    pub fn on_learned(self, sink: LearnedSink) -> Self {
        SyncReplica {
            on_learned: Some(sink),
            ..self
        }
    }

    /// Enforces `limiter`'s rate and quota on what the peer sends.
    pub fn limited(self, limiter: &'a Limiter) -> Self {
        SyncReplica {
            limiter: Some(limiter),
            ..self
        }
    }

    /// Applies what the peer sent for `records` of `space`, all of it
    /// together, after the limits; the flush is the caller's.
    fn ingest(
        &mut self,
        space: SpaceId,
        records: Vec<(RecordId, Vec<Vec<u8>>)>,
    ) -> Result<(), String> {
        let mut within = Vec::with_capacity(records.len());
        // What this message brought so far, not stored yet: it counts
        // against the quota as if it were.
        let mut unstored = 0u64;
        for (record, changes) in records {
            match self.within_limits(space, record, &changes, unstored) {
                Err(reason) => {
                    tracing::warn!(peer = %self.peer.short(), %space, %record, "{reason}");
                    if let Some(l) = self.limiter {
                        l.note(format!(
                            "{} {reason}",
                            self.repo.now().strftime("%Y-%m-%d %H:%M:%S UTC")
                        ));
                    }
                    self.report.rejected += changes.len();
                }
                Ok(charged) => {
                    unstored += charged;
                    within.push((record, changes));
                }
            }
        }
        let r = self
            .repo
            .apply_remote_batch(space, within, self.peer)
            .map_err(text)?;
        self.report.applied += r.applied;
        self.report.duplicates += r.duplicates;
        self.report.rejected += r.rejected;
        self.report.pending += r.pending;
        Ok(())
    }

    /// The bytes the peer's changes for `record` charge to the quota, or
    /// why they must wait, if the limits say so (`unstored`: bytes of the
    /// same message charged before them). Changes that wait are not
    /// stored; the peer offers them again at a later session.
    fn within_limits(
        &self,
        space: SpaceId,
        record: RecordId,
        changes: &[Vec<u8>],
        unstored: u64,
    ) -> Result<u64, String> {
        let Some(limiter) = self.limiter else {
            return Ok(0);
        };
        let SpaceId::Shared(id) = space else {
            return Ok(0);
        };
        let mut exempt = false;
        if record == id {
            // Membership always flows: while this node joins, and what the
            // space's admins write (additions, removals) must never wait
            // behind a burst of records. Anything else a member writes to
            // the space document is charged like records.
            exempt = match self.repo.store().space_shared(id).ok().flatten() {
                None => true,
                Some(view) => changes.iter().all(|bytes| {
                    SignedChange::decode(bytes).is_ok_and(|s| {
                        view.role_of(&hex(&s.author)) == Some(rapport_model::Role::Admin)
                    })
                }),
            };
        }
        // Only what this node does not hold yet counts: a peer that
        // resends history it cannot know this node has costs nothing.
        let new: Vec<&Vec<u8>> = changes
            .iter()
            .filter(|bytes| {
                // Hashed from the bytes: nothing unverified is parsed (or
                // inflated) here.
                SignedChange::decode(bytes)
                    .ok()
                    .and_then(|s| chunk_hash(&s.change).ok())
                    .is_none_or(|h| {
                        self.repo
                            .store()
                            .signed_change(&h.0)
                            .ok()
                            .flatten()
                            .is_none()
                    })
            })
            .collect();
        let incoming: u64 = new.iter().map(|c| c.len() as u64).sum();
        // Never refused, but stored before what follows in the message is
        // charged: the bytes still count.
        if new.is_empty() || exempt {
            return Ok(incoming);
        }
        let per_minute = limiter.limits.changes_per_minute.unwrap_or(0);
        if let Err(wait) = limiter.take(self.peer, new.len(), Instant::now()) {
            return Err(format!(
                "rate limit: peer {} sends more than {per_minute} changes a minute; the rest is taken in {} s",
                self.peer.short(),
                wait.as_secs()
            ));
        }
        let used = self.repo.store().space_usage(space).unwrap_or(0) + unstored;
        limiter.fits(used, incoming, new.len()).map_err(|quota| {
            format!(
                "storage quota: this node keeps at most {} of space {space}, and holds {}; its admin can raise --quota",
                human_bytes(quota),
                human_bytes(used)
            )
        })?;
        Ok(incoming)
    }
}
fn text(e: NodeError) -> String {
    e.to_string()
}

impl Replica for SyncReplica<'_> {
    fn items(&self, space: SpaceId) -> Result<ItemSet, String> {
        // Nothing of a space goes to a peer that is not a member of it,
        // whichever side dialed.
        if !self.may_sync(space) {
            return Ok(ItemSet::default());
        }
        // Kept in memory by the store: no scan, no hashing per session.
        self.repo
            .store()
            .sync_items(space)
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
        let changes = self
            .repo
            .changes_for(space, record, peer_heads)
            .map_err(text)?;
        // Again, after loading: a removal committed meanwhile (which holds
        // the new topic secret) must not reach the member it removes.
        if !self.may_sync(space) {
            return Ok(Vec::new());
        }
        Ok(changes)
    }

    fn changes_if_known(
        &self,
        space: SpaceId,
        record: RecordId,
        peer_heads: &[[u8; 32]],
    ) -> Result<Option<Vec<Vec<u8>>>, String> {
        if !self.may_sync(space) {
            return Ok(Some(Vec::new()));
        }
        let changes = self
            .repo
            .changes_if_known(space, record, peer_heads)
            .map_err(text)?;
        // Again, after loading (see `changes_for`).
        if !self.may_sync(space) {
            return Ok(Some(Vec::new()));
        }
        Ok(changes)
    }

    fn heads_and_ancestors(
        &self,
        space: SpaceId,
        record: RecordId,
    ) -> Result<Option<Vec<[u8; 32]>>, String> {
        if !self.may_sync(space) {
            return Ok(None);
        }
        self.repo.heads_and_ancestors(space, record).map_err(text)
    }

    fn apply(
        &mut self,
        space: SpaceId,
        record: RecordId,
        changes: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        self.ingest(space, vec![(record, changes)])
    }

    fn flush(&mut self) -> Result<(), String> {
        self.repo.store().flush().map_err(|e| e.to_string())
    }

    fn apply_message(
        &mut self,
        space: SpaceId,
        records: Vec<(RecordId, Vec<Vec<u8>>)>,
    ) -> Result<(), String> {
        self.ingest(space, records)?;
        self.flush()
    }

    /// A removed member is told so (it is entitled to know); anyone else
    /// learns nothing about the space, not even whether it exists here.
    fn refusal_reason(&self, space: SpaceId) -> String {
        let generic = "not a member of this space here".to_string();
        let SpaceId::Shared(id) = space else {
            return generic;
        };
        match self.repo.space(id) {
            Ok(Some(v)) => match v.removed.get(&self.peer.to_string()) {
                Some((_, removal)) => format!(
                    "you were removed from space {} by {} on {}",
                    v.name,
                    self.repo.device_label(&v, &removal.by),
                    crate::spaces::day(removal.at)
                ),
                None => generic,
            },
            _ => generic,
        }
    }

    /// Only to a member: [`Replica::addresses`] is asked before the peer
    /// answers when this node dials, so it checks here too.
    fn addresses(&self, space: SpaceId) -> Result<Vec<Vec<u8>>, String> {
        match space {
            SpaceId::Shared(id) if self.may_sync(space) => {
                self.repo.member_addresses(id).map_err(text)
            }
            _ => Ok(Vec::new()),
        }
    }

    fn learn_addresses(&mut self, space: SpaceId, signed: Vec<Vec<u8>>) -> Result<(), String> {
        let SpaceId::Shared(id) = space else {
            return Ok(());
        };
        if !self.may_sync(space) {
            return Ok(());
        }
        for one in signed {
            match self.repo.learn_addresses(id, &one).map_err(text)? {
                Ok(Some(learned)) => match &self.on_learned {
                    Some(sink) => (sink.0)(learned),
                    None => self.learned.push(learned),
                },
                Ok(None) => {}
                Err(refused) => {
                    self.addresses_refused += 1;
                    tracing::debug!(peer = %self.peer.short(), %space, "refused an address announcement: {refused}");
                }
            }
        }
        Ok(())
    }

    /// Both ends must be members: this node (or it has nothing to share)
    /// and the peer (or it gets nothing).
    fn may_sync(&self, space: SpaceId) -> bool {
        let SpaceId::Shared(id) = space else {
            return false;
        };
        match self.repo.store().space_shared(id) {
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
    use crate::ingest::tests::{add, node, sync, views};
    use crate::repo::tests::input;
    use jiff::Timestamp;
    use rapport_model::{Kind, Role};
    use rapport_sync::run_in_memory;

    #[test]
    fn two_members_converge_and_private_records_stay_home() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &b, Role::Writer);
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

    /// Regression (the relay benchmark moved 10-14 KB per change): a
    /// session about a record one side edited sent its whole history,
    /// because the other side did not know the new head. With real
    /// documents, whichever side edited and whichever dials, only the
    /// edits move, and nothing arrives twice.
    #[test]
    fn an_edit_of_a_long_history_moves_the_edit_alone() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &b, Role::Writer);
        let acme = a
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("create");
        for i in 0..50 {
            a.edit("Acme", &input(&[("industry", &format!("I{i}"))]), &[])
                .expect("edit");
        }
        sync(&b, &a, space);
        let session = |from: &Repo, to: &Repo| {
            let mut rf = from.replica(to.device_id());
            let mut rt = to.replica(from.device_id());
            let t = run_in_memory(space, &mut rf, &mut rt).expect("session");
            (t, rf.report, rt.report)
        };
        let edit = |who: &Repo, n: usize, case: usize| {
            for i in 0..n {
                let value = format!("{} {case}.{i}", who.device_id());
                who.edit("Acme", &input(&[("owner", &value)]), &[])
                    .expect("edit");
            }
        };
        let cases = [(1, 0), (0, 1), (2, 0), (0, 2), (1, 1), (2, 2)];
        for (n, (dialer_edits, dialed_edits)) in cases.into_iter().enumerate() {
            let case = format!("{dialer_edits} by the dialer, {dialed_edits} by the dialed");
            edit(&b, dialer_edits, n);
            edit(&a, dialed_edits, n);
            let (t, on_b, on_a) = session(&b, &a);
            assert_eq!(t.initiator.changes_sent, dialer_edits, "{case}: {t:?}");
            assert_eq!(t.responder.changes_sent, dialed_edits, "{case}: {t:?}");
            assert_eq!((on_a.applied, on_a.duplicates), (dialer_edits, 0), "{case}");
            assert_eq!((on_b.applied, on_b.duplicates), (dialed_edits, 0), "{case}");
            assert_eq!(
                t.initiator.named_twice,
                usize::from(dialer_edits > 0 && dialed_edits > 0),
                "{case}"
            );
            assert_eq!(
                a.store().heads(space, acme.id).expect("heads"),
                b.store().heads(space, acme.id).expect("heads"),
                "{case}"
            );
        }
    }

    #[test]
    fn heads_and_ancestors_reach_back_by_doubling_steps() {
        let (_ta, a) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        let acme = a
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("create");
        for i in 0..20 {
            a.edit("Acme", &input(&[("industry", &format!("I{i}"))]), &[])
                .expect("edit");
        }
        let history: Vec<[u8; 32]> = a
            .load_doc(acme.id)
            .expect("doc")
            .get_changes(&[])
            .iter()
            .map(|c| c.hash().0)
            .collect();
        assert_eq!(history.len(), 21);
        let list = a
            .heads_and_ancestors(space, acme.id)
            .expect("list")
            .expect("held");
        // The head, then the heads 1, 2, 4, 8 and 16 changes before it
        // (one each: the history is linear), then the first.
        let expected: Vec<[u8; 32]> = [20, 19, 18, 16, 12, 4, 0]
            .iter()
            .map(|&i| history[i])
            .collect();
        assert_eq!(list, expected);
    }

    /// Issue 15, item 7, measured (`cargo test --release -p rapport-node
    /// --lib catch_up_cost -- --ignored --nocapture`): a catch-up of 10
    /// changed records in a space whose removal names 20,000 records.
    #[test]
    #[ignore = "a measurement: run it in release"]
    fn catch_up_cost_with_a_large_removal() {
        use rapport_model::space::Removal;
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_tw, w) = node();
        let shared = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(shared.id);
        add(&a, shared.id, &b, Role::Writer);
        add(&a, shared.id, &w, Role::Writer);
        let rows: Vec<Vec<(String, String)>> = (0..200)
            .map(|n| vec![("name".to_string(), format!("Company {n}"))])
            .collect();
        a.create_many(Kind::Company, space, &rows).expect("create");
        sync(&b, &a, space);
        let cutoff: Vec<(RecordId, [u8; 32])> = (0..20_000u32)
            .map(|n| {
                let mut r = [0u8; 10];
                r[..4].copy_from_slice(&n.to_be_bytes());
                (RecordId::new(1, r), [7; 32])
            })
            .collect();
        let mut doc = a.load_doc(shared.id).expect("doc");
        rapport_model::space::remove_members(
            &mut doc,
            &[Removal {
                device: w.device_id().to_string(),
                by: a.device_id().to_string(),
                at: Timestamp::now().as_second(),
                cutoff,
            }],
            [9; 32],
            Timestamp::now(),
        )
        .expect("remove");
        a.write_space_doc(&mut doc, shared.id).expect("write");
        sync(&b, &a, space);
        let mut times = Vec::new();
        for round in 0..5 {
            for n in 0..10 {
                a.edit(
                    &format!("Company {n}"),
                    &input(&[("industry", &format!("R{round}"))]),
                    &[],
                )
                .expect("edit");
            }
            let started = Instant::now();
            let traffic = sync(&b, &a, space);
            times.push(started.elapsed());
            assert!(traffic.messages > 0);
        }
        times.sort();
        eprintln!(
            "catch-up of 10 changed records, 20,000-entry removal: median {:?} (min {:?}, max {:?})",
            times[2], times[0], times[4]
        );
    }
}
