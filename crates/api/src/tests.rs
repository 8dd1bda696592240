//! The router in process, over a store opened for the test (no network).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request as HttpRequest, StatusCode, header};
use rapport_node::ops::{Caller, Ops, Reply, Request};
use rapport_node::{OpenMode, Repo};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    ops: Ops,
    router: axum::Router,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = Arc::new(Repo::open(&tmp.path().join("data"), OpenMode::Create).expect("open"));
    let ops = Ops::local(repo);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let router = routes::router(
        routes::AppState {
            ops: ops.clone(),
            stopping,
        },
        4096,
    );
    Fixture {
        _tmp: tmp,
        ops,
        router,
        _stop: stop,
    }
}

impl Fixture {
    fn token(&self, name: &str, read_only: bool) -> String {
        let reply = self
            .ops
            .execute(
                &Caller::user(),
                Request::TokenCreate {
                    name: name.into(),
                    read_only,
                    space: None,
                },
            )
            .expect("token");
        let Reply::Token(t) = reply else {
            panic!("not a token: {reply:?}")
        };
        t.secret.expect("secret")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = HttpRequest::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        let res = self.router.clone().oneshot(req).await.expect("answer");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    /// The private space's schema as the API gives it to `token`'s
    /// holder, and the entry of `kind` in it.
    async fn schema_kind(&self, token: &str, kind: &str) -> (Value, Value) {
        let (status, _, v) = self
            .send(
                Method::GET,
                "/api/v1/spaces/private/schema",
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let entry = v["kinds"]
            .as_array()
            .expect("kinds")
            .iter()
            .find(|k| k["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no kind {kind} in {v}"));
        (v, entry)
    }

    fn records(&self) -> usize {
        let reply = self
            .ops
            .execute(&Caller::user(), Request::Export { kind: None })
            .expect("export");
        match reply {
            Reply::Export { records } => records.len(),
            other => panic!("{other:?}"),
        }
    }
}

/// `(METHOD, /path)` of every operation in the document.
fn documented() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(openapi()).expect("json");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[tokio::test]
async fn every_route_served_is_documented_and_every_documented_route_is_served() {
    let served: BTreeSet<(String, String)> = routes::routes()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(served, documented());

    // And the router really answers each of them (not with its fallback),
    // so the list above is what it serves.
    let f = fixture();
    let token = f.token("probe", false);
    for (method, path) in &served {
        let concrete = path.replace("{id}", "nothing-here");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let body = matches!(method, Method::POST | Method::PATCH).then_some("{}");
        let (status, _, v) = f.send(method.clone(), &concrete, Some(&token), body).await;
        assert!(
            v["code"] != "no_route" && v["code"] != "method_not_allowed",
            "{method} {path} fell through to the fallback: {status} {v}"
        );
    }
    let (status, _, v) = f
        .send(Method::GET, "/api/v1/nothing", Some(&token), None)
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_route"))
    );
    let (status, _, _) = f
        .send(Method::PUT, "/api/v1/records", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn the_document_is_openapi_3_1_with_bearer_auth() {
    let doc: Value = serde_json::from_str(&openapi_json()).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["Record"].is_object());
}

/// `RAPPORT_OPENAPI_OUT=FILE` writes the document for an outside
/// validator (`.ci/run`).
#[test]
fn write_the_document_when_asked() {
    if let Some(path) = std::env::var_os("RAPPORT_OPENAPI_OUT") {
        std::fs::write(path, openapi_json()).expect("write the OpenAPI document");
    }
}

#[tokio::test]
async fn no_token_or_a_bad_one_is_401() {
    let f = fixture();
    let (status, headers, v) = f.send(Method::GET, "/api/v1/spaces", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::CONTENT_TYPE], problem::CONTENT_TYPE);
    assert_eq!(v["code"], "unauthorized");
    let (status, _, _) = f
        .send(Method::GET, "/api/v1/spaces", Some("rapport_guess"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The document is public.
    let (status, _, _) = f
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_writes_nothing() {
    let f = fixture();
    let token = f.token("forms", false);
    let cases = [
        ("{not json", StatusCode::BAD_REQUEST, "malformed"),
        (
            r#"{"kind": "company"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            r#"{"kind": "spaceship", "fields": {"name": "X"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            r#"{"kind": "company", "fields": {"name": "X", "colour": "red"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            r#"{"kind": "company", "fields": {"name": "X"}, "extra": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            r#"{"kind": "person", "fields": {"name": "Y", "emails": ["not-an-address"]}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
    ];
    for (body, status, code) in cases {
        let (got, headers, v) = f
            .send(Method::POST, "/api/v1/records", Some(&token), Some(body))
            .await;
        assert_eq!(
            (got, v["code"].as_str()),
            (status, Some(code)),
            "{body}: {v}"
        );
        assert_eq!(headers[header::CONTENT_TYPE], problem::CONTENT_TYPE);
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let (_, _, v) = f
        .send(
            Method::POST,
            "/api/v1/records",
            Some(&token),
            Some(r#"{"kind": "company", "fields": {"name": "X", "colour": "red"}}"#),
        )
        .await;
    assert_eq!(v["errors"][0]["field"], "colour");
    let big = format!(
        r#"{{"kind": "company", "fields": {{"name": "{}"}}}}"#,
        "x".repeat(8000)
    );
    let (status, _, v) = f
        .send(Method::POST, "/api/v1/records", Some(&token), Some(&big))
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );
    assert_eq!(f.records(), 0, "nothing may be written");
}

#[tokio::test]
async fn a_read_only_token_reads_but_may_not_write() {
    let f = fixture();
    let writer = f.token("writer", false);
    let reader = f.token("reader", true);
    let (status, headers, v) = f
        .send(
            Method::POST,
            "/api/v1/records",
            Some(&writer),
            Some(r#"{"kind": "company", "fields": {"name": "Acme", "tags": ["a", "b"]}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["record"]["id"].as_str().expect("id").to_string();
    assert_eq!(v["record"]["tags"], json!(["a", "b"]));
    assert!(headers.contains_key(header::ETAG));
    let (status, _, v) = f
        .send(
            Method::GET,
            &format!("/api/v1/records/{id}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!((status, v["name"].as_str()), (StatusCode::OK, Some("Acme")));
    let (status, _, v) = f
        .send(
            Method::PATCH,
            &format!("/api/v1/records/{id}"),
            Some(&reader),
            Some(r#"{"set": {"industry": "Steel"}}"#),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _, _) = f
        .send(
            Method::DELETE,
            &format!("/api/v1/records/{id}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_persons_data_exports_file_by_file() {
    let f = fixture();
    let writer = f.token("writer", false);
    let reader = f.token("reader", true);
    for body in [
        r#"{"kind": "person", "fields": {"name": "Kim Lee", "emails": ["kim@acme.example"]}}"#,
        r#"{"kind": "activity", "fields": {"type": "call", "subject": "Intro call", "about": ["Kim Lee"]}}"#,
    ] {
        let (status, _, v) = f
            .send(Method::POST, "/api/v1/records", Some(&writer), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let (status, _, v) = f
        .send(
            Method::GET,
            "/api/v1/records/Kim%20Lee/privacy-export",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let file = |name: &str| {
        v["files"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["name"] == name))
            .and_then(|f| f["text"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert!(file("person.json").contains("kim@acme.example"), "{v}");
    assert!(file("related.json").contains("Intro call"), "{v}");
    assert!(file("person.vcf").contains("FN:Kim Lee"), "{v}");
    let (status, _, v) = f
        .send(
            Method::GET,
            "/api/v1/records/Intro%20call/privacy-export",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not a person: {v}");
}

#[tokio::test]
async fn consent_gates_a_campaign_and_an_erasure_is_answered_over_the_api() {
    let f = fixture();
    let writer = f.token("writer", false);
    let reader = f.token("reader", true);
    for body in [
        r#"{"kind": "person", "fields": {"name": "Kim Lee", "emails": ["kim@acme.example"]}}"#,
        r#"{"kind": "person", "fields": {"name": "Lou Park"}}"#,
        r#"{"kind": "consent", "fields": {"person": "Kim Lee", "purpose": "email", "source": "form"}}"#,
        r#"{"kind": "campaign", "fields": {"name": "Winter mailing", "channel": "email"}}"#,
    ] {
        let (status, _, v) = f
            .send(Method::POST, "/api/v1/records", Some(&writer), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let enroll = |skip: bool| {
        format!(r#"{{"people": ["Kim Lee", "Lou Park"], "skip_without_consent": {skip}}}"#)
    };
    let path = "/api/v1/records/Winter%20mailing/enroll";
    let (status, _, v) = f
        .send(Method::POST, path, Some(&writer), Some(&enroll(false)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Lou Park"),
        "{v}"
    );
    let (status, _, v) = f
        .send(Method::POST, path, Some(&writer), Some(&enroll(true)))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["added"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["skipped"][0]["name"], "Lou Park", "{v}");
    let (status, _, _) = f
        .send(Method::POST, path, Some(&reader), Some(&enroll(true)))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a read-only token enrolls nobody"
    );

    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/erasures",
            Some(&writer),
            Some(r#"{"person": "Kim Lee", "reason": "request by e-mail"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(
        v["records"].as_array().map(Vec::len),
        Some(2),
        "Kim and her consent: {v}"
    );
    let (status, _, v) = f
        .send(
            Method::GET,
            &format!("/api/v1/erasures/{id}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["reason"], "request by e-mail");
    let (status, _, _) = f
        .send(
            Method::GET,
            "/api/v1/records/Kim%20Lee",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, v) = f
        .send(Method::GET, "/api/v1/objections", Some(&reader), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_patch_from_a_stale_version_merges_and_names_what_changed_meanwhile() {
    let f = fixture();
    let token = f.token("sync", false);
    let (_, headers, v) = f
        .send(
            Method::POST,
            "/api/v1/records",
            Some(&token),
            Some(r#"{"kind": "company", "fields": {"name": "Acme"}}"#),
        )
        .await;
    let id = v["record"]["id"].as_str().expect("id").to_string();
    let seen = headers[header::ETAG].to_str().expect("etag").to_string();
    // Someone else changes the industry...
    let (status, _, v) = f
        .send(
            Method::PATCH,
            &format!("/api/v1/records/{id}"),
            Some(&token),
            Some(r#"{"set": {"industry": "Steel"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // ...while this client, having read the first version, sets the phone.
    let req = HttpRequest::builder()
        .method(Method::PATCH)
        .uri(format!("/api/v1/records/{id}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, &seen)
        .body(Body::from(r#"{"set": {"phone": "+44 20 7946 0000"}}"#))
        .expect("request");
    let res = f.router.clone().oneshot(req).await.expect("answer");
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["changed_meanwhile"], json!(["industry"]));
    assert_eq!(v["record"]["industry"], "Steel");
    assert!(v["record"]["phone"].is_string());
    // A version this node never held is refused, nothing written.
    let req = HttpRequest::builder()
        .method(Method::PATCH)
        .uri(format!("/api/v1/records/{id}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, format!("\"{}\"", "0".repeat(64)))
        .body(Body::from(r#"{"set": {"industry": "Rail"}}"#))
        .expect("request");
    let res = f.router.clone().oneshot(req).await.expect("answer");
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_body_imports_dry_runs_undoes_and_exports() {
    let f = fixture();
    let writer = f.token("crm-sync", false);
    let reader = f.token("reader", true);
    let csv = "\u{feff}First Name;Last Name;E-mail Address;Company\r\nAda;Lovelace;ada@ae.example;Analytical\r\nBob;Bad;bob@;Analytical\r\n";
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/imports?dry_run=true",
            Some(&writer),
            Some(csv),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["encoding"], "UTF-8 with BOM");
    assert_eq!(
        (
            v["counts"]["create"].as_u64(),
            v["counts"]["error"].as_u64()
        ),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(
        v["rows"][1]["problems"][0]["column"], "E-mail Address",
        "{v}"
    );
    assert_eq!(f.records(), 0, "a dry run writes nothing");

    let (status, _, v) = f
        .send(Method::POST, "/api/v1/imports", Some(&reader), Some(csv))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/imports?name=people.csv",
            Some(&writer),
            Some(csv),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(f.records(), 2, "Ada and her company");
    let (_, _, list) = f
        .send(Method::GET, "/api/v1/imports", Some(&reader), None)
        .await;
    assert_eq!(list[0]["source"], "people.csv", "{list}");

    let res = f
        .router
        .clone()
        .oneshot(
            HttpRequest::builder()
                .uri("/api/v1/export/person")
                .header(header::AUTHORIZATION, format!("Bearer {reader}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    assert!(
        text.contains("Ada Lovelace") && text.contains("Analytical"),
        "{text}"
    );

    let (status, _, v) = f
        .send(
            Method::POST,
            &format!("/api/v1/imports/{id}/undo"),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(
        (status, v["deleted"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{v}"
    );
    let (status, _, _) = f
        .send(
            Method::POST,
            "/api/v1/imports",
            Some(&writer),
            Some("\u{0}\u{1}binary"),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vcard_body_imports_and_people_and_meetings_export_as_vcard_and_icalendar() {
    let f = fixture();
    let writer = f.token("phone-sync", false);
    let cards = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\nORG:Analytical\r\nEMAIL:ada@ae.example\r\nEND:VCARD\r\n";
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/imports?name=contacts.vcf",
            Some(&writer),
            Some(cards),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["counts"]["create"].as_u64(), Some(1), "{v}");
    let calendar = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:k1@example\r\nDTSTART:20260310T090000Z\r\nSUMMARY:Kickoff\r\nATTENDEE:mailto:ada@ae.example\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/imports?format=ics",
            Some(&writer),
            Some(calendar),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["counts"]["create"].as_u64(), Some(1), "{v}");
    let get = |uri: &'static str| {
        let router = f.router.clone();
        let token = writer.clone();
        async move {
            let res = router
                .oneshot(
                    HttpRequest::builder()
                        .uri(uri)
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Body::empty())
                        .expect("request"),
                )
                .await
                .expect("answer");
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .expect("body");
            (status, String::from_utf8_lossy(&bytes).to_string())
        }
    };
    let (status, vcf) = get("/api/v1/export/person?format=vcard").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        vcf.contains("FN:Ada Lovelace") && vcf.contains("ORG:Analytical"),
        "{vcf}"
    );
    let (status, ics) = get("/api/v1/export/activity?format=ics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        ics.contains("UID:k1@example") && ics.contains("ATTENDEE:mailto:ada@ae.example"),
        "{ics}"
    );
    let (status, _) = get("/api/v1/export/company?format=vcard").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_limited_to_a_space_imports_into_it_and_sees_only_its_imports() {
    let f = fixture();
    f.ops
        .execute(
            &Caller::user(),
            Request::CreateSpace {
                name: "Joint".into(),
            },
        )
        .expect("space");
    let Reply::Token(t) = f
        .ops
        .execute(
            &Caller::user(),
            Request::TokenCreate {
                name: "partner".into(),
                read_only: false,
                space: Some("Joint".into()),
            },
        )
        .expect("token")
    else {
        panic!("no token")
    };
    let partner = t.secret.expect("secret");
    let user = f.token("me", false);
    let (status, _, mine) = f
        .send(
            Method::POST,
            "/api/v1/imports?name=private.csv",
            Some(&user),
            Some("Name,Email\nPia,pia@private.example\n"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let (status, _, theirs) = f
        .send(
            Method::POST,
            "/api/v1/imports?name=joint.csv",
            Some(&partner),
            Some("Name,Email\nJo,jo@joint.example\n"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    // Into another space than its own: refused.
    let (status, _, _) = f
        .send(
            Method::POST,
            "/api/v1/imports?space=private",
            Some(&partner),
            Some("Name\nX\n"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, _, list) = f
        .send(Method::GET, "/api/v1/imports", Some(&partner), None)
        .await;
    let sources: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["source"].as_str())
        .collect();
    assert_eq!(sources, ["joint.csv"]);
    let private_id = mine["id"].as_str().expect("id");
    let (status, _, _) = f
        .send(
            Method::POST,
            &format!("/api/v1/imports/{private_id}/undo"),
            Some(&partner),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(f.records(), 2, "the private import stands");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_merge_through_the_api_and_the_merge_undoes() {
    let f = fixture();
    let writer = f.token("crm-sync", false);
    let reader = f.token("dashboard", true);
    let mut ids = Vec::new();
    for body in [
        r#"{"kind":"person","fields":{"name":"Ada Lovelace","emails":["ada@ae.example"]}}"#,
        r#"{"kind":"person","fields":{"name":"A. Lovelace","emails":["ADA@ae.example"],"title":"Analyst"}}"#,
    ] {
        let (status, _, v) = f
            .send(Method::POST, "/api/v1/records", Some(&writer), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        ids.push(v["record"]["id"].as_str().expect("id").to_string());
    }
    let (status, _, found) = f
        .send(
            Method::GET,
            "/api/v1/duplicates?kind=person",
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["clusters"][0]["score"], 100, "{found}");
    let body = serde_json::json!({"keep": ids[0], "others": [ids[1]]}).to_string();
    let (status, _, refused) = f
        .send(Method::POST, "/api/v1/merges", Some(&reader), Some(&body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, _, merged) = f
        .send(Method::POST, "/api/v1/merges", Some(&writer), Some(&body))
        .await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    assert_eq!(merged["record"]["title"], "Analyst", "{merged}");
    assert_eq!(merged["merge"]["merged"][0], ids[1].as_str(), "{merged}");
    let (status, _, old) = f
        .send(
            Method::GET,
            &format!("/api/v1/records/{}", ids[1]),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        old["id"],
        ids[0].as_str(),
        "a merged id leads to the survivor: {old}"
    );
    let (_, _, list) = f
        .send(Method::GET, "/api/v1/merges", Some(&reader), None)
        .await;
    let id = list[0]["id"].as_str().expect("merge id").to_string();
    let (status, _, undone) = f
        .send(
            Method::POST,
            &format!("/api/v1/merges/{id}/undo"),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{undone}");
    assert_eq!(undone["restored_records"], 1, "{undone}");
    let (status, _, again) = f
        .send(
            Method::POST,
            &format!("/api/v1/merges/{id}/undo"),
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{again}");
}

/// A kind and a pipeline of the space's own through the API: the schema
/// tells both, records of the kind are created and listed, deals are
/// held to their pipeline's stages and reported by it, and an unknown
/// kind is a problem.
#[tokio::test(flavor = "multi_thread")]
async fn custom_kinds_and_pipelines_through_the_api() {
    let f = fixture();
    for json in [
        r#"{"op":"add_kind","kind":"contract","title_label":"Contract number"}"#,
        r#"{"op":"set_pipeline","name":"renewals","stages":[{"name":"due","probability":60},{"name":"renewed","probability":100,"outcome":"won"}]}"#,
    ] {
        let change: rapport_model::SchemaChange = serde_json::from_str(json).expect("statement");
        f.ops
            .execute(
                &Caller::user(),
                Request::ChangeSchema {
                    space: None,
                    change,
                },
            )
            .expect("schema change");
    }
    let token = f.token("crm-sync", false);
    let (v, contract) = f.schema_kind(&token, "contract").await;
    assert_eq!(
        (&contract["custom"], &contract["plural"]),
        (&Value::from(true), &Value::from("contracts"))
    );
    assert_eq!(contract["fields"][0]["label"], "Contract number");
    let renewals = v["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .find(|p| p["name"] == "renewals")
        .expect("the pipeline");
    assert_eq!(renewals["stages"][1]["outcome"], "won", "{v}");

    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/records",
            Some(&token),
            Some(r#"{"kind": "contract", "fields": {"name": "K-2027"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, _, v) = f
        .send(
            Method::GET,
            "/api/v1/records?kind=contract",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.to_string().contains("K-2027"), "{v}");
    let (status, _, v) = f
        .send(
            Method::GET,
            "/api/v1/records?kind=contracts",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/records",
            Some(&token),
            Some(r#"{"kind": "company", "fields": {"name": "Acme"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/records",
            Some(&token),
            Some(r#"{"kind": "deal", "fields": {"title": "Renewal", "company": "Acme", "pipeline": "renewals", "stage": "proposal"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v.to_string()
            .contains("not a stage of the renewals pipeline"),
        "{v}"
    );
}

/// A space's custom fields through the API: the schema tells them, a
/// record takes their values (a bad one is a problem naming the field),
/// a CSV column named like one fills it, and the CSV export has a column
/// for each. A token may read the schema but not change it.
#[tokio::test(flavor = "multi_thread")]
async fn custom_fields_are_read_written_imported_and_exported() {
    let f = fixture();
    let change: rapport_model::SchemaChange = serde_json::from_str(
        r#"{"op":"add_field","kind":"company","name":"seats","type":"number","label":"Seats"}"#,
    )
    .expect("statement");
    f.ops
        .execute(
            &Caller::user(),
            Request::ChangeSchema {
                space: None,
                change: change.clone(),
            },
        )
        .expect("add field");
    let token = f.token("crm-sync", false);
    let (v, company) = f.schema_kind(&token, "company").await;
    let seats = company["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == "seats")
        .expect("seats");
    assert_eq!(
        (&seats["type"], &seats["custom"], &seats["label"]),
        (
            &Value::from("number"),
            &Value::from(true),
            &Value::from("Seats")
        ),
        "{v}"
    );

    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/records",
            Some(&token),
            Some(r#"{"kind": "company", "fields": {"name": "Orbit", "seats": "lots"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["errors"][0]["field"], "seats", "{v}");
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/records",
            Some(&token),
            Some(r#"{"kind": "company", "fields": {"name": "Orbit", "seats": "250"}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["record"]["seats"], "250", "{v}");

    let csv = "Company,Seats\r\nZenith,1200\r\n";
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/imports?kind=company",
            Some(&token),
            Some(csv),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["counts"]["create"], 1, "{v}");

    let res = f
        .router
        .clone()
        .oneshot(
            HttpRequest::builder()
                .uri("/api/v1/export/company")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    let header_line = text.lines().next().expect("header");
    assert!(header_line.ends_with(",seats"), "{text}");
    assert!(text.contains("Zenith") && text.contains(",1200"), "{text}");

    let refused = f.ops.execute(
        &Caller {
            token: Some("crm-sync".into()),
            ..Caller::user()
        },
        Request::ChangeSchema {
            space: None,
            change,
        },
    );
    assert!(refused.is_err(), "a token changed the schema");
}

#[tokio::test]
async fn a_query_compares_by_value_and_a_bad_comparison_is_a_problem() {
    let f = fixture();
    let token = f.token("reports", false);
    let acme = r#"{"kind": "company", "fields": {"name": "Acme"}}"#;
    let (status, _, _) = f
        .send(Method::POST, "/api/v1/records", Some(&token), Some(acme))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for (title, amount) in [("Small", "900"), ("Big", "25000"), ("Huge", "125000")] {
        let body = format!(
            r#"{{"kind": "deal", "fields": {{"title": "{title}", "company": "Acme", "amount": "{amount}", "currency": "EUR"}}}}"#
        );
        let (status, _, v) = f
            .send(Method::POST, "/api/v1/records", Some(&token), Some(&body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let titles = |v: &Value| -> Vec<String> {
        let mut t: Vec<String> = v["records"]
            .as_array()
            .expect("records")
            .iter()
            .filter_map(|r| r["title"].as_str().map(String::from))
            .collect();
        t.sort();
        t
    };
    // `amount>=1000` arrives as the parameter `amount>` = `1000` (`>` and
    // `<` percent-encoded, as a URI needs).
    let (status, _, v) = f
        .send(
            Method::GET,
            "/api/v1/records?kind=deal&amount%3E=1000&amount%3C=100000",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(titles(&v), ["Big"]);
    let (_, _, v) = f
        .send(
            Method::GET,
            "/api/v1/records?kind=deal&title~=g&sort=-amount",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(titles(&v), ["Big", "Huge"]);
    let (status, _, v) = f
        .send(
            Method::GET,
            "/api/v1/records?kind=deal&amount~=25",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid")),
        "{v}"
    );
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("use >= and <=")),
        "{v}"
    );
}

/// A report through the API: JSON with exact amounts, one section as CSV,
/// a read-only token may read it, and a bad name or filter is a problem
/// that says what to send.
#[tokio::test]
async fn reports_as_json_and_csv() {
    let f = fixture();
    let token = f.token("bi", true);
    let writer = f.token("crm", false);
    for body in [
        r#"{"kind": "company", "fields": {"name": "Acme"}}"#,
        r#"{"kind": "company", "fields": {"name": "Beta"}}"#,
        r#"{"kind": "deal", "fields": {"title": "A", "company": "Acme", "amount": "800.10", "currency": "EUR", "stage": "won"}}"#,
        r#"{"kind": "deal", "fields": {"title": "B", "company": "Beta", "amount": "199.90", "currency": "EUR", "stage": "won"}}"#,
    ] {
        let (status, _, v) = f
            .send(Method::POST, "/api/v1/records", Some(&writer), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let (status, _, v) = f
        .send(Method::GET, "/api/v1/reports/abc", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "abc");
    let list = &v["sections"][1];
    assert_eq!(list["title"], "Customers by won revenue, EUR");
    assert_eq!(
        list["rows"][0],
        json!(["1", "Acme", "800.10", "80.0", "80.0", "A"])
    );
    assert_eq!(
        list["rows"][1],
        json!(["2", "Beta", "199.90", "20.0", "100.0", "B"])
    );
    assert_eq!(list["chart"]["line"], 4);

    let req = HttpRequest::builder()
        .uri("/api/v1/reports/abc?format=csv&section=2")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request");
    let res = f.router.clone().oneshot(req).await.expect("answer");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    assert!(
        text.starts_with(
            "\u{FEFF}rank,customer,won revenue (EUR),share %,cumulative %,class\r\n1,Acme,800.10,"
        ),
        "{text}"
    );

    for (path, status, says) in [
        (
            "/api/v1/reports/pareto",
            StatusCode::NOT_FOUND,
            "use one of",
        ),
        (
            "/api/v1/reports/abc?abc=95,80",
            StatusCode::UNPROCESSABLE_ENTITY,
            "80,95",
        ),
        (
            "/api/v1/reports/churn?from=yesterday",
            StatusCode::UNPROCESSABLE_ENTITY,
            "2026-03-31",
        ),
        (
            "/api/v1/reports/abc?format=csv&section=9",
            StatusCode::UNPROCESSABLE_ENTITY,
            "counted from 1",
        ),
        (
            "/api/v1/reports/abc?colour=red",
            StatusCode::BAD_REQUEST,
            "colour",
        ),
    ] {
        let (got, _, v) = f.send(Method::GET, path, Some(&token), None).await;
        assert_eq!(got, status, "{path}: {v}");
        assert!(
            v["detail"].as_str().unwrap_or("").contains(says),
            "{path}: {v}"
        );
    }
    // Rates are the device user's, not a token's to set.
    let token_caller = Caller {
        token: Some("crm".into()),
        read_only: false,
        space: None,
    };
    let set = Request::SetRates {
        base: "EUR".into(),
        pairs: vec!["USD=0.9".into()],
    };
    let refused = f
        .ops
        .execute(&token_caller, set.clone())
        .expect_err("a token");
    assert_eq!(refused.code, rapport_node::ops::ErrorCode::Forbidden);
    assert!(f.ops.execute(&Caller::user(), set).is_ok());
}

/// A calendar feed: the owner's meetings (a repeating one with its rule
/// and zone) and open tasks, without another owner's or done tasks;
/// no bearer token needed, a wrong or revoked address answers 404.
/// With `RAPPORT_ICS_OUT=FILE` it is written there, for `.ci/run` to
/// check with an independent iCalendar parser.
#[tokio::test]
async fn a_calendar_feed_serves_the_owners_meetings_and_open_tasks() {
    let f = fixture();
    let user = Caller::user();
    let add = |fields: &[(&str, &str)]| {
        f.ops
            .execute(
                &user,
                Request::Create {
                    kind: rapport_model::Kind::Activity,
                    space: None,
                    fields: fields
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                },
            )
            .expect("create")
    };
    let pat = f
        .ops
        .execute(
            &user,
            Request::Create {
                kind: rapport_model::Kind::Person,
                space: None,
                fields: vec![
                    ("name".into(), "Pat Lee".into()),
                    ("emails".into(), "pat@acme.example".into()),
                ],
            },
        )
        .expect("person");
    let Reply::Record(pat) = pat else {
        panic!("{pat:?}")
    };
    add(&[
        ("type", "meeting"),
        ("subject", "Stand-up, daily"),
        ("when", "2026-03-16 09:00"),
        ("ends", "2026-03-16 09:15"),
        ("zone", "Europe/Berlin"),
        ("repeat", "weekdays"),
        ("skip", "2026-03-20"),
        ("attendees", &pat.record.id.to_string()),
        ("owner", "Ann"),
    ]);
    add(&[
        ("type", "meeting"),
        ("subject", "Fair"),
        ("when", "2026-04-01T08:00:00Z"),
        ("ends", "2026-04-02T08:00:00Z"),
        ("all_day", "true"),
        ("zone", "Europe/Berlin"),
        ("owner", "ann"),
    ]);
    add(&[
        ("type", "task"),
        ("subject", "Send the offer"),
        ("due", "2026-03-18"),
        ("owner", "Ann"),
    ]);
    add(&[
        ("type", "task"),
        ("subject", "Finished"),
        ("due", "2026-03-18"),
        ("done", "true"),
        ("owner", "Ann"),
    ]);
    add(&[
        ("type", "meeting"),
        ("subject", "Ben's meeting"),
        ("when", "2026-03-16T10:00:00Z"),
        ("owner", "Ben"),
    ]);
    let made = f
        .ops
        .execute(
            &user,
            Request::FeedCreate {
                name: "phone".into(),
                owner: Some("Ann".into()),
                everyone: false,
            },
        )
        .expect("feed");
    let Reply::Feed {
        secret: Some(secret),
        ..
    } = made
    else {
        panic!("{made:?}")
    };

    let get = |path: String| {
        let router = f.router.clone();
        async move {
            let req = HttpRequest::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request");
            let res = router.oneshot(req).await.expect("answer");
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .expect("body");
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (status, ics) = get(format!("/api/v1/calendar/{secret}.ics")).await;
    assert_eq!(status, StatusCode::OK, "{ics}");
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"), "{ics}");
    assert!(ics.contains("SUMMARY:Stand-up\\, daily\r\n"), "{ics}");
    assert!(
        ics.contains("DTSTART;TZID=Europe/Berlin:20260316T090000\r\n"),
        "{ics}"
    );
    assert!(
        ics.contains("RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR\r\n"),
        "{ics}"
    );
    assert!(
        ics.contains("EXDATE;TZID=Europe/Berlin:20260320T090000\r\n"),
        "{ics}"
    );
    assert!(
        ics.contains("ATTENDEE:mailto:pat@acme.example\r\n"),
        "{ics}"
    );
    assert!(
        ics.contains("DTSTART;VALUE=DATE:20260401\r\nDTEND;VALUE=DATE:20260403\r\n"),
        "{ics}"
    );
    assert!(
        ics.contains("BEGIN:VTODO\r\n") && ics.contains("SUMMARY:Send the offer"),
        "{ics}"
    );
    assert!(!ics.contains("Finished") && !ics.contains("Ben's"), "{ics}");
    if let Ok(out) = std::env::var("RAPPORT_ICS_OUT") {
        std::fs::write(out, &ics).expect("write the feed");
    }

    // The same meetings as an agenda, for a token.
    let token = f.token("cal", true);
    let (status, _, v) = f
        .send(
            Method::GET,
            "/api/v1/agenda?from=2026-03-16&days=7&owner=ann&zone=Europe/Berlin",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let days: Vec<&str> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["title"] == "Stand-up, daily")
        .map(|e| e["day"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        days,
        ["2026-03-16", "2026-03-17", "2026-03-18", "2026-03-19"],
        "{v}"
    );
    assert_eq!(v["entries"][0]["start"], "09:00", "{v}");
    let (status, _, v) = f
        .send(Method::GET, "/api/v1/agenda?days=99", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // Tuesday's stand-up alone moves to 11:00; a read-only token may not.
    let body = r#"{"record": "Stand-up, daily", "from": "2026-03-17", "day": "2026-03-17",
        "time": "11:00", "only": true}"#;
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/agenda/move",
            Some(&token),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let writer = f.token("mover", false);
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/agenda/move",
            Some(&writer),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["record"]["subject"], "Stand-up, daily", "{v}");
    assert_eq!(
        v["record"]["when"], "2026-03-17T10:00:00Z",
        "11:00 in Berlin: {v}"
    );
    let moved = v["record"]["id"].as_str().expect("an id").to_string();
    let (_, _, v) = f
        .send(
            Method::GET,
            "/api/v1/agenda?from=2026-03-17&owner=ann&zone=Europe/Berlin",
            Some(&token),
            None,
        )
        .await;
    let starts: Vec<&str> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["title"] == "Stand-up, daily")
        .map(|e| e["start"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(starts, ["11:00"], "{v}");
    let (status, _, v) = f
        .send(
            Method::POST,
            "/api/v1/agenda/move",
            Some(&writer),
            Some(&format!(r#"{{"record": "{moved}", "day": "soon"}}"#)),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    let (status, body) = get("/api/v1/calendar/rapport_cal_guess".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    f.ops
        .execute(
            &user,
            Request::FeedRevoke {
                name: "phone".into(),
            },
        )
        .expect("revoke");
    let (status, _) = get(format!("/api/v1/calendar/{secret}.ics")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A token may not make feeds (they are the device user's).
    let token = Caller {
        token: Some("crm".into()),
        read_only: false,
        space: None,
    };
    let refused = f
        .ops
        .execute(
            &token,
            Request::FeedCreate {
                name: "x".into(),
                owner: None,
                everyone: true,
            },
        )
        .expect_err("a token");
    assert_eq!(refused.code, rapport_node::ops::ErrorCode::Forbidden);
}
