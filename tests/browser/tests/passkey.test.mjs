// Passkeys through Chromium's virtual authenticator (DevTools WebAuthn
// domain): an administrator whose organization keeps the default policy
// (passkeys required for admins) enrols one at the first sign-in, signs in
// with it, and confirms it again before a bulk download. A stolen password
// alone gets nothing.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startKura, setupWorld, launchBrowser, newContext, Api, PASSWORD, story, shot } from '../lib/server.mjs';

/** A REST call from the page, with its session and CSRF token. */
function pageApi(page, method, path, { json = null, text = null } = {}) {
  return page.evaluate(
    async ([method, path, json, text]) => {
      const headers = { 'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content };
      let body;
      if (text !== null) {
        headers['Content-Type'] = 'application/octet-stream';
        body = new TextEncoder().encode(text);
      } else if (json !== null) {
        headers['Content-Type'] = 'application/json';
        body = JSON.stringify(json);
      }
      const r = await fetch(path, { method, headers, body });
      return { status: r.status, data: await r.json().catch(() => null) };
    },
    [method, path, json, text],
  );
}

describe('passkeys', () => {
  const it = story(test);
  let server, world, browser, context, page, cdp, authenticatorId, local, orgC, project;
  const carol = { email: 'carol.admin@agency-c.test', display_name: 'Carol Admin' };

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    // WebAuthn needs a host name: the same server as http://localhost:PORT.
    local = server.base.replace('127.0.0.1', 'localhost');
    orgC = (await world.root.post('/api/admin/orgs', { name: 'Agency C', slug: 'agency-c' })).data;
    await world.root.post(`/api/orgs/${orgC.id}/users`, { ...carol, password: PASSWORD, org_admin: true });
    browser = await launchBrowser();
    context = await newContext(browser);
    page = await context.newPage();
    cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable', { enableUI: false });
    ({ authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', ctap2Version: 'ctap2_1', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
      },
    }));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  async function passwordStep() {
    await page.goto(`${local}/login`);
    await page.fill('#email', carol.email);
    await page.fill('#password', PASSWORD);
    await page.click('form[action="/login"] button[type="submit"]');
    await page.waitForLoadState();
  }

  it('gives a stolen admin password no session: only a passkey enrolment is offered', async () => {
    const r = await new Api(server.base).req('POST', '/api/auth/login', { json: { email: carol.email, password: PASSWORD }, any: true });
    assert.equal(r.status, 401);
    assert.equal(r.data.code, 'mfa-enrolment-required');
    assert.deepEqual(r.data.methods, ['webauthn']);
    assert.ok(!r.headers.getSetCookie().some((c) => c.startsWith('kura_session=')));
    const totp = await new Api(server.base).req('POST', '/api/auth/enrol/totp', { json: { challenge: r.data.challenge }, any: true });
    assert.equal(totp.status, 403, 'an authenticator app does not satisfy the passkey rule');
  });

  it('enrols a passkey at the first sign-in and shows the recovery codes once', async () => {
    await passwordStep();
    await page.waitForSelector('[data-passkey-box][data-mode="enrol"]');
    assert.equal(await page.locator('#totp-secret').count(), 0, 'no authenticator app for admins');
    assert.deepEqual((await context.cookies()).filter((c) => c.name === 'kura_session'), []);
    await page.fill('#passkey_name', 'Laptop');
    await page.click('[data-passkey-box] [data-passkey]');
    await page.waitForSelector('[data-codes]:not([hidden]) ol li');
    const codes = await page.$$eval('[data-codes] ol li', (l) => l.map((x) => x.textContent));
    assert.equal(codes.length, 10);
    await shot(page, 'passkey-enrolled-codes');
    await page.click('[data-codes] a.button');
    await page.waitForURL(`${local}/`);
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    await page.goto(`${local}/account`);
    assert.equal(await page.locator('#factors table input[name="name"]').inputValue(), 'Laptop');
    assert.match(await page.textContent('#factors'), /Passkey \/ security key/);
  });

  it('signs in with the passkey', async () => {
    await page.click('form[action="/logout"] button');
    await page.waitForURL(/\/login/);
    await passwordStep();
    await page.waitForSelector('[data-passkey-box][data-mode="signin"]');
    await page.click('[data-passkey-box] [data-passkey]');
    await page.waitForURL(`${local}/`);
    assert.ok((await context.cookies()).some((c) => c.name === 'kura_session'));
  });

  it('refuses an assertion without user verification', async () => {
    await page.click('form[action="/logout"] button');
    await page.waitForURL(/\/login/);
    await cdp.send('WebAuthn.setResponseOverrideBits', { authenticatorId, isBadUV: true });
    await passwordStep();
    await page.click('[data-passkey-box] [data-passkey]');
    await page.waitForSelector('[data-passkey-error]:not([hidden])');
    assert.ok(!page.url().endsWith(`${local}/`));
    await cdp.send('WebAuthn.setResponseOverrideBits', { authenticatorId, isBadUV: false });
    await page.click('[data-passkey-box] [data-passkey]');
    await page.waitForURL(`${local}/`);
  });

  it('asks for the passkey again before a bulk download, then downloads', async () => {
    // One file per minute without a fresh factor, for this test's speed.
    const pol = await pageApi(page, 'PUT', `/api/orgs/${orgC.id}/policy`, { json: { step_up_minutes: 1, bulk_download_files: 1 } });
    assert.equal(pol.status, 200, JSON.stringify(pol.data));
    project = (await pageApi(page, 'POST', '/api/projects', { json: { name: 'Harbor Plans' } })).data;
    for (const name of ['one.txt', 'two.txt']) {
      const up = await pageApi(page, 'POST', `/api/projects/${project.id}/folders/${project.root_folder_id}/files?name=${name}`, { text: `content of ${name}` });
      assert.equal(up.status, 201);
    }
    // The factor from sign-in ages past the one-minute window.
    await new Promise((r) => setTimeout(r, 62_000));
    await page.goto(`${local}/projects/${project.id}/folders/${project.root_folder_id}`);
    const row = (name) => page.locator('table.files tbody tr', { hasText: name }).locator('a[data-download]');
    const [first] = await Promise.all([page.waitForEvent('download'), row('one.txt').click()]);
    assert.equal(first.suggestedFilename(), 'one.txt');
    await row('two.txt').click();
    await page.waitForURL(/\/step-up\?next=/);
    await shot(page, 'passkey-step-up');
    const [second] = await Promise.all([page.waitForEvent('download'), page.click('[data-passkey-box] [data-passkey]')]);
    assert.equal(second.suggestedFilename(), 'two.txt');
    assert.deepEqual(context.problems, []);
  });
});
