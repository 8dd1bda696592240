//! Spaces on this node: creating them, finding them by name, membership
//! (adding, removing, roles), the one-time secrets behind invite tickets,
//! and the audit trail. Who may do what is decided by
//! `rapport_trust::policy`; this module writes statements and asks it.

use jiff::Timestamp;
use rapport_model::automerge::{AutoCommit, Change, ChangeHash};
use rapport_model::id::{is_id_prefix, normalize_prefix};
use rapport_model::space::{self, Identity, Member, PRIVATE, Removal, Role};
use rapport_model::{RecordId, SpaceId, SpaceView};
use rapport_store::{Indexed, InviteRecord, RecordWrite, Rejection};
use rapport_trust::policy::{Membership, Statement, Verdict, evaluate_space};
use sha2::{Digest, Sha256};

use crate::{NodeError, Repo};

/// What `rapport audit` shows: every membership statement with its
/// verdict, and every change refused from a peer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Audit {
    pub space: SpaceView,
    pub statements: Vec<Statement>,
    pub rejections: Vec<Rejection>,
}

impl Repo {
    /// Who this device says it is: its profile's name and organisation.
    pub fn identity(&self) -> Identity {
        let p = self.profile();
        Identity {
            user: p.name.unwrap_or_default(),
            org: p.org.unwrap_or_default(),
        }
    }

    /// Creates a shared space with this device as its first admin.
    pub fn create_space(&self, name: &str) -> Result<SpaceView, NodeError> {
        self.check_authoring()?;
        let name = name.trim();
        if name.is_empty() {
            return Err(NodeError::BadAssignment("a space needs a name".into()));
        }
        let now = self.now();
        let device = self.device_id();
        let id = space::new_space_id(
            &device.0,
            now.as_millisecond().max(0) as u64,
            self.random()?,
        );
        let mut doc = space::create_space(
            device.actor_id(),
            id,
            name,
            &self.identity(),
            self.random()?,
            now,
        )?;
        let _guard = self.write_guard();
        self.write_space_doc(&mut doc, id)
    }

    /// Signs the statement just committed to a space document, checks the
    /// rules accept it, and stores it.
    pub(crate) fn write_space_doc(
        &self,
        doc: &mut AutoCommit,
        id: RecordId,
    ) -> Result<SpaceView, NodeError> {
        // Every change since the stored document: one statement, or a
        // removal followed by the parts of its cutoff.
        let stored: Vec<ChangeHash> = self
            .store()
            .heads(SpaceId::Shared(id), id)?
            .unwrap_or_default()
            .into_iter()
            .map(ChangeHash)
            .collect();
        let new: Vec<Change> = doc.get_changes(&stored);
        if new.is_empty() {
            return Err(NodeError::Damaged {
                path: self.dir().to_path_buf(),
                reason: "a committed change is missing from its space document".into(),
            });
        }
        let membership = evaluate_space(doc.document(), id);
        let view = match membership.view {
            Some(view)
                if new
                    .iter()
                    .all(|c| membership.verdict(&c.hash().0) == Some(&Verdict::Accepted)) =>
            {
                view
            }
            _ => {
                let verdict = new
                    .iter()
                    .find_map(|c| {
                        membership
                            .verdict(&c.hash().0)
                            .filter(|v| **v != Verdict::Accepted)
                    })
                    .cloned();
                return Err(NodeError::Forbidden(format!(
                    "the space's rules refuse this: {}",
                    match verdict {
                        Some(Verdict::Rejected(r) | Verdict::Held(r)) => r,
                        _ => "it does not apply".to_string(),
                    }
                )));
            }
        };
        if let Some(big) = new
            .iter()
            .find(|c| c.raw_bytes().len() > rapport_proto::MAX_CHANGE_BYTES)
        {
            return Err(NodeError::Forbidden(format!(
                "this statement would be {} bytes, over the {}-byte limit on a change; nothing was saved",
                big.raw_bytes().len(),
                rapport_proto::MAX_CHANGE_BYTES
            )));
        }
        let mut changes = Vec::with_capacity(new.len());
        for change in &new {
            changes.push((change.hash().0.to_vec(), self.key().sign_change(change)?));
        }
        let before = self.space(id)?;
        let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
        let saved = rapport_model::stored::save(doc);
        self.store().write(&RecordWrite {
            id,
            space: SpaceId::Shared(id),
            doc: &saved,
            heads: &heads,
            changes: &changes,
            index: Indexed::Space(&view),
        })?;
        self.resettle_after_removals(id, before.as_ref(), &view)?;
        self.apply_erasures(&view)?;
        self.apply_rebases(&view)?;
        self.store().flush()?;
        self.notify(crate::repo::LocalChange {
            space: SpaceId::Shared(id),
            record: id,
            heads,
            changes: changes.iter().map(|(_, c)| c.encode()).collect(),
        });
        Ok(view)
    }

    /// Finds a space by id, unique id prefix, or name; `private` is this
    /// node's own space.
    pub fn resolve_space(&self, reference: &str) -> Result<SpaceId, NodeError> {
        let r = reference.trim();
        if r.eq_ignore_ascii_case(PRIVATE) {
            return Ok(SpaceId::Private);
        }
        let spaces = self.store().spaces()?;
        let by_id: Vec<&SpaceView> = if is_id_prefix(r) && r.len() >= 4 {
            let prefix = normalize_prefix(r);
            spaces
                .iter()
                .filter(|s| s.id.to_string().starts_with(&prefix))
                .collect()
        } else {
            Vec::new()
        };
        let matches = if by_id.is_empty() {
            spaces
                .iter()
                .filter(|s| s.name.eq_ignore_ascii_case(r))
                .collect()
        } else {
            by_id
        };
        match matches.as_slice() {
            [one] => Ok(SpaceId::Shared(one.id)),
            [] => Err(NodeError::UnknownSpace(reference.into())),
            many => Err(NodeError::Ambiguous {
                reference: reference.into(),
                candidates: many
                    .iter()
                    .map(|s| {
                        (
                            s.id,
                            rapport_model::Kind::Company,
                            format!("space {}", s.name),
                        )
                    })
                    .collect(),
            }),
        }
    }

    /// The shared spaces this node knows.
    pub fn spaces(&self) -> Result<Vec<SpaceView>, NodeError> {
        Ok(self.store().spaces()?)
    }

    pub fn space(&self, id: RecordId) -> Result<Option<SpaceView>, NodeError> {
        Ok(self.store().space(id)?)
    }

    /// Records in a shared space (its own space document not counted).
    pub fn space_record_count(&self, id: RecordId) -> usize {
        self.store()
            .space_item_count(SpaceId::Shared(id))
            .saturating_sub(1)
    }

    /// The space, which this device must be a member of.
    fn joined_space(&self, id: RecordId) -> Result<SpaceView, NodeError> {
        let view = self
            .space(id)?
            .ok_or_else(|| NodeError::UnknownSpace(id.to_string()))?;
        let me = self.device_id().to_string();
        if let Some((_, removal)) = view.removed.get(&me) {
            return Err(NodeError::Forbidden(format!(
                "this device was removed from space {} by {} on {}",
                view.name,
                self.device_label(&view, &removal.by),
                day(removal.at)
            )));
        }
        if !view.is_member(&me) {
            return Err(NodeError::NotMember(view.name));
        }
        Ok(view)
    }

    /// Refuses record changes in a space where this device may not write.
    pub fn check_may_write(&self, space: RecordId) -> Result<(), NodeError> {
        let view = self.joined_space(space)?;
        match view.role_of(&self.device_id().to_string()) {
            Some(role) if role.writes_records() => Ok(()),
            Some(role) => Err(NodeError::Forbidden(format!(
                "you are a {role} in space {}: only its admins and writers change its records",
                view.name
            ))),
            None => Err(NodeError::NotMember(view.name)),
        }
    }

    /// The space, which this device must administer (and not as a relay).
    pub(crate) fn administered(&self, space: RecordId) -> Result<SpaceView, NodeError> {
        self.check_authoring()?;
        let view = self.joined_space(space)?;
        match view.role_of(&self.device_id().to_string()) {
            Some(Role::Admin) => Ok(view),
            Some(role) => Err(NodeError::Forbidden(format!(
                "you are a {role} in space {}: only its admins manage its membership and schema",
                view.name
            ))),
            None => Err(NodeError::NotMember(view.name)),
        }
    }

    /// "user (org)" for a device of a space, or its short id.
    pub fn device_label(&self, view: &SpaceView, device_hex: &str) -> String {
        let short = device_hex.get(..8).unwrap_or(device_hex);
        match view.entry(device_hex) {
            Some(m) => crate::repo::member_label(&m.user, &m.org, short),
            None => short.to_string(),
        }
    }

    /// Adds a member (this device must be an admin of the space).
    pub fn add_member(&self, space_id: RecordId, member: Member) -> Result<SpaceView, NodeError> {
        let _guard = self.write_guard();
        self.add_member_locked(space_id, member)
    }

    /// [`Repo::add_member`], the write guard already held.
    fn add_member_locked(
        &self,
        space_id: RecordId,
        member: Member,
    ) -> Result<SpaceView, NodeError> {
        let view = self.joinable(space_id, &member.device)?;
        if view.is_member(&member.device) {
            return Ok(view);
        }
        let mut doc = self.load_doc(space_id)?;
        let member = Member {
            added_by: self.device_id().to_string(),
            since: self.now().as_second(),
            ..member
        };
        space::add_member(&mut doc, &member, self.now())?;
        self.write_space_doc(&mut doc, space_id)
    }

    /// The space, if this device may add `device` to it: this device
    /// administers it, and `device` was never removed from it.
    fn joinable(&self, space_id: RecordId, device: &str) -> Result<SpaceView, NodeError> {
        let view = self.administered(space_id)?;
        if view.removed.contains_key(device) {
            return Err(NodeError::Forbidden(
                "that device was removed from the space and cannot be added again".into(),
            ));
        }
        Ok(view)
    }

    /// Issues a one-time invite to `space` granting `role`, valid for
    /// `ttl_seconds`; returns its secret (only its hash is stored). With
    /// `org`, the joiner is certified as belonging to that organisation.
    pub fn create_invite(
        &self,
        space_id: RecordId,
        ttl_seconds: i64,
        role: Role,
        org: Option<String>,
    ) -> Result<([u8; 16], i64), NodeError> {
        self.administered(space_id)?;
        let secret: [u8; 16] = self.random()?;
        let expires = self.now().as_second() + ttl_seconds;
        self.store().put_invite(
            &secret_hash(&secret),
            &InviteRecord {
                space: space_id,
                role,
                org: org.map(|o| o.trim().to_string()).filter(|o| !o.is_empty()),
                expires,
                redeemed_by: None,
            },
        )?;
        Ok((secret, expires))
    }

    /// Redeems an invite for `device`: checks the secret is known, unused
    /// and unexpired, and for this space; that this device still
    /// administers the space and `device` was never removed from it; then
    /// spends the ticket and adds the device with the invite's role,
    /// certifying who it says it is. The secret is checked first: without
    /// it, the answer says nothing about the space. A refusal leaves the
    /// ticket usable; of two redemptions at once, one wins (the write
    /// guard orders them, and the store spends a ticket only once).
    pub fn redeem_invite(
        &self,
        space_id: RecordId,
        secret: &[u8; 16],
        device_hex: &str,
        claim: &Identity,
        addrs: &[String],
    ) -> Result<SpaceView, NodeError> {
        let now = self.now().as_second();
        let hash = secret_hash(secret);
        let _guard = self.write_guard();
        let invite = self
            .store()
            .usable_invite(&hash, now)?
            .map_err(|e| NodeError::Invite(e.to_string()))?;
        if invite.space != space_id {
            return Err(NodeError::Invite(
                rapport_store::InviteError::Unknown.to_string(),
            ));
        }
        let view = self.administered(space_id)?;
        if view.removed.contains_key(device_hex) {
            return Err(NodeError::Invite(
                "this device was removed from the space and cannot rejoin".into(),
            ));
        }
        let clip = |s: &str| s.trim().chars().take(80).collect::<String>();
        let member = Member {
            device: device_hex.to_string(),
            role: invite.role,
            user: clip(&claim.user),
            org: invite.org.unwrap_or_else(|| clip(&claim.org)),
            added_by: String::new(),
            since: now,
            // Only a relay's addresses go into the signed history, where
            // every member (and later ex-member) can read them: members
            // need them to reach it, and they are an admin's server's.
            addrs: if invite.role == Role::Relay {
                usable_addrs(addrs)
            } else {
                Vec::new()
            },
        };
        self.store()
            .redeem_invite(&hash, device_hex, now)?
            .map_err(|e| NodeError::Invite(e.to_string()))?;
        self.add_member_locked(space_id, member).inspect_err(|_| {
            // The join was not written: the ticket must still work.
            if let Err(e) = self.store().release_invite(&hash, device_hex) {
                tracing::warn!("a ticket stays spent after a failed join: {e}");
            }
        })
    }

    /// Current members matching `reference`: a device id (or a prefix of
    /// at least 4 hex digits), else a user name, else an organisation.
    fn members_matching(view: &SpaceView, reference: &str) -> Vec<Member> {
        let r = reference.trim();
        let lower = r.to_ascii_lowercase();
        let tests: [&dyn Fn(&Member) -> bool; 3] = [
            &|m| {
                r.len() >= 4
                    && r.chars().all(|c| c.is_ascii_hexdigit())
                    && m.device.starts_with(&lower)
            },
            &|m| m.user.eq_ignore_ascii_case(r),
            &|m| m.org.eq_ignore_ascii_case(r),
        ];
        tests
            .iter()
            .map(|t| {
                view.members
                    .values()
                    .filter(|m| t(m))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .find(|found| !found.is_empty())
            .unwrap_or_default()
    }

    /// Removes a device, a user (all its devices) or an organisation (all
    /// its users' devices) from a space, and renews the space's topic
    /// secret. Each removal names, per record, the last change of the
    /// removed device this node has: later ones will be refused everywhere.
    pub fn remove_members(
        &self,
        space_id: RecordId,
        reference: &str,
    ) -> Result<Vec<Member>, NodeError> {
        let _guard = self.write_guard();
        let view = self.administered(space_id)?;
        let me = self.device_id().to_string();
        let targets = Self::members_matching(&view, reference);
        if targets.is_empty()
            && let Some((m, r)) = view.removed.values().find(|(m, _)| {
                m.user.eq_ignore_ascii_case(reference.trim())
                    || m.org.eq_ignore_ascii_case(reference.trim())
                    || (reference.trim().len() >= 4
                        && m.device.starts_with(&reference.trim().to_ascii_lowercase()))
            })
        {
            return Err(NodeError::Forbidden(format!(
                "{} was already removed from space {} on {}",
                crate::repo::member_label(&m.user, &m.org, m.device.get(..8).unwrap_or_default()),
                view.name,
                day(r.at)
            )));
        }
        if targets.is_empty() {
            return Err(NodeError::Forbidden(format!(
                "no member of space {} matches `{reference}`; `rapport space members {}` lists them",
                view.name, view.name
            )));
        }
        if targets.iter().any(|m| m.device == me) {
            return Err(NodeError::Forbidden(format!(
                "`{reference}` includes this device, which cannot remove itself"
            )));
        }
        let now = self.now();
        let mut removals = Vec::new();
        for m in &targets {
            removals.push(Removal {
                device: m.device.clone(),
                by: me.clone(),
                at: now.as_second(),
                cutoff: self.cutoff(space_id, &m.device)?,
            });
        }
        let mut doc = self.load_doc(space_id)?;
        space::remove_members(&mut doc, &removals, self.random()?, now)?;
        self.write_space_doc(&mut doc, space_id)?;
        Ok(targets)
    }

    /// Per record of the space, the last change of `device` this node has.
    fn cutoff(
        &self,
        space_id: RecordId,
        device: &str,
    ) -> Result<Vec<(RecordId, [u8; 32])>, NodeError> {
        let Some(key) = rapport_proto::parse_hex(device).and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            return Ok(Vec::new());
        };
        let actor = rapport_model::automerge::ActorId::from(&key[..]);
        let mut out = Vec::new();
        for record in self.store().authored(&key)? {
            if record == space_id
                || self
                    .store()
                    .heads(SpaceId::Shared(space_id), record)?
                    .is_none()
            {
                continue;
            }
            let mut doc = self.load_doc(record)?;
            let last = doc
                .get_changes(&[])
                .into_iter()
                .filter(|c| c.actor_id() == &actor)
                .max_by_key(|c| c.seq());
            if let Some(c) = last {
                out.push((record, c.hash().0));
            }
        }
        Ok(out)
    }

    /// Every change of the space document held here, judged.
    pub fn membership(&self, space_id: RecordId) -> Result<Membership, NodeError> {
        let (mut candidate, _) = self.candidate(space_id)?;
        Ok(evaluate_space(candidate.document(), space_id))
    }

    /// Membership statements and refused changes of a space.
    pub fn audit(&self, space_id: RecordId) -> Result<Audit, NodeError> {
        let space = self
            .joined_space(space_id)
            .or_else(|e| match self.space(space_id)? {
                Some(v) => Ok(v),
                None => Err(e),
            })?;
        let statements = self.membership(space_id)?.log;
        let sid = space_id.to_string();
        let rejections = self
            .store()
            .rejections()?
            .into_iter()
            .filter(|r| r.space == sid)
            .collect();
        Ok(Audit {
            space,
            statements,
            rejections,
        })
    }
}

/// The addresses worth recording: parseable, not unspecified, not
/// link-local or multicast; at most 8.
fn usable_addrs(addrs: &[String]) -> Vec<String> {
    addrs
        .iter()
        .filter(|a| {
            a.parse::<std::net::SocketAddr>().is_ok_and(|s| {
                let ip = s.ip();
                let link_local = match ip {
                    std::net::IpAddr::V4(v4) => v4.is_link_local(),
                    std::net::IpAddr::V6(v6) => v6.is_unicast_link_local(),
                };
                !ip.is_unspecified() && !ip.is_multicast() && !link_local && s.port() != 0
            })
        })
        .take(8)
        .cloned()
        .collect()
}

/// A day as users read it.
pub(crate) fn day(seconds: i64) -> String {
    Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

fn secret_hash(secret: &[u8; 16]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"rapport/invite/v1\0");
    h.update(secret);
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenMode;
    use crate::repo::tests::input;
    use rapport_model::Kind;

    #[test]
    fn records_in_a_space_refer_only_within_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(tmp.path(), OpenMode::Create).expect("open");
        let shared = repo.create_space("Acme ↔ Northwind").expect("space");
        let space = repo.resolve_space("acme ↔ northwind").expect("by name");
        assert_eq!(space, SpaceId::Shared(shared.id));
        repo.create(
            Kind::Company,
            SpaceId::Private,
            &input(&[("name", "Private Co")]),
        )
        .expect("private company");
        let acme = repo
            .create(Kind::Company, space, &input(&[("name", "Acme")]))
            .expect("shared company");
        assert_eq!(acme.space, space);
        let err = repo
            .create(
                Kind::Deal,
                space,
                &input(&[("title", "X"), ("company", "Private Co")]),
            )
            .expect_err("cross-space reference");
        assert!(matches!(err, NodeError::CrossSpace { .. }), "{err}");
        repo.create(
            Kind::Deal,
            space,
            &input(&[("title", "Y"), ("company", "Acme")]),
        )
        .expect("same-space reference");
        let items: Vec<_> = repo.store().space_items(space).collect();
        assert_eq!(items.len(), 3, "space document, company and deal");
    }

    #[test]
    fn invites_are_one_time() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(tmp.path(), OpenMode::Create).expect("open");
        let s = repo.create_space("Team").expect("space");
        let (secret, _) = repo
            .create_invite(s.id, 3600, Role::Reader, Some("Northwind".into()))
            .expect("invite");
        let guest = "ab".repeat(32);
        let claim = Identity {
            user: "Bo".into(),
            org: "Acme (really)".into(),
        };
        let v = repo
            .redeem_invite(s.id, &secret, &guest, &claim, &[])
            .expect("redeem");
        let m = &v.members[&guest];
        assert_eq!(
            (m.role, m.user.as_str(), m.org.as_str()),
            (Role::Reader, "Bo", "Northwind")
        );
        assert_eq!(m.added_by, repo.device_id().to_string());
        let err = repo
            .redeem_invite(s.id, &secret, &"cd".repeat(32), &claim, &[])
            .expect_err("reuse");
        assert!(err.to_string().contains("already used"), "{err}");
        let err = repo
            .redeem_invite(s.id, &[0; 16], &guest, &claim, &[])
            .expect_err("unknown");
        assert!(err.to_string().contains("not known"), "{err}");
        let (expired, _) = repo
            .create_invite(s.id, -10, Role::Writer, None)
            .expect("invite");
        let err = repo
            .redeem_invite(s.id, &expired, &"ef".repeat(32), &claim, &[])
            .expect_err("expired");
        assert!(err.to_string().contains("expired"), "{err}");
    }

    fn claim() -> Identity {
        Identity {
            user: "Bo".into(),
            org: "Northwind".into(),
        }
    }

    /// Whether the ticket with `secret` is recorded as used on `repo`.
    fn used(repo: &Repo, secret: &[u8; 16]) -> bool {
        repo.store()
            .invite(&secret_hash(secret))
            .expect("read")
            .expect("known")
            .redeemed_by
            .is_some()
    }

    /// A refused redemption (a removed device, the wrong space) leaves the
    /// ticket for the person it was meant for.
    #[test]
    fn a_refused_redemption_leaves_the_ticket_usable() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = Repo::open(tmp.path(), OpenMode::Create).expect("open");
        let s = repo.create_space("Team").expect("space");
        let other = repo.create_space("Other").expect("space");
        let stolen = "ab".repeat(32);
        repo.add_member(
            s.id,
            Member {
                device: stolen.clone(),
                role: Role::Writer,
                user: "Lost laptop".into(),
                org: String::new(),
                added_by: String::new(),
                since: 0,
                addrs: Vec::new(),
            },
        )
        .expect("add");
        repo.remove_members(s.id, &stolen).expect("remove");
        let (secret, _) = repo
            .create_invite(s.id, 3600, Role::Writer, None)
            .expect("invite");

        let err = repo
            .redeem_invite(s.id, &secret, &stolen, &claim(), &[])
            .expect_err("a removed device may not rejoin");
        assert!(err.to_string().contains("removed"), "{err}");
        assert!(!used(&repo, &secret), "the refusal spent the ticket");
        let err = repo
            .redeem_invite(other.id, &secret, &"cd".repeat(32), &claim(), &[])
            .expect_err("another space");
        assert!(err.to_string().contains("not known"), "{err}");
        assert!(!used(&repo, &secret), "the refusal spent the ticket");

        let guest = "ef".repeat(32);
        let v = repo
            .redeem_invite(s.id, &secret, &guest, &claim(), &[])
            .expect("the ticket still works");
        assert!(v.is_member(&guest));
        assert!(used(&repo, &secret));
    }

    /// A ticket issued by an admin who was then removed is refused, and
    /// not spent by the refusal.
    #[test]
    fn a_ticket_of_an_inviter_no_longer_admin_is_refused_unspent() {
        use crate::ingest::tests::{add, all_changes, node, sync};
        let (_ta, a) = node();
        let (_tb, b) = node();
        let s = a.create_space("Joint").expect("space");
        let space = SpaceId::Shared(s.id);
        add(&a, s.id, &b, Role::Admin);
        sync(&b, &a, space);
        let (secret, _) = b
            .create_invite(s.id, 3600, Role::Writer, None)
            .expect("b invites");
        a.remove_members(s.id, &b.device_id().to_string())
            .expect("a removes b");
        b.apply_remote(space, s.id, all_changes(&a, s.id), a.device_id())
            .expect("b hears of it");
        let err = b
            .redeem_invite(s.id, &secret, &"cd".repeat(32), &claim(), &[])
            .expect_err("b is no longer an admin");
        assert!(err.to_string().contains("removed"), "{err}");
        assert!(!used(&b, &secret), "the refusal spent the ticket");
    }

    /// Two devices redeeming one ticket at once: exactly one joins.
    #[test]
    fn one_ticket_redeemed_twice_at_once_admits_one() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = std::sync::Arc::new(Repo::open(tmp.path(), OpenMode::Create).expect("open"));
        let s = repo.create_space("Team").expect("space");
        let (secret, _) = repo
            .create_invite(s.id, 3600, Role::Writer, None)
            .expect("invite");
        let joins: Vec<_> = ["ab", "cd", "ef", "01"]
            .map(|d| {
                let repo = repo.clone();
                std::thread::spawn(move || {
                    repo.redeem_invite(s.id, &secret, &d.repeat(32), &claim(), &[])
                        .is_ok()
                })
            })
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(joins.iter().filter(|ok| **ok).count(), 1, "{joins:?}");
        let view = repo.space(s.id).expect("read").expect("space");
        assert_eq!(view.members.len(), 2, "the admin and one guest");
    }

    #[test]
    fn only_usable_addresses_are_recorded() {
        let given: Vec<String> = [
            "127.0.0.1:7070",
            "0.0.0.0:7070",
            "169.254.1.2:7070",
            "[fe80::1]:7070",
            "10.0.0.5:0",
            "not an address",
            "[2001:db8::1]:7070",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            usable_addrs(&given),
            vec!["127.0.0.1:7070", "[2001:db8::1]:7070"]
        );
    }
}
