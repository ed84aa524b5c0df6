// Kura uploader: many files and whole folders at once, by file picker,
// folder picker or drag and drop; a progress bar per file and overall,
// cancel, and a clear message per failed file. Talks to the REST API with
// the session's CSRF token.
"use strict";
(() => {
  const root = document.getElementById("uploader");
  if (!root) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const project = root.dataset.project;
  const baseFolder = root.dataset.folder;
  const maxBytes = Number(root.dataset.max || "0");
  const msg = (k) => root.dataset["msg" + k] || k;
  const panel = document.getElementById("upload-panel");
  const list = document.getElementById("upload-list");
  const overallBar = document.getElementById("overall-progress");
  const overallText = document.getElementById("overall-text");
  const drop = document.getElementById("dropzone");
  const CONCURRENCY = 3;

  const jobs = [];
  let running = 0;
  const folderIds = new Map([["", baseFolder]]);

  function api(path) {
    return "/api/projects/" + encodeURIComponent(project) + path;
  }

  async function problem(res) {
    try {
      const p = await res.json();
      return p;
    } catch (_) {
      return {};
    }
  }

  async function findChild(parentId, name) {
    let cursor = null;
    for (let page = 0; page < 50; page++) {
      const q = "?limit=1000" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const res = await fetch(api("/folders/" + parentId + "/children" + q), { credentials: "same-origin" });
      if (!res.ok) throw new Error((await problem(res)).detail || res.statusText);
      const body = await res.json();
      const hit = body.items.find((n) => n.name === name.normalize("NFC") && n.kind === "folder");
      if (hit) return hit.id;
      if (!body.next_cursor) return null;
      cursor = body.next_cursor;
    }
    return null;
  }

  // Create (or find) the folder chain for a relative directory path.
  async function ensureFolder(dir) {
    if (folderIds.has(dir)) return folderIds.get(dir);
    const cut = dir.lastIndexOf("/");
    const parentDir = cut < 0 ? "" : dir.slice(0, cut);
    const name = cut < 0 ? dir : dir.slice(cut + 1);
    const promise = (async () => {
      const parentId = await ensureFolder(parentDir);
      const res = await fetch(api("/folders/" + parentId + "/folders"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify({ name }),
      });
      if (res.ok) return (await res.json()).id;
      if (res.status === 409) {
        const id = await findChild(parentId, name);
        if (id) return id;
      }
      throw new Error((await problem(res)).detail || res.statusText);
    })();
    folderIds.set(dir, promise);
    try {
      const id = await promise;
      folderIds.set(dir, id);
      return id;
    } catch (e) {
      folderIds.delete(dir);
      throw e;
    }
  }

  function addJob(file, path) {
    const li = document.createElement("li");
    li.className = "upload-item";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = path;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    const status = document.createElement("span");
    status.className = "status";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "link";
    cancel.textContent = msg("Cancel");
    li.append(name, bar, status, cancel);
    list.append(li);
    const job = { file, path, li, bar, status, cancel, loaded: 0, state: "queued", xhr: null };
    cancel.addEventListener("click", () => stop(job));
    jobs.push(job);
    panel.hidden = false;
  }

  function stop(job) {
    if (job.state === "done" || job.state === "failed" || job.state === "cancelled") return;
    if (job.xhr) job.xhr.abort();
    finish(job, "cancelled", msg("Cancelled"));
  }

  function finish(job, state, text) {
    job.state = state;
    job.li.dataset.state = state;
    job.status.textContent = text;
    job.cancel.hidden = true;
    if (state === "done") {
      job.loaded = job.file.size;
      job.bar.value = 100;
    }
    updateOverall();
    pump();
  }

  function updateOverall() {
    const total = jobs.reduce((s, j) => s + (j.state === "cancelled" ? 0 : j.file.size), 0);
    const loaded = jobs.reduce((s, j) => s + (j.state === "cancelled" ? 0 : j.loaded), 0);
    const pct = total > 0 ? Math.floor((loaded * 100) / total) : 100;
    overallBar.value = pct;
    const done = jobs.filter((j) => j.state === "done").length;
    const failed = jobs.filter((j) => j.state === "failed").length;
    overallText.textContent = done + "/" + jobs.length + (failed ? " · " + failed + " ✕" : "");
    const active = jobs.some((j) => j.state === "queued" || j.state === "running");
    root.dataset.busy = active ? "true" : "false";
    document.getElementById("cancel-all").hidden = !active;
    if (!active && jobs.length) {
      let reload = document.getElementById("upload-reload");
      if (!reload) {
        reload = document.createElement("a");
        reload.id = "upload-reload";
        reload.className = "button primary";
        reload.href = window.location.pathname + window.location.search;
        reload.textContent = msg("Reload");
        panel.append(reload);
      }
    }
  }

  function errorText(status, p) {
    if (status === 409) return msg("Conflict");
    if (status === 413) return msg("TooLarge");
    if (status === 507) return msg("Quota");
    return msg("Failed") + (p && p.detail ? ": " + p.detail : "");
  }

  async function start(job) {
    job.state = "running";
    job.li.dataset.state = "running";
    running++;
    try {
      if (maxBytes && job.file.size > maxBytes) throw { status: 413 };
      const cut = job.path.lastIndexOf("/");
      const folder = await ensureFolder(cut < 0 ? "" : job.path.slice(0, cut));
      const fileName = cut < 0 ? job.path : job.path.slice(cut + 1);
      await new Promise((resolve, reject) => {
        const xhr = new XMLHttpRequest();
        job.xhr = xhr;
        xhr.open("POST", api("/folders/" + folder + "/files?name=" + encodeURIComponent(fileName)));
        xhr.setRequestHeader("x-csrf-token", csrf);
        xhr.setRequestHeader("content-type", "application/octet-stream");
        xhr.upload.onprogress = (e) => {
          if (e.lengthComputable) {
            job.loaded = e.loaded;
            job.bar.value = Math.floor((e.loaded * 100) / Math.max(1, e.total));
            updateOverall();
          }
        };
        xhr.onload = () => {
          if (xhr.status >= 200 && xhr.status < 300) resolve();
          else {
            let p = {};
            try { p = JSON.parse(xhr.responseText); } catch (_) {}
            reject({ status: xhr.status, problem: p });
          }
        };
        xhr.onerror = () => reject({ status: 0, problem: {} });
        xhr.onabort = () => reject({ aborted: true });
        xhr.send(job.file);
      });
      finish(job, "done", msg("Done"));
    } catch (e) {
      if (job.state !== "cancelled") {
        if (e && e.aborted) finish(job, "cancelled", msg("Cancelled"));
        else if (e instanceof Error) finish(job, "failed", msg("Failed") + ": " + e.message);
        else finish(job, "failed", errorText(e.status, e.problem));
      }
    } finally {
      running--;
      pump();
    }
  }

  function pump() {
    while (running < CONCURRENCY) {
      const next = jobs.find((j) => j.state === "queued");
      if (!next) break;
      start(next);
    }
    updateOverall();
  }

  function enqueue(pairs) {
    for (const [file, path] of pairs) addJob(file, path);
    pump();
  }

  function readAll(reader) {
    return new Promise((resolve) => {
      const out = [];
      const step = () =>
        reader.readEntries((batch) => {
          if (!batch.length) resolve(out);
          else {
            out.push(...batch);
            step();
          }
        }, () => resolve(out));
      step();
    });
  }

  async function walk(entry, prefix, out) {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push([file, prefix + entry.name]);
    } else if (entry.isDirectory) {
      const children = await readAll(entry.createReader());
      for (const c of children) await walk(c, prefix + entry.name + "/", out);
    }
  }

  document.getElementById("file-input").addEventListener("change", (e) => {
    enqueue([...e.target.files].map((f) => [f, f.name]));
    e.target.value = "";
  });
  document.getElementById("folder-input").addEventListener("change", (e) => {
    enqueue([...e.target.files].map((f) => [f, f.webkitRelativePath || f.name]));
    e.target.value = "";
  });
  document.getElementById("cancel-all").addEventListener("click", () => jobs.forEach(stop));
  ["dragenter", "dragover"].forEach((t) =>
    drop.addEventListener(t, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    })
  );
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const items = [...(e.dataTransfer.items || [])];
    const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null)).filter(Boolean);
    const pairs = [];
    if (entries.length) {
      for (const en of entries) await walk(en, "", pairs);
    } else {
      for (const f of e.dataTransfer.files) pairs.push([f, f.name]);
    }
    enqueue(pairs);
  });
})();
