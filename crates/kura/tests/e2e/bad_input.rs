//! Bad input gets a clear 4xx problem document and changes nothing; no
//! client mistake produces a 5xx (the harness fails any 5xx it sees).

use crate::files::world;
use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::{Read, Write};

pub async fn each_client_mistake_gets_its_status() {
    let w = world(
        ServerOpts {
            env: vec![("KURA_MAX_UPLOAD_BYTES".into(), "100000".into())],
            args: vec![],
        },
        None,
    )
    .await;
    let (a, p) = (&w.alice, &w.p);
    let base = format!("/api/projects/{}", p.id);

    // 413: JSON body over 64 KiB; upload over the maximum size (declared and streamed).
    let big = json!({"name": "x".repeat(70_000)});
    let (st, v) = a
        .fresh_connection()
        .json(
            Method::POST,
            &format!("{base}/folders/{}/folders", p.root),
            big,
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (st, v) = a
        .fresh_connection()
        .upload(p, &p.root, "too-big.bin", vec![0u8; 100_001])
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["code"], "too-large");
    let stream =
        futures_util::stream::iter((0..30).map(|_| Ok::<_, std::io::Error>(vec![1u8; 5000])));
    let r = a
        .fresh_connection()
        .request(
            Method::POST,
            &format!("{base}/folders/{}/files?name=stream-big.bin", p.root),
        )
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // 400: malformed JSON, wrong shape, unknown fields.
    let r = a
        .fresh_connection()
        .request(Method::POST, &format!("{base}/folders/{}/folders", p.root))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (st, _) = a
        .json(
            Method::POST,
            &format!("{base}/folders/{}/folders", p.root),
            json!({"name": 5}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = a
        .json(
            Method::POST,
            &format!("{base}/folders/{}/folders", p.root),
            json!({"name": "ok", "evil": true}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // 415: wrong content type.
    let r = a
        .fresh_connection()
        .request(Method::POST, &format!("{base}/folders/{}/folders", p.root))
        .header("content-type", "text/plain")
        .body("{\"name\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // 404: unknown ids, malformed ids, unknown endpoints.
    for path in [
        format!("{base}/nodes/{}", uuid::Uuid::new_v4()),
        format!("{base}/nodes/not-a-uuid"),
        format!("/api/projects/{}", uuid::Uuid::new_v4()),
        "/api/nope".to_string(),
        format!("{base}/files/{}/content", uuid::Uuid::new_v4()),
    ] {
        let (st, v) = a.get(&path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(v["status"], 404);
    }

    // 400 for every invalid name, with the rule in the message; nothing created.
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../etc/passwd",
        "a\\b",
        "nul\0byte",
        "line\nbreak",
        "tab\there",
        &"n".repeat(256),
        &"名".repeat(86),
    ] {
        let (st, v) = a
            .json(
                Method::POST,
                &format!("{base}/folders/{}/folders", p.root),
                json!({"name": bad}),
            )
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad:?}: {v}");
        assert_eq!(v["code"], "invalid-name");
        let (st, v) = a.upload(p, &p.root, bad, b"x".to_vec()).await;
        assert!(st == StatusCode::BAD_REQUEST, "{bad:?}: {st} {v}");
    }
    // Names that look hostile but are valid are stored verbatim.
    for odd in [
        "<img src=x onerror=alert(1)>.html",
        "'; DROP TABLE nodes; --",
        "%2e%2e%2f",
        "CON",
        " leading space",
    ] {
        let id = a.upload_ok(p, &p.root, odd, b"x".to_vec()).await;
        let (_, n) = a.get(&format!("{base}/nodes/{id}")).await;
        assert_eq!(n["node"]["name"], odd);
    }
    let (_, kids) = a.get(&format!("{base}/folders/{}/children", p.root)).await;
    assert_eq!(
        kids["items"].as_array().unwrap().len(),
        5,
        "only the valid names were created"
    );

    // 409 on name conflicts; 400 for a bad query parameter; headers fuzzed.
    a.mkdir(p, &p.root, "dup").await;
    let (st, v) = a
        .json(
            Method::POST,
            &format!("{base}/folders/{}/folders", p.root),
            json!({"name": "dup"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, _) = a
        .get(&format!("{base}/folders/{}/children?sort=evil", p.root))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = a
        .get(&format!("{base}/folders/{}/children?limit=abc", p.root))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let id = a.upload_ok(p, &p.root, "ranges.bin", vec![9u8; 1000]).await;
    for range in [
        "bytes=",
        "bytes=--1",
        "bytes=a-b",
        "bytes=99999999999999999999-",
        "garbage",
        "bytes=1-2-3",
        "bytes= 0 - 1",
    ] {
        let r = a
            .request(Method::GET, &format!("{base}/files/{id}/content"))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "{range}: {}", r.status());
    }
    for (h, val) in [
        ("authorization", "Bearer x' OR '1'='1"),
        ("authorization", "Basic Zm9vOmJhcg=="),
        ("cookie", "kura_session=' OR 1=1 --"),
    ] {
        let r = a
            .anonymous()
            .http
            .get(format!("{}{base}", a.base))
            .header(h, val)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{h}: {val}");
    }
}

/// A client that disconnects mid-upload leaves no file and no blob behind.
pub async fn interrupted_upload_leaves_nothing() {
    let w = world(ServerOpts::default(), None).await;
    let (a, p) = (&w.alice, &w.p);
    let addr = w.server.base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let path = format!(
        "/api/projects/{}/folders/{}/files?name=partial.bin",
        p.id, p.root
    );
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: kura_session={}\r\nX-CSRF-Token: {}\r\nContent-Length: 10000000\r\n\r\n",
        a.session.as_ref().unwrap(),
        a.csrf.as_ref().unwrap()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![5u8; 3_000_000]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(s);
    // Give the server a moment to notice and clean up.
    let mut leftover = 1;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        leftover = count_blob_files(&w.server.data_dir);
        if leftover == 0 {
            break;
        }
    }
    assert_eq!(leftover, 0, "no blob or staging file remains");
    let (_, kids) = a
        .get(&format!(
            "/api/projects/{}/folders/{}/children",
            p.id, p.root
        ))
        .await;
    assert_eq!(
        kids["items"].as_array().unwrap().len(),
        0,
        "no visible file"
    );

    // And a request that sends a body the server refuses outright gets a reply.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{\"a\":").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
}

pub fn count_blob_files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir.join("blobs")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|d| std::fs::read_dir(d.path()).ok())
        .map(|f| f.count())
        .sum()
}
