// Test harness for the Kura browser tests: starts the real `kura` binary on a
// free loopback port with a fresh data folder, sets up organizations, users
// and projects through the REST API, and launches Debian's Chromium through
// playwright-core.

import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The kura binary: $KURA_BIN, else target/debug/kura of this checkout. */
export const KURA_BIN = process.env.KURA_BIN
  ? path.resolve(process.env.KURA_BIN)
  : path.resolve(here, '../../../target/debug/kura');

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const BROWSER_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Where screenshots go ($SHOTS_DIR, default /tmp/kura-browser-shots). */
export const SHOTS_DIR = process.env.SHOTS_DIR || '/tmp/kura-browser-shots';

export const PASSWORD = 'correct horse battery staple';

// Servers still running; ended when this process is interrupted.
const running = new Map();
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    for (const [c, dir] of running) {
      c.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  });
}

/**
 * Start `kura serve` on 127.0.0.1:0 with a fresh data folder. Resolves once
 * the server printed its address; `stop()` ends it and removes the data.
 */
export async function startKura({ env = {}, args = [] } = {}) {
  if (!existsSync(KURA_BIN)) {
    throw new Error(`kura binary not found at ${KURA_BIN} (set KURA_BIN)`);
  }
  const dataDir = mkdtempSync(path.join(tmpdir(), 'kura-browser-'));
  const child = spawn(
    KURA_BIN,
    ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...args],
    {
      // Tests sign in far more often than people; the limits have their own e2e test.
      env: {
        ...process.env,
        KURA_LOG: 'warn',
        KURA_SIGNIN_RATE_PER_MINUTE: '100000',
        KURA_ANONYMOUS_RATE_PER_MINUTE: '100000',
        KURA_PASSWORD_CHECKS_PER_SECOND: '100000',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const log = [];
  const keep = (line) => {
    log.push(line);
    if (log.length > 200) log.shift();
  };
  createInterface({ input: child.stderr }).on('line', keep);
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  running.set(child, dataDir);
  child.once('exit', () => running.delete(child));

  let token = null;
  let earlyExit;
  const started = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`kura did not start within 60 s:\n${log.join('\n')}`)),
      60_000,
    );
    earlyExit = (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`kura exited early (${code ?? signal}):\n${log.join('\n')}`));
    };
    child.once('exit', earlyExit);
    createInterface({ input: child.stdout }).on('line', (line) => {
      keep(line);
      const t = line.match(/^kura: bootstrap-token (\S+)/);
      if (t) token = t[1];
      const l = line.match(/^kura: listening on (http:\/\/\S+)/);
      if (l) {
        clearTimeout(timer);
        resolve(l[1]);
      }
    });
  });
  let base;
  try {
    base = await started;
  } catch (e) {
    process.off('exit', killOnExit);
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  child.off('exit', earlyExit);

  async function stop() {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dataDir, { recursive: true, force: true });
  }

  return { base, token, dataDir, log, stop, pid: child.pid };
}

// ---- second factors the tests hold for their users ----

const factors = new Map(); // email → { secret, lastStep, recovery: [] }

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret for a time step. */
export function totpAt(secretB32, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32Decode(secretB32)).update(msg).digest();
  const o = h[19] & 15;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1_000_000).padStart(6, '0');
}

export const nowStep = () => Math.floor(Date.now() / 30_000);

/** Remember a user's TOTP secret (the step just used, if any). */
export function rememberFactor(email, secret, usedStep = 0) {
  factors.set(email.toLowerCase(), { secret, lastStep: usedStep, recovery: [] });
}

export function keepRecoveryCodes(email, codes) {
  const f = factors.get(email.toLowerCase());
  if (f && codes) f.recovery = [...codes];
}

/**
 * A second factor the server has not seen yet: the oldest unused TOTP step
 * of the accepted window, else a recovery code, else wait for a new step.
 */
export async function freshCode(email) {
  for (let i = 0; i < 3; i++) {
    const f = factors.get(email.toLowerCase());
    if (!f) throw new Error(`no second factor known for ${email}`);
    const now = nowStep();
    const step = [now - 1, now, now + 1].find((x) => x > f.lastStep);
    if (step !== undefined) {
      f.lastStep = step;
      return { method: 'totp', code: totpAt(f.secret, step) };
    }
    if (f.recovery.length) return { method: 'recovery', code: f.recovery.pop() };
    await new Promise((r) => setTimeout(r, 31_000));
  }
  throw new Error(`no fresh second factor for ${email}`);
}

/** Run `kura <args>` against a test server's data folder. */
export function kuraCli(server, args) {
  return execFileSync(KURA_BIN, [...args, '--data-dir', server.dataDir], {
    env: { ...process.env, KURA_LOG: 'warn' },
    encoding: 'utf8',
  });
}

/** A small REST client holding one session (cookie + CSRF token). */
export class Api {
  constructor(base) {
    this.base = base;
    this.cookie = null;
    this.csrf = null;
    this.user = null;
  }

  /**
   * One request. `json` sends a JSON body; `body` sends raw bytes. Throws
   * unless the status equals `expect` (when given) or is 2xx.
   */
  async req(method, p, { json, body, headers = {}, expect, any = false } = {}) {
    const h = { ...headers };
    if (this.cookie) h.cookie = `kura_session=${this.cookie}`;
    if (this.csrf && method !== 'GET' && method !== 'HEAD') h['x-csrf-token'] = this.csrf;
    let payload = body;
    if (json !== undefined) {
      h['content-type'] = 'application/json';
      payload = JSON.stringify(json);
    } else if (body !== undefined && !h['content-type']) {
      h['content-type'] = 'application/octet-stream';
    }
    const res = await fetch(this.base + p, { method, headers: h, body: payload, redirect: 'manual' });
    const buf = Buffer.from(await res.arrayBuffer());
    const ctype = res.headers.get('content-type') || '';
    let data = buf;
    if (ctype.includes('json')) data = buf.length ? JSON.parse(buf.toString('utf8')) : null;
    else if (ctype.startsWith('text/')) data = buf.toString('utf8');
    const ok = any || (expect !== undefined ? res.status === expect : res.status >= 200 && res.status < 300);
    if (!ok) {
      const shown = Buffer.isBuffer(data) ? `${data.length} bytes` : JSON.stringify(data);
      throw new Error(`${method} ${p} → ${res.status} (expected ${expect ?? '2xx'}): ${shown}`);
    }
    return { status: res.status, headers: res.headers, data, raw: buf };
  }

  get(p, o) { return this.req('GET', p, o); }
  post(p, json, o = {}) { return this.req('POST', p, { json, ...o }); }

  /** Sign in as a client does: password, then the second factor (enrolling one where due). */
  async login(email, password = PASSWORD) {
    let res = await this.req('POST', '/api/auth/login', { json: { email, password }, any: true });
    if (res.status === 401) res = await this.finishSignIn(email, res.data);
    else if (res.status !== 200) throw new Error(`login as ${email} → ${res.status}: ${JSON.stringify(res.data)}`);
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith('kura_session='));
    if (!setCookie) throw new Error('login set no kura_session cookie');
    this.cookie = setCookie.split(';')[0].slice('kura_session='.length);
    this.csrf = res.data.csrf_token;
    this.user = res.data.user;
    return this;
  }

  async finishSignIn(email, problem) {
    const challenge = problem.challenge;
    if (problem.code === 'mfa-required') {
      const { method, code } = await freshCode(email);
      return this.post('/api/auth/mfa', { challenge, method, code });
    }
    if (problem.code === 'mfa-enrolment-required') {
      const e = (await this.post('/api/auth/enrol/totp', { challenge })).data;
      const step = nowStep();
      rememberFactor(email, e.secret, step);
      const res = await this.post('/api/auth/enrol/totp/confirm', { challenge, factor_id: e.factor_id, code: totpAt(e.secret, step) });
      keepRecoveryCodes(email, res.data.recovery_codes);
      return res;
    }
    throw new Error(`unexpected sign-in answer ${JSON.stringify(problem)}`);
  }

  /** Upload a new file into a folder; resolves to the node JSON. */
  async upload(projectId, folderId, name, bytes) {
    const res = await this.req(
      'POST',
      `/api/projects/${projectId}/folders/${folderId}/files?name=${encodeURIComponent(name)}`,
      { body: Buffer.from(bytes), expect: 201 },
    );
    return res.data;
  }

  async children(projectId, folderId) {
    const res = await this.get(`/api/projects/${projectId}/folders/${folderId}/children?limit=1000`);
    return res.data.items;
  }
}

/**
 * The world every test file starts from:
 * - platform admin (bootstrap),
 * - "Agency A" with an org admin (owner of both projects) and a user,
 * - "Vendor B" with a user,
 * - project "Harbor Tower" in A with A's user and B's user as members,
 * - project "A Internal" in A without B's user.
 */
export async function setupWorld(server) {
  const { base } = server;
  const root = new Api(base);
  await root.post(
    '/api/bootstrap',
    { token: server.token, email: 'root@platform.test', display_name: 'Platform Root', password: PASSWORD },
    { expect: 201 },
  );
  // Administrators must use passkeys by default; the tests that are not
  // about passkeys sign them in with TOTP (passkey.test.mjs keeps the rule).
  kuraCli(server, ['admin', 'set-policy', '--org', 'platform', '--json', '{"webauthn_for_admins": false}']);
  await root.login('root@platform.test');
  const orgA = (await root.post('/api/admin/orgs', { name: 'Agency A', slug: 'agency-a' })).data;
  const orgB = (await root.post('/api/admin/orgs', { name: 'Vendor B', slug: 'vendor-b' })).data;
  for (const o of [orgA, orgB]) {
    await root.req('PUT', `/api/orgs/${o.id}/policy`, { json: { webauthn_for_admins: false } });
  }
  const users = {
    aAdmin: { email: 'alice.admin@agency-a.test', display_name: 'Alice Admin', org: orgA, org_admin: true },
    aUser: { email: 'aki.user@agency-a.test', display_name: 'Aki User', org: orgA, org_admin: false },
    bUser: { email: 'bob.vendor@vendor-b.test', display_name: 'Bob Vendor', org: orgB, org_admin: false },
  };
  for (const u of Object.values(users)) {
    const created = await root.post(`/api/orgs/${u.org.id}/users`, {
      email: u.email,
      display_name: u.display_name,
      password: PASSWORD,
      org_admin: u.org_admin,
    });
    u.id = created.data.id;
    u.password = PASSWORD;
  }
  // Everyone enrols an authenticator app at a first sign-in, as a person would.
  for (const u of [users.aUser, users.bUser]) await new Api(base).login(u.email);
  const admin = await new Api(base).login(users.aAdmin.email);
  const project = (await admin.post('/api/projects', { name: 'Harbor Tower' })).data;
  await admin.post(`/api/projects/${project.id}/members`, { email: users.aUser.email, role: 'member' });
  await admin.post(`/api/projects/${project.id}/members`, { email: users.bUser.email, role: 'member' });
  const internal = (await admin.post('/api/projects', { name: 'A Internal' })).data;
  return { base, root, admin, orgA, orgB, users, project, internal };
}

/** Launch Chromium (headless) with the flags the suite needs. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: BROWSER_ARGS });
}

/**
 * A fresh browser context (1280x800 unless told) whose pages record script
 * errors and CSP violations in `context.problems`.
 */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', ...options });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(20_000);
  context.problems = [];
  context.on('page', (page) => watchPage(context, page));
  return context;
}

function watchPage(context, page) {
  page.on('pageerror', (e) => context.problems.push(`pageerror on ${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    // Refused inline script/style, blocked resources: CSP violations.
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) {
      context.problems.push(`CSP on ${page.url()}: ${m.text()}`);
    }
  });
}

/** Sign in through the login form (password, then the TOTP code) and wait for the home page. */
export async function signIn(page, base, email, password = PASSWORD) {
  await page.goto(`${base}/login`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/login'),
    page.click('form[action="/login"] button[type="submit"]'),
  ]);
  let res = await req.response();
  await page.waitForLoadState();
  if (res.status() === 200 && (await page.locator('form[action="/login/factor"] #code').count())) {
    const { method, code } = await freshCode(email);
    if (method === 'recovery') {
      await page.click('details summary');
      await page.fill('#recovery', code);
    } else {
      await page.fill('#code', code);
    }
    const [r2] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/login/factor'),
      page.click(method === 'recovery' ? 'details form button[type="submit"]' : 'form[action="/login/factor"] button.primary'),
    ]);
    res = await r2.response();
  } else if (res.status() === 200 && (await page.locator('#totp-secret').count())) {
    const secret = (await page.textContent('#totp-secret')).trim();
    const step = nowStep();
    rememberFactor(email, secret, step);
    await page.fill('#code', totpAt(secret, step));
    await page.click('form[action="/login/enrol"] button[type="submit"]');
    await page.waitForSelector('#recovery-codes');
    keepRecoveryCodes(email, await page.$$eval('#recovery-codes li', (l) => l.map((x) => x.textContent)));
    await page.click('a.button.primary');
    await page.waitForURL(`${base}/`);
    return;
  }
  if (res.status() !== 303) {
    await page.waitForLoadState();
    const heading = await page.textContent('h1').catch(() => '?');
    throw new Error(
      `sign-in form answered ${res.status()} ("${heading?.trim()}"); the browser sent Origin: ${(await req.allHeaders()).origin}`,
    );
  }
  await page.waitForURL(`${base}/`);
}

/**
 * Click an element that may be below the fold. Playwright scrolls it into
 * view itself, but when the point it clicks was over an out-of-process
 * frame before the scroll (the sandboxed preview on the details page),
 * Chromium can route the click to that frame. Scroll first, let two frames
 * pass, then click.
 */
export async function press(locator) {
  await locator.scrollIntoViewIfNeeded();
  await locator.page().evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await locator.click();
}

/** Save a full-page screenshot as SHOTS_DIR/<name>.png. */
export async function shot(page, name) {
  mkdirSync(SHOTS_DIR, { recursive: true });
  const file = path.join(SHOTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Wait until the uploader has no queued or running item, then return the
 * items as [{name, state, status}].
 */
export async function settledUploads(page, { count, timeout = 20_000 } = {}) {
  try {
    await page.waitForFunction(
      (n) => {
        const items = [...document.querySelectorAll('#upload-list li.upload-item')];
        if (n !== undefined && items.length < n) return false;
        return items.length > 0 && items.every((li) => ['done', 'failed', 'cancelled'].includes(li.dataset.state));
      },
      count,
      { timeout },
    );
  } catch (e) {
    const now = await uploadItems(page);
    throw new Error(`uploads did not settle: ${JSON.stringify(now)} (${e.message})`);
  }
  return uploadItems(page);
}

export function uploadItems(page) {
  return page.$$eval('#upload-list li.upload-item', (lis) =>
    lis.map((li) => ({
      name: li.querySelector('.name')?.textContent,
      state: li.dataset.state,
      status: li.querySelector('.status')?.textContent,
    })),
  );
}

/** Drop in-memory files on #dropzone as a user dragging them would. */
export async function dropFiles(page, files) {
  await page.evaluate((list) => {
    const dt = new DataTransfer();
    for (const f of list) {
      dt.items.add(new File([new Uint8Array(f.bytes)], f.name, { type: f.type || 'application/octet-stream' }));
    }
    const zone = document.getElementById('dropzone');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
    }
  }, files.map((f) => ({ name: f.name, type: f.type, bytes: [...Buffer.from(f.bytes)] })));
}

/** The names in the file browser's table, in order. */
export function listedNames(page) {
  return page.$$eval('table.files tbody td.name a', (as) => as.map((a) => a.textContent));
}

/** Deterministic pseudo-random bytes (binary content that is not text). */
export function bytes(n, seed = 1) {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * Steps of one story: after a step fails, the later ones are skipped
 * instead of each waiting for its own timeout.
 */
export function story(it) {
  let failed = null;
  return (name, fn) =>
    it(name, async (t) => {
      if (failed) {
        t.skip(`skipped: "${failed}" failed`);
        return;
      }
      try {
        await fn(t);
      } catch (e) {
        failed = name;
        throw e;
      }
    });
}
