//! Audit events reach a SIEM as they are committed: RFC 5424 syslog over TCP
//! (octet counting) and UDP to real receivers on loopback, and JSON lines to
//! a file; a receiver that is down loses nothing, it catches up.

use crate::harness::*;
use std::io::Read;
use std::time::{Duration, Instant};

/// Read octet-counted syslog frames from one TCP connection until `want`
/// messages arrived or the deadline passed.
fn read_tcp_frames(
    listener: std::net::TcpListener,
    want: usize,
    deadline: Duration,
) -> Vec<String> {
    listener.set_nonblocking(false).unwrap();
    let start = Instant::now();
    let mut msgs = Vec::new();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = Vec::new();
    while msgs.len() < want && start.elapsed() < deadline {
        let mut chunk = [0u8; 8192];
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        // Frames: "<len> <msg>"
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let Ok(len) = std::str::from_utf8(&buf[..sp]).unwrap().parse::<usize>() else {
                panic!("bad frame")
            };
            if buf.len() < sp + 1 + len {
                break;
            }
            msgs.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
            buf.drain(..sp + 1 + len);
        }
    }
    msgs
}

pub async fn syslog_tcp_udp_and_file() {
    // TCP receiver that is down at first: events must wait, not vanish.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let dir = std::env::temp_dir().join(unique("kura-fwd"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit.jsonl");
    let server = TestServer::start(ServerOpts {
        env: vec![
            (
                "KURA_AUDIT_SYSLOG".into(),
                format!("tcp://127.0.0.1:{port}"),
            ),
            ("KURA_AUDIT_FORWARD_FILE".into(), file.display().to_string()),
        ],
        args: vec![],
    })
    .await;
    let root = server.bootstrap().await;
    root.create_org(&unique("fwd"), None).await;
    // The file sink has them soon (on PostgreSQL after the 2 s settling
    // time); the TCP receiver comes up late.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let l = std::fs::read_to_string(&file).unwrap_or_default();
        if l.contains("\"action\":\"org.create\"") || std::time::Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        lines
            .lines()
            .any(|l| l.contains("\"action\":\"platform.bootstrap\"")),
        "{lines}"
    );
    assert!(
        lines
            .lines()
            .any(|l| l.contains("\"action\":\"org.create\"")),
        "{lines}"
    );
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["chain_hash"].is_string() && v["time"].is_string(), "{l}");
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let msgs =
        tokio::task::spawn_blocking(move || read_tcp_frames(listener, 3, Duration::from_secs(25)))
            .await
            .unwrap();
    assert!(
        msgs.len() >= 3,
        "the late receiver got the earlier events: {msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("platform.bootstrap")));
    for m in &msgs {
        assert!(
            m.starts_with("<110>1 ") || m.starts_with("<108>1 "),
            "RFC 5424 header: {m}"
        );
        let json = &m[m.find('{').unwrap()..];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert!(v["action"].is_string());
    }
    let metrics = root
        .http
        .get(format!("{}/metrics", root.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("kura_audit_forwarded_total"), "{metrics}");
    drop(server);

    // UDP receiver.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let server = TestServer::start(ServerOpts {
        env: vec![(
            "KURA_AUDIT_SYSLOG".into(),
            format!("udp://{}", udp.local_addr().unwrap()),
        )],
        args: vec![],
    })
    .await;
    server.bootstrap().await;
    let mut buf = [0u8; 65536];
    let n = udp.recv(&mut buf).unwrap();
    let m = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(m.starts_with('<') && m.contains(" kura - "), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}
