//! Forwarding a command to the running node over its local API: a small
//! HTTP/1.1 client on a loopback TCP socket (no HTTP library needed for
//! one request to 127.0.0.1).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rapport_node::api::read_info;
use rapport_node::ops::{OpError, Reply, Request};

/// Runs `request` on the node running on `dir`, if one answers.
/// `Ok(None)` means no node runs (or a stale `api.json` was left behind).
pub fn op(dir: &Path, request: &Request) -> Result<Option<Result<Reply, OpError>>> {
    let body = serde_json::to_vec(request)?;
    let Some((status, payload)) = post(dir, "/v1/op", &body)? else {
        return Ok(None);
    };
    if status == "200" {
        let reply =
            serde_json::from_slice(&payload).context("the running node sent a malformed answer")?;
        return Ok(Some(Ok(reply)));
    }
    match serde_json::from_slice::<OpError>(&payload) {
        Ok(e) => Ok(Some(Err(e))),
        Err(_) => bail!("the running node answered HTTP {status}"),
    }
}

/// Whether a node answers on `dir`'s local API.
pub fn node_running(dir: &Path) -> bool {
    read_info(dir)
        .is_some_and(|info| TcpStream::connect_timeout(&info.addr, Duration::from_secs(1)).is_ok())
}

/// Asks the node running on `dir` for a one-time login link into its web
/// UI: `Ok(None)` when no node runs.
pub fn login_link(dir: &Path) -> Result<Option<String>> {
    let Some((status, payload)) = post(dir, "/v1/login-link", b"")? else {
        return Ok(None);
    };
    if status == "404" {
        bail!("the running node serves no web UI (it was started with --no-ui, or is a relay)");
    }
    if status != "200" {
        bail!("the running node answered HTTP {status}");
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&payload).context("the running node sent a malformed answer")?;
    let link = answer["login"]
        .as_str()
        .context("the running node sent no login link")?;
    Ok(Some(link.to_string()))
}

/// POSTs `body` to `path` of the local API of the node running on `dir`:
/// the status and the body of the answer.
fn post(dir: &Path, path: &str, body: &[u8]) -> Result<Option<(String, Vec<u8>)>> {
    let Some(info) = read_info(dir) else {
        return Ok(None);
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&info.addr, Duration::from_secs(2)) else {
        return Ok(None);
    };
    // Long commands (joining over the network, big exports) may take a while.
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        info.addr,
        info.token,
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .context("the running node closed the connection")?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the running node sent a malformed answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut payload = raw[split + 4..].to_vec();
    let status = head.split_whitespace().nth(1).unwrap_or("").to_string();
    if status == "401" {
        bail!("the running node refused our token; is api.json from another node?");
    }
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload)?;
    }
    Ok(Some((status.to_string(), payload)))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("malformed chunked answer")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunked answer");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
