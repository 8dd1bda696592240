//! Spaces on this node: creating them, finding them by name, adding
//! members, and the one-time secrets behind invite tickets.

use jiff::Timestamp;
use rapport_model::automerge::AutoCommit;
use rapport_model::id::{is_id_prefix, normalize_prefix};
use rapport_model::space::{self, PRIVATE};
use rapport_model::{RecordId, SpaceId, SpaceView};
use rapport_store::{Indexed, InviteRecord, RecordWrite};
use sha2::{Digest, Sha256};

use crate::{NodeError, Repo};

impl Repo {
    /// Creates a shared space with this device as its first member.
    pub fn create_space(&self, name: &str) -> Result<SpaceView, NodeError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(NodeError::BadAssignment("a space needs a name".into()));
        }
        let now = Timestamp::now();
        let mut random = [0u8; 10];
        getrandom::fill(&mut random).map_err(|e| rapport_trust::KeyError::Random(e.to_string()))?;
        let id = RecordId::new(now.as_millisecond().max(0) as u64, random);
        let mut doc = space::create_space(self.device_id().actor_id(), id, name, now)?;
        let _guard = self.write_guard();
        self.write_space_doc(&mut doc, id)
    }

    /// Signs the change just committed to a space document and stores it.
    fn write_space_doc(&self, doc: &mut AutoCommit, id: RecordId) -> Result<SpaceView, NodeError> {
        let change = doc
            .get_last_local_change()
            .ok_or_else(|| NodeError::Damaged {
                path: self.dir().to_path_buf(),
                reason: "a committed change is missing from its space document".into(),
            })?;
        let signed = self.key().sign_change(&change)?;
        let view = space::read_space(doc)?;
        let heads: Vec<[u8; 32]> = doc.get_heads().iter().map(|h| h.0).collect();
        let saved = doc.save();
        let changes = [(change.hash().0.to_vec(), signed)];
        self.store().write(&RecordWrite {
            id,
            space: SpaceId::Shared(id),
            doc: &saved,
            heads: &heads,
            changes: &changes,
            index: Indexed::Space(&view),
        })?;
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
            .space_items(SpaceId::Shared(id))
            .count()
            .saturating_sub(1)
    }

    /// Adds a device to a space (this device must be a member).
    pub fn add_member(&self, space_id: RecordId, device_hex: &str) -> Result<SpaceView, NodeError> {
        let _guard = self.write_guard();
        let view = self
            .space(space_id)?
            .ok_or_else(|| NodeError::UnknownSpace(space_id.to_string()))?;
        if !view.is_member(&self.device_id().to_string()) {
            return Err(NodeError::NotMember(view.name));
        }
        if view.is_member(device_hex) {
            return Ok(view);
        }
        let mut doc = self.load_doc(space_id)?;
        space::add_member(&mut doc, device_hex, Timestamp::now())?;
        self.write_space_doc(&mut doc, space_id)
    }

    /// Issues a one-time invite to `space`, valid for `ttl_seconds`; returns
    /// its secret (only its hash is stored).
    pub fn create_invite(
        &self,
        space_id: RecordId,
        ttl_seconds: i64,
    ) -> Result<([u8; 16], i64), NodeError> {
        let view = self
            .space(space_id)?
            .ok_or_else(|| NodeError::UnknownSpace(space_id.to_string()))?;
        if !view.is_member(&self.device_id().to_string()) {
            return Err(NodeError::NotMember(view.name));
        }
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|e| rapport_trust::KeyError::Random(e.to_string()))?;
        let expires = Timestamp::now().as_second() + ttl_seconds;
        self.store().put_invite(
            &secret_hash(&secret),
            &InviteRecord {
                space: space_id,
                expires,
                redeemed_by: None,
            },
        )?;
        Ok((secret, expires))
    }

    /// Redeems an invite for `device`: checks the secret is known, unused
    /// and unexpired, and for this space; then makes the device a member.
    pub fn redeem_invite(
        &self,
        space_id: RecordId,
        secret: &[u8; 16],
        device_hex: &str,
    ) -> Result<SpaceView, NodeError> {
        let now = Timestamp::now().as_second();
        let hash = secret_hash(secret);
        let invite = self
            .store()
            .redeem_invite(&hash, device_hex, now)?
            .map_err(|e| NodeError::Invite(e.to_string()))?;
        if invite.space != space_id {
            return Err(NodeError::Invite("this ticket is for another space".into()));
        }
        self.add_member(space_id, device_hex)
    }
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
        let (secret, _) = repo.create_invite(s.id, 3600).expect("invite");
        let guest = "ab".repeat(32);
        let v = repo.redeem_invite(s.id, &secret, &guest).expect("redeem");
        assert!(v.is_member(&guest));
        let err = repo
            .redeem_invite(s.id, &secret, &"cd".repeat(32))
            .expect_err("reuse");
        assert!(err.to_string().contains("already used"), "{err}");
        let err = repo
            .redeem_invite(s.id, &[0; 16], &guest)
            .expect_err("unknown");
        assert!(err.to_string().contains("not known"), "{err}");
        let (expired, _) = repo.create_invite(s.id, -10).expect("invite");
        let err = repo
            .redeem_invite(s.id, &expired, &guest)
            .expect_err("expired");
        assert!(err.to_string().contains("expired"), "{err}");
    }
}
