//! Where members can be reached now: signed address announcements, the
//! newest kept per device, passed on among the members of a space.
//!
//! A node signs its direct addresses and home relay with its device key
//! whenever they change and sends the announcement to the members of each
//! space it belongs to (gossip, and every catch-up session). A member that
//! receives one keeps it if it is newer than what it holds, and passes it
//! on in its own sessions: so a node learns where a member moved from any
//! other member it still reaches, relays included. Announcements are never
//! written into a record's history (addresses change) and never go to a
//! peer that is not a member of the space the session or topic is about.
//!
//! [`judge`] is the whole rule, without I/O; [`Repo`] adds the store.

use jiff::Timestamp;
use rapport_model::RecordId;
use rapport_proto::wire::Addresses;
use rapport_store::PeerRecord;
use rapport_trust::{AddressError, DeviceId, verify_addresses};

use crate::{NodeError, Repo};

/// How far ahead of this node's clock an announcement may be dated: past
/// that, a member could date one so far ahead that no later one of the
/// device's would ever replace it.
pub const MAX_FUTURE_MS: u64 = 10 * 60 * 1000;
/// Least time between two announcements of one device that are both
/// taken: a member re-signing in a loop costs one store write a second.
pub const MIN_INTERVAL_MS: u64 = 1000;

/// Where a member can be reached, as it last announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub device: DeviceId,
    pub direct: Vec<String>,
    pub relay: Option<String>,
}

/// Why an announcement was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Invalid(#[from] AddressError),
    #[error("device {0} is not a member of the space")]
    NotMember(String),
    #[error("the announcement is dated more than 10 minutes ahead of this node's clock")]
    FromTheFuture,
}

/// Whether to take `a`, signed by a device that is (`member`) or is not a
/// member of the space it came in: `Ok(true)` if it replaces what we hold
/// (`held_ms`, the time of the newest one taken), `Ok(false)` if it is
/// not newer (an old one passed on again: not an offence).
pub fn judge(
    a: &Addresses,
    member: bool,
    held_ms: Option<u64>,
    now_ms: u64,
) -> Result<bool, Refused> {
    if !member {
        return Err(Refused::NotMember(DeviceId(a.device).short()));
    }
    if a.at_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(Refused::FromTheFuture);
    }
    Ok(held_ms.is_none_or(|held| a.at_ms >= held.saturating_add(MIN_INTERVAL_MS)))
}

/// The order addresses go into an announcement, which keeps at most
/// `MAX_DIRECT_ADDRS`: routable ones first, then link-local, loopback
/// last (a host with container bridges and several IPv6 addresses has
/// more than fit, and the ones other machines can use must not be cut).
pub fn rank_addrs(mut addrs: Vec<String>) -> Vec<String> {
    fn rank(a: &str) -> u8 {
        match a.parse::<std::net::SocketAddr>().map(|s| s.ip()) {
            Ok(ip) if ip.is_loopback() => 3,
            Ok(std::net::IpAddr::V4(v4)) if v4.is_link_local() => 2,
            Ok(std::net::IpAddr::V6(v6)) if v6.is_unicast_link_local() => 2,
            Ok(std::net::IpAddr::V6(_)) => 1,
            Ok(_) => 0,
            Err(_) => 4,
        }
    }
    addrs.sort_by_key(|a| rank(a));
    addrs
}

fn now_ms() -> u64 {
    u64::try_from(Timestamp::now().as_millisecond()).unwrap_or(0)
}

impl Repo {
    /// Signs this device's current addresses, keeps the announcement (to
    /// pass on in sessions) and returns it, encoded.
    pub fn announce_addresses(
        &self,
        direct: Vec<String>,
        relay: Option<String>,
    ) -> Result<Vec<u8>, NodeError> {
        let me = self.device_id().to_string();
        let _guard = self.peers_guard();
        let held = self.store().peer(&me)?;
        // Strictly later than the last one, by the interval members keep;
        // but never pinned to a clock that was once far ahead (members
        // would refuse every announcement until real time caught up).
        let now = now_ms();
        let at_ms = match held.as_ref().map(|p| p.announced_ms) {
            Some(last) if last <= now.saturating_add(MAX_FUTURE_MS) => {
                last.saturating_add(MIN_INTERVAL_MS).max(now)
            }
            _ => now,
        };
        let signed = self
            .key()
            .sign_addresses(rank_addrs(direct.clone()), relay.clone(), at_ms)?;
        self.store().put_peer(&PeerRecord {
            device: me,
            addrs: direct,
            seen: Timestamp::now().as_second(),
            relay,
            announced_ms: at_ms,
            announcement: signed.clone(),
        })?;
        Ok(signed)
    }

    /// Takes a member's announcement that came in `space` (on its topic or
    /// in a session about it). `Ok(Some)` when it is new: the caller
    /// dials the device there from now on.
    pub fn learn_addresses(
        &self,
        space: RecordId,
        signed: &[u8],
    ) -> Result<Result<Option<Learned>, Refused>, NodeError> {
        let (device, a) = match verify_addresses(signed) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.into())),
        };
        let hex = device.to_string();
        if device == self.device_id() {
            return Ok(Ok(None)); // our own, passed back
        }
        let member = self
            .store()
            .space_shared(space)?
            .is_some_and(|v| v.is_member(&hex));
        let _guard = self.peers_guard();
        let held = self.store().peer(&hex)?;
        let held_ms = held
            .as_ref()
            .filter(|p| !p.announcement.is_empty())
            .map(|p| p.announced_ms);
        match judge(&a, member, held_ms, now_ms()) {
            Err(refused) => Ok(Err(refused)),
            Ok(false) => Ok(Ok(None)),
            Ok(true) => {
                self.store().put_peer(&PeerRecord {
                    device: hex,
                    addrs: a.direct.clone(),
                    seen: held.map_or(0, |p| p.seen),
                    relay: a.relay.clone(),
                    announced_ms: a.at_ms,
                    announcement: signed.to_vec(),
                })?;
                Ok(Ok(Some(Learned {
                    device,
                    direct: a.direct,
                    relay: a.relay,
                })))
            }
        }
    }

    /// Addresses a ticket or a join request gave for a peer. The peer's own
    /// signed announcement, if one came, says where it is; otherwise these.
    pub fn note_peer_addrs(&self, device: DeviceId, addrs: Vec<String>) -> Result<(), NodeError> {
        let hex = device.to_string();
        let _guard = self.peers_guard();
        let held = self.store().peer(&hex)?.unwrap_or_default();
        let addrs = if held.announcement.is_empty() {
            addrs
        } else {
            held.addrs.clone()
        };
        self.store().put_peer(&PeerRecord {
            device: hex,
            addrs,
            seen: Timestamp::now().as_second(),
            ..held
        })?;
        Ok(())
    }

    /// Whether the peer (hex device id) has told this node where it is
    /// with a signed announcement: its member entry's addresses, from when
    /// it joined, are then out of date.
    pub fn has_announced(&self, device: &str) -> bool {
        self.store()
            .peer(device)
            .ok()
            .flatten()
            .is_some_and(|p| !p.announcement.is_empty())
    }

    /// The announcements to pass on to a member of `space`: the newest
    /// held of each of its members, this device's first (a message takes
    /// at most `MAX_ADDRESS_ENTRIES`).
    pub fn member_addresses(&self, space: RecordId) -> Result<Vec<Vec<u8>>, NodeError> {
        let Some(view) = self.store().space_shared(space)? else {
            return Ok(Vec::new());
        };
        let me = self.device_id().to_string();
        let mut out = Vec::new();
        let members = std::iter::once(&me).chain(
            view.members
                .keys()
                .filter(|d| **d != me && view.is_member(d)),
        );
        for device in members {
            if let Some(p) = self.store().peer(device)?
                && !p.announcement.is_empty()
            {
                out.push(p.announcement);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::tests::{add, node};
    use rapport_model::Role;
    use rapport_trust::DeviceKey;

    fn addrs(at_ms: u64) -> Addresses {
        Addresses {
            device: [7; 32],
            at_ms,
            direct: vec!["10.0.0.7:4433".into()],
            relay: None,
        }
    }

    #[test]
    fn the_rule_takes_newer_from_members_only_and_nothing_from_the_future() {
        let now = 1_800_000_000_000;
        assert_eq!(judge(&addrs(now), true, None, now), Ok(true));
        assert_eq!(judge(&addrs(now), true, Some(now - 5_000), now), Ok(true));
        // Not newer, or newer by less than the interval: kept as is.
        assert_eq!(judge(&addrs(now), true, Some(now), now), Ok(false));
        assert_eq!(judge(&addrs(now), true, Some(now - 10), now), Ok(false));
        assert_eq!(judge(&addrs(now - 1), true, Some(now), now), Ok(false));
        assert!(matches!(
            judge(&addrs(now), false, None, now),
            Err(Refused::NotMember(_))
        ));
        assert_eq!(
            judge(&addrs(now + MAX_FUTURE_MS + 1), true, None, now),
            Err(Refused::FromTheFuture)
        );
        assert_eq!(
            judge(&addrs(now + MAX_FUTURE_MS), true, None, now),
            Ok(true)
        );
    }

    #[test]
    fn routable_addresses_go_first_so_the_cut_keeps_them() {
        let ranked = rank_addrs(vec![
            "127.0.0.1:1".into(),
            "[fe80::1]:1".into(),
            "172.17.0.1:1".into(),
            "[2001:db8::1]:1".into(),
            "192.168.1.5:1".into(),
        ]);
        assert_eq!(
            ranked,
            [
                "172.17.0.1:1",
                "192.168.1.5:1",
                "[2001:db8::1]:1",
                "[fe80::1]:1",
                "127.0.0.1:1"
            ]
        );
    }

    #[test]
    fn members_addresses_are_learned_passed_on_and_replaced_by_newer_ones() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_tc, c) = node();
        let space = a.create_space("Joint").expect("space");
        add(&a, space.id, &b, Role::Writer);
        add(&a, space.id, &c, Role::Writer);
        crate::ingest::tests::sync(&b, &a, rapport_model::SpaceId::Shared(space.id));
        crate::ingest::tests::sync(&c, &a, rapport_model::SpaceId::Shared(space.id));

        let first = b
            .announce_addresses(vec!["10.0.1.2:4433".into()], None)
            .expect("announce");
        let learned = a
            .learn_addresses(space.id, &first)
            .expect("store")
            .expect("taken")
            .expect("new");
        assert_eq!(learned.device, b.device_id());
        assert_eq!(learned.direct, ["10.0.1.2:4433"]);
        // a passes b's announcement on to c, a member, with its own.
        let passed = a.member_addresses(space.id).expect("addresses");
        assert!(passed.contains(&first));
        assert_eq!(
            c.learn_addresses(space.id, &first).expect("store"),
            Ok(Some(learned.clone()))
        );
        // The same one again is not news.
        assert_eq!(
            c.learn_addresses(space.id, &first).expect("store"),
            Ok(None)
        );

        // b moves: its next announcement replaces the first everywhere,
        // and the first, passed on late, does not bring the old back.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let moved = b
            .announce_addresses(
                vec!["10.0.4.2:4433".into()],
                Some("https://relay.example/".into()),
            )
            .expect("announce");
        let now = c
            .learn_addresses(space.id, &moved)
            .expect("store")
            .expect("taken")
            .expect("new");
        assert_eq!(now.direct, ["10.0.4.2:4433"]);
        assert_eq!(now.relay.as_deref(), Some("https://relay.example/"));
        assert_eq!(
            c.learn_addresses(space.id, &first).expect("store"),
            Ok(None)
        );
        let held = c
            .store()
            .peer(&b.device_id().to_string())
            .expect("peer")
            .expect("held");
        assert_eq!(held.addrs, ["10.0.4.2:4433"]);
    }

    #[test]
    fn announcements_of_non_members_removed_members_and_forgers_are_refused() {
        let (_ta, a) = node();
        let (_tb, b) = node();
        let (_tx, outsider) = node();
        let space = a.create_space("Joint").expect("space");
        add(&a, space.id, &b, Role::Writer);

        // A device that is not a member, however well signed.
        let theirs = outsider
            .announce_addresses(vec!["192.0.2.1:1".into()], None)
            .expect("announce");
        assert!(matches!(
            a.learn_addresses(space.id, &theirs).expect("store"),
            Err(Refused::NotMember(_))
        ));
        // A forgery: b's device named, another key's signature.
        let forger = DeviceKey::from_secret([9; 32]);
        let forged = forger.sign_addresses(vec!["192.0.2.2:1".into()], None, now_ms());
        let mut forged: rapport_proto::wire::SignedAddresses =
            rapport_proto::wire::decode(&forged.expect("sign")).expect("decode");
        let mut body: Addresses = rapport_proto::wire::decode(&forged.body).expect("body");
        body.device = b.device_id().0;
        forged.body = rapport_proto::wire::encode(&body).expect("encode");
        let forged = rapport_proto::wire::encode(&forged).expect("encode");
        assert!(matches!(
            a.learn_addresses(space.id, &forged).expect("store"),
            Err(Refused::Invalid(AddressError::BadSignature))
        ));
        // A removed member's announcement is refused from then on.
        let before = b
            .announce_addresses(vec!["10.0.1.2:4433".into()], None)
            .expect("announce");
        assert!(a.learn_addresses(space.id, &before).expect("store").is_ok());
        a.remove_members(space.id, &b.device_id().to_string())
            .expect("remove");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let after = b
            .announce_addresses(vec!["10.0.9.2:4433".into()], None)
            .expect("announce");
        assert!(matches!(
            a.learn_addresses(space.id, &after).expect("store"),
            Err(Refused::NotMember(_))
        ));
        // And nothing of the outsider's is passed on to members.
        assert!(
            !a.member_addresses(space.id)
                .expect("addresses")
                .contains(&theirs)
        );
    }
}
