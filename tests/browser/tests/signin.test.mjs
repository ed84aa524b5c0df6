// Sign-in with a second factor in the browser: a new user sets up an
// authenticator app from the QR page at the first sign-in and keeps the
// recovery codes; a wrong code is refused on the page; an organization
// admin locks and unlocks the account and edits the sign-in policy.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startKura, setupWorld, launchBrowser, newContext, signIn, story, shot, PASSWORD, totpAt, nowStep,
} from '../lib/server.mjs';

describe('sign-in with a second factor', () => {
  const it = story(test);
  let server, world, browser, dana, danaPage, adminPage, secret;

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    dana = (await world.root.post(`/api/orgs/${world.orgA.id}/users`, {
      email: 'dana@agency-a.test', display_name: 'Dana New', password: PASSWORD,
    })).data;
    browser = await launchBrowser();
    danaPage = await (await newContext(browser)).newPage();
    const adminContext = await newContext(browser);
    adminPage = await adminContext.newPage();
    adminPage.on('dialog', (d) => d.accept());
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('sets up an authenticator app from the QR code at the first sign-in', async () => {
    await danaPage.goto(`${server.base}/login`);
    await danaPage.fill('#email', dana.email);
    await danaPage.fill('#password', PASSWORD);
    await danaPage.click('form[action="/login"] button[type="submit"]');
    await danaPage.waitForSelector('.qr svg');
    secret = (await danaPage.textContent('#totp-secret')).trim();
    assert.match(secret, /^[A-Z2-7]{32}$/);
    await shot(danaPage, 'enrol-totp');
    // A wrong first code keeps the page with a message.
    await danaPage.fill('#code', '000000');
    await danaPage.click('form[action="/login/enrol"] button[type="submit"]');
    await danaPage.waitForSelector('.alert');
    assert.equal((await danaPage.textContent('#totp-secret')).trim(), secret, 'the same key again');
    await danaPage.fill('#code', totpAt(secret, nowStep()));
    await danaPage.click('form[action="/login/enrol"] button[type="submit"]');
    await danaPage.waitForSelector('#recovery-codes');
    assert.equal(await danaPage.locator('#recovery-codes li').count(), 10);
    await danaPage.click('a.button.primary');
    await danaPage.waitForURL(`${server.base}/`);
  });

  it('refuses a wrong code on the second-factor page, then signs in', async () => {
    await danaPage.click('form[action="/logout"] button');
    await danaPage.waitForURL(/\/login/);
    await danaPage.fill('#email', dana.email);
    await danaPage.fill('#password', PASSWORD);
    await danaPage.click('form[action="/login"] button[type="submit"]');
    await danaPage.waitForSelector('form[action="/login/factor"] #code');
    await danaPage.fill('#code', '000000');
    await danaPage.click('form[action="/login/factor"] button.primary');
    await danaPage.waitForSelector('.alert');
    await danaPage.fill('#code', totpAt(secret, nowStep() + 1));
    await danaPage.click('form[action="/login/factor"] button.primary');
    await danaPage.waitForURL(`${server.base}/`);
  });

  it('lets the organization admin lock and unlock the account', async () => {
    await signIn(adminPage, server.base, world.users.aAdmin.email);
    await adminPage.goto(`${server.base}/orgs/${world.orgA.id}`);
    const row = adminPage.locator('table.users tbody tr', { hasText: dana.email });
    await row.locator('form[action$="/lock"] button').click();
    await adminPage.waitForLoadState();
    assert.match(await row.textContent(), /Locked/);
    const res = await danaPage.goto(`${server.base}/`);
    assert.ok(danaPage.url().includes('/login'), `locked out: ${res.status()} ${danaPage.url()}`);
    await row.locator('form[action$="/unlock"] button').click();
    await adminPage.waitForLoadState();
    assert.match(await row.textContent(), /Active/);
  });

  it('edits the sign-in policy and will not shut the admin out', async () => {
    await adminPage.fill('#p-networks', '192.0.2.0/24');
    await adminPage.click('#sign-in-policy form[action$="/policy"] button[type="submit"]');
    await adminPage.waitForSelector('.notice');
    assert.match(await adminPage.textContent('.notice'), /your own address/);
    await adminPage.fill('#p-networks', '127.0.0.1\n::1\n192.0.2.0/24');
    await adminPage.fill('#p-lock', '5');
    await adminPage.click('#sign-in-policy form[action$="/policy"] button[type="submit"]');
    await adminPage.waitForSelector('.notice');
    assert.match(await adminPage.textContent('.notice'), /saved/);
    assert.equal(await adminPage.inputValue('#p-lock'), '5');
    assert.match(await adminPage.inputValue('#p-networks'), /127\.0\.0\.1\/32/);
    await shot(adminPage, 'org-sign-in-policy');
  });
});
