// Security in the browser: hostile names are shown as text, HTML is never
// previewed, forms without the CSRF token are refused, the page CSP allows
// no inline script, and another organization's user cannot see a project
// they are not a member of.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startKura, setupWorld, launchBrowser, newContext, signIn, settledUploads, listedNames, story, press, Api,
} from '../lib/server.mjs';

const XSS_FILE = '<img src=x onerror=alert(1)>.html';
const XSS_FOLDER = '<svg onload=alert(1)><script>alert(2)<script>';
const SCRIPT_FOLDER = '<script>alert(1)</script>';

/** Script elements that are not our own /assets/ files. */
function foreignScripts(page) {
  return page.$$eval('script', (ss) => ss.map((s) => s.getAttribute('src') || s.textContent).filter((s) => !/^\/assets\/[a-z]+\.[0-9a-f]+\.js$/.test(s)));
}

describe('security', () => {
  const it = story(test);
  let server, world, browser, context, page, rootUrl, xssFileId;
  const dialogs = [];

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    rootUrl = `${server.base}/projects/${world.project.id}/folders/${world.project.root_folder_id}`;
    browser = await launchBrowser();
    context = await newContext(browser);
    page = await context.newPage();
    // Any alert/confirm/prompt here would be injected script (no form with
    // data-confirm is submitted in this file).
    page.on('dialog', async (d) => {
      dialogs.push(`${d.type()}: ${d.message()}`);
      await d.dismiss();
    });
    await signIn(page, server.base, world.users.aUser.email);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('serves pages with a CSP that allows no inline script', async () => {
    for (const url of [`${server.base}/login`, `${server.base}/`, rootUrl, `${server.base}/account`]) {
      const res = await page.goto(url);
      assert.equal(res.status(), 200, url);
      const csp = res.headers()['content-security-policy'] || '';
      assert.match(csp, /script-src 'self'/, `${url}: ${csp}`);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `${url}: ${csp}`);
      assert.match(csp, /frame-ancestors 'none'/, `${url}: ${csp}`);
      assert.equal(res.headers()['x-content-type-options'], 'nosniff');
      // No inline script or event handler attribute anywhere in the markup.
      const inline = await page.evaluate(() => ({
        scripts: [...document.scripts].filter((s) => !s.src).length,
        handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
      }));
      assert.deepEqual(inline, { scripts: 0, handlers: 0 }, url);
    }
  });

  it('shows a hostile file name uploaded in the browser as text', async () => {
    await page.goto(rootUrl);
    await page.setInputFiles('#file-input', [
      { name: XSS_FILE, mimeType: 'text/html', buffer: Buffer.from('<script>alert("from file")</script><h1>hi</h1>') },
    ]);
    const items = await settledUploads(page, { count: 1 });
    assert.deepEqual(items.map((i) => [i.name, i.state]), [[XSS_FILE, 'done']]);
    assert.equal(await page.locator('#upload-list img').count(), 0, 'the name in the upload list is text');
    await Promise.all([page.waitForURL(rootUrl), page.click('#upload-reload')]);
    assert.deepEqual(await listedNames(page), [XSS_FILE]);
    assert.equal(await page.locator('img[src="x"]').count(), 0);
    assert.equal(await page.locator('main img').count(), 0);
    const link = page.locator('table.files td.name a');
    assert.equal(await link.textContent(), XSS_FILE);
    xssFileId = (await link.getAttribute('href')).split('/nodes/')[1];
  });

  it('creates a hostile folder name and shows it as text', async () => {
    await page.fill('#folder-name', XSS_FOLDER);
    await Promise.all([page.waitForURL(rootUrl), page.click('form[action$="/mkdir"] button[type="submit"]')]);
    assert.ok((await listedNames(page)).includes(XSS_FOLDER));
    assert.equal(await page.locator('main svg').count(), 0);
    assert.deepEqual(await foreignScripts(page), []);
    await page.click(`table.files td.name a:text-is("${XSS_FOLDER}")`);
    await page.waitForURL(/\/folders\//);
    assert.equal((await page.textContent('nav.crumbs li:last-child')).trim(), XSS_FOLDER);
    assert.equal(await page.title(), `${XSS_FOLDER} · Kura`);
    assert.equal(await page.locator('svg').count(), 0);
  });

  it('refuses a folder name with a slash and shows the error safely', async () => {
    await page.goto(rootUrl);
    await page.fill('#folder-name', SCRIPT_FOLDER);
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/mkdir')),
      page.click('form[action$="/mkdir"] button[type="submit"]'),
    ]);
    assert.equal(res.status(), 400);
    await page.waitForSelector('.error-page');
    assert.equal((await page.textContent('.error-page .status')).trim(), '400');
    assert.deepEqual(await foreignScripts(page), []);
  });

  it('offers no preview of an HTML file and downloads it as an attachment', async () => {
    await page.goto(`${server.base}/projects/${world.project.id}/nodes/${xssFileId}`);
    assert.equal((await page.textContent('h1')).trim(), XSS_FILE);
    assert.equal(await page.locator('section.preview').count(), 0);
    assert.equal(await page.locator('iframe, img[src="x"]').count(), 0);
    assert.equal(await page.inputValue('#rename'), XSS_FILE);
    // The preview URL refuses HTML too.
    const prev = await page.request.get(`${server.base}/projects/${world.project.id}/nodes/${xssFileId}/preview`);
    assert.equal(prev.status(), 404);
    const dl = await page.request.get(`${server.base}/api/projects/${world.project.id}/files/${xssFileId}/content`);
    assert.equal(dl.status(), 200);
    assert.match(dl.headers()['content-disposition'] || '', /^attachment/);
    assert.doesNotMatch(dl.headers()['content-type'] || '', /html/);
    assert.equal(dl.headers()['x-content-type-options'], 'nosniff');
  });

  // Not a story step: the later steps do not depend on it.
  test('refuses the create-folder form without its CSRF token (403)', async () => {
    await page.goto(rootUrl);
    await page.evaluate(() => document.querySelector('form[action$="/mkdir"] input[name="_csrf"]').remove());
    await page.fill('#folder-name', 'made without csrf');
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/mkdir')),
      page.click('form[action$="/mkdir"] button[type="submit"]'),
    ]);
    await page.waitForSelector('.error-page');
    const shown = {
      status: res.status(),
      page: (await page.textContent('.error-page .status')).trim(),
      heading: (await page.textContent('.error-page h1')).trim(),
      detail: (await page.textContent('.error-page h1 + p')).trim(),
    };
    const names = (await world.admin.children(world.project.id, world.project.root_folder_id)).map((n) => n.name);
    assert.ok(!names.includes('made without csrf'), 'the folder was not created');
    assert.deepEqual(shown, {
      status: 403,
      page: '403',
      heading: 'You may not do this',
      detail: 'This form has expired or did not come from Kura. Go back, reload the page and try again.',
    });
  });

  it('refuses the create-folder form with a wrong CSRF token', async () => {
    await page.goto(rootUrl);
    await page.evaluate(() => { document.querySelector('form[action$="/mkdir"] input[name="_csrf"]').value = 'kcsrf_forged'; });
    await page.fill('#folder-name', 'made with a forged token');
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/mkdir')),
      page.click('form[action$="/mkdir"] button[type="submit"]'),
    ]);
    const names = (await world.admin.children(world.project.id, world.project.root_folder_id)).map((n) => n.name);
    assert.ok(!names.includes('made with a forged token'), `${names}`);
    assert.equal(res.status(), 403);
    assert.equal((await page.textContent('.error-page h1 + p')).trim(),
      'This form has expired or did not come from Kura. Go back, reload the page and try again.');
  });

  it('refuses a form posted from another origin even with the right token', async () => {
    await page.goto(rootUrl);
    const csrf = await page.getAttribute('meta[name="csrf-token"]', 'content');
    const res = await page.request.post(`${rootUrl}/mkdir`, {
      form: { _csrf: csrf, name: 'from evil' },
      headers: { origin: 'http://evil.example' },
      maxRedirects: 0,
    });
    assert.equal(res.status(), 403);
    const names = (await world.admin.children(world.project.id, world.project.root_folder_id)).map((n) => n.name);
    assert.ok(!names.includes('from evil'));
  });

  test('no script ran from hostile names', () => {
    assert.deepEqual(dialogs, []);
    assert.deepEqual(context.problems, []);
  });
});

describe('another organization', () => {
  const it = story(test);
  let server, world, browser, context, page, internalFile;

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    internalFile = await world.admin.upload(world.internal.id, world.internal.root_folder_id, 'internal-only.txt', Buffer.from('secret'));
    // Something to see in the shared project.
    await world.admin.upload(world.project.id, world.project.root_folder_id, 'shared.txt', Buffer.from('shared'));
    browser = await launchBrowser();
    context = await newContext(browser);
    page = await context.newPage();
    await signIn(page, server.base, world.users.bUser.email);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('lists only the shared project for the partner user', async () => {
    const links = await page.$$eval('ul.projects li', (lis) => lis.map((li) => li.textContent.replace(/\s+/g, ' ').trim()));
    assert.equal(links.length, 1, `${links}`);
    assert.match(links[0], /Harbor Tower/);
    assert.match(links[0], /Agency A/);
    await page.goto(`${server.base}/projects/${world.project.id}`);
    assert.deepEqual(await listedNames(page), ['shared.txt']);
  });

  it('gets the not-found page for a project of another organization', async () => {
    const urls = [
      `/projects/${world.internal.id}`,
      `/projects/${world.internal.id}/folders/${world.internal.root_folder_id}`,
      `/projects/${world.internal.id}/nodes/${internalFile.id}`,
      `/projects/${world.internal.id}/trash`,
      `/projects/${world.internal.id}/members`,
    ];
    for (const u of urls) {
      const res = await page.goto(server.base + u);
      assert.equal(res.status(), 404, u);
      assert.equal((await page.textContent('.error-page .status')).trim(), '404', u);
      assert.equal((await page.textContent('.error-page h1')).trim(), 'Not found', u);
      assert.ok(!(await page.textContent('body')).includes('internal-only.txt'), u);
    }
    const api = await page.request.get(`${server.base}/api/projects/${world.internal.id}/files/${internalFile.id}/content`);
    assert.equal(api.status(), 404);
  });

  it('cannot open the other organization\'s admin or audit pages', async () => {
    let res = await page.goto(`${server.base}/orgs/${world.orgA.id}`);
    assert.ok([403, 404].includes(res.status()), `orgs → ${res.status()}`);
    res = await page.goto(`${server.base}/audit?org=${world.orgA.id}`);
    assert.ok([403, 404].includes(res.status()), `audit → ${res.status()}`);
    assert.ok(!(await page.textContent('body')).includes('Aki User'));
  });

  test('logged no script errors or CSP violations', () => {
    assert.deepEqual(context.problems, []);
  });
});
