//! What must hold at the end of every simulated run.

use std::collections::BTreeMap;

use rapport_model::automerge::ChangeHash;
use rapport_model::{Kind, RecordId, RecordView, Role};
use rapport_sync::{ItemSet, SyncItem};
use rapport_trust::DeviceId;

use super::{Items, Part, World};

type Snapshot = (Items, Vec<RecordView>);

impl World {
    /// Every invariant, in the order a failure is easiest to read.
    pub fn check(&self) -> Result<(), String> {
        self.same_state()?;
        self.membership_as_intended()?;
        self.nothing_unauthorized()?;
        self.nothing_smuggled()?;
        self.waiting_bounded()?;
        self.nothing_acknowledged_lost()?;
        self.addresses_only_to_members()?;
        self.item_sets_current()?;
        self.same_schema()?;
        Ok(())
    }

    /// Every member folds the same schema from the statements it holds
    /// (concurrent statements of two admins included), and Rex's field is
    /// in none.
    fn same_schema(&self) -> Result<(), String> {
        let members = self.honest_members();
        let schema_of = |n: usize| -> Result<rapport_model::Schema, String> {
            let view = self
                .up(n)?
                .space(self.space)
                .map_err(|e| e.to_string())?
                .ok_or("no space")?;
            Ok(rapport_model::Schema::fold(&view.schema))
        };
        let first = schema_of(members[0])?;
        if first
            .custom_field(Kind::Company, super::REX_FIELD)
            .is_some()
        {
            return Err(format!(
                "{} counts the field a reader added",
                self.nodes[members[0]].name
            ));
        }
        for &n in &members[1..] {
            if schema_of(n)? != first {
                return Err(format!(
                    "{} and {} fold different schemas",
                    self.nodes[members[0]].name, self.nodes[n].name
                ));
            }
        }
        Ok(())
    }

    /// The reconciliation items each node's store keeps in memory (read
    /// once, then updated by every write, withdrawal and rebuild of the
    /// run) equal a fresh scan of what it holds.
    fn item_sets_current(&self) -> Result<(), String> {
        for n in 0..self.nodes.len() {
            let Ok(repo) = self.up(n) else { continue };
            let store = repo.store();
            let kept = store
                .sync_items(self.space_id())
                .map_err(|e| e.to_string())?;
            let mut scanned = Vec::new();
            for item in store.space_items(self.space_id()) {
                let (id, heads) = item.map_err(|e| e.to_string())?;
                scanned.push(SyncItem::new(id.to_bytes(), &heads));
            }
            if kept != ItemSet::collect(scanned) {
                return Err(format!(
                    "{}'s reconciliation items in memory differ from what its store holds",
                    self.nodes[n].name
                ));
            }
        }
        Ok(())
    }

    /// No node learned a member's address unless the node that told it
    /// counted it a member then, and only members' addresses were passed
    /// on: a node never added (Eve before Ben adds her), or one a member
    /// knows was removed (Dan), learns nothing of where the members are.
    fn addresses_only_to_members(&self) -> Result<(), String> {
        for l in &self.learned {
            let name = |n: usize| self.nodes[n].name;
            if !l.learner_added || !l.learner_member {
                return Err(format!(
                    "{} learned {}'s address from {} at {} ms, not a member in its eyes",
                    name(l.learner),
                    name(l.subject),
                    name(l.teller),
                    l.at
                ));
            }
            if !l.subject_member {
                return Err(format!(
                    "{} passed on the address of {}, not a member in its eyes, to {}",
                    name(l.teller),
                    name(l.subject),
                    name(l.learner)
                ));
            }
        }
        Ok(())
    }

    /// No member applied, or serves, an edit of a joint-space document
    /// that Rex sent under Side, where he may write.
    fn nothing_smuggled(&self) -> Result<(), String> {
        for n in self.honest_members() {
            let repo = self.up(n)?;
            for (record, hash) in &self.smuggled {
                if repo
                    .store()
                    .doc(*record)
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    continue;
                }
                let mut doc = repo.load_doc(*record).map_err(|e| e.to_string())?;
                if doc.get_change_by_hash(&ChangeHash(*hash)).is_some() {
                    return Err(format!(
                        "{} applied Rex's edit of {record} sent under another space",
                        self.nodes[n].name
                    ));
                }
            }
        }
        Ok(())
    }

    /// What Rex's floods left waiting on each member stays within the
    /// bounds per record, per author and per space.
    fn waiting_bounded(&self) -> Result<(), String> {
        use rapport_node::limits::{
            MAX_WAITING_PER_AUTHOR, MAX_WAITING_PER_RECORD, MAX_WAITING_PER_SPACE,
        };
        let rex = self.nodes[4].device.0;
        for n in self.honest_members() {
            let repo = self.up(n)?;
            for record in &self.flooded {
                let (in_space, by_rex, in_record) = repo
                    .store()
                    .waiting_counts(self.space_id(), &rex, *record)
                    .map_err(|e| e.to_string())?;
                if in_record > MAX_WAITING_PER_RECORD
                    || by_rex > MAX_WAITING_PER_AUTHOR
                    || in_space > MAX_WAITING_PER_SPACE
                {
                    return Err(format!(
                        "{} keeps {in_record} changes waiting in {record}, {by_rex} by Rex and {in_space} in the space: over the bounds",
                        self.nodes[n].name
                    ));
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self, n: usize) -> Result<Snapshot, String> {
        let repo = self.up(n)?;
        let mut views = repo
            .list(Kind::Company, &[], false)
            .map_err(|e| e.to_string())?;
        views.extend(
            repo.list(Kind::Company, &[], true)
                .map_err(|e| e.to_string())?,
        );
        Ok((self.items(n)?, views))
    }

    /// Every member holds the same documents with the same heads, and
    /// reads the same records, conflicts included.
    fn same_state(&self) -> Result<(), String> {
        let members = self.honest_members();
        let first = self.snapshot(members[0])?;
        for &n in &members[1..] {
            let other = self.snapshot(n)?;
            if other.0 != first.0 {
                return Err(format!(
                    "{} and {} hold different heads",
                    self.nodes[members[0]].name, self.nodes[n].name
                ));
            }
            if other.1 != first.1 {
                return Err(format!(
                    "{} and {} read different records from the same heads",
                    self.nodes[members[0]].name, self.nodes[n].name
                ));
            }
        }
        Ok(())
    }

    /// Exactly the intended members, with the intended roles: Rex's
    /// self-promotion is nowhere.
    fn membership_as_intended(&self) -> Result<(), String> {
        let mut expected: BTreeMap<String, Role> = BTreeMap::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let role = match node.part {
                Part::Creator | Part::Admin => Role::Admin,
                Part::Writer => Role::Writer,
                Part::Removed if !self.dan_removed => Role::Writer,
                Part::Late if self.eve_added => Role::Writer,
                Part::Hostile => Role::Reader,
                _ => continue,
            };
            expected.insert(self.nodes[n].device.to_string(), role);
        }
        for n in self.honest_members() {
            let view = self
                .up(n)?
                .space(self.space)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{} does not hold the space", self.nodes[n].name))?;
            let got: BTreeMap<String, Role> = view
                .members
                .iter()
                .map(|(d, m)| (d.clone(), m.role))
                .collect();
            if got != expected {
                return Err(format!(
                    "{} has members {got:?}, expected {expected:?}",
                    self.nodes[n].name
                ));
            }
            let dan = self.nodes[3].device.to_string();
            if self.dan_removed != view.removed.contains_key(&dan) {
                return Err(format!("{} disagrees on Dan's removal", self.nodes[n].name));
            }
        }
        Ok(())
    }

    /// No member applied a change it must refuse: nothing by the reader,
    /// membership statements only by admins, and nothing Dan wrote after
    /// his removal's cutoff unless a member who was not removed built on it.
    fn nothing_unauthorized(&self) -> Result<(), String> {
        let author_of = |actor: &rapport_model::automerge::ActorId| DeviceId::from_actor(actor);
        let rex = self.nodes[4].device;
        let dan = self.nodes[3].device;
        let admins = [self.nodes[0].device, self.nodes[1].device];
        for n in self.honest_members() {
            let repo = self.up(n)?;
            let name = self.nodes[n].name;
            let view = repo
                .space(self.space)
                .map_err(|e| e.to_string())?
                .ok_or("no space")?;
            let cutoff: BTreeMap<RecordId, [u8; 32]> = view
                .removed
                .get(&dan.to_string())
                .map(|(_, r)| r.cutoff.iter().copied().collect())
                .unwrap_or_default();
            for (record, _) in self.items(n)? {
                let mut doc = repo.load_doc(record).map_err(|e| e.to_string())?;
                let changes: Vec<_> = doc
                    .get_changes(&[])
                    .iter()
                    .map(|c| (c.hash(), author_of(c.actor_id())))
                    .collect();
                for (_, author) in &changes {
                    let Some(author) = author else {
                        return Err(format!("{name} applied a change with no device author"));
                    };
                    if record == self.space && !admins.contains(author) {
                        return Err(format!(
                            "{name} applied a membership statement by non-admin {author}"
                        ));
                    }
                    if *author == rex {
                        return Err(format!("{name} applied the reader's change to {record}"));
                    }
                }
                for (forged_in, hash) in &self.forged {
                    if *forged_in == record && changes.iter().any(|(h, _)| h.0 == *hash) {
                        return Err(format!(
                            "{name} applied an edit written as Cat but signed by Rex"
                        ));
                    }
                }
                if !self.dan_removed || record == self.space {
                    continue;
                }
                // What Dan may have here: his changes in the past of the
                // cutoff, and those someone not removed built on.
                let mut vouched: Vec<ChangeHash> = changes
                    .iter()
                    .filter(|(_, a)| *a != Some(dan))
                    .map(|(h, _)| *h)
                    .collect();
                if let Some(c) = cutoff.get(&record) {
                    vouched.push(ChangeHash(*c));
                }
                let vouched: Vec<ChangeHash> = vouched
                    .into_iter()
                    .filter(|h| doc.get_change_by_hash(h).is_some())
                    .collect();
                let unvouched: Vec<ChangeHash> = doc
                    .get_changes(&vouched)
                    .iter()
                    .filter(|c| author_of(c.actor_id()) == Some(dan))
                    .map(|c| c.hash())
                    .collect();
                if let Some(h) = unvouched.first() {
                    return Err(format!(
                        "{name} applied Dan's change {h} to {record} after his removal, which nobody built on"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every change a member's user was told is saved is applied on every
    /// member. Dan (removed) still holds all of his own, and those his
    /// removal's cutoff covers are applied on every member.
    fn nothing_acknowledged_lost(&self) -> Result<(), String> {
        let members = self.honest_members();
        let view = self
            .up(members[0])?
            .space(self.space)
            .map_err(|e| e.to_string())?
            .ok_or("no space")?;
        let dan_cutoff: BTreeMap<RecordId, [u8; 32]> = view
            .removed
            .get(&self.nodes[3].device.to_string())
            .map(|(_, r)| r.cutoff.iter().copied().collect())
            .unwrap_or_default();
        for a in &self.acked {
            let author = self.nodes[a.node].name;
            if !members.contains(&a.node) {
                let repo = self.up(a.node)?;
                if repo
                    .store()
                    .signed_change(&a.hash)
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    return Err(format!("{author} lost its own acknowledged change"));
                }
                // In the past of the cutoff (as Dan's own document has it)?
                let Some(cut) = dan_cutoff.get(&a.record) else {
                    continue;
                };
                let mut own = repo.load_doc(a.record).map_err(|e| e.to_string())?;
                let cut = ChangeHash(*cut);
                // Dan's own node drops from its document what it wrote
                // after it heard of its removal: such a change is not in
                // the past of the cutoff either.
                let covered = own.get_change_by_hash(&cut).is_some()
                    && own.get_change_by_hash(&ChangeHash(a.hash)).is_some()
                    && !own.get_changes(&[cut]).iter().any(|c| c.hash().0 == a.hash);
                if !covered {
                    continue;
                }
            }
            for &n in &members {
                let repo = self.up(n)?;
                let held = repo
                    .store()
                    .doc(a.record)
                    .map_err(|e| e.to_string())?
                    .is_some()
                    && repo
                        .load_doc(a.record)
                        .map_err(|e| format!("{}: {e}", self.nodes[n].name))?
                        .get_change_by_hash(&ChangeHash(a.hash))
                        .is_some();
                if !held {
                    return Err(format!(
                        "{}'s acknowledged change {} to {} is not applied on {}",
                        author,
                        rapport_proto::hex(&a.hash[..6]),
                        a.record,
                        self.nodes[n].name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Delivering every change that ever crossed the network again, to
    /// every member, changes nothing.
    pub fn redelivery_changes_nothing(&self) -> Result<usize, String> {
        let mut by_record: BTreeMap<RecordId, Vec<Vec<u8>>> = BTreeMap::new();
        for (record, bytes) in &self.sent {
            by_record.entry(*record).or_default().push(bytes.clone());
        }
        let from = self.nodes[0].device;
        for n in self.honest_members() {
            let before = self.snapshot(n)?;
            let repo = self.up(n)?;
            for (record, changes) in &by_record {
                repo.apply_remote(self.space_id(), *record, changes.clone(), from)
                    .map_err(|e| format!("{}: {e}", self.nodes[n].name))?;
            }
            if self.snapshot(n)? != before {
                return Err(format!(
                    "re-delivering every change changed {}'s records",
                    self.nodes[n].name
                ));
            }
        }
        Ok(self.sent.len())
    }
}
