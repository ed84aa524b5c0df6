// Breach readiness in the browser: the organization admin marks a canary on
// the file page; a member reads it; the alert appears on the security
// dashboard and is acknowledged there; the scope report page shows what the
// member touched and the untouched organization; the platform admin throws
// the read-only switch from the dashboard; the organization admin forces a
// password reset from the organization page.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startKura, setupWorld, launchBrowser, newContext, signIn, shot, story, press, Api, PASSWORD,
} from '../lib/server.mjs';

describe('security dashboard, scope report and kill switches', () => {
  const it = story(test);
  let server, world, browser, admin, rootPage, canary, member;

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    browser = await launchBrowser();
    admin = await (await newContext(browser)).newPage();
    admin.on('dialog', (d) => d.accept());
    rootPage = await (await newContext(browser)).newPage();
    rootPage.on('dialog', (d) => d.accept());
    member = await new Api(server.base).login(world.users.aUser.email);
    canary = await member.upload(world.project.id, world.project.root_folder_id, 'salaries-2027.xlsx', Buffer.from('bait'));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('the organization admin marks a file as a canary on its page', async () => {
    await signIn(admin, server.base, world.users.aAdmin.email);
    await admin.goto(`${server.base}/projects/${world.project.id}/nodes/${canary.id}`);
    await press(admin.locator('#canary button'));
    await admin.waitForURL(`${server.base}/projects/${world.project.id}/nodes/${canary.id}`);
    assert.match(await admin.textContent('#canary h2'), /✓/);
    const list = await world.admin.get(`/api/orgs/${world.orgA.id}/canaries`);
    assert.deepEqual(list.data.items.map((c) => c.node_id), [canary.id]);
  });

  it('a read of the canary shows up on the dashboard at once, and is acknowledged there', async () => {
    await member.req('GET', `/api/projects/${world.project.id}/files/${canary.id}/content`);
    const deadline = Date.now() + 10_000;
    let row;
    for (;;) {
      await admin.goto(`${server.base}/security`);
      row = admin.locator('#alerts tbody tr', { hasText: 'canary' });
      if (await row.count()) break;
      assert.ok(Date.now() < deadline, 'no canary alert on the dashboard');
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.match(await row.textContent(), /critical/);
    assert.match(await row.textContent(), /aki\.user@agency-a\.test/);
    assert.equal(await admin.locator('#canary-hits li').count(), 1);
    assert.match(await admin.textContent('#top-downloaders'), /aki\.user@agency-a\.test/);
    await shot(admin, 'security-dashboard');
    await press(row.locator('form:has(input[value="acknowledged"]) button'));
    await admin.waitForURL(`${server.base}/security`);
    assert.match(await admin.locator('#alerts tbody tr', { hasText: 'canary' }).textContent(), /acknowledged/);
  });

  it('the scope report page lists what the member read and the untouched organization', async () => {
    await admin.goto(`${server.base}/security/scope`);
    await admin.selectOption('select[name="kind"]', 'actor');
    await admin.fill('input[name="value"]', world.users.aUser.email);
    await admin.click('form.filters button[type="submit"]');
    await admin.waitForSelector('.scope-report');
    const files = await admin.locator('table.scope-files tbody tr').allTextContents();
    assert.equal(files.length, 1);
    assert.match(files[0], /salaries-2027\.xlsx/);
    // An organization admin's report covers their own organization only.
    assert.equal(await admin.locator('.unaffected li').count(), 0);
    const csv = await admin.locator('.downloads a', { hasText: 'CSV' }).getAttribute('href');
    const got = await admin.evaluate(async (u) => {
      const r = await fetch(u);
      return { status: r.status, text: await r.text() };
    }, csv);
    assert.equal(got.status, 200);
    assert.match(got.text, /salaries-2027\.xlsx/);
    await shot(admin, 'scope-report');
    // The platform admin sees every organization, and Vendor B untouched.
    await signIn(rootPage, server.base, 'root@platform.test');
    await rootPage.goto(`${server.base}/security/scope?kind=actor&value=${encodeURIComponent(world.users.aUser.email)}`);
    await rootPage.waitForSelector('.scope-report');
    assert.match(await rootPage.textContent('.unaffected'), /Vendor B/);
  });

  it('the platform admin makes the platform read-only and back from the dashboard', async () => {
    await rootPage.goto(`${server.base}/security`);
    await press(rootPage.locator('#kill-switches form:has(input[value="read-only"]) button'));
    await rootPage.waitForURL(`${server.base}/security`);
    assert.match(await rootPage.textContent('#kill-switches h2'), /read-only/);
    const up = await member.req('POST', `/api/projects/${world.project.id}/folders/${world.project.root_folder_id}/files?name=x.txt`, { body: Buffer.from('x'), any: true });
    assert.equal(up.status, 503);
    assert.equal(up.data.code, 'read-only');
    await shot(rootPage, 'security-read-only');
    await press(rootPage.locator('#kill-switches form:has(input[value="normal"]) button'));
    await rootPage.waitForURL(`${server.base}/security`);
    // The canary read contained the member's session: it must step up first.
    const held = await member.req('POST', `/api/projects/${world.project.id}/folders/${world.project.root_folder_id}/files?name=x.txt`, { body: Buffer.from('x'), any: true });
    assert.equal(held.data.code, 'step-up-required');
    member = await new Api(server.base).login(world.users.aUser.email);
    await member.upload(world.project.id, world.project.root_folder_id, 'x.txt', Buffer.from('x'));
  });

  it('the organization admin forces a password reset from the organization page', async () => {
    await admin.goto(`${server.base}/orgs/${world.orgA.id}`);
    const row = admin.locator('table.users tbody tr', { hasText: world.users.aUser.email });
    await press(row.locator('form[action$="/force-reset"] button'));
    await admin.waitForLoadState();
    assert.match(await admin.textContent('main'), /1 account/);
    const again = await new Api(server.base).req('POST', '/api/auth/login', { json: { email: world.users.aUser.email, password: PASSWORD }, any: true });
    assert.equal(again.status, 401);
    assert.equal(again.data.code, 'password-reset-required');
    const gone = await member.req('GET', '/api/me', { any: true });
    assert.equal(gone.status, 401);
  });
});
