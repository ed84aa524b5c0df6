// Audit log: the organization admin finds the uploads, filters through the
// form, and exports CSV; other users have no audit page.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startKura, setupWorld, launchBrowser, newContext, signIn, shot, settledUploads, story, press,
} from '../lib/server.mjs';

describe('audit log', () => {
  const it = story(test);
  let server, world, browser, context, page;
  const names = ['budget-q3.xlsx', '=SUM(1,2).xlsx', '図面-01.png'];

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

  it('a member uploads files in the browser', async () => {
    const member = await newContext(browser);
    const p = await member.newPage();
    await signIn(p, server.base, world.users.aUser.email);
    await p.goto(`${server.base}/projects/${world.project.id}`);
    await p.setInputFiles('#file-input', names.map((name, i) => ({
      name, mimeType: 'application/octet-stream', buffer: Buffer.alloc(1000 * (i + 1), i + 65),
    })));
    const items = await settledUploads(p, { count: names.length });
    assert.ok(items.every((i) => i.state === 'done'), JSON.stringify(items));
    // An audit page is not offered to, nor served to, a plain member.
    assert.equal(await p.locator('header nav a[href="/audit"]').count(), 0);
    const res = await p.goto(`${server.base}/audit`);
    assert.equal(res.status(), 403);
    assert.deepEqual(member.problems, []);
    await member.close();
  });

  it('the organization admin finds the uploads in the audit log', async () => {
    await signIn(page, server.base, world.users.aAdmin.email);
    await page.click('header nav a:text-is("Audit log")');
    await page.waitForURL(`${server.base}/audit`);
    assert.ok((await page.locator('table.audit tbody tr').count()) > names.length);
    await page.goto(`${server.base}/audit?action=file.upload`);
    assert.equal(await page.inputValue('input[name="action"]'), 'file.upload');
    const rows = await page.$$eval('table.audit tbody tr', (trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())));
    assert.equal(rows.length, names.length, JSON.stringify(rows));
    for (const r of rows) {
      assert.equal(r[1], world.users.aUser.email);
      assert.equal(r[2], 'file.upload');
      assert.equal(r[3], 'success');
      assert.equal(r[6], '127.0.0.1');
    }
    assert.deepEqual(rows.map((r) => r[4]).sort(), [...names].sort());
    assert.deepEqual(rows.map((r) => r[5]).sort(), ['1000', '2000', '3000']);
    await shot(page, 'audit');
  });

  it('filters with the form', async () => {
    await page.fill('input[name="action"]', '');
    await page.fill('input[name="actor"]', world.users.aAdmin.email);
    await Promise.all([page.waitForURL(/\/audit\?/), press(page.locator('form.filters button[type="submit"]'))]);
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('actor'), world.users.aAdmin.email);
    const actors = await page.$$eval('table.audit tbody tr td:nth-child(2)', (tds) => tds.map((t) => t.textContent.trim()));
    assert.ok(actors.length > 0);
    assert.ok(actors.every((a) => a === world.users.aAdmin.email), `actors: ${actors}`);
    // Nothing matches an unknown action.
    await page.goto(`${server.base}/audit?action=no.such.action`);
    assert.match(await page.textContent('p.empty'), /No events match these filters/);
  });

  it('exports the filtered log as CSV', async () => {
    await page.goto(`${server.base}/audit?action=file.upload`);
    const link = page.locator('form.filters a.button:has-text("Export CSV")');
    const href = await link.getAttribute('href');
    assert.equal(href, '/audit.csv?action=file.upload');
    const res = await page.request.get(server.base + href);
    assert.equal(res.status(), 200);
    assert.match(res.headers()['content-type'], /^text\/csv/);
    assert.match(res.headers()['content-disposition'], /^attachment/);
    const text = await res.text();
    const lines = text.trim().split('\n');
    assert.match(lines[0], /^time_utc,actor,/);
    assert.equal(lines.length, 1 + names.length, text);
    for (const l of lines.slice(1)) assert.ok(l.includes('"file.upload"'), l);
    for (const n of names) assert.ok(text.includes(n), `${n} in CSV`);
    // A name that a spreadsheet would run as a formula is neutralized.
    assert.ok(text.includes('"\'=SUM(1,2).xlsx"'), text);
    // Clicking the link downloads the same file.
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    assert.equal(download.suggestedFilename(), 'kura-audit.csv');
  });

  it('shows the organization page to its admin', async () => {
    await page.click('header nav a:text-is("Organization")');
    await page.waitForURL(`${server.base}/orgs/${world.orgA.id}`);
    assert.match(await page.textContent('h1'), /Agency A/);
    const users = await page.textContent('table.users');
    for (const n of ['Alice Admin', 'Aki User']) assert.ok(users.includes(n));
    assert.ok(!users.includes('Bob Vendor'), 'users of other organizations are not listed');
  });

  test('logged no script errors or CSP violations', () => {
    assert.deepEqual(context.problems, []);
  });
});
