//! Who may change what in a space: the rules every node applies, as pure
//! functions of the changes it holds. Two nodes holding the same changes
//! reach the same verdicts, whatever order the changes arrived in; that
//! is what makes membership and removal converge without a server.
//!
//! The rules (argued in `docs/PROTOCOL.md`):
//!
//! 1. A space document's first change must be written by the device its
//!    id was derived from, which becomes its first admin.
//! 2. Every later change to a space document is judged against the state
//!    its author saw (the document at the change's dependencies): only an
//!    admin may add members, rename the space, renew its topic or make a
//!    schema statement (in its own name, never edited); an admin
//!    may remove only members it added, directly or through admins it
//!    added (its descendants in the add tree). Entries are never edited.
//! 3. A removal cuts the removed device off: its changes that the removal
//!    does not name (record changes past the cutoff, space changes not in
//!    the removal's history) are held aside, not applied; in a record,
//!    unless a member who was not removed built on them.
//! 4. Removals are settled most senior remover first (depth in the add
//!    tree), so a removed admin's later removals never take effect.
//! 5. Record changes need a writing role (admin or writer).
//! 6. A change that builds on a refused change is refused too.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rapport_model::RecordId;
use rapport_model::automerge::{ActorId, Automerge, Change, ChangeHash, ObjId, legacy};
use rapport_model::custom::{SchemaChange, SchemaEntry};
use rapport_model::space::{
    ERASE_KEY, EraseStatement, Erasure, Member, REBASE_KEY, Rebase, RebaseStatement, Removal, Role,
    SpaceState, SpaceView, creator_matches, erase_key_author, read_state, receipt_key_parts,
    schema_key_author,
};
use rapport_proto::{hex, parse_hex};

pub type Hash = [u8; 32];

/// One change, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeMeta {
    pub hash: Hash,
    /// Hex of the author's device key (the Automerge actor).
    pub author: String,
    pub deps: Vec<Hash>,
    /// Seconds since the Unix epoch, as the author claims.
    pub time: i64,
}

impl ChangeMeta {
    pub fn of(change: &Change) -> Self {
        ChangeMeta {
            hash: change.hash().0,
            author: change.actor_id().to_hex_string(),
            deps: change.deps().iter().map(|h| h.0).collect(),
            time: change.timestamp(),
        }
    }
}

/// What the rules make of one change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    Accepted,
    /// Never applies.
    Rejected(String),
    /// Written after its author's removal: kept aside, applies only if a
    /// member who was not removed builds on it.
    Held(String),
    /// Builds on changes not received yet.
    Waiting,
}

impl Verdict {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted)
    }
}

/// A change's causal graph among the changes held.
struct Dag<'a> {
    metas: &'a [ChangeMeta],
    index: HashMap<Hash, usize>,
    /// Topological, ties broken by hash, so the same set gives the same order.
    order: Vec<usize>,
}

impl<'a> Dag<'a> {
    fn new(metas: &'a [ChangeMeta]) -> Self {
        let index: HashMap<Hash, usize> =
            metas.iter().enumerate().map(|(i, m)| (m.hash, i)).collect();
        let mut waiting_on = vec![0usize; metas.len()];
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); metas.len()];
        for (i, m) in metas.iter().enumerate() {
            for d in &m.deps {
                if let Some(&p) = index.get(d) {
                    waiting_on[i] += 1;
                    children[p].push(i);
                }
            }
        }
        let mut ready: BTreeSet<(Hash, usize)> = (0..metas.len())
            .filter(|&i| waiting_on[i] == 0)
            .map(|i| (metas[i].hash, i))
            .collect();
        let mut order = Vec::with_capacity(metas.len());
        while let Some((_, i)) = ready.pop_first() {
            order.push(i);
            for &c in &children[i] {
                waiting_on[c] -= 1;
                if waiting_on[c] == 0 {
                    ready.insert((metas[c].hash, c));
                }
            }
        }
        Dag {
            metas,
            index,
            order,
        }
    }

    /// `i` and everything it builds on.
    fn ancestors(&self, i: usize) -> HashSet<usize> {
        let mut seen = HashSet::from([i]);
        let mut stack = vec![i];
        while let Some(x) = stack.pop() {
            for d in &self.metas[x].deps {
                if let Some(&p) = self.index.get(d)
                    && seen.insert(p)
                {
                    stack.push(p);
                }
            }
        }
        seen
    }

    fn missing_deps(&self, i: usize) -> bool {
        self.metas[i]
            .deps
            .iter()
            .any(|d| !self.index.contains_key(d))
    }

    /// The verdicts, given which changes the rules allow in themselves
    /// (`allowed`) and which fall after their author's removal (`cut`).
    /// With `exemptions`, a cut change that another author built on
    /// applies, provided that builder is allowed, not cut, and builds on
    /// nothing refused.
    fn settle(
        &self,
        allowed: &[Result<(), String>],
        cut: &[Option<String>],
        exemptions: bool,
    ) -> Vec<Verdict> {
        let n = self.metas.len();
        let mut exempt = vec![false; n];
        if exemptions && cut.iter().any(Option::is_some) {
            let mut clean = vec![false; n];
            for &i in &self.order {
                clean[i] = allowed[i].is_ok()
                    && !self.missing_deps(i)
                    && self.metas[i]
                        .deps
                        .iter()
                        .all(|d| self.index.get(d).is_some_and(|&p| clean[p]));
            }
            for d in 0..n {
                if clean[d] && cut[d].is_none() {
                    for a in self.ancestors(d) {
                        if cut[a].is_some() && self.metas[a].author != self.metas[d].author {
                            exempt[a] = true;
                        }
                    }
                }
            }
        }
        let mut verdicts = vec![Verdict::Waiting; n];
        let mut placed = vec![false; n];
        for &i in &self.order {
            placed[i] = true;
            let deps: Vec<&Verdict> = self.metas[i]
                .deps
                .iter()
                .filter_map(|d| self.index.get(d).map(|&p| &verdicts[p]))
                .collect();
            verdicts[i] = if self.missing_deps(i) || deps.iter().any(|v| **v == Verdict::Waiting) {
                Verdict::Waiting
            } else if let Some(Verdict::Held(r)) =
                deps.iter().find(|v| matches!(v, Verdict::Held(_)))
            {
                Verdict::Held(r.clone())
            } else if deps.iter().any(|v| !v.is_accepted()) {
                Verdict::Rejected("builds on a refused change".into())
            } else if let Err(r) = &allowed[i] {
                Verdict::Rejected(r.clone())
            } else if let (Some(r), false) = (&cut[i], exempt[i]) {
                Verdict::Held(r.clone())
            } else {
                Verdict::Accepted
            };
        }
        // Changes in a dependency cycle cannot exist (hashes), but a
        // change whose dependencies never resolve stays waiting.
        debug_assert!(placed.iter().all(|p| *p));
        verdicts
    }

    /// Accepted changes that no accepted change builds on.
    fn heads(&self, verdicts: &[Verdict]) -> Vec<ChangeHash> {
        let mut is_dep = HashSet::new();
        for (i, m) in self.metas.iter().enumerate() {
            if verdicts[i].is_accepted() {
                is_dep.extend(m.deps.iter().copied());
            }
        }
        let mut heads: Vec<ChangeHash> = self
            .metas
            .iter()
            .enumerate()
            .filter(|(i, m)| verdicts[*i].is_accepted() && !is_dep.contains(&m.hash))
            .map(|(_, m)| ChangeHash(m.hash))
            .collect();
        heads.sort();
        heads
    }
}

/// One statement of a space document's history, for the audit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    pub hash: String,
    pub author: String,
    pub time: i64,
    pub actions: Vec<Action>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// What a space document change says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    Create {
        name: String,
    },
    Add {
        member: Member,
    },
    Remove {
        removal: Removal,
    },
    Rename {
        name: String,
    },
    /// A new topic secret (written with every removal).
    Rotate,
    /// More of a removal's cutoff: `records` more records the removed
    /// device had written before its removal.
    Cutoff {
        device: String,
        records: usize,
    },
    /// A schema statement (`rapport_model::custom`).
    Schema {
        change: SchemaChange,
    },
    /// An erase statement: every member erases these records.
    Erase {
        erasure: String,
        statement: EraseStatement,
    },
    /// A field-level erasure: the record rebuilt without some fields.
    Rebase {
        rebase: String,
        statement: RebaseStatement,
    },
    /// Its author applied erasure `erasure`.
    Receipt {
        erasure: String,
    },
    /// Not a valid statement; the verdict says why.
    Unknown,
}

/// A space's membership as the rules settle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// `None` until the space's first change has been accepted.
    pub view: Option<SpaceView>,
    /// Heads of the accepted history: the document to keep and serve.
    pub heads: Vec<ChangeHash>,
    /// Every change with its verdict, in causal order.
    pub log: Vec<Statement>,
}

impl Membership {
    pub fn verdict(&self, hash: &Hash) -> Option<&Verdict> {
        let h = hex(hash);
        self.log.iter().find(|s| s.hash == h).map(|s| &s.verdict)
    }
}

/// Judges every change of a space document (all changes held, including
/// those kept aside) and settles who is a member.
pub fn evaluate_space(doc: &Automerge, id: RecordId) -> Membership {
    let changes = doc.get_changes(&[]);
    let metas: Vec<ChangeMeta> = changes.iter().map(ChangeMeta::of).collect();
    let dag = Dag::new(&metas);
    let n = metas.len();

    // Rule 1 and 2: each change against the state its author saw.
    let mut allowed: Vec<Result<(), String>> = vec![Ok(()); n];
    let mut actions: Vec<Vec<Action>> = vec![Vec::new(); n];
    // The removal entries each change writes, by the entry's object.
    let mut entries: Vec<Vec<(ObjId, Removal)>> = vec![Vec::new(); n];
    // Per change, the operations its history holds: for each actor, the
    // counter after its last operation there.
    let mut seen: Vec<HashMap<ActorId, u64>> = vec![HashMap::new(); n];
    for &i in &dag.order {
        let m = &metas[i];
        let mut history: HashMap<ActorId, u64> = HashMap::new();
        for dep in &m.deps {
            for (actor, end) in dag.index.get(dep).map(|&p| &seen[p]).into_iter().flatten() {
                let known = history.entry(actor.clone()).or_default();
                *known = (*known).max(*end);
            }
        }
        let deps: Vec<ChangeHash> = m.deps.iter().map(|h| ChangeHash(*h)).collect();
        let before = read_state(doc, Some(&deps));
        let after = read_state(doc, Some(&[ChangeHash(m.hash)]));
        // Decoded once for both checks below. Decoding a change held in the
        // document should not panic; if Automerge does, the change is
        // refused.
        let ops = std::panic::catch_unwind(|| changes[i].decode().operations).ok();
        let judged = if ops.is_none() {
            Err("the change does not decode".into())
        } else if names_unseen_operations(&changes[i], ops.as_deref().unwrap_or_default(), &history)
        {
            Err("the change names operations its author had not seen".into())
        } else if writes_into_anothers_entry(
            &changes[i],
            ops.as_deref().unwrap_or_default(),
            &before,
            &after,
        ) {
            Err("only a removal's own author writes in its entry".into())
        } else {
            judge(&before, &after, &m.author, id)
        };
        let own = history.entry(changes[i].actor_id().clone()).or_default();
        *own = (*own).max(changes[i].max_op() + 1);
        seen[i] = history;
        match judged {
            Ok(a) => {
                actions[i] = a;
                entries[i] = new_entries(&before, &after);
            }
            Err(e) => {
                allowed[i] = Err(e);
                actions[i] = vec![Action::Unknown];
            }
        }
    }
    // Only removals whose whole history is allowed can cut anyone off.
    let mut clean = vec![false; n];
    for &i in &dag.order {
        clean[i] = allowed[i].is_ok()
            && metas[i]
                .deps
                .iter()
                .all(|d| dag.index.get(d).is_some_and(|&p| clean[p]));
    }
    let clean_heads = dag.heads(
        &clean
            .iter()
            .map(|c| {
                if *c {
                    Verdict::Accepted
                } else {
                    Verdict::Waiting
                }
            })
            .collect::<Vec<_>>(),
    );
    let tree = read_state(doc, Some(&clean_heads)).members;

    // Rule 4: settle removals, most senior remover first.
    let mut candidates: Vec<(usize, usize, &ObjId, &Removal)> = Vec::new();
    for i in (0..n).filter(|&i| clean[i]) {
        for (entry, removal) in &entries[i] {
            candidates.push((depth(&tree, &metas[i].author), i, entry, removal));
        }
    }
    candidates.sort_by_key(|(d, i, _, _)| (*d, metas[*i].hash));
    // device → (the change that removed it, its history, the removal)
    let mut effective: BTreeMap<String, (usize, HashSet<usize>, Removal)> = BTreeMap::new();
    // device → the entry of the removal that counts
    let mut effective_entry: BTreeMap<String, &ObjId> = BTreeMap::new();
    for (_, i, entry, removal) in candidates {
        if effective.contains_key(&removal.device) {
            continue;
        }
        let remover_cut = effective
            .get(&metas[i].author)
            .is_some_and(|(_, history, _)| !history.contains(&i));
        if !remover_cut {
            effective.insert(
                removal.device.clone(),
                (i, dag.ancestors(i), removal.clone()),
            );
            effective_entry.insert(removal.device.clone(), entry);
        }
    }

    // Rule 3 for the space document: changes outside the removal's history.
    let cut: Vec<Option<String>> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| {
            effective.get(&m.author).and_then(|(_, history, r)| {
                (!history.contains(&i))
                    .then(|| format!("written after its author was removed by {}", short(&r.by)))
            })
        })
        .collect();
    // No exemptions here: a statement's authority comes from the state its
    // author saw, which a removed admin's late statement could have
    // shaped (say, by making the builder an admin). An honest admin who
    // merged such a statement before hearing of the removal has the
    // statements it wrote meanwhile held, and writes them again.
    let verdicts = dag.settle(&allowed, &cut, false);
    let heads = dag.heads(&verdicts);

    let view = (!heads.is_empty()).then(|| {
        let mut state = read_state(doc, Some(&heads));
        let mut members = std::mem::take(&mut state.members);
        let mut removed = BTreeMap::new();
        for (device, (_, _, removal)) in &effective {
            // With the parts of its cutoff accepted since, read from its
            // own entry (not another admin's concurrent one).
            let removal = effective_entry
                .get(device)
                .and_then(|entry| state.removal(device, entry))
                .filter(|r| r.by == removal.by && r.cutoff.starts_with(&removal.cutoff))
                .unwrap_or(removal);
            if let Some(entry) = members.remove(device) {
                removed.insert(device.clone(), (entry, removal.clone()));
            }
        }
        // In the causal order (ties by hash) every node computes alike.
        let metas = &metas;
        let schema = dag
            .order
            .iter()
            .filter(|&&i| verdicts[i].is_accepted())
            .flat_map(|&i| {
                actions[i].iter().filter_map(move |a| match a {
                    Action::Schema { change } => Some(SchemaEntry {
                        by: metas[i].author.clone(),
                        at: metas[i].time,
                        change: change.clone(),
                    }),
                    _ => None,
                })
            })
            .collect();
        let mut erasures: Vec<Erasure> = Vec::new();
        let mut rebases: Vec<Rebase> = Vec::new();
        let mut receipts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for &i in dag.order.iter().filter(|&&i| verdicts[i].is_accepted()) {
            for a in &actions[i] {
                match a {
                    Action::Erase { erasure, statement } => erasures.push(Erasure {
                        id: erasure.clone(),
                        by: metas[i].author.clone(),
                        at: metas[i].time,
                        ids: statement.ids.clone(),
                        reason: statement.reason.clone(),
                    }),
                    Action::Rebase { rebase, statement } => rebases.push(Rebase {
                        id: rebase.clone(),
                        by: metas[i].author.clone(),
                        at: metas[i].time,
                        record: statement.record,
                        chain: statement
                            .chain
                            .iter()
                            .filter_map(|h| parse_hex(h)?.try_into().ok())
                            .collect(),
                        fields: statement.fields.clone(),
                        reason: statement.reason.clone(),
                    }),
                    Action::Receipt { erasure } => {
                        receipts
                            .entry(erasure.clone())
                            .or_default()
                            .insert(metas[i].author.clone(), metas[i].time);
                    }
                    _ => {}
                }
            }
        }
        SpaceView {
            id,
            name: state.name,
            topic: state.topic.unwrap_or_default(),
            members,
            removed,
            schema,
            erasures,
            rebases,
            receipts,
        }
    });
    let log = dag
        .order
        .iter()
        .map(|&i| Statement {
            hash: hex(&metas[i].hash),
            author: metas[i].author.clone(),
            time: metas[i].time,
            actions: actions[i].clone(),
            verdict: verdicts[i].clone(),
        })
        .collect();
    Membership { view, heads, log }
}

fn short(device: &str) -> &str {
    device.get(..8).unwrap_or(device)
}

/// How far `device` is from the space's creator in the add tree.
fn depth(members: &BTreeMap<String, Member>, device: &str) -> usize {
    let mut d = device;
    for depth in 0..members.len() + 1 {
        match members.get(d) {
            Some(m) if m.added_by != d => d = &m.added_by,
            _ => return depth,
        }
    }
    usize::MAX
}

/// Whether `admin` added `device`, directly or through admins it added.
fn is_above(members: &BTreeMap<String, Member>, admin: &str, device: &str) -> bool {
    let mut d = device;
    for _ in 0..members.len() + 1 {
        match members.get(d) {
            Some(m) if m.added_by != d => {
                if m.added_by == admin {
                    return true;
                }
                d = &m.added_by;
            }
            _ => return false,
        }
    }
    false
}

/// Whether a change writes inside a removal entry that another device
/// created. Only an entry's creator (its remover) may add to it; reading
/// ignores anyone else's writes there (`space::read_state`), so such a
/// write leaves the states before and after the change equal and
/// comparing them cannot catch it: the change's own operations can. An
/// operation names the object it writes in, and an entry's object id
/// names the device that created it, so the check is exact. Entries are
/// taken from both states (one created by this change is the author's
/// own); an entry visible in neither no longer counts anywhere.
fn writes_into_anothers_entry(
    change: &Change,
    ops: &[legacy::Op],
    before: &SpaceState,
    after: &SpaceState,
) -> bool {
    let others: HashSet<(u64, &ActorId)> = before
        .removed
        .values()
        .chain(after.removed.values())
        .flat_map(|e| e.keys())
        .filter_map(|entry| match entry {
            ObjId::Id(counter, owner, _) if owner != change.actor_id() => Some((*counter, owner)),
            _ => None,
        })
        .collect();
    if others.is_empty() {
        return false;
    }
    ops.iter().any(|op| match &op.obj {
        legacy::ObjectId::Id(legacy::OpId(counter, actor)) => others.contains(&(*counter, actor)),
        legacy::ObjectId::Root => false,
    })
}

/// Whether an operation of `change` writes in, replaces or inserts after
/// an operation that is neither in the change's history (`seen`: per
/// actor, the counter after its last operation there) nor earlier in the
/// change itself. An honest change only names what its author's document
/// held; a crafted one could otherwise hide an entry its author never saw,
/// say another admin's removal or a member added meanwhile, out of reach
/// of the rules, which judge each change against the state its author saw.
fn names_unseen_operations(
    change: &Change,
    ops: &[legacy::Op],
    seen: &HashMap<ActorId, u64>,
) -> bool {
    let own = change.actor_id();
    let start = change.start_op().get();
    let known = |legacy::OpId(counter, actor): &legacy::OpId| {
        (actor == own && *counter >= start && *counter <= change.max_op())
            || seen.get(actor).is_some_and(|end| counter < end)
    };
    ops.iter().any(|op| {
        let obj = match &op.obj {
            legacy::ObjectId::Id(id) => Some(id),
            legacy::ObjectId::Root => None,
        };
        let elem = match &op.key {
            legacy::Key::Seq(legacy::ElementId::Id(id)) => Some(id),
            _ => None,
        };
        obj.into_iter()
            .chain(elem)
            .chain(op.pred.iter())
            .any(|id| !known(id))
    })
}

/// The removal entries `after` holds that `before` did not.
fn new_entries(before: &SpaceState, after: &SpaceState) -> Vec<(ObjId, Removal)> {
    after
        .removed
        .iter()
        .flat_map(|(device, e)| e.iter().map(move |(entry, r)| (device, entry, r)))
        .filter(|(device, entry, _)| before.removal(device, entry).is_none())
        .map(|(_, entry, r)| (entry.clone(), r.clone()))
        .collect()
}

/// Rule 1 and 2: what a change says, if its author may say it.
fn judge(
    before: &SpaceState,
    after: &SpaceState,
    author: &str,
    id: RecordId,
) -> Result<Vec<Action>, String> {
    if before.id.is_none() {
        let author_bytes = parse_hex(author).unwrap_or_default();
        let creator_only = after.members.len() == 1
            && after
                .members
                .get(author)
                .is_some_and(|m| m.role == Role::Admin && m.added_by == author);
        return if after.id == Some(id)
            && after.kind.as_deref() == Some("space")
            && creator_matches(id, &author_bytes)
            && creator_only
            && after.removed.is_empty()
        {
            Ok(vec![Action::Create {
                name: after.name.clone(),
            }])
        } else {
            Err("only the space's creator can write its first change".into())
        };
    }
    if after.id != before.id || after.kind != before.kind {
        return Err("a change may not alter what the document is".into());
    }
    if before.is_removed(author) {
        return Err("its author had been removed".into());
    }
    let Some(role) = before.members.get(author).map(|m| m.role) else {
        return Err("its author is not a member".into());
    };
    let actions = statements(before, after, author, id)?;
    // Admins say anything; a privacy officer erases and confirms; every
    // other member only confirms the erasures it applied.
    let permitted = |a: &Action| match a {
        Action::Receipt { .. } => true,
        Action::Erase { .. } => role.erases(),
        // Rebuilding a record's history rewrites what it says: an admin's.
        Action::Rebase { .. } => role == Role::Admin,
        _ => role == Role::Admin,
    };
    if let Some(a) = actions.iter().find(|a| !permitted(a)) {
        return Err(match a {
            Action::Erase { .. } => {
                format!("only admins and privacy officers erase records; its author is a {role}")
            }
            Action::Rebase { .. } => {
                format!(
                    "only admins erase a field (it rebuilds the record's history); its author is a {role}"
                )
            }
            _ => {
                format!("only admins change a space's membership or schema; its author is a {role}")
            }
        });
    }
    Ok(actions)
}

/// What a change to a space document says (by anyone: `judge` checks
/// the author's role), or why the rules refuse it whoever wrote it.
fn statements(
    before: &SpaceState,
    after: &SpaceState,
    author: &str,
    id: RecordId,
) -> Result<Vec<Action>, String> {
    let mut actions = Vec::new();
    if after.name != before.name {
        actions.push(Action::Rename {
            name: after.name.clone(),
        });
    }
    if before
        .members
        .iter()
        .any(|(d, m)| after.members.get(d) != Some(m))
    {
        return Err("membership entries are never edited".into());
    }
    for (device, entries) in &before.removed {
        for (entry, r) in entries {
            match after.removal(device, entry) {
                Some(a) if a == r => {}
                // A removal's cutoff arrives in parts (see
                // `space::remove_members`): its remover may only add to it.
                Some(a)
                    if r.by == author
                        && (&a.device, &a.by, a.at) == (&r.device, &r.by, r.at)
                        && a.cutoff.len() > r.cutoff.len()
                        && a.cutoff.starts_with(&r.cutoff) =>
                {
                    actions.push(Action::Cutoff {
                        device: device.clone(),
                        records: a.cutoff.len() - r.cutoff.len(),
                    });
                }
                _ => return Err("membership entries are never edited".into()),
            }
        }
    }
    for (device, m) in &after.members {
        if before.members.contains_key(device) {
            continue;
        }
        if m.added_by != author {
            return Err("an admin adds members in its own name".into());
        }
        if before.is_removed(device) {
            return Err(format!(
                "{} was removed and cannot be added again",
                short(device)
            ));
        }
        actions.push(Action::Add { member: m.clone() });
    }
    for (_, r) in new_entries(before, after) {
        if r.by != author {
            return Err("an admin removes members in its own name".into());
        }
        if !before.members.contains_key(&r.device) {
            return Err(format!("{} is not a member", short(&r.device)));
        }
        if !is_above(&before.members, author, &r.device) {
            return Err(format!(
                "{} may remove only members it added (or that admins it added added)",
                short(author)
            ));
        }
        actions.push(Action::Remove { removal: r });
    }
    if after.topic != before.topic {
        actions.push(Action::Rotate);
    }
    if before
        .schema
        .iter()
        .any(|(k, v)| after.schema.get(k) != Some(v))
    {
        return Err("schema statements are never edited".into());
    }
    for (key, json) in &after.schema {
        if before.schema.contains_key(key) {
            continue;
        }
        if schema_key_author(key) != Some(author) {
            return Err("an admin changes the schema in its own name".into());
        }
        if json.len() > rapport_model::custom::MAX_STATEMENT_BYTES {
            return Err(format!(
                "a schema statement of {} bytes (at most {})",
                json.len(),
                rapport_model::custom::MAX_STATEMENT_BYTES
            ));
        }
        let change: SchemaChange = serde_json::from_str(json)
            .map_err(|e| format!("a schema statement that does not parse: {e}"))?;
        change
            .validate()
            .map_err(|e| format!("a schema statement the rules refuse: {e}"))?;
        actions.push(Action::Schema { change });
    }
    if before
        .erasures
        .iter()
        .any(|(k, v)| after.erasures.get(k) != Some(v))
    {
        return Err("erase statements are never edited".into());
    }
    for (key, json) in &after.erasures {
        if before.erasures.contains_key(key) {
            continue;
        }
        if erase_key_author(key) != Some(author) {
            return Err("a member erases in its own name".into());
        }
        let statement: EraseStatement = serde_json::from_str(json)
            .map_err(|e| format!("an erase statement that does not parse: {e}"))?;
        statement.validate()?;
        if statement.ids.contains(&id) {
            return Err("a space is left, not erased".into());
        }
        actions.push(Action::Erase {
            erasure: key[ERASE_KEY.len()..].to_string(),
            statement,
        });
    }
    if before
        .rebases
        .iter()
        .any(|(k, v)| after.rebases.get(k) != Some(v))
    {
        return Err("rebase statements are never edited".into());
    }
    for (key, json) in &after.rebases {
        if before.rebases.contains_key(key) {
            continue;
        }
        let rest = &key[REBASE_KEY.len()..];
        if rest.split_once('.').map(|(a, _)| a) != Some(author) {
            return Err("a member erases in its own name".into());
        }
        if after.erasures.contains_key(&format!("{ERASE_KEY}{rest}")) {
            return Err("an erasure id names one statement".into());
        }
        let statement: RebaseStatement = serde_json::from_str(json)
            .map_err(|e| format!("a rebase statement that does not parse: {e}"))?;
        statement.validate()?;
        if statement.record == id {
            return Err("a space is left, not erased".into());
        }
        actions.push(Action::Rebase {
            rebase: rest.to_string(),
            statement,
        });
    }
    if before
        .receipts
        .iter()
        .any(|(k, v)| after.receipts.get(k) != Some(v))
    {
        return Err("receipts are never edited".into());
    }
    for key in after.receipts.keys() {
        if before.receipts.contains_key(key) {
            continue;
        }
        let Some((device, erasure)) = receipt_key_parts(key) else {
            return Err("a receipt that names no erasure".into());
        };
        if device != author {
            return Err("a member confirms an erasure in its own name".into());
        }
        if !after
            .erasures
            .contains_key(&format!("{ERASE_KEY}{erasure}"))
            && !after
                .rebases
                .contains_key(&format!("{REBASE_KEY}{erasure}"))
        {
            return Err("a receipt of an erasure the space does not hold".into());
        }
        actions.push(Action::Receipt {
            erasure: erasure.to_string(),
        });
    }
    if actions.is_empty() {
        return Err("the change says nothing the rules know".into());
    }
    Ok(actions)
}

/// Judges every change of a record document in a space (all changes held,
/// including those kept aside).
pub fn judge_record(metas: &[ChangeMeta], space: &SpaceView, record: RecordId) -> Vec<Verdict> {
    let dag = Dag::new(metas);
    let mut histories: HashMap<&str, Option<HashSet<usize>>> = HashMap::new();
    // A rebuilt record (a field erased): its rebuilt history, by the
    // rebase's author, and what builds on it; nothing else.
    let rebase = space.rebase_of(record);
    let root = rebase
        .and_then(|r| r.chain.first())
        .and_then(|h| dag.index.get(h).copied());
    // What builds on the rebuilt history's first change: one pass in
    // causal order.
    let mut descends = vec![false; metas.len()];
    if let Some(root) = root {
        for &i in &dag.order {
            descends[i] = i == root
                || metas[i]
                    .deps
                    .iter()
                    .any(|d| dag.index.get(d).is_some_and(|&p| descends[p]));
        }
    }
    let allowed: Vec<Result<(), String>> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if let Some(r) = rebase {
                if in_chain(r, &m.hash, &m.author) {
                    return Ok(());
                }
                if !descends[i] {
                    return Err(format!(
                        "the record was rebuilt without {} (erasure {}): this change is of its old history",
                        r.fields.join(", "),
                        rapport_model::space::short_erasure_id(&r.id)
                    ));
                }
            }
            match space.entry(&m.author) {
                Some(e) if e.role.writes_records() => Ok(()),
                Some(e) => Err(format!("a {} may not change records", e.role)),
                None => Err("its author is not a member of the space".into()),
            }
        })
        .collect();
    let cut: Vec<Option<String>> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (_, removal) = space.removed.get(&m.author)?;
            // `None`: the remover named a change not received yet; until it
            // arrives, the device's changes here are judged as before.
            let history = histories.entry(m.author.as_str()).or_insert_with(|| {
                // A cutoff lists records in id order (entries out of order
                // are not found, the same way on every node).
                match removal.cutoff.binary_search_by_key(&record, |(r, _)| *r) {
                    Err(_) => Some(HashSet::new()),
                    Ok(at) => dag
                        .index
                        .get(&removal.cutoff[at].1)
                        .map(|&l| dag.ancestors(l)),
                }
            });
            let named = history.as_ref().is_none_or(|h| h.contains(&i));
            (!named).then(|| {
                format!(
                    "written after its author was removed by {}",
                    short(&removal.by)
                )
            })
        })
        .collect();
    dag.settle(&allowed, &cut, true)
}

/// The heads of the accepted part of a record's history.
pub fn accepted_heads(metas: &[ChangeMeta], verdicts: &[Verdict]) -> Vec<ChangeHash> {
    Dag::new(metas).heads(verdicts)
}

/// Whether `author` may write `change` to `record` of space `space` (the
/// space document itself when `record == space`), whose member list is
/// `view` (`None` while a node joins the space: then only the space
/// document arrives, and its own rules judge it). Every change held for a
/// document passes this, wherever and whenever it arrived, before the
/// whole history is judged.
///
/// `check`: see [`Checks`].
pub fn authorize(
    space: RecordId,
    record: RecordId,
    view: Option<&SpaceView>,
    author: &Hash,
    change: &Change,
    check: Checks,
) -> Result<(), String> {
    let is_space_record = record == space;
    let author_hex = hex(author);
    // A rebuilt record's history is its rebase's author's to write.
    if !is_space_record
        && let Some(r) = view.and_then(|v| v.rebase_of(record))
        && in_chain(r, &change.hash().0, &author_hex)
    {
        return Ok(());
    }
    match view.map(|v| v.entry(&author_hex)) {
        None if is_space_record => {}
        None | Some(None) => return Err("the author is not a member of the space".into()),
        Some(Some(m)) if !is_space_record && !m.role.writes_records() => {
            return Err(format!("a {} may not change records", m.role));
        }
        Some(Some(_)) => {}
    }
    // Only a record's creator writes a change that starts its history
    // (its id is bound to the creator's key); the space document's own
    // rules check its creator.
    if !is_space_record
        && check.creator
        && change.deps().is_empty()
        && !rapport_model::space::record_creator_matches(record, author)
    {
        return Err("only the record's creator can write its first change".into());
    }
    // A document never moves between spaces: after its creation, no change
    // may write the root `space` key (the creation's own value is checked
    // against the session's space with the rest of the document).
    if check.decode && !change.deps().is_empty() && writes_root_key(change, "space") {
        return Err("a change may not move a document to another space".into());
    }
    Ok(())
}

/// Whether a change is of `rebase`'s rebuilt history.
fn in_chain(rebase: &Rebase, hash: &Hash, author: &str) -> bool {
    rebase.by == author && rebase.chain.contains(hash)
}

/// Which of [`authorize`]'s checks apply to a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// That a change starting a record is its creator's. Not for a node's
    /// own journal: its history was judged when it arrived, by the rules
    /// of its time (record ids named no creator before).
    pub creator: bool,
    /// Those that decode the change. A stored change passed them when it
    /// arrived: it is not decoded again at every later judging.
    pub decode: bool,
}

/// Whether `change` has an operation on `key` of the document's root map.
fn writes_root_key(change: &Change, key: &str) -> bool {
    use rapport_model::automerge::legacy::{Key, ObjectId};
    // Decoding a parsed change should not panic; if Automerge does, the
    // change is treated as writing the key (refused, never applied).
    std::panic::catch_unwind(|| {
        change
            .decode()
            .operations
            .iter()
            .any(|op| op.obj == ObjectId::Root && op.key == Key::Map(key.into()))
    })
    .unwrap_or(true)
}

mod ingest;
pub use ingest::{
    Accepted, Decision, Document, Fate, Ingest, Origin, Plan, PlanError, Rejudge, Settled, Shown,
    Verified, plan, rejudge,
};

#[cfg(test)]
mod tests;
