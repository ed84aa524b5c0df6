// Plain HTML form posts from real pages are accepted. Chromium sends
// `Origin: null` on form posts from pages served with
// `Referrer-Policy: no-referrer`; the server must accept that (the CSRF token
// proves the form is ours) while refusing a foreign origin.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startKura, setupWorld, launchBrowser, newContext, Api, PASSWORD, freshCode } from '../lib/server.mjs';

describe('form posts from the browser', () => {
  let server, world, browser;

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** Submit a form by clicking, and report what was sent and answered. */
  async function submit(page, buttonSelector) {
    const [req] = await Promise.all([
      page.waitForRequest((r) => r.method() === 'POST' && r.resourceType() === 'document'),
      page.click(buttonSelector),
    ]);
    const res = await req.response();
    await page.waitForLoadState();
    return {
      status: res.status(),
      origin: (await req.allHeaders()).origin,
      landed: new URL(page.url()).pathname,
    };
  }

  test('the sign-in form signs in', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const login = await page.goto(`${server.base}/login`);
    await page.fill('#email', world.users.aUser.email);
    await page.fill('#password', PASSWORD);
    const got = await submit(page, 'form[action="/login"] button[type="submit"]');
    // The pages say Referrer-Policy: no-referrer, so Chromium sends
    // Origin: null; the server accepts that with a valid token.
    assert.equal(login.headers()['referrer-policy'], 'no-referrer');
    assert.ok(['null', server.base].includes(got.origin), `origin ${got.origin}`);
    // The password alone signs nobody in: the second-factor page follows.
    assert.deepEqual({ status: got.status, landed: got.landed }, { status: 200, landed: '/login' });
    assert.deepEqual(await context.cookies().then((c) => c.filter((x) => x.name === 'kura_session')), []);
    const { code } = await freshCode(world.users.aUser.email);
    await page.fill('#code', code);
    const done = await submit(page, 'form[action="/login/factor"] button.primary');
    assert.ok(['null', server.base].includes(done.origin), `origin ${done.origin}`);
    assert.deepEqual({ status: done.status, landed: done.landed }, { status: 303, landed: '/' });
    await context.close();
  });

  test('a signed-in form (create folder) is accepted', async () => {
    const context = await newContext(browser);
    const api = await new Api(server.base).login(world.users.aUser.email);
    await context.addCookies([{ name: 'kura_session', value: api.cookie, url: server.base, httpOnly: true, sameSite: 'Lax' }]);
    const page = await context.newPage();
    const folderUrl = `${server.base}/projects/${world.project.id}/folders/${world.project.root_folder_id}`;
    const res = await page.goto(folderUrl);
    assert.equal(res.status(), 200);
    await page.fill('#folder-name', 'posted by a form');
    const got = await submit(page, 'form[action$="/mkdir"] button[type="submit"]');
    assert.ok(['null', server.base].includes(got.origin), `origin ${got.origin}`);
    assert.deepEqual({ status: got.status, landed: got.landed }, { status: 303, landed: new URL(folderUrl).pathname });
    const names = (await api.children(world.project.id, world.project.root_folder_id)).map((n) => n.name);
    assert.ok(names.includes('posted by a form'));
    await context.close();
  });
});
