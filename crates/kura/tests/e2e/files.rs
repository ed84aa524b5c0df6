//! Files end to end: streaming upload/download with ranges and ETags,
//! encryption at rest, listing with sorting and cursors, organizing, trash,
//! versions and quotas. Two organizations everywhere: the other one must
//! never see anything.

use crate::harness::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

pub struct World {
    pub server: TestServer,
    pub root: Client,
    pub alice: Client,
    pub bob_other_org: Client,
    pub p: Project,
}

pub async fn world(opts: ServerOpts, quota_a: Option<i64>) -> World {
    let server = TestServer::start(opts).await;
    let root = server.bootstrap().await;
    let a = root.create_org(&unique("org-a"), quota_a).await;
    let b = root.create_org(&unique("org-b"), None).await;
    let alice = root.create_user(&a, "alice", false).await;
    let bob_other_org = root.create_user(&b, "bob", false).await;
    let p = alice.create_project("Files").await;
    World {
        server,
        root,
        alice,
        bob_other_org,
        p,
    }
}

pub async fn upload_download_ranges_etag_and_ciphertext_at_rest() {
    let w = world(ServerOpts::default(), None).await;
    let (a, p) = (&w.alice, &w.p);
    // A size that is not a multiple of the 64 KiB chunk, with a marker to look for on disk.
    let mut data = random_bytes(3 * 65536 + 12345);
    let marker = b"KURA-PLAINTEXT-MARKER-0123456789";
    data[1000..1000 + marker.len()].copy_from_slice(marker);
    let id = a
        .upload_ok(p, &p.root, "報告書 final.pdf", data.clone())
        .await;
    let url = format!("/api/projects/{}/files/{id}/content", p.id);

    let r = a.download(&url).await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    for (range, lo, hi) in [
        ("bytes=0-0", 0, 0),
        ("bytes=65530-65545", 65530, 65545),
        ("bytes=131072-", 131072, data.len() - 1),
        ("bytes=-100", data.len() - 100, data.len() - 1),
    ] {
        let r = a
            .request(Method::GET, &url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.headers()["content-range"].to_str().unwrap(),
            format!("bytes {lo}-{hi}/{}", data.len())
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[lo..=hi], "{range}");
    }
    let r = a
        .request(Method::GET, &url)
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = a
        .request(Method::GET, &url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = a.request(Method::HEAD, &url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );

    // Empty file.
    let empty = a.upload_ok(p, &p.root, "empty.txt", vec![]).await;
    let r = a
        .download(&format!("/api/projects/{}/files/{empty}/content", p.id))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.unwrap().is_empty());

    // At rest: no blob contains the plaintext marker, and blob names are not user names.
    let mut blob_files = 0;
    for d in std::fs::read_dir(w.server.data_dir.join("blobs"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            blob_files += 1;
            let name = f.file_name().to_string_lossy().to_string();
            assert!(
                uuid::Uuid::parse_str(&name).is_ok(),
                "blob names are random ids: {name}"
            );
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "plaintext found at rest"
            );
        }
    }
    assert_eq!(blob_files, 2);

    // Another organization's user sees none of it.
    let b = &w.bob_other_org;
    for path in [
        url.clone(),
        format!("/api/projects/{}", p.id),
        format!("/api/projects/{}/folders/{}/children", p.id, p.root),
    ] {
        let (st, _) = b.get(&path).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}");
    }
    let (st, v) = b.get("/api/projects").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"].as_array().unwrap().len(), 0);

    // Every download was audited with the bytes served.
    let (st, v) = w
        .root
        .get(&format!(
            "/api/admin/audit?action=file.download&project={}",
            p.id
        ))
        .await;
    assert_eq!(st, StatusCode::OK);
    let served: Vec<i64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["bytes"].as_i64().unwrap_or(-1))
        .collect();
    assert!(
        served.contains(&(data.len() as i64)) && served.contains(&1) && served.contains(&100),
        "{served:?}"
    );
}

pub async fn listing_sorting_and_cursor_pagination() {
    let w = world(ServerOpts::default(), None).await;
    let (a, p) = (&w.alice, &w.p);
    let dir = a.mkdir(p, &p.root, "many").await;
    let mut names = Vec::new();
    for i in 0..23 {
        let name = format!("file-{:02}-{}.txt", (i * 7) % 23, "x".repeat(i % 4));
        a.upload_ok(p, &dir, &name, vec![b'a'; i * 10]).await;
        names.push(name);
    }
    a.mkdir(p, &dir, "zz-folder").await;
    a.mkdir(p, &dir, "aa-folder").await;
    for (sort, order) in [
        ("name", "asc"),
        ("name", "desc"),
        ("size", "asc"),
        ("size", "desc"),
        ("modified", "asc"),
        ("modified", "desc"),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _page in 0..10 {
            let mut path = format!(
                "/api/projects/{}/folders/{dir}/children?sort={sort}&order={order}&limit=7",
                p.id
            );
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (st, v) = a.get(&path).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            seen.extend(v["items"].as_array().unwrap().iter().cloned());
            cursor = v["next_cursor"].as_str().map(String::from);
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 25, "{sort} {order}");
        // Folders first, then files in order.
        assert_eq!(seen[0]["kind"], "folder");
        assert_eq!(seen[1]["kind"], "folder");
        let files: Vec<_> = seen[2..].iter().collect();
        for pair in files.windows(2) {
            let (x, y) = (pair[0], pair[1]);
            let key = |n: &serde_json::Value| match sort {
                "name" => json!(n["name"]),
                "size" => json!(n["size"]),
                _ => json!(n["modified_at"]),
            };
            let (kx, ky) = (key(x), key(y));
            let ordered = match (kx.as_str(), ky.as_str()) {
                (Some(sx), Some(sy)) => {
                    if order == "asc" {
                        sx <= sy
                    } else {
                        sx >= sy
                    }
                }
                _ => {
                    if order == "asc" {
                        kx.as_i64() <= ky.as_i64()
                    } else {
                        kx.as_i64() >= ky.as_i64()
                    }
                }
            };
            assert!(ordered, "{sort} {order}: {kx} then {ky}");
        }
    }
    let (st, _) = a
        .get(&format!(
            "/api/projects/{}/folders/{dir}/children?cursor=zzzz",
            p.id
        ))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

pub async fn organize_trash_versions_and_quota() {
    let w = world(ServerOpts::default(), Some(10_000)).await;
    let (a, p) = (&w.alice, &w.p);
    let docs = a.mkdir(p, &p.root, "docs").await;
    let sub = a.mkdir(p, &docs, "sub").await;
    let f = a.upload_ok(p, &sub, "a.txt", b"version one".to_vec()).await;
    // Conflict, then overwrite as a new version.
    let (st, v) = a.upload(p, &sub, "a.txt", b"x".to_vec()).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, _) = a
        .bytes(
            Method::POST,
            &format!(
                "/api/projects/{}/folders/{sub}/files?name=a.txt&overwrite=true",
                p.id
            ),
            b"version two!".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = a
        .bytes(
            Method::PUT,
            &format!("/api/projects/{}/files/{f}/content", p.id),
            b"version three".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, vs) = a
        .get(&format!("/api/projects/{}/files/{f}/versions", p.id))
        .await;
    let vs = vs["items"].as_array().unwrap().clone();
    assert_eq!(vs.len(), 3);
    assert_eq!(vs[0]["number"], 3);
    let v1 = vs[2]["id"].as_str().unwrap();
    let r = a
        .download(&format!(
            "/api/projects/{}/files/{f}/content?version={v1}",
            p.id
        ))
        .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"version one");
    let (st, n) = a
        .json(
            Method::POST,
            &format!("/api/projects/{}/files/{f}/versions/{v1}/restore", p.id),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{n}");
    let r = a
        .download(&format!("/api/projects/{}/files/{f}/content", p.id))
        .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"version one");

    // Rename, move, and the forbidden move into a descendant.
    let (st, n) = a
        .json(
            Method::PATCH,
            &format!("/api/projects/{}/nodes/{f}", p.id),
            json!({"name": "b.txt", "parent_id": docs}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{n}");
    assert_eq!(n["name"], "b.txt");
    assert_eq!(n["parent_id"], docs.as_str());
    let (st, _) = a
        .json(
            Method::PATCH,
            &format!("/api/projects/{}/nodes/{docs}", p.id),
            json!({"parent_id": sub}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, _) = a
        .json(
            Method::PATCH,
            &format!("/api/projects/{}/nodes/{sub}", p.id),
            json!({"name": "b.txt"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "names are unique per folder");

    // Copy a folder tree.
    let (st, c) = a
        .json(
            Method::POST,
            &format!("/api/projects/{}/nodes/{docs}/copy", p.id),
            json!({"target_folder_id": p.root, "name": "docs copy"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let copy_id = c["id"].as_str().unwrap();
    let (_, kids) = a
        .get(&format!(
            "/api/projects/{}/folders/{copy_id}/children",
            p.id
        ))
        .await;
    let kid_names: Vec<_> = kids["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kid_names, vec!["sub", "b.txt"]);

    // Trash a folder: its contents disappear with it; restore brings all back.
    let (st, _) = a
        .delete(&format!("/api/projects/{}/nodes/{docs}", p.id))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = a.get(&format!("/api/projects/{}/nodes/{f}", p.id)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, t) = a.get(&format!("/api/projects/{}/trash", p.id)).await;
    assert_eq!(t["items"].as_array().unwrap().len(), 1);
    // A new "docs" may take the name meanwhile; restoring then needs a new name.
    let again = a.mkdir(p, &p.root, "docs").await;
    let (st, _) = a
        .json(
            Method::POST,
            &format!("/api/projects/{}/trash/{docs}/restore", p.id),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, r) = a
        .json(
            Method::POST,
            &format!("/api/projects/{}/trash/{docs}/restore", p.id),
            json!({"name": "docs (restored)"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, _) = a.get(&format!("/api/projects/{}/nodes/{f}", p.id)).await;
    assert_eq!(st, StatusCode::OK);

    // Quota: usage counts every version; a file over the quota stores nothing.
    let (_, org) = a.get(&format!("/api/orgs/{}", a.org_id())).await;
    let used = org["used_bytes"].as_i64().unwrap();
    assert!(used > 0);
    let (st, v) = a
        .fresh_connection()
        .upload(p, &again, "big.bin", vec![7u8; 20_000])
        .await;
    assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    assert_eq!(v["code"], "quota-exceeded");
    // Without Content-Length (chunked), the limit is enforced while streaming.
    let stream =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![1u8; 1000])));
    let r = a
        .fresh_connection()
        .request(
            Method::POST,
            &format!(
                "/api/projects/{}/folders/{again}/files?name=chunked.bin",
                p.id
            ),
        )
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let (_, org2) = a.get(&format!("/api/orgs/{}", a.org_id())).await;
    assert_eq!(
        org2["used_bytes"].as_i64().unwrap(),
        used,
        "a refused upload stores nothing"
    );
    let (_, kids) = a
        .get(&format!("/api/projects/{}/folders/{again}/children", p.id))
        .await;
    assert_eq!(kids["items"].as_array().unwrap().len(), 0);

    // Purge releases quota.
    let (st, _) = a
        .delete(&format!("/api/projects/{}/nodes/{copy_id}", p.id))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = a
        .delete(&format!("/api/projects/{}/trash/{copy_id}", p.id))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, org3) = a.get(&format!("/api/orgs/{}", a.org_id())).await;
    assert!(org3["used_bytes"].as_i64().unwrap() < used);
    // Blobs shared with the copied-from files survive a purge of the copy.
    let r = a
        .download(&format!("/api/projects/{}/files/{f}/content", p.id))
        .await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"version one");
}

/// Concurrent uploads share one commit (group commit); each keeps its own
/// outcome: a taken name or a full quota refuses only that upload, and a
/// member of another organization still sees nothing.
pub async fn concurrent_uploads_commit_together() {
    use futures_util::future::join_all;
    let w = world(ServerOpts::default(), Some(100_000)).await;
    let (a, p) = (&w.alice, &w.p);
    let dir = a.mkdir(p, &p.root, "together").await;
    // 20 distinct names, 4 uploads of one name, and the other organization.
    let mut names: Vec<String> = (0..20).map(|i| format!("f{i:02}.txt")).collect();
    names.extend((0..4).map(|_| "same.txt".to_string()));
    let uploads = names
        .iter()
        .map(|n| a.upload(p, &dir, n, vec![b'x'; 100]))
        .collect::<Vec<_>>();
    let (results, (bob_status, _)) = tokio::join!(
        join_all(uploads),
        w.bob_other_org
            .upload(p, &dir, "intruder.txt", vec![b'y'; 10])
    );
    assert_eq!(bob_status, StatusCode::NOT_FOUND);
    let created = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::CREATED)
        .count();
    let conflicts: Vec<&serde_json::Value> = results
        .iter()
        .filter(|(st, _)| *st == StatusCode::CONFLICT)
        .map(|(_, v)| v)
        .collect();
    assert_eq!((created, conflicts.len()), (21, 3), "{results:?}");
    assert!(
        conflicts.iter().all(|v| v["code"] == "conflict"),
        "{conflicts:?}"
    );
    let (st, v) = a
        .get(&format!(
            "/api/projects/{}/folders/{dir}/children?limit=100",
            p.id
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 21);

    // The quota has 97,900 bytes left: of 30 concurrent 5,000-byte uploads,
    // 19 fit; the rest answer 507 and leave no file behind.
    let dir2 = a.mkdir(p, &p.root, "quota").await;
    let uploads = (0..30)
        .map(|i| {
            let dir2 = dir2.clone();
            async move {
                a.upload(p, &dir2, &format!("q{i:02}.bin"), vec![b'q'; 5000])
                    .await
            }
        })
        .collect::<Vec<_>>();
    let results = join_all(uploads).await;
    let count = |s: StatusCode| results.iter().filter(|(st, _)| *st == s).count();
    assert_eq!(
        (
            count(StatusCode::CREATED),
            count(StatusCode::INSUFFICIENT_STORAGE)
        ),
        (19, 11),
        "{results:?}"
    );
    let (_, v) = a
        .get(&format!(
            "/api/projects/{}/folders/{dir2}/children?limit=100",
            p.id
        ))
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 19);
}

pub async fn big_file_streams_with_constant_memory() {
    let w = world(ServerOpts::default(), None).await;
    let (a, p) = (&w.alice, &w.p);
    let size: usize = 48 * 1024 * 1024 + 17;
    // Stream the upload in pieces (no Content-Length) from a deterministic generator.
    let piece = random_bytes(1024 * 1024);
    let total = size;
    let gen = piece.clone();
    let stream = futures_util::stream::iter((0..total.div_ceil(piece.len())).map(move |i| {
        let n = (total - i * gen.len()).min(gen.len());
        Ok::<_, std::io::Error>(gen[..n].to_vec())
    }));
    let r = a
        .fresh_connection()
        .request(
            Method::POST,
            &format!(
                "/api/projects/{}/folders/{}/files?name=big.bin",
                p.id, p.root
            ),
        )
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["size"].as_i64().unwrap() as usize, size);
    let id = v["id"].as_str().unwrap();
    let mut resp = a
        .download(&format!("/api/projects/{}/files/{id}/content", p.id))
        .await;
    let mut got = 0usize;
    let mut ok = true;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        for (k, b) in chunk.iter().enumerate() {
            if *b != piece[(got + k) % piece.len()] {
                ok = false;
            }
        }
        got += chunk.len();
    }
    assert!(ok, "content matches");
    assert_eq!(got, size);
}
