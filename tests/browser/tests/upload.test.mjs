// Sign in, create a folder, upload by file picker and by drag and drop, a
// failing upload next to successful ones, and downloads that return the
// uploaded bytes.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  startKura, setupWorld, launchBrowser, newContext, signIn, shot, settledUploads,
  dropFiles, listedNames, bytes, story, PASSWORD,
} from '../lib/server.mjs';

/** Texts of the elements of a locator that are visible. */
async function visibleTexts(locator) {
  const out = [];
  for (const el of await locator.all()) if (await el.isVisible()) out.push((await el.textContent()).trim());
  return out;
}

describe('sign in, upload and download', () => {
  const it = story(test);
  let server, world, browser, context, page;
  const picked = [
    { name: 'site-plan.pdf', mimeType: 'application/pdf', buffer: bytes(150_000, 7) },
    { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('Meeting notes\nline 2\n') },
    { name: '見積書 2026.xlsx', mimeType: 'application/octet-stream', buffer: bytes(4096, 11) },
    { name: 'photo.png', mimeType: 'image/png', buffer: bytes(2048, 13) },
  ];
  const dropped = [
    { name: 'dropped-a.csv', bytes: Buffer.from('a,b\n1,2\n') },
    { name: 'dropped-b.bin', bytes: bytes(70_000, 17) },
  ];
  let folderUrl;
  let cancelsAfterDone = null;

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    browser = await launchBrowser();
    context = await newContext(browser);
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('refuses a wrong password without creating a session', async () => {
    await page.goto(`${server.base}/login`);
    await shot(page, 'login');
    await page.fill('#email', world.users.aUser.email);
    await page.fill('#password', 'not the password');
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/login') && r.request().method() === 'POST'),
      page.click('form[action="/login"] button[type="submit"]'),
    ]);
    assert.equal(resp.status(), 401);
    await page.waitForSelector('p.alert[role="alert"]');
    assert.equal(
      (await page.textContent('p.alert')).trim(),
      'The email or password is not correct.',
    );
    // The email is kept, the password is not.
    assert.equal(await page.inputValue('#email'), world.users.aUser.email);
    assert.equal(await page.inputValue('#password'), '');
    const cookies = await context.cookies();
    assert.equal(cookies.filter((c) => c.name === 'kura_session').length, 0, 'no session cookie');
    await page.goto(`${server.base}/`);
    assert.match(new URL(page.url()).pathname, /^\/login$/, 'home still asks to sign in');
  });

  it('signs in and lands on home with the projects listed', async () => {
    await signIn(page, server.base, world.users.aUser.email, PASSWORD);
    assert.equal((await page.textContent('h1')).trim(), 'Your projects');
    assert.equal((await page.textContent('.who-name')).trim(), 'Aki User');
    const link = page.locator(`ul.projects a[href="/projects/${world.project.id}"]`);
    assert.equal((await link.textContent()).trim(), 'Harbor Tower');
    // Not a member of the other project: not listed.
    assert.equal(await page.locator(`a[href="/projects/${world.internal.id}"]`).count(), 0);
    assert.equal(await page.locator('#new-project').count(), 1);
    await shot(page, 'home');
  });

  it('opens the project and creates a folder', async () => {
    await page.click(`ul.projects a[href="/projects/${world.project.id}"]`);
    await page.waitForURL(`${server.base}/projects/${world.project.id}/folders/${world.project.root_folder_id}`);
    assert.match(await page.textContent('.empty'), /This folder is empty/);
    await page.fill('#folder-name', 'Drawings 図面');
    await Promise.all([page.waitForLoadState('load'), page.click('form[action$="/mkdir"] button[type="submit"]')]);
    await page.waitForSelector('table.files');
    assert.deepEqual(await listedNames(page), ['Drawings 図面']);
    await page.click('table.files td.name a:text-is("Drawings 図面")');
    await page.waitForURL(/\/folders\//);
    folderUrl = page.url();
    const crumbs = await page.$$eval('nav.crumbs li', (lis) => lis.map((l) => l.textContent.trim()));
    assert.deepEqual(crumbs, ['Harbor Tower', 'Drawings 図面']);
    assert.equal(await page.getAttribute('nav.crumbs li:last-child span', 'aria-current'), 'page');
  });

  it('uploads several files through the file picker', async () => {
    assert.equal(await page.isHidden('#upload-panel'), true, 'panel hidden before any upload');
    await page.setInputFiles('#file-input', picked);
    const items = await settledUploads(page, { count: picked.length });
    assert.deepEqual(
      items.map((i) => i.state),
      picked.map(() => 'done'),
      JSON.stringify(items),
    );
    assert.deepEqual(items.map((i) => i.name).sort(), picked.map((f) => f.name).sort());
    assert.ok(items.every((i) => i.status === 'Done'));
    assert.equal(await page.$eval('#overall-progress', (p) => p.value), 100);
    assert.equal((await page.textContent('#overall-text')).trim(), `${picked.length}/${picked.length}`);
    await page.waitForSelector('#upload-reload');
    assert.equal((await page.textContent('#upload-reload')).trim(), 'Show the uploaded files');
    cancelsAfterDone = await visibleTexts(page.locator('#upload-list li.upload-item button'));
    await shot(page, 'upload-panel');
    await Promise.all([page.waitForURL(folderUrl), page.click('#upload-reload')]);
    await page.waitForSelector('table.files');
    assert.deepEqual((await listedNames(page)).sort(), picked.map((f) => f.name).sort());
    // The panel is gone after the reload.
    assert.equal(await page.isHidden('#upload-panel'), true);
  });

  // Not a story step: later steps do not depend on it.
  test('hides the Cancel buttons once every upload has finished', () => {
    assert.notEqual(cancelsAfterDone, null, 'the upload step ran');
    // upload.js sets `hidden` on them; app.css `button { display: inline-block }` must not undo it.
    assert.deepEqual(cancelsAfterDone, [], 'visible Cancel buttons of finished uploads');
  });

  it('uploads files dropped on the drop zone', async () => {
    await dropFiles(page, dropped);
    const items = await settledUploads(page, { count: dropped.length });
    assert.deepEqual(items.map((i) => [i.name, i.state]).sort(), dropped.map((f) => [f.name, 'done']).sort());
    assert.equal(await page.$eval('#overall-progress', (p) => p.value), 100);
    assert.equal(await page.$eval('#dropzone', (d) => d.classList.contains('over')), false);
    await Promise.all([page.waitForURL(folderUrl), page.click('#upload-reload')]);
    const names = await listedNames(page);
    for (const f of [...picked, ...dropped]) assert.ok(names.includes(f.name), `${f.name} listed in ${names}`);
  });

  it('uploads a whole folder through the folder picker, subfolders included', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kura-folder-'));
    const top = path.join(dir, 'Site photos');
    await mkdir(path.join(top, '2026', '04'), { recursive: true });
    await writeFile(path.join(top, 'index.txt'), 'index');
    await writeFile(path.join(top, '2026', 'a.txt'), 'a');
    await writeFile(path.join(top, '2026', '04', 'b.txt'), 'b');
    try {
      await page.setInputFiles('#folder-input', top);
      const items = await settledUploads(page, { count: 3 });
      assert.deepEqual(
        items.map((i) => [i.name, i.state]).sort(),
        [['Site photos/2026/04/b.txt', 'done'], ['Site photos/2026/a.txt', 'done'], ['Site photos/index.txt', 'done']],
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    await Promise.all([page.waitForURL(folderUrl), page.click('#upload-reload')]);
    await page.click('table.files td.name a:text-is("Site photos")');
    await page.waitForURL(/\/folders\//);
    assert.deepEqual(await listedNames(page), ['2026', 'index.txt']);
    await page.click('table.files td.name a:text-is("2026")');
    await page.waitForURL(/\/folders\//);
    assert.deepEqual(await listedNames(page), ['04', 'a.txt']);
    await page.goto(folderUrl);
  });

  it('cancels an upload in flight', async () => {
    // Hold the upload request so that it is still running when Cancel is clicked.
    let release;
    const held = new Promise((r) => { release = r; });
    const pattern = /\/api\/projects\/[^/]+\/folders\/[^/]+\/files\?name=slow\.bin$/;
    await page.route(pattern, async (route) => {
      await held;
      await route.continue().catch(() => {});
    });
    await page.setInputFiles('#file-input', [{ name: 'slow.bin', mimeType: 'application/octet-stream', buffer: bytes(200_000, 3) }]);
    const item = page.locator('#upload-list li.upload-item', { hasText: 'slow.bin' });
    await page.waitForFunction(() => document.querySelector('#upload-list li.upload-item')?.dataset.state === 'running');
    // Chromium cancels the paused request asynchronously; continuing it before the
    // cancellation lands would still send it, so release only once it has failed.
    const failed = page.waitForEvent('requestfailed', { predicate: (r) => pattern.test(r.url()), timeout: 10_000 });
    await item.locator('button:has-text("Cancel")').click();
    await failed;
    release();
    const items = await settledUploads(page, { count: 1 });
    assert.deepEqual(items.map((i) => [i.name, i.state, i.status]), [['slow.bin', 'cancelled', 'Cancelled']]);
    await page.unroute(pattern);
    await Promise.all([page.waitForURL(folderUrl), page.click('#upload-reload')]);
    assert.ok(!(await listedNames(page)).includes('slow.bin'));
  });

  it('reports a conflicting upload as failed while the others succeed', async () => {
    await page.setInputFiles('#file-input', [
      { name: 'fresh-1.txt', mimeType: 'text/plain', buffer: Buffer.from('one') },
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('a different notes file') },
      { name: 'fresh-2.txt', mimeType: 'text/plain', buffer: Buffer.from('two') },
    ]);
    const items = await settledUploads(page, { count: 3 });
    const byName = Object.fromEntries(items.map((i) => [i.name, i]));
    assert.equal(byName['notes.txt'].state, 'failed', JSON.stringify(items));
    assert.equal(byName['notes.txt'].status, 'Failed: a file with this name already exists here');
    assert.equal(byName['fresh-1.txt'].state, 'done');
    assert.equal(byName['fresh-2.txt'].state, 'done');
    assert.match(await page.textContent('#overall-text'), /^2\/3 · 1 ✕$/);
    await page.waitForSelector('#upload-reload');
    await Promise.all([page.waitForURL(folderUrl), page.click('#upload-reload')]);
    const names = await listedNames(page);
    assert.ok(names.includes('fresh-1.txt') && names.includes('fresh-2.txt'));
    assert.equal(names.filter((n) => n === 'notes.txt').length, 1);
    await shot(page, 'browser-files');
    // The existing file kept its content.
    const folderId = folderUrl.split('/folders/')[1];
    const listing = await world.admin.children(world.project.id, folderId);
    const notes = listing.find((n) => n.name === 'notes.txt');
    const content = await world.admin.get(`/api/projects/${world.project.id}/files/${notes.id}/content`);
    assert.equal(content.raw.toString(), 'Meeting notes\nline 2\n');
  });

  it('downloads a file by clicking its Download link, byte for byte', async () => {
    const row = page.locator('table.files tbody tr', { has: page.locator('td.name a:text-is("site-plan.pdf")') });
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      row.locator('td.actions a[data-download]').click(),
    ]);
    assert.equal(download.suggestedFilename(), 'site-plan.pdf');
    const got = await readFile(await download.path());
    assert.equal(got.length, picked[0].buffer.length);
    assert.ok(got.equals(picked[0].buffer), 'downloaded bytes equal the uploaded ones');
  });

  it('downloads with the page session (Japanese name, dropped binary)', async () => {
    for (const [name, want] of [['見積書 2026.xlsx', picked[2].buffer], ['dropped-b.bin', dropped[1].bytes]]) {
      const row = page.locator('table.files tbody tr', { has: page.locator(`td.name a:text-is("${name}")`) });
      const href = await row.locator('td.actions a[data-download]').getAttribute('href');
      assert.match(href, new RegExp(`^/api/projects/${world.project.id}/files/[0-9a-f-]+/content$`));
      const res = await page.request.get(server.base + href);
      assert.equal(res.status(), 200);
      const body = await res.body();
      assert.ok(body.equals(Buffer.from(want)), `${name}: bytes equal`);
      const cd = res.headers()['content-disposition'] || '';
      assert.match(cd, /^attachment/, `${name}: served as attachment (${cd})`);
    }
  });

  // Not a story step: the sign-out step does not depend on it.
  test('shows the file browser on a 360 px wide phone screen without sideways scrolling', async () => {
    const phone = await newContext(browser, { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
    await phone.addCookies(await context.cookies());
    const p = await phone.newPage();
    await p.goto(folderUrl);
    await p.waitForSelector('table.files');
    await shot(p, 'browser-files-360');
    // A phone browser zooms out when content is wider than the device, so
    // compare with the device width, not with window.innerWidth.
    const widths = await p.evaluate((device) => ({
      page: document.documentElement.scrollWidth,
      overflowing: [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > device + 0.5)
        .map((e) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${typeof e.className === 'string' && e.className ? '.' + e.className.trim().replace(/ +/g, '.') : ''}` +
          ` (right edge ${Math.round(e.getBoundingClientRect().right)}px)`)
        .slice(0, 6),
    }), 360);
    const cols = await p.$$eval('table.files thead th', (ths) => ths.map((t) => `${t.textContent.trim() || '(actions)'} ${Math.round(t.getBoundingClientRect().width)}px`));
    assert.ok(widths.page <= 360, `columns: ${cols.join(', ')}; page is ${widths.page}px wide on a 360px screen; past the edge: ${widths.overflowing.join(', ')}`);
    assert.deepEqual(phone.problems, []);
    await phone.close();
  });

  it('signs out with the header button', async () => {
    await Promise.all([page.waitForURL(`${server.base}/login`), page.click('header .who form button[type="submit"]')]);
    assert.equal((await page.textContent('h1')).trim(), 'Sign in to Kura');
    const cookies = await context.cookies();
    assert.equal(cookies.filter((c) => c.name === 'kura_session' && c.value).length, 0);
    await page.goto(folderUrl);
    assert.match(page.url(), /\/login\?next=/);
  });

  test('logged no script errors or CSP violations', () => {
    assert.deepEqual(context.problems, []);
  });
});
