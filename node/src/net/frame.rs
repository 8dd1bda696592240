//! Length-prefixed postcard frames on QUIC streams, counted, with a read
//! timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iroh::endpoint::{RecvStream, SendStream};
use rapport_proto::wire;
use serde::Serialize;

/// How long one read on a stream may wait before the session is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of Rapport frames sent and received (QUIC overhead excluded), and
/// frames refused as malformed or oversized.
#[derive(Debug, Default)]
pub(super) struct Traffic {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) refused_frames: AtomicU64,
    /// Sessions turned away: their peer already had as many as it may.
    pub(super) turned_away: AtomicU64,
}

/// Why reading a frame failed.
#[derive(Debug)]
pub(super) enum FrameError {
    /// The connection broke or the peer went quiet.
    Io(String),
    /// The peer sent an oversized or malformed frame: refused and counted.
    Refused(wire::WireError),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => f.write_str(e),
            FrameError::Refused(e) => write!(f, "refused a frame: {e}"),
        }
    }
}

pub(super) async fn write_frame<T: Serialize>(
    traffic: &Traffic,
    send: &mut SendStream,
    msg: &T,
) -> Result<(), String> {
    let frame = wire::encode_frame(msg).map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    traffic
        .sent
        .fetch_add(frame.len() as u64, Ordering::Relaxed);
    Ok(())
}

pub(super) async fn read_frame<T: serde::de::DeserializeOwned>(
    traffic: &Traffic,
    recv: &mut RecvStream,
) -> Result<T, FrameError> {
    let read = async {
        let mut len = [0u8; 4];
        recv.read_exact(&mut len)
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        let len = wire::frame_len(len).map_err(FrameError::Refused)?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body)
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        traffic
            .received
            .fetch_add(4 + len as u64, Ordering::Relaxed);
        wire::decode::<T>(&body).map_err(FrameError::Refused)
    };
    let result = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| FrameError::Io("timed out waiting for the peer".into()))?;
    if let Err(FrameError::Refused(e)) = &result {
        traffic.refused_frames.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("refused a frame from a peer: {e}");
    }
    result
}
