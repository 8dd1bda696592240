//! A small shared space built from fixed keys and a fixed clock, so that
//! the same bytes come out on every run: the ingest corpus is made of
//! changes that build on this world's documents, and the ingest target
//! gives each fresh node this world before it fuzzes.

use jiff::Timestamp;
use rapport_model::automerge::AutoCommit;
use rapport_model::space::{add_member, create_space, new_space_id};
use rapport_model::{FieldValue, Identity, Kind, Member, RecordId, Role, SpaceId};
use rapport_proto::SignedChange;
use rapport_trust::DeviceKey;

/// The world's clock: 2026-05-28, in seconds.
pub const T0: i64 = 1_780_000_000;

pub struct World {
    /// Created the space.
    pub admin: DeviceKey,
    /// Added by the admin as a writer; wrote the record.
    pub writer: DeviceKey,
    pub space_id: RecordId,
    pub record: RecordId,
    /// The space document: created, then the writer added.
    pub space_doc: AutoCommit,
    /// The record: a company, one change by the writer.
    pub record_doc: AutoCommit,
    pub space_changes: Vec<SignedChange>,
    pub record_changes: Vec<SignedChange>,
}

pub fn at(offset: i64) -> Timestamp {
    Timestamp::from_second(T0 + offset).expect("a valid time")
}

/// Signs the last change `doc` made, with `key` (its actor).
pub fn sign_last(doc: &mut AutoCommit, key: &DeviceKey) -> SignedChange {
    let change = doc.get_last_local_change().expect("a change was made");
    key.sign_change(&change).expect("the key is the actor")
}

/// A member entry for `device` (hex) written by `admin`.
pub fn member(admin: &DeviceKey, device: String, role: Role, user: &str) -> Member {
    Member {
        device,
        role,
        user: user.into(),
        org: "Fuzz Co".into(),
        added_by: admin.device_id().to_string(),
        since: T0,
        addrs: Vec::new(),
    }
}

impl World {
    pub fn new() -> World {
        let admin = DeviceKey::from_secret([0xad; 32]);
        let writer = DeviceKey::from_secret([0x77; 32]);
        let space_id = new_space_id(&admin.device_id().0, T0 as u64 * 1000, [0xf0, 0x0d]);
        let mut space_doc = create_space(
            admin.device_id().actor_id(),
            space_id,
            "Fuzz",
            &Identity {
                user: "Ada".into(),
                org: "Fuzz Co".into(),
            },
            [0x70; 32],
            at(0),
        )
        .expect("create space");
        let created = sign_last(&mut space_doc, &admin);
        add_member(
            &mut space_doc,
            &member(&admin, writer.device_id().to_string(), Role::Writer, "Wes"),
            at(1),
        )
        .expect("add writer");
        let added = sign_last(&mut space_doc, &admin);

        // Bound to its creator, as every record id is.
        let record = rapport_model::space::new_record_id(
            &writer.device_id().0,
            T0 as u64 * 1000 + 2,
            [0x5e; 2],
        );
        let mut record_doc = rapport_model::doc::create(
            writer.device_id().actor_id(),
            Kind::Company,
            SpaceId::Shared(space_id),
            &[
                ("name".into(), FieldValue::Text("Acme".into())),
                (
                    "tags".into(),
                    FieldValue::List(vec!["steel".into(), "north".into()]),
                ),
            ],
            at(2),
        )
        .expect("create record");
        let record_created = sign_last(&mut record_doc, &writer);
        World {
            admin,
            writer,
            space_id,
            record,
            space_doc,
            record_doc,
            space_changes: vec![created, added],
            record_changes: vec![record_created],
        }
    }

    pub fn space(&self) -> SpaceId {
        SpaceId::Shared(self.space_id)
    }
}
