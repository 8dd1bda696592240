//! Invitations: creating a ticket, redeeming one with its inviter
//! (`rapport/join/2`), and serving redemptions.

use std::net::SocketAddr;
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use iroh::{EndpointAddr, EndpointId};
use jiff::Timestamp;
use rapport_model::{RecordId, Role, SpaceId, SpaceView};
use rapport_proto::wire::{JOIN_ALPN, JoinMessage, Ticket};

use super::frame::{read_frame, write_frame};
use super::{DIAL_TIMEOUT, NetError, Node, blocking, device_of, peer_err};
use crate::NodeError;

impl Node {
    /// Creates an invite ticket granting `role` for a space this node
    /// administers.
    pub fn invite(
        &self,
        space_id: RecordId,
        ttl_seconds: i64,
        role: Role,
        org: Option<String>,
    ) -> Result<Ticket, NetError> {
        let repo = &self.inner.repo;
        let view = repo
            .space(space_id)?
            .ok_or_else(|| NodeError::UnknownSpace(space_id.to_string()))?;
        let (secret, expires) = repo.create_invite(space_id, ttl_seconds, role, org)?;
        Ok(Ticket {
            space: space_id.to_bytes(),
            space_name: view.name,
            inviter: *self.id().as_bytes(),
            addrs: self.addrs(),
            relay: self
                .inner
                .endpoint
                .addr()
                .relay_urls()
                .next()
                .map(|u| u.to_string()),
            role: role.to_string(),
            secret,
            expires,
        })
    }

    /// Redeems a ticket with its inviter, then catches up with it.
    pub async fn join(&self, ticket: &Ticket) -> Result<SpaceView, NetError> {
        if ticket.expires < Timestamp::now().as_second() {
            return Err(NetError::Ticket(
                "this ticket has expired; ask for a new one".into(),
            ));
        }
        let inviter = EndpointId::from_bytes(&ticket.inviter)
            .map_err(|_| NetError::Ticket("the inviter's id is damaged".into()))?;
        self.save_peer(device_of(inviter), ticket.addrs.clone());
        let mut addr = EndpointAddr::new(inviter);
        for a in &ticket.addrs {
            if let Ok(sock) = a.parse::<SocketAddr>() {
                addr = addr.with_ip_addr(sock);
            }
        }
        if let Some(relay) = &ticket.relay
            && let Ok(url) = relay.parse()
        {
            addr = addr.with_relay_url(url);
        }
        let who = inviter.fmt_short().to_string();
        let conn = tokio::time::timeout(DIAL_TIMEOUT, self.inner.endpoint.connect(addr, JOIN_ALPN))
            .await
            .map_err(|_| {
                peer_err(
                    &who,
                    "the inviter did not answer; is its node running and reachable?",
                )
            })?
            .map_err(|e| peer_err(&who, e))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| peer_err(&who, e))?;
        let me = self.inner.repo.identity();
        let redeem = JoinMessage::Redeem {
            space: ticket.space,
            secret: ticket.secret,
            addrs: self.addrs(),
            user: me.user,
            org: me.org,
        };
        write_frame(&self.inner.traffic, &mut send, &redeem)
            .await
            .map_err(|e| peer_err(&who, e))?;
        let _ = send.finish();
        let answer = read_frame::<JoinMessage>(&self.inner.traffic, &mut recv)
            .await
            .map_err(|e| peer_err(&who, e))?;
        conn.close(0u32.into(), b"done");
        match answer {
            JoinMessage::Welcome => {}
            JoinMessage::Denied { reason } => return Err(NetError::Ticket(reason)),
            JoinMessage::Redeem { .. } => return Err(peer_err(&who, "answered with a redeem")),
        }
        let space_id = RecordId::from_bytes(ticket.space);
        let space = SpaceId::Shared(space_id);
        // Directly, not through the schedule: the space is not ours to
        // schedule until this first session brings its member list.
        self.sync_with(inviter, space).await?;
        self.space_changed(space_id).await;
        blocking(|| self.inner.repo.space(space_id))?
            .ok_or_else(|| peer_err(&who, "the space did not arrive"))
    }
}

/// Serves ticket redemptions.
#[derive(Debug, Clone)]
pub(super) struct JoinHandler {
    pub(super) node: Node,
}

impl ProtocolHandler for JoinHandler {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let peer = connection.remote_id();
        let (mut send, mut recv) = connection.accept_bi().await?;
        let answer = match read_frame::<JoinMessage>(&self.node.inner.traffic, &mut recv).await {
            Ok(JoinMessage::Redeem {
                space,
                secret,
                addrs,
                user,
                org,
            }) => {
                let space_id = RecordId::from_bytes(space);
                let device = device_of(peer);
                let repo = self.node.inner.repo.clone();
                let claim = rapport_model::Identity { user, org };
                match blocking(|| {
                    repo.redeem_invite(space_id, &secret, &device.to_string(), &claim, &addrs)
                }) {
                    Ok(_) => {
                        tracing::info!(peer = %peer.fmt_short(), space = %space_id, "a new member joined");
                        self.node.save_peer(device, addrs);
                        JoinMessage::Welcome
                    }
                    Err(e) => {
                        tracing::warn!(peer = %peer.fmt_short(), "refused a ticket: {e}");
                        JoinMessage::Denied {
                            reason: e.to_string(),
                        }
                    }
                }
            }
            Ok(_) => JoinMessage::Denied {
                reason: "expected a ticket".into(),
            },
            Err(e) => {
                tracing::warn!(peer = %peer.fmt_short(), "malformed join request: {e}");
                JoinMessage::Denied {
                    reason: "malformed request".into(),
                }
            }
        };
        if write_frame(&self.node.inner.traffic, &mut send, &answer)
            .await
            .is_ok()
        {
            let _ = send.finish();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.closed()).await;
        Ok(())
    }
}
