//! The checked-in seed inputs, made by the real encoders from the fixed
//! world (`world.rs`), so regenerating gives the same bytes. Run with
//! `cargo test -p rapport --test fuzz regenerate_fuzz_corpus -- --ignored`.
//! It writes only the files named here: inputs kept from crashes stay.

use rapport_model::automerge::{AutoCommit, Change};
use rapport_model::space::{add_member, remove_members};
use rapport_model::{Edit, FieldValue, Removal, Role};
use rapport_proto::SignedChange;
use rapport_proto::wire::{
    self, Announce, JoinMessage, RecordChanges, RecordHeads, SyncMessage, Ticket,
};
use rapport_trust::DeviceKey;

use crate::engine::corpus_dir;
use crate::ingest::{self, REPAIR, RESIGN, SPACE};
use crate::world::{T0, World, at, member, sign_last};

/// `edits` by `key` on a copy of `doc`, one change each, signed.
fn edits(doc: &AutoCommit, key: &DeviceKey, edits: &[Vec<Edit>]) -> Vec<SignedChange> {
    let mut doc = doc.clone().with_actor(key.device_id().actor_id());
    edits
        .iter()
        .enumerate()
        .map(|(n, e)| {
            rapport_model::doc::edit(&mut doc, e, at(10 + n as i64))
                .expect("edit")
                .expect("the edit changes something");
            sign_last(&mut doc, key)
        })
        .collect()
}

fn set(field: &str, value: &str) -> Edit {
    Edit::Set(field.into(), FieldValue::Text(value.into()))
}

/// Changes to the world's record and space, named.
fn changes(world: &World) -> Vec<(&'static str, Vec<SignedChange>)> {
    let (record, writer, admin) = (&world.record_doc, &world.writer, &world.admin);
    let tags = Edit::Set(
        "tags".into(),
        FieldValue::List(vec!["steel".into(), "south".into(), "east".into()]),
    );
    let chain = edits(
        record,
        writer,
        &[vec![set("industry", "Steel")], vec![set("owner", "Wes")]],
    );

    let mut space = world.space_doc.clone();
    let reader = DeviceKey::from_secret([0x33; 32]);
    add_member(
        &mut space,
        &member(admin, reader.device_id().to_string(), Role::Reader, "Rea"),
        at(20),
    )
    .expect("add reader");
    let add_reader = sign_last(&mut space, admin);
    let created = created_hash(world);
    let mut space = world.space_doc.clone();
    remove_members(
        &mut space,
        &[Removal {
            device: writer.device_id().to_string(),
            by: admin.device_id().to_string(),
            at: T0 + 30,
            cutoff: vec![(world.record, created)],
        }],
        [0x71; 32],
        at(30),
    )
    .expect("remove writer");
    let remove_writer = sign_last(&mut space, admin);

    vec![
        ("edit-industry", chain[..1].to_vec()),
        ("edit-then-owner", chain.clone()),
        ("owner-without-its-dependency", chain[1..].to_vec()),
        ("edit-tags", edits(record, writer, &[vec![tags]])),
        (
            "delete-then-restore",
            edits(
                record,
                writer,
                &[vec![Edit::Deleted(true)], vec![Edit::Deleted(false)]],
            ),
        ),
        (
            "concurrent-owners",
            [
                edits(record, writer, &[vec![set("owner", "Wes")]]),
                edits(
                    record,
                    admin,
                    &[vec![set("owner", "Ada"), Edit::Unset("tags".into())]],
                ),
            ]
            .concat(),
        ),
        ("space-add-reader", vec![add_reader]),
        ("space-remove-writer", vec![remove_writer]),
    ]
}

/// The hash of the change that created the world's record.
fn created_hash(world: &World) -> [u8; 32] {
    Change::from_bytes(world.record_changes[0].change.clone())
        .expect("a change")
        .hash()
        .0
}

/// Every target's seed inputs: (target, file name, bytes).
fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let world = World::new();
    let mut out = Vec::new();
    let changes = changes(&world);

    // Ingest: batches for the record, or for the space document.
    for (name, batch) in &changes {
        let flags = REPAIR | RESIGN | if name.starts_with("space") { SPACE } else { 0 };
        out.push(("ingest", format!("{name}.bin"), ingest::input(flags, batch)));
    }

    // Envelope: single signed changes, of both documents.
    let singles = [
        ("space-create", &world.space_changes[0]),
        ("space-add-writer", &world.space_changes[1]),
        ("record-create", &world.record_changes[0]),
        ("record-edit-tags", &changes[3].1[0]),
        ("space-remove-writer", &changes[7].1[0]),
    ];
    for (name, signed) in singles {
        out.push(("envelope", format!("{name}.bin"), signed.encode()));
    }

    // Frame: one of each message, as sent on the wire.
    let space = world.space_id.to_bytes();
    let record = world.record.to_bytes();
    let head = created_hash(&world);
    let sync = [
        ("sync-open", SyncMessage::Open { space }),
        (
            "sync-refused",
            SyncMessage::Refused {
                reason: "not a member".into(),
            },
        ),
        (
            "sync-reconcile",
            SyncMessage::Reconcile(vec![0x61, 0x00, 0x01, 0x02]),
        ),
        (
            "sync-heads",
            SyncMessage::Heads(vec![RecordHeads {
                record,
                heads: vec![head],
            }]),
        ),
        (
            "sync-changes",
            SyncMessage::Changes(vec![RecordChanges {
                record,
                changes: vec![world.record_changes[0].encode()],
            }]),
        ),
        ("sync-done", SyncMessage::Done),
    ];
    for (name, msg) in sync {
        let frame = wire::encode_frame(&msg).expect("encode");
        out.push(("frame", format!("{name}.bin"), frame));
    }
    let join = [
        (
            "join-redeem",
            JoinMessage::Redeem {
                space,
                secret: [0x5c; 16],
                addrs: vec!["127.0.0.1:4433".into(), "[::1]:4433".into()],
                user: "Ann".into(),
                org: "Northwind".into(),
            },
        ),
        ("join-welcome", JoinMessage::Welcome),
        (
            "join-denied",
            JoinMessage::Denied {
                reason: "the ticket was used already".into(),
            },
        ),
    ];
    for (name, msg) in join {
        let frame = wire::encode_frame(&msg).expect("encode");
        out.push(("frame", format!("{name}.bin"), frame));
    }
    let announce = wire::Gossip::Announce(Announce {
        space,
        record,
        heads: vec![head],
        changes: vec![],
    });
    let gossip = wire::encode(&announce).expect("encode");
    out.push(("frame", "gossip-announce.bin".into(), gossip));
    let signed = world
        .admin
        .sign_addresses(
            vec!["192.0.2.10:4433".into()],
            Some("https://relay.example/".into()),
            T0 as u64 * 1000,
        )
        .expect("sign");
    let gossip = wire::encode(&wire::Gossip::Addresses(signed.clone())).expect("encode");
    out.push(("frame", "gossip-addresses.bin".into(), gossip));
    let frame = wire::encode_frame(&SyncMessage::Addresses(vec![signed])).expect("encode");
    out.push(("frame", "sync-addresses.bin".into(), frame));

    // Ticket: text, as users paste it.
    let mut ticket = Ticket {
        space,
        space_name: "Acme ↔ Northwind".into(),
        inviter: world.admin.device_id().0,
        addrs: vec!["192.0.2.10:4433".into()],
        relay: None,
        role: "writer".into(),
        secret: [0x5c; 16],
        expires: T0 + 86_400,
    };
    out.push(("ticket", "writer.txt".into(), ticket.encode().into_bytes()));
    ticket.role = "relay".into();
    ticket.relay = Some("https://relay.example.net./".into());
    ticket.addrs.push("[2001:db8::1]:4433".into());
    out.push(("ticket", "relay.txt".into(), ticket.encode().into_bytes()));
    out
}

/// Writes every seed input to `tests/fuzz-corpus/<target>/`.
pub fn regenerate() {
    for (target, name, bytes) in all() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(&name), &bytes).expect("write corpus file");
        eprintln!("{target}/{name}: {} bytes", bytes.len());
    }
}
