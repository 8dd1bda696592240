//! The relay: real `rapport up` and `rapport relay run` processes on
//! loopback.

mod common;

use std::time::Duration;

use common::{Node, eventually};
use serde_json::Value;

const SPACE: &str = "Acme field team";
const WAIT: Duration = Duration::from_secs(20);

fn field(n: &Node, id: &str, name: &str) -> Value {
    n.json(&["show", id])[name].clone()
}

/// A writes and goes offline; B comes online afterwards, and back; the
/// two never run at the same time, and converge through the relay, which
/// restarts in the middle.
#[test]
fn two_nodes_never_online_together_converge_through_a_relay() {
    let (a, b, r) = (Node::new(), Node::new(), Node::new());
    a.ok(&["init", "--name", "Ann", "--org", "Acme"]);
    b.ok(&["init", "--name", "Bo", "--org", "Acme"]);
    let mut na = a.start(&[]);
    let mut nr = r.start_relay(&[]);
    a.ok(&["space", "create", SPACE]);
    r.ok(&["space", "join", &a.ticket(SPACE, "relay")]);
    let mut nb = b.start(&[]);
    b.ok(&["space", "join", &a.ticket(SPACE, "writer")]);
    nb.stop();

    // A writes while B is away, then leaves.
    let acme = a.json(&["company", "add", "Acme", "--space", SPACE]);
    let acme = acme["id"].as_str().expect("id").to_string();
    let deal = a.json(&[
        "deal",
        "add",
        "Fleet",
        "--company",
        "Acme",
        "--space",
        SPACE,
    ]);
    let deal = deal["id"].as_str().expect("id").to_string();
    assert!(
        eventually(WAIT, || r.shows(&deal)),
        "the relay did not get A's records"
    );
    na.stop();

    // The relay restarts in the middle and keeps everything.
    nr.stop();
    let mut nr = r.start_relay(&[]);
    assert!(
        r.shows(&acme) && r.shows(&deal),
        "the relay lost records on restart"
    );
    let err = r.fails(&["edit", &acme, "--set", "industry=X"]);
    assert!(err.contains("relay"), "{err}");

    // B comes online with A away: it gets A's records from the relay.
    let mut nb = b.start(&[]);
    assert!(
        eventually(WAIT, || b.shows(&deal)),
        "B did not get A's records from the relay"
    );
    b.ok(&["edit", &acme, "--set", "industry=Logistics"]);
    assert!(eventually(WAIT, || field(&r, &acme, "industry") == "Logistics"));
    nb.stop();

    // A comes back with B away: it gets B's edit.
    nr.stop();
    let _nr = r.start_relay(&[]);
    let _na = a.start(&[]);
    assert!(
        eventually(WAIT, || field(&a, &acme, "industry") == "Logistics"),
        "A did not get B's edit from the relay"
    );
    let status = r.json(&["relay", "status"]);
    assert!(status["changes_stored"].as_u64() >= Some(4), "{status}");
    let text = r.ok(&["relay", "status"]);
    assert!(text.contains(SPACE) && text.contains("uptime"), "{text}");
}

/// A node that is not a member gets nothing from the relay: the same
/// refusal whether or not the space exists, and no records, ids or heads.
#[test]
fn a_non_member_gets_nothing_from_the_relay() {
    use rapport_proto::wire::{self, SyncMessage};

    let (a, r) = (Node::new(), Node::new());
    let _na = a.start(&[]);
    let _nr = r.start_relay(&[]);
    a.ok(&["space", "create", SPACE]);
    r.ok(&["space", "join", &a.ticket(SPACE, "relay")]);
    a.ok(&["company", "add", "Secret Account", "--space", SPACE]);
    let space_id = a.json(&["space", "list"])[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let space: rapport_model::RecordId = space_id.parse().expect("space id");
    let addr = common::endpoint_addr(&r.json(&["relay", "status"]));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let answers: Vec<SyncMessage> = runtime.block_on(async {
        let ep = common::bare_endpoint().await;
        let mut answers = Vec::new();
        for asked in [space.to_bytes(), [7u8; 16]] {
            let conn = ep
                .connect(addr.clone(), wire::SYNC_ALPN)
                .await
                .expect("connect");
            let (mut send, mut recv) = conn.open_bi().await.expect("stream");
            let frame = wire::encode_frame(&SyncMessage::Open { space: asked }).expect("frame");
            send.write_all(&frame).await.expect("write");
            let _ = send.finish();
            let bytes = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
                .await
                .expect("an answer")
                .expect("read");
            let len = wire::frame_len([bytes[0], bytes[1], bytes[2], bytes[3]]).expect("len");
            assert_eq!(bytes.len(), 4 + len, "more than one message came back");
            answers.push(wire::decode::<SyncMessage>(&bytes[4..]).expect("message"));
            conn.close(0u32.into(), b"bye");
        }
        ep.close().await;
        answers
    });
    assert_eq!(answers[0], answers[1], "the refusal tells the space exists");
    assert!(
        matches!(&answers[0], SyncMessage::Refused { .. }),
        "{:?}",
        answers[0]
    );
}

/// A relay with a small quota and rate: both trigger, say so in `relay
/// status`, and members still converge with the relay as the rate allows.
#[test]
fn the_relays_quota_and_rate_limit_trigger_with_clear_errors() {
    let (a, r) = (Node::new(), Node::new());
    let _na = a.start(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let _nr = r.start_relay(&["--quota", "6k", "--rate", "30", "--metrics", &metrics_addr]);
    a.ok(&["space", "create", SPACE]);
    r.ok(&["space", "join", &a.ticket(SPACE, "relay")]);
    for i in 0..40 {
        a.ok(&[
            "company",
            "add",
            &format!("Company number {i}"),
            "--space",
            SPACE,
            "--industry",
            "Manufacturing of many things",
        ]);
    }
    let limited = eventually(Duration::from_secs(30), || {
        let s = r.json(&["relay", "status"]);
        s["rate_limited"].as_u64() > Some(0) && s["over_quota"].as_u64() > Some(0)
    });
    let s = r.json(&["relay", "status"]);
    assert!(limited, "the limits did not trigger: {s}");
    let stored = s["spaces"]
        .as_object()
        .expect("spaces")
        .values()
        .next()
        .expect("space")["stored_bytes"]
        .as_u64()
        .expect("bytes");
    assert!(
        stored <= 6 * 1024 + 2048,
        "the relay stored {stored} bytes, over its quota"
    );
    let text = r.ok(&["relay", "status"]);
    assert!(
        text.contains("over a peer's rate") && text.contains("over a quota"),
        "{text}"
    );
    let last = s["last_limit"].as_str().unwrap_or_default();
    assert!(
        last.contains("storage quota") || last.contains("rate limit"),
        "{last}"
    );
    // Prometheus sees the same counts.
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&metrics_addr).expect("metrics endpoint");
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut page = String::new();
    conn.read_to_string(&mut page).expect("response");
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    let count = |name: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(count("rapport_over_quota_total") > 0.0, "{page}");
    assert!(count("rapport_rate_limited_total") > 0.0, "{page}");
    assert!(
        page.contains("# TYPE rapport_changes_stored gauge"),
        "{page}"
    );
}

/// Two nodes that know no address of each other, only the iroh relay that
/// `rapport relay run --iroh-relay` runs: they still join and sync.
#[test]
fn nodes_reach_each_other_through_the_relays_iroh_relay_server() {
    use rapport_proto::wire::Ticket;

    let (a, b, r) = (Node::new(), Node::new(), Node::new());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _nr = r.start_relay(&["--iroh-relay", &format!("127.0.0.1:{port}")]);
    let url = format!("http://127.0.0.1:{port}");
    let _na = a.start(&["--relay", &url]);
    let _nb = b.start(&["--relay", &url]);
    a.ok(&["space", "create", SPACE]);
    let acme = a.json(&["company", "add", "Acme", "--space", SPACE]);
    let acme = acme["id"].as_str().expect("id").to_string();

    // A ticket that names only A's id and the relay URL: no address.
    let mut stripped = None;
    assert!(
        eventually(WAIT, || {
            let t = Ticket::decode(&a.ticket(SPACE, "writer")).expect("ticket");
            let usable = t.relay.is_some();
            stripped = Some(Ticket {
                addrs: Vec::new(),
                ..t
            });
            usable
        }),
        "A never connected to the iroh relay"
    );
    let stripped = stripped.expect("ticket").encode();
    b.ok(&["space", "join", &stripped]);
    assert!(
        eventually(WAIT, || b.shows(&acme)),
        "B did not get A's record through the iroh relay"
    );
}
