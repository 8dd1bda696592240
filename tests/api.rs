//! The HTTP API as an outside program uses it: a real `rapport up` on
//! loopback, tokens made with the CLI, then HTTP only (a small client
//! here, no Rapport code): records, filters and pages, timelines that
//! name the token, the event stream, a signed webhook that is retried,
//! read-only and space-limited tokens, bad input.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Node, eventually};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// An answer: status, headers (lower-case names), body as JSON (or null).
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Value,
}

fn request(
    api: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    s.write_all(body.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut payload = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        payload = dechunk(&payload);
    }
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&payload).unwrap_or(Value::Null),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]).to_string();
        let size = usize::from_str_radix(size_text.trim(), 16).unwrap_or(0);
        data = &data[end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// Server-sent events as `(event, id, data)`, read on a thread.
fn follow_events(api: SocketAddr, token: &str) -> mpsc::Receiver<(String, String, Value)> {
    let (tx, rx) = mpsc::channel();
    let mut s = TcpStream::connect(api).expect("connect");
    write!(
        s,
        "GET /api/v1/events HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("send");
    std::thread::spawn(move || {
        let mut reader = BufReader::new(s);
        let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            // Chunk sizes of the chunked body come as lines of their own.
            let l = line.trim_end().to_string();
            line.clear();
            if l == "0" {
                // The chunked body's last chunk: the server ended the stream.
                return;
            }
            if let Some(v) = l.strip_prefix("event: ").or(l.strip_prefix("event:")) {
                event = v.to_string();
            } else if let Some(v) = l.strip_prefix("id: ").or(l.strip_prefix("id:")) {
                id = v.to_string();
            } else if let Some(v) = l.strip_prefix("data: ").or(l.strip_prefix("data:")) {
                data.push_str(v);
            } else if l.is_empty() && !data.is_empty() {
                let value = serde_json::from_str(&data).unwrap_or(Value::Null);
                if tx.send((event.clone(), id.clone(), value)).is_err() {
                    return;
                }
                event.clear();
                id.clear();
                data.clear();
            }
        }
    });
    rx
}

/// One webhook delivery as received: headers and raw body.
struct Hook {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A loopback HTTP server that answers 500 to the first request and 200
/// after, and hands every request over.
fn webhook_receiver() -> (SocketAddr, mpsc::Receiver<Hook>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = BTreeMap::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let status = if served == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            served += 1;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if tx.send(Hook { headers, body }).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn next_matching(
    rx: &mpsc::Receiver<(String, String, Value)>,
    what: impl Fn(&str, &Value) -> bool,
) -> (String, String, Value) {
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((event, id, data)) if what(&event, &data) => return (event, id, data),
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    panic!("no such event within {WAIT:?}")
}

#[test]
fn an_integration_works_over_http_alone() {
    let node = Node::new();
    node.ok(&["init", "--name", "Dana", "--org", "Acme"]);
    node.ok(&["space", "create", "Joint"]);
    let token = |args: &[&str]| -> String {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        node.json(&all)["secret"]
            .as_str()
            .expect("a token once")
            .to_string()
    };
    let crm = token(&["crm"]);
    let reader = token(&["dashboard", "--read-only"]);
    let partner = token(&["partner", "--space", "Joint"]);
    let list = node.json(&["token", "list"]);
    assert_eq!(list["tokens"].as_array().map(Vec::len), Some(3));
    assert!(
        !list.to_string().contains(&crm),
        "a token is never shown again"
    );

    let (hook_addr, hooks) = webhook_receiver();
    let added = node.json(&[
        "webhook",
        "add",
        &format!("http://{hook_addr}/hooks/rapport"),
        "--events",
        "record.created,deal.stage_changed",
    ]);
    let hook_secret = added["secret"].as_str().expect("secret").to_string();
    let hook_id = added["webhook"]["id"].as_str().expect("id").to_string();

    let api = free_port();
    let _running = node.start(&["--no-ui", "--api-bind", &api.to_string()]);
    assert!(
        eventually(WAIT, || TcpStream::connect(api).is_ok()),
        "the API did not start"
    );
    let call = |method: &str, path: &str, token: &str, body: Option<Value>| {
        request(
            api,
            method,
            path,
            Some(token),
            &[],
            body.map(|b| b.to_string()).as_deref(),
        )
    };

    // No token, a wrong token.
    assert_eq!(
        request(api, "GET", "/api/v1/status", None, &[], None).status,
        401
    );
    assert_eq!(
        call("GET", "/api/v1/status", "rapport_nope", None).status,
        401
    );

    let events = follow_events(api, &crm);
    // The stream is open before anything is written below.
    std::thread::sleep(Duration::from_millis(300));

    // Create a company and a person who works there.
    let acme = call(
        "POST",
        "/api/v1/records",
        &crm,
        Some(json!({"kind": "company", "fields": {"name": "Acme", "tags": ["key", "emea"]}})),
    );
    assert_eq!(acme.status, 201, "{}", acme.body);
    let acme_id = acme.body["record"]["id"].as_str().expect("id").to_string();
    assert_eq!(
        acme.headers.get("location"),
        Some(&format!("/api/v1/records/{acme_id}"))
    );
    let person = call(
        "POST",
        "/api/v1/records",
        &crm,
        Some(json!({"kind": "person", "fields": {
            "name": "Kim Lee", "company": acme_id, "emails": ["kim@acme.example"]
        }})),
    );
    assert_eq!(person.status, 201, "{}", person.body);
    assert_eq!(person.body["record"]["company"], acme_id);
    let globex = call(
        "POST",
        "/api/v1/records",
        &crm,
        Some(json!({"kind": "company", "fields": {"name": "Globex"}})),
    );
    assert_eq!(globex.status, 201);

    // Read, then patch with the version read.
    let read = call("GET", &format!("/api/v1/records/{acme_id}"), &crm, None);
    assert_eq!(
        (read.status, read.body["name"].as_str()),
        (200, Some("Acme"))
    );
    let etag = read.headers.get("etag").expect("an ETag").clone();
    let patched = request(
        api,
        "PATCH",
        &format!("/api/v1/records/{acme_id}"),
        Some(&crm),
        &[("If-Match", &etag)],
        Some(&json!({"set": {"industry": "Steel"}}).to_string()),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["record"]["industry"], "Steel");
    assert_eq!(patched.body["changed_meanwhile"], json!([]));
    assert_ne!(patched.headers.get("etag"), Some(&etag));

    // A filter, and pages of one followed by their cursor.
    let people = call(
        "GET",
        &format!("/api/v1/records?kind=person&company={acme_id}"),
        &crm,
        None,
    );
    assert_eq!(people.body["total"], 1, "{}", people.body);
    assert_eq!(people.body["records"][0]["name"], "Kim Lee");
    let first = call("GET", "/api/v1/records?kind=company&limit=1", &crm, None);
    assert_eq!(first.body["total"], 2);
    assert_eq!(first.body["records"][0]["name"], "Acme");
    let link = first.headers.get("link").expect("a Link header");
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(url, _)| url.to_string())
        .expect("rel=next");
    let second = call("GET", &next, &crm, None);
    assert_eq!(second.body["records"][0]["name"], "Globex");
    assert!(second.body.get("next").is_none() && !second.headers.contains_key("link"));

    // The timeline names the token.
    let timeline = call(
        "GET",
        &format!("/api/v1/records/{acme_id}/timeline"),
        &crm,
        None,
    );
    assert_eq!(timeline.status, 200);
    let changes: Vec<&Value> = timeline.body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["type"] == "change")
        .collect();
    assert_eq!(changes.len(), 2);
    assert!(
        changes
            .iter()
            .all(|c| c["via"] == "crm" && c["verified"] == true)
    );

    // The change on the event stream.
    let (_, cursor, data) = next_matching(&events, |event, data| {
        event == "record.changed" && data["id"] == acme_id
    });
    assert_eq!(data["record"]["industry"], "Steel");
    assert_eq!(data["cursor"], cursor);

    // A signed webhook: refused once (500), delivered on the retry.
    let first_try = hooks.recv_timeout(WAIT).expect("a delivery");
    let retry = hooks.recv_timeout(WAIT).expect("a retry after the 500");
    assert_eq!(first_try.body, retry.body, "the same event is sent again");
    let timestamp = retry
        .headers
        .get("x-rapport-timestamp")
        .expect("a timestamp")
        .clone();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(hook_secret.as_bytes()).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&retry.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        retry.headers.get("x-rapport-signature"),
        Some(&format!("sha256={expected}"))
    );
    assert_eq!(
        retry.headers.get("x-rapport-event").map(String::as_str),
        Some("record.created")
    );
    let delivered: Value = serde_json::from_slice(&retry.body).expect("json");
    assert_eq!(delivered["type"], "record.created");
    assert_eq!(delivered["id"], acme_id);
    let log = node.json(&["webhook", "log", &hook_id]);
    let attempts = log["deliveries"].as_array().expect("log");
    assert!(attempts.len() >= 2, "{log}");
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[0]["ok"], false);
    assert_eq!(
        (attempts[1]["attempt"].as_u64(), attempts[1]["ok"].as_bool()),
        (Some(2), Some(true))
    );

    // A read-only token reads, and may not write.
    assert_eq!(
        call("GET", &format!("/api/v1/records/{acme_id}"), &reader, None).status,
        200
    );
    let refused = call(
        "POST",
        "/api/v1/records",
        &reader,
        Some(json!({"kind": "company", "fields": {"name": "Initech"}})),
    );
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        refused.headers.get("content-type").map(String::as_str),
        Some("application/problem+json")
    );

    // A token limited to the shared space cannot see the private records.
    let hidden = call("GET", &format!("/api/v1/records/{acme_id}"), &partner, None);
    assert_eq!(hidden.status, 404);
    let partner_list = call("GET", "/api/v1/records?kind=company", &partner, None);
    assert_eq!(partner_list.body["total"], 0);

    // Bad JSON: a problem body, and nothing written.
    let bad = request(
        api,
        "POST",
        "/api/v1/records",
        Some(&crm),
        &[],
        Some("{\"kind\": \"company\", \"fields\": {\"name\": "),
    );
    assert_eq!(
        (bad.status, bad.body["code"].as_str()),
        (400, Some("malformed"))
    );
    assert_eq!(bad.body["status"], 400);
    assert!(bad.body["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(
        call("GET", "/api/v1/records?kind=company", &crm, None).body["total"],
        2,
        "nothing was written"
    );

    // A revoked token is refused at once, and its open event stream ends.
    let open_stream = follow_events(api, &reader);
    node.ok(&["token", "revoke", "dashboard"]);
    assert_eq!(call("GET", "/api/v1/status", &reader, None).status, 401);
    let ended = Instant::now();
    loop {
        match open_stream.recv_timeout(Duration::from_secs(20)) {
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the revoked token's event stream is still open after 20 s")
            }
        }
    }
    assert!(ended.elapsed() < Duration::from_secs(20));
}
