// File details: rename, move, delete to the trash and restore; versions
// (upload a new one through the API, make an old one current); members page.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startKura, setupWorld, launchBrowser, newContext, signIn, shot, listedNames, story, press, Api,
} from '../lib/server.mjs';

describe('file details, trash and versions', () => {
  const it = story(test);
  let server, world, browser, context, page, api;
  let folder, file, plan, rootUrl, folderUrl;
  const v1 = Buffer.from('version one of the schedule\n');
  const v2 = Buffer.from('version two of the schedule, longer than the first\n');

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    api = await new Api(server.base).login(world.users.aUser.email);
    const p = world.project;
    folder = (await api.post(`/api/projects/${p.id}/folders/${p.root_folder_id}/folders`, { name: 'Archive' })).data;
    file = await api.upload(p.id, p.root_folder_id, 'schedule.txt', v1);
    plan = await api.upload(p.id, p.root_folder_id, 'plan.pdf', Buffer.from('%PDF-1.4\n% not really a pdf\n'));
    rootUrl = `${server.base}/projects/${p.id}/folders/${p.root_folder_id}`;
    folderUrl = `${server.base}/projects/${p.id}/folders/${folder.id}`;
    browser = await launchBrowser();
    context = await newContext(browser);
    page = await context.newPage();
    await signIn(page, server.base, world.users.aUser.email);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('opens the details page from the folder listing', async () => {
    await page.goto(`${server.base}/projects/${world.project.id}`);
    await page.waitForURL(rootUrl);
    assert.deepEqual(await listedNames(page), ['Archive', 'plan.pdf', 'schedule.txt']);
    await page.click('table.files td.name a:text-is("schedule.txt")');
    await page.waitForURL(`${server.base}/projects/${world.project.id}/nodes/${file.id}`);
    assert.equal((await page.textContent('h1')).trim(), 'schedule.txt');
    assert.equal(await page.inputValue('#rename'), 'schedule.txt');
    // A text file is previewed in a sandboxed frame.
    const frame = page.locator('section.preview iframe');
    assert.equal(await frame.getAttribute('src'), `/projects/${world.project.id}/nodes/${file.id}/preview`);
    assert.equal(await frame.getAttribute('sandbox'), '');
    const f = await (await frame.elementHandle()).contentFrame();
    await f.waitForLoadState();
    assert.equal((await f.textContent('body')).trim(), v1.toString().trim());
  });

  it('renames the file', async () => {
    await page.fill('#rename', 'schedule-final.txt');
    await Promise.all([
      page.waitForURL(`${server.base}/projects/${world.project.id}/nodes/${file.id}`),
      press(page.locator('form[action$="/rename"] button[type="submit"]')),
    ]);
    await page.waitForSelector('h1:has-text("schedule-final.txt")');
    assert.equal(await page.inputValue('#rename'), 'schedule-final.txt');
    await press(page.locator('a:has-text("Back to the folder")'));
    await page.waitForURL(rootUrl);
    assert.deepEqual(await listedNames(page), ['Archive', 'plan.pdf', 'schedule-final.txt']);
  });

  it('moves a file with the folder picker', async () => {
    await page.goto(`${server.base}/projects/${world.project.id}/nodes/${plan.id}`);
    await press(page.locator('a.button:has-text("Move…")'));
    await page.waitForURL(/\/move$/);
    assert.equal((await page.textContent('h1 .name')).trim(), 'plan.pdf');
    await page.click('ul.list a:text-is("Archive")');
    await page.waitForURL(/\/move\?folder=/);
    assert.match(await page.textContent('.empty'), /No subfolders here/);
    await Promise.all([page.waitForURL(folderUrl), page.click('button:has-text("Move here")')]);
    assert.deepEqual(await listedNames(page), ['plan.pdf']);
    await page.goto(rootUrl);
    assert.deepEqual(await listedNames(page), ['Archive', 'schedule-final.txt']);
  });

  it('moves the file to the trash after confirming', async () => {
    await page.goto(`${server.base}/projects/${world.project.id}/nodes/${file.id}`);
    const dialogs = [];
    page.once('dialog', async (d) => {
      dialogs.push([d.type(), d.message()]);
      await d.accept();
    });
    await Promise.all([page.waitForURL(rootUrl), press(page.locator('form[action$="/delete"] button[type="submit"]'))]);
    assert.deepEqual(dialogs, [['confirm', 'Move this item to the trash?']]);
    assert.deepEqual(await listedNames(page), ['Archive']);
  });

  it('keeps the file when the confirmation is dismissed', async () => {
    await page.goto(`${folderUrl}`);
    await page.click('table.files td.name a:text-is("plan.pdf")');
    await page.waitForURL(/\/nodes\//);
    page.once('dialog', (d) => d.dismiss());
    await press(page.locator('form[action$="/delete"] button[type="submit"]'));
    await page.waitForTimeout(300);
    assert.match(page.url(), new RegExp(`/nodes/${plan.id}$`), 'still on the details page');
    const names = (await api.children(world.project.id, folder.id)).map((n) => n.name);
    assert.deepEqual(names, ['plan.pdf']);
  });

  it('lists the file in the trash and restores it', async () => {
    await page.goto(rootUrl);
    await page.click('nav.tabs a:has-text("Trash")');
    await page.waitForURL(`${server.base}/projects/${world.project.id}/trash`);
    assert.equal(await page.getAttribute('nav.tabs a:has-text("Trash")', 'aria-current'), 'page');
    const row = page.locator('table.files tbody tr', { hasText: 'schedule-final.txt' });
    assert.equal(await row.count(), 1);
    assert.match(await row.locator('td.size').textContent(), /\d+ B/);
    await shot(page, 'trash');
    await Promise.all([page.waitForURL(rootUrl), row.locator('button:has-text("Restore")').click()]);
    assert.deepEqual(await listedNames(page), ['Archive', 'schedule-final.txt']);
    await page.goto(`${server.base}/projects/${world.project.id}/trash`);
    assert.match(await page.textContent('.empty'), /The trash is empty/);
  });

  it('shows a second version uploaded through the API', async () => {
    const res = await api.req('PUT', `/api/projects/${world.project.id}/files/${file.id}/content`, { body: v2 });
    assert.ok(res.status === 200 || res.status === 201, `PUT content → ${res.status}`);
    await page.goto(`${server.base}/projects/${world.project.id}/nodes/${file.id}`);
    const rows = page.locator('table.versions tbody tr');
    assert.equal(await rows.count(), 2);
    const numbers = await rows.locator('td:first-child').allTextContents();
    assert.deepEqual(numbers.map((t) => t.replace(/\s+/g, ' ').trim()).sort(), ['1', '2 current']);
    // Only the old version offers "Make current".
    assert.equal(await page.locator('table.versions button:has-text("Make current")').count(), 1);
    // The size shown is the new one.
    assert.equal((await page.textContent('dl.facts dd')).trim(), `${v2.length} B`);
  });

  it('makes the first version current again, which adds a third version', async () => {
    const old = page.locator('table.versions tbody tr', { has: page.locator('td:first-child', { hasText: /^1$/ }) });
    assert.equal(await old.count(), 1);
    await Promise.all([
      page.waitForURL(`${server.base}/projects/${world.project.id}/nodes/${file.id}`),
      press(old.locator('button:has-text("Make current")')),
    ]);
    await page.waitForLoadState();
    const rows = page.locator('table.versions tbody tr');
    assert.equal(await rows.count(), 3);
    const current = await page.locator('table.versions tbody tr:has(.badge) td:first-child').textContent();
    assert.equal(current.replace(/\s+/g, ' ').trim(), '3 current');
    await shot(page, 'file-details');
    // The current content is version one's again, and old versions stay downloadable.
    const cur = await page.request.get(`${server.base}/api/projects/${world.project.id}/files/${file.id}/content`);
    assert.ok((await cur.body()).equals(v1));
    const v2row = page.locator('table.versions tbody tr', { has: page.locator('td:first-child', { hasText: /^2$/ }) });
    const href = await v2row.locator('a[data-download]').getAttribute('href');
    const old2 = await page.request.get(server.base + href);
    assert.ok((await old2.body()).equals(v2));
  });

  it('shows the project members with their organizations', async () => {
    const admin = await newContext(browser);
    const p = await admin.newPage();
    await signIn(p, server.base, world.users.aAdmin.email);
    await p.goto(`${server.base}/projects/${world.project.id}/members`);
    const rows = p.locator('table.members tbody tr');
    assert.equal(await rows.count(), 3);
    const text = (await rows.allInnerTexts()).join('\n');
    for (const s of ['Alice Admin', 'Aki User', 'Bob Vendor', 'Vendor B', 'Agency A']) assert.ok(text.includes(s), `${s} in ${text}`);
    assert.equal(await p.locator('#member-email').count(), 1, 'the owner can add members');
    await shot(p, 'members');
    // A plain member sees the list without the management forms.
    await page.goto(`${server.base}/projects/${world.project.id}/members`);
    assert.equal(await page.locator('table.members tbody tr').count(), 3);
    assert.equal(await page.locator('#member-email').count(), 0);
    assert.deepEqual(admin.problems, []);
    await admin.close();
  });

  test('logged no script errors or CSP violations', () => {
    assert.deepEqual(context.problems, []);
  });
});
