//! Real nodes on loopback sharing a space: convergence of concurrent
//! edits, catch-up after a restart, privacy of the private space, and
//! rejection of forged changes by every node.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Node, Running, dir_contains, eventually};
use serde_json::Value;

const SPACE: &str = "Acme ↔ Northwind";
const WAIT: Duration = Duration::from_secs(20);

fn ticket(from: &Node) -> String {
    ticket_as(from, "writer")
}

fn ticket_as(from: &Node, role: &str) -> String {
    from.json(&["space", "invite", SPACE, "--role", role])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string()
}

/// The hashes of every change of a record, as its timeline lists them.
fn change_set(n: &Node, record: &str) -> BTreeSet<String> {
    let t = n.json(&["timeline", record]);
    t.as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["hash"].as_str().map(str::to_string))
        .collect()
}

/// Creates the space on `a` with company Acme in it; Acme's JSON.
fn shared_acme(a: &Node) -> Value {
    a.ok(&["space", "create", SPACE]);
    a.json(&["company", "add", "Acme", "--space", SPACE])
}

fn show(n: &Node, record: &str) -> Value {
    let mut v = n.json(&["show", record]);
    if let Some(o) = v.as_object_mut() {
        o.remove("updated");
    }
    v
}

#[test]
fn three_nodes_converge_on_concurrent_edits_and_catch_up_after_restart() {
    let (a, b, c) = (Node::new(), Node::new(), Node::new());
    let mut na = a.start(&[]);
    let _nb = b.start(&[]);
    let mut nc = c.start(&[]);
    let acme = shared_acme(&a);
    let id = acme["id"].as_str().expect("id").to_string();
    b.ok(&["space", "join", &ticket(&a)]);
    c.ok(&["space", "join", &ticket(&a)]);
    for n in [&b, &c] {
        assert!(
            eventually(WAIT, || n.run(&["show", &id]).status.success()),
            "Acme did not arrive"
        );
    }

    // Live: an edit on one node shows on the others.
    b.ok(&["edit", &id, "--set", "industry=Steel"]);
    for n in [&a, &c] {
        assert!(
            eventually(WAIT, || show(n, &id)["industry"] == "Steel"),
            "a live edit did not arrive"
        );
    }

    // Concurrent: stop A and C, edit offline (different fields, and the
    // same field), edit on B meanwhile, then restart.
    na.stop();
    nc.stop();
    a.ok(&[
        "edit",
        &id,
        "--set",
        "owner=Ann",
        "--set",
        "domain=acme.com",
    ]);
    c.ok(&[
        "edit",
        &id,
        "--set",
        "owner=Cara",
        "--set",
        "phone=+1 555 0100",
    ]);
    b.ok(&["edit", &id, "--set", "address=1 Main St"]);
    let _na = a.start(&[]);
    let _nc = c.start(&[]);

    let converged = eventually(Duration::from_secs(40), || {
        let sets = [
            change_set(&a, &id),
            change_set(&b, &id),
            change_set(&c, &id),
        ];
        sets[0].len() == 5 && sets[0] == sets[1] && sets[1] == sets[2]
    });
    assert!(converged, "the three nodes did not reach the same changes");
    let views = [show(&a, &id), show(&b, &id), show(&c, &id)];
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    let v = &views[0];
    assert_eq!(v["domain"], "acme.com");
    assert_eq!(v["phone"], "+1 555 0100");
    assert_eq!(v["address"], "1 Main St");
    assert_eq!(v["industry"], "Steel");
    let owners = v["conflicts"]["owner"]
        .as_array()
        .expect("a visible conflict on owner");
    assert_eq!(owners.len(), 2);
    assert!(owners.contains(&Value::from("Ann")) && owners.contains(&Value::from("Cara")));
}

#[test]
fn private_records_never_reach_another_node() {
    let (a, b) = (Node::new(), Node::new());
    let _na = a.start(&[]);
    let mut nb = b.start(&[]);
    a.ok(&["company", "add", "Zyxwv Private Holdings"]);
    a.ok(&["space", "create", SPACE]);
    a.ok(&["company", "add", "Shared Corp", "--space", SPACE]);
    b.ok(&["space", "join", &ticket(&a)]);
    assert!(eventually(WAIT, || b
        .run(&["show", "Shared Corp"])
        .status
        .success()));
    std::thread::sleep(Duration::from_secs(2)); // a few more sync rounds
    nb.stop();

    // Not in B's records, nor anywhere in B's files.
    let names: Vec<String> = b
        .snapshot()
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["Shared Corp"]);
    let needle = b"Zyxwv Private";
    assert!(
        dir_contains(&a.dir, needle),
        "the check must see the record in A's files"
    );
    assert!(
        !dir_contains(&b.dir, needle),
        "a private record reached B's store"
    );
}

#[test]
fn forged_changes_are_rejected_by_every_node() {
    let (a, b, m) = (Node::new(), Node::new(), Node::new());
    let _na = a.start(&[]);
    let _nb = b.start(&[]);
    let acme = shared_acme(&a);
    let id = acme["id"].as_str().expect("id").to_string();
    b.ok(&["space", "join", &ticket_as(&a, "admin")]);
    assert!(eventually(WAIT, || b.run(&["show", &id]).status.success()));

    // Mallory joins honestly (through both nodes, to learn their
    // addresses), then forges: a change with a broken signature.
    m.ok(&["init", "--name", "Mallory"]);
    let mut nm = m.start(&[]);
    m.ok(&["space", "join", &ticket(&a)]);
    m.ok(&["space", "join", &ticket(&b)]);
    assert!(eventually(WAIT, || m.run(&["show", &id]).status.success()));
    nm.stop();
    common::write_as_modified_client(&m.dir, &id, "name", "Hacked", true);
    let _nm = m.start(&[]);

    let rejected_everywhere = eventually(Duration::from_secs(30), || {
        [&a, &b].iter().all(|n| {
            let s = n.json(&["status"]);
            s["spaces"].as_object().is_some_and(|spaces| {
                spaces
                    .values()
                    .any(|sp| sp["rejected"].as_u64().unwrap_or(0) >= 1)
            })
        })
    });
    assert!(
        rejected_everywhere,
        "a node did not reject the forged change"
    );
    for n in [&a, &b] {
        assert_eq!(show(n, &id)["name"], "Acme", "a forged change was applied");
    }
}

#[test]
fn oversized_and_malformed_frames_are_refused_and_the_node_keeps_serving() {
    let (a, b) = (Node::new(), Node::new());
    let _na = a.start(&[]);
    let _nb = b.start(&[]);
    let acme = shared_acme(&a);
    let id = acme["id"].as_str().expect("id").to_string();
    b.ok(&["space", "join", &ticket(&a)]);
    let addr = common::endpoint_addr(&a.json(&["status"]));

    // A hostile peer: a length prefix of 4 GiB, then a frame of garbage.
    let mut oversized = u32::MAX.to_be_bytes().to_vec();
    oversized.extend_from_slice(b"junk");
    let mut malformed = 5u32.to_be_bytes().to_vec();
    malformed.extend_from_slice(&[0xff; 5]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let ep = common::bare_endpoint().await;
        for payload in [&oversized, &malformed] {
            let conn = ep
                .connect(addr.clone(), rapport_proto::wire::SYNC_ALPN)
                .await
                .expect("connect");
            let (mut send, mut recv) = conn.open_bi().await.expect("stream");
            send.write_all(payload).await.expect("write");
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await;
            conn.close(0u32.into(), b"bye");
        }
        ep.close().await;
    });
    assert!(
        eventually(WAIT, || a.json(&["status"])["refused_frames"].as_u64()
            >= Some(2)),
        "the refused frames were not counted"
    );
    // The node still serves its members.
    b.ok(&["edit", &id, "--set", "industry=Steel"]);
    assert!(eventually(WAIT, || show(&a, &id)["industry"] == "Steel"));
}

/// A member's device that floods a node with catch-up sessions (a
/// modified client holding a real member key) gets a few served and the
/// rest turned away, while another member's edit still arrives at once.
#[test]
fn a_member_flooding_sessions_is_turned_away_and_others_keep_syncing() {
    use rapport_node::net::MAX_SESSIONS_PER_PEER;
    use rapport_proto::wire::{self, SyncMessage};

    let (a, b, m) = (Node::new(), Node::new(), Node::new());
    let _na = a.start(&[]);
    let _nb = b.start(&[]);
    let acme = shared_acme(&a);
    let id = acme["id"].as_str().expect("id").to_string();
    let space: rapport_model::RecordId = acme["space"]
        .as_str()
        .expect("space")
        .parse()
        .expect("space id");
    b.ok(&["space", "join", &ticket(&a)]);
    m.ok(&["init", "--name", "Mallory"]);
    let mut nm = m.start(&[]);
    m.ok(&["space", "join", &ticket(&a)]);
    assert!(eventually(WAIT, || m.run(&["show", &id]).status.success()));
    nm.stop();

    let secret: [u8; 32] = std::fs::read(m.dir.join("device.key"))
        .expect("key")
        .try_into()
        .expect("32 bytes");
    let addr = common::endpoint_addr(&a.json(&["status"]));
    let open = wire::encode_frame(&SyncMessage::Open {
        space: space.to_bytes(),
    })
    .expect("frame");
    const FLOOD: usize = 40;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let busy = runtime.block_on(async {
        let ep = iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
            .secret_key(iroh::SecretKey::from_bytes(&secret))
            .clear_ip_transports()
            .bind_addr("127.0.0.1:0")
            .expect("addr")
            .bind()
            .await
            .expect("bind");
        let conn = ep
            .connect(addr, rapport_proto::wire::SYNC_ALPN)
            .await
            .expect("connect");
        // Open sessions and never finish them: each would hold the node
        // until its read timeout.
        let mut streams = Vec::new();
        for _ in 0..FLOOD {
            let (mut send, recv) = conn.open_bi().await.expect("stream");
            send.write_all(&open).await.expect("write");
            streams.push((send, recv));
        }
        let mut busy = 0;
        for (_, recv) in &mut streams {
            let mut len = [0u8; 4];
            let answer =
                tokio::time::timeout(Duration::from_secs(2), recv.read_exact(&mut len)).await;
            if let Ok(Ok(())) = answer {
                let mut body = vec![0u8; wire::frame_len(len).expect("length")];
                recv.read_exact(&mut body).await.expect("body");
                if let Ok(SyncMessage::Refused { reason }) = wire::decode(&body) {
                    assert!(reason.contains("busy"), "{reason}");
                    busy += 1;
                }
            }
        }
        // While the flood holds its sessions open, B's edit reaches A.
        b.ok(&["edit", &id, "--set", "industry=Steel"]);
        assert!(
            eventually(WAIT, || show(&a, &id)["industry"] == "Steel"),
            "a flood from one member stopped another member's edit"
        );
        drop(streams);
        conn.close(0u32.into(), b"bye");
        ep.close().await;
        busy
    });
    assert!(
        busy >= FLOOD - MAX_SESSIONS_PER_PEER,
        "only {busy} of {FLOOD} flooding sessions were turned away"
    );
    let turned_away = a.json(&["status"])["sessions_turned_away"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        turned_away >= (FLOOD - MAX_SESSIONS_PER_PEER) as u64,
        "status shows {turned_away}"
    );
}

/// Two running nodes whose users are `a_name` and `b_name`, B started
/// with `b_extra`, sharing the space A made.
fn users_sharing(a_name: &str, b_name: &str, b_extra: &[&str]) -> (Node, Node, [Running; 2]) {
    let (a, b) = (Node::new(), Node::new());
    a.ok(&["init", "--name", a_name]);
    b.ok(&["init", "--name", b_name]);
    let running = [a.start(&[]), b.start(b_extra)];
    a.ok(&["space", "create", SPACE]);
    b.ok(&["space", "join", &ticket(&a)]);
    (a, b, running)
}

/// Issue 19's two-node test: a repeating meeting made on A for Ben shows
/// in Ben's agenda on B, and in the calendar feed Ben subscribes to on B
/// (served by B's HTTP API, read over a real socket).
#[test]
fn a_meeting_made_on_one_node_is_in_the_agenda_and_the_feed_of_the_other() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (a, b, _running) =
        users_sharing("Ann", "Ben", &["--api-bind", &format!("127.0.0.1:{port}")]);
    a.ok(&[
        "activity",
        "add",
        "meeting",
        "--space",
        SPACE,
        "--subject",
        "Joint review",
        "--when",
        "2026-06-01T09:00:00Z",
        "--ends",
        "2026-06-01T10:00:00Z",
        "--repeat",
        "weekly",
        "--owner",
        "Ben",
    ]);
    let on_b = || {
        let agenda = b.json(&["agenda", "--from", "2026-06-08", "--zone", "UTC"]);
        agenda["entries"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["title"] == "Joint review" && e["start"] == "09:00")
        })
    };
    assert!(
        eventually(WAIT, on_b),
        "the meeting never reached B's agenda"
    );

    let made = b.json(&["calendar", "feed", "create", "phone"]);
    let url = made["url"].as_str().expect("url");
    let path = &url[url.find("/api/").expect("a path")..];
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("B's HTTP API");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("SUMMARY:Joint review\r\n"), "{raw}");
    assert!(raw.contains("RRULE:FREQ=WEEKLY\r\n"), "{raw}");
}

/// Two devices of one user: a reminder dismissed on one is dismissed on
/// the other once they sync (the dismissal is a signed edit of the record).
#[test]
fn a_reminder_dismissed_on_one_device_is_dismissed_on_the_other() {
    let (a, b, _running) = users_sharing("Ben", "Ben", &[]);
    let soon = jiff::Timestamp::now()
        .checked_add(jiff::Span::new().minutes(10))
        .expect("soon")
        .to_string();
    a.ok(&[
        "activity",
        "add",
        "meeting",
        "--space",
        SPACE,
        "--subject",
        "Pricing call",
        "--when",
        &soon,
        "--remind",
        "15m",
        "--owner",
        "Ben",
    ]);
    let reminded = |n: &Node| {
        n.json(&["agenda"])["reminders"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["title"] == "Pricing call"))
    };
    assert!(reminded(&a), "A has no reminder");
    assert!(
        eventually(WAIT, || reminded(&b)),
        "the reminder never reached B"
    );
    a.ok(&["agenda", "--dismiss", "Pricing call"]);
    assert!(!reminded(&a));
    assert!(
        eventually(WAIT, || !reminded(&b)),
        "B still shows the dismissed reminder"
    );
}
