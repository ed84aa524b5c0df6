// Language: the account preference switches the interface to Japanese (the
// uploader's messages too); without a preference the browser's language
// decides.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startKura, setupWorld, launchBrowser, newContext, signIn, shot, settledUploads, story, press,
} from '../lib/server.mjs';

describe('Japanese and English', () => {
  const it = story(test);
  let server, world, browser, context, page, rootUrl;

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    rootUrl = `${server.base}/projects/${world.project.id}/folders/${world.project.root_folder_id}`;
    browser = await launchBrowser();
    context = await newContext(browser);
    page = await context.newPage();
    await signIn(page, server.base, world.users.aUser.email);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('shows the account page in English with this session listed', async () => {
    await page.click('header nav a:text-is("Account")');
    await page.waitForURL(`${server.base}/account`);
    assert.equal((await page.textContent('h1')).trim(), 'Account');
    assert.equal(await page.inputValue('#locale'), '');
    const opts = await page.$$eval('#locale option', (os) => os.map((o) => [o.value, o.textContent.trim()]));
    assert.deepEqual(opts, [['', 'Same as the browser'], ['en', 'English'], ['ja', '日本語']]);
    const sessions = page.locator('table.sessions tbody tr');
    assert.ok((await sessions.count()) >= 1);
    assert.match(await page.textContent('table.sessions'), /this session/);
    assert.match(await page.textContent('table.sessions'), /Chrome Linux/);
  });

  it('creates an API token and shows its secret once', async () => {
    await page.fill('#token-name', 'backup script');
    await page.fill('#token-days', '30');
    await press(page.locator('form[action="/account/tokens"] button[type="submit"]'));
    await page.waitForSelector('#new-token');
    const secret = (await page.textContent('#new-token')).trim();
    assert.ok(secret.length > 20, `secret: ${secret}`);
    assert.match(await page.textContent('p.notice'), /API token created/);
    const row = page.locator('table.tokens tbody tr', { hasText: 'backup script' });
    assert.equal(await row.count(), 1);
    assert.match(await row.textContent(), /Read and write/);
    // The token works against the API.
    const me = await fetch(`${server.base}/api/me`, { headers: { authorization: `Bearer ${secret}` } });
    assert.equal(me.status, 200);
    assert.equal((await me.json()).user.email, world.users.aUser.email);
    // Shown once: a fresh load of the page no longer has it.
    await page.goto(`${server.base}/account`);
    assert.equal(await page.locator('#new-token').count(), 0);
    await shot(page, 'account');
  });

  it('switches to Japanese in the account preferences', async () => {
    await page.selectOption('#locale', 'ja');
    await Promise.all([
      page.waitForURL(`${server.base}/account`),
      press(page.locator('form[action="/account/preferences"] button[type="submit"]')),
    ]);
    await page.waitForSelector('h1:text-is("アカウント")');
    assert.equal(await page.getAttribute('html', 'lang'), 'ja');
    assert.equal(await page.inputValue('#locale'), 'ja');
    const nav = await page.$$eval('header nav a', (as) => as.map((a) => a.textContent.trim()));
    assert.ok(nav.includes('ホーム'), `nav: ${nav}`);
    assert.ok(nav.includes('アカウント'), `nav: ${nav}`);
    assert.equal((await page.textContent('header .who button')).trim(), 'サインアウト');
  });

  it('shows the file browser and the uploader in Japanese', async () => {
    await page.click('header nav a:text-is("ホーム")');
    await page.waitForSelector('h1:text-is("参加中のプロジェクト")');
    await page.click(`a[href="/projects/${world.project.id}"]`);
    await page.waitForURL(rootUrl);
    assert.equal((await page.textContent('form[action$="/mkdir"] button')).trim(), 'フォルダを作成');
    assert.equal(await page.getAttribute('#folder-name', 'placeholder'), '新しいフォルダ名');
    assert.match(await page.textContent('#dropzone'), /ここにファイルやフォルダをドロップ/);
    assert.match(await page.textContent('#dropzone'), /ファイルを選択/);
    await page.setInputFiles('#file-input', [
      { name: '議事録.txt', mimeType: 'text/plain', buffer: Buffer.from('第1回 打合せ\n') },
      { name: 'README.md', mimeType: 'text/plain', buffer: Buffer.from('# readme\n') },
    ]);
    const items = await settledUploads(page, { count: 2 });
    assert.deepEqual(items.map((i) => [i.state, i.status]), [['done', '完了'], ['done', '完了']]);
    assert.equal((await page.textContent('#upload-reload')).trim(), 'アップロードしたファイルを表示');
    await Promise.all([page.waitForURL(rootUrl), page.click('#upload-reload')]);
    const heads = await page.$$eval('table.files thead th', (ths) => ths.map((t) => t.textContent.trim()));
    assert.ok(heads.some((h) => h.startsWith('名前')), `headers: ${heads}`);
    const links = await page.$$eval('table.files td.actions a', (as) => as.map((a) => a.textContent.trim()));
    assert.ok(links.includes('ダウンロード'), `links: ${links}`);
    await shot(page, 'browser-ja');
  });

  it('shows the sign-in page in Japanese to a browser that prefers Japanese', async () => {
    const ja = await newContext(browser, { locale: 'ja-JP' });
    const p = await ja.newPage();
    await p.goto(`${server.base}/login`);
    assert.equal((await p.textContent('h1')).trim(), 'Kura にサインイン');
    assert.equal(await p.getAttribute('html', 'lang'), 'ja');
    assert.equal((await p.textContent('label[for="email"]')).trim(), 'メールアドレス');
    assert.equal((await p.textContent('form[action="/login"] button')).trim(), 'サインイン');
    // A wrong password is explained in Japanese too.
    await p.fill('#email', 'nobody@example.test');
    await p.fill('#password', 'wrong password');
    await p.click('form[action="/login"] button');
    await p.waitForSelector('p.alert');
    assert.equal((await p.textContent('p.alert')).trim(), 'メールアドレスまたはパスワードが正しくありません。');
    await ja.close();
  });

  it('follows the browser language when the preference is "same as the browser"', async () => {
    // An English-preferring user with the preference set to Japanese still sees Japanese…
    const en = await newContext(browser, { locale: 'en-US' });
    await en.addCookies(await context.cookies());
    const p = await en.newPage();
    await p.goto(`${server.base}/account`);
    assert.equal((await p.textContent('h1')).trim(), 'アカウント');
    // …until the preference goes back to automatic.
    await p.selectOption('#locale', '');
    await Promise.all([
      p.waitForURL(`${server.base}/account`),
      press(p.locator('form[action="/account/preferences"] button[type="submit"]')),
    ]);
    await p.waitForSelector('h1:text-is("Account")');
    assert.equal(await p.getAttribute('html', 'lang'), 'en');
    assert.deepEqual(en.problems, []);
    await en.close();
  });

  test('logged no script errors or CSP violations', () => {
    assert.deepEqual(context.problems, []);
  });
});
