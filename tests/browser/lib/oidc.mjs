// A real OpenID provider on loopback for the single sign-on tests: the npm
// package oidc-provider, with a minimal login page of our own so a test can
// decide what the provider asserts. A login name containing "mfa" is
// signed in with amr ["pwd", "otp"] (the provider vouches for MFA), any
// other with ["pwd"]. The email is the login name when it contains "@",
// else <login>@agency-a.test.

import http from 'node:http';
import Provider from 'oidc-provider';

export const CLIENT_ID = 'kura';
export const CLIENT_SECRET = 'kura-test-client-secret-0123456789';

function readForm(req) {
  return new Promise((resolve, reject) => {
    let d = '';
    req.on('data', (c) => {
      d += c;
      if (d.length > 10_000) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(d)));
  });
}

const escape = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Start the provider; `redirectUris` are Kura's callback URLs. */
export async function startOidc({ redirectUris }) {
  const server = http.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    claims: {
      acr: null, amr: null, sid: null, auth_time: null, iss: null,
      openid: ['sub', 'amr', 'acr', 'auth_time'], email: ['email', 'email_verified'], profile: ['name'],
    },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: id.includes('@') ? id : `${id}@agency-a.test`, email_verified: true, name: `IdP ${id}` };
        },
      };
    },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['kura-test-cookie-key'] },
  });
  const oidc = provider.callback();
  server.on('request', async (req, res) => {
    if (!req.url.startsWith('/interaction/')) return oidc(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (req.method === 'GET') {
        res.setHeader('content-type', 'text/html; charset=utf-8');
        res.end(`<!doctype html><title>Test IdP</title><h1>Test identity provider</h1>
<form method="post" action="/interaction/${escape(details.uid)}"><label for="login">Login</label>
<input id="login" name="login" autofocus><button type="submit">Sign in</button></form>`);
        return;
      }
      const login = (await readForm(req)).get('login') || 'anonymous';
      const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
      grant.addOIDCScope('openid email profile');
      const grantId = await grant.save();
      const amr = login.includes('mfa') ? ['pwd', 'otp'] : ['pwd'];
      await provider.interactionFinished(req, res, { login: { accountId: login, amr }, consent: { grantId } }, { mergeWithLastSubmission: false });
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e));
    }
  });
  return { issuer, stop: () => new Promise((r) => server.close(r)) };
}
