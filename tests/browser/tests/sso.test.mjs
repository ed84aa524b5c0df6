// Single sign-on against a real OpenID provider (npm oidc-provider on
// loopback): an organization configures its provider; a user the provider
// vouches for with MFA is signed in and provisioned; one without an MFA
// assertion must add Kura's own second factor; an email outside the
// organization's allowed domains is refused; a forged callback is refused.

import { describe, it as test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startKura, setupWorld, launchBrowser, newContext, story, shot, totpAt, nowStep,
} from '../lib/server.mjs';
import { startOidc, CLIENT_ID, CLIENT_SECRET } from '../lib/oidc.mjs';

describe('single sign-on with OpenID Connect', () => {
  const it = story(test);
  let server, world, idp, browser, local;

  before(async () => {
    server = await startKura();
    world = await setupWorld(server);
    local = server.base.replace('127.0.0.1', 'localhost');
    idp = await startOidc({ redirectUris: [`${local}/sso/callback`] });
    await world.admin.req('PUT', `/api/orgs/${world.orgA.id}/policy`, {
      json: { webauthn_for_admins: false, allowed_email_domains: ['agency-a.test'] },
    });
    const cfg = await world.admin.req('PUT', `/api/orgs/${world.orgA.id}/sso`, {
      json: { issuer: idp.issuer, client_id: CLIENT_ID, client_secret: CLIENT_SECRET, idp_mfa_satisfies: true, provision_users: true },
    });
    assert.equal(cfg.data.redirect_uri, `${local}/sso/callback`);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await idp?.stop();
    await server?.stop();
  });

  /** Start single sign-on; log in at the provider unless its session remembers us. */
  async function viaProvider(page, login) {
    await page.goto(`${local}/login`);
    await page.fill('#sso-org', 'agency-a');
    await page.click('#sso-form button[type="submit"]');
    await page.waitForURL((u) => u.href.startsWith(idp.issuer) || u.pathname === '/sso/callback' || u.pathname === '/');
    if (page.url().startsWith(idp.issuer)) {
      await page.waitForSelector('#login');
      await page.fill('#login', login);
      await page.click('button[type="submit"]');
      await page.waitForURL((u) => !u.href.startsWith(idp.issuer));
    }
    await page.waitForLoadState();
  }

  it('signs in a user the provider vouches for with MFA, provisioning the account', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    await viaProvider(page, 'sora-mfa');
    await page.waitForURL(`${local}/`).catch(async () => {
      const ev = (await world.admin.get(`/api/orgs/${world.orgA.id}/audit?action=auth.sso`)).data.items;
      throw new Error(`not signed in: ${page.url()}: ${JSON.stringify(ev.map((e) => e.detail))}`);
    });
    assert.match(await page.textContent('header'), /IdP sora-mfa/);
    const users = (await world.admin.get(`/api/orgs/${world.orgA.id}/users`)).data.items;
    assert.ok(users.some((u) => u.email === 'sora-mfa@agency-a.test'), 'provisioned in Agency A');
    const audit = (await world.admin.get(`/api/orgs/${world.orgA.id}/audit?action=auth.sso`)).data.items;
    assert.equal(audit[0].detail.mfa_trusted, true);
    assert.deepEqual(context.problems, []);
    await context.close();
  });

  it('asks for Kura\'s own second factor when the provider did not assert MFA', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    await viaProvider(page, 'kai');
    // A new account: it sets up an authenticator app right away.
    await page.waitForSelector('#totp-secret');
    assert.deepEqual((await context.cookies()).filter((c) => c.name === 'kura_session'), []);
    const secret = (await page.textContent('#totp-secret')).trim();
    await page.fill('#code', totpAt(secret, nowStep()));
    await page.click('form[action="/login/enrol"] button[type="submit"]');
    await page.waitForSelector('#recovery-codes');
    await page.click('a.button.primary');
    await page.waitForURL(`${local}/`);
    await shot(page, 'sso-signed-in');
    // The next time the same subject is recognised and the factor is asked for.
    await page.click('form[action="/logout"] button');
    await page.waitForURL(/\/login/);
    await viaProvider(page, 'kai');
    await page.waitForSelector('form[action="/login/factor"] #code');
    await page.fill('#code', totpAt(secret, nowStep() + 1));
    await page.click('form[action="/login/factor"] button.primary');
    await page.waitForURL(`${local}/`);
    await context.close();
  });

  it('refuses an identity outside the allowed email domains', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    await viaProvider(page, 'mallory@evil.test');
    await page.waitForSelector('.alert');
    assert.ok(page.url().includes('/sso/callback'));
    assert.deepEqual((await context.cookies()).filter((c) => c.name === 'kura_session'), []);
    const users = (await world.admin.get(`/api/orgs/${world.orgA.id}/users`)).data.items;
    assert.ok(!users.some((u) => u.email === 'mallory@evil.test'));
    await context.close();
  });

  it('refuses a callback that this browser did not start', async () => {
    const context = await newContext(browser);
    const page = await context.newPage();
    const res = await page.goto(`${local}/sso/callback?code=forged&state=forged`);
    assert.equal(res.status(), 400);
    // A link to /sso?org=… only shows a page naming the organization: the
    // provider is reached by pressing its button, never by a link alone.
    await page.goto(`${local}/sso?org=agency-a`);
    assert.match(await page.textContent('body'), /Agency A/);
    assert.ok(page.url().startsWith(local));
    assert.deepEqual((await context.cookies()).filter((c) => c.name === 'kura_session'), []);
    await context.close();
  });
});
