// Passkeys and security keys (WebAuthn) for sign-in, enrolment, step-up and
// the account page. The server keeps the ceremony state; this file only
// converts between base64url JSON and the browser's ArrayBuffers.
(function () {
  'use strict';
  var b2u = function (b) {
    var s = '';
    new Uint8Array(b).forEach(function (c) { s += String.fromCharCode(c); });
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  };
  var u2b = function (s) {
    var bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(bin, function (c) { return c.charCodeAt(0); }).buffer;
  };
  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : '';
  }
  async function post(url, body, withCsrf) {
    var headers = { 'Content-Type': 'application/json' };
    if (withCsrf) headers['X-CSRF-Token'] = csrf();
    var r = await fetch(url, { method: 'POST', headers: headers, body: JSON.stringify(body || {}), credentials: 'same-origin' });
    var j = {};
    try { j = await r.json(); } catch (e) { j = {}; }
    if (!r.ok) throw new Error(j.detail || ('HTTP ' + r.status));
    return j;
  }
  async function create(opts) {
    var pk = opts.publicKey;
    pk.challenge = u2b(pk.challenge);
    pk.user.id = u2b(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = u2b(c.id); });
    var c = await navigator.credentials.create(opts);
    return {
      id: c.id, rawId: b2u(c.rawId), type: c.type, extensions: c.getClientExtensionResults(),
      response: {
        attestationObject: b2u(c.response.attestationObject),
        clientDataJSON: b2u(c.response.clientDataJSON),
        transports: c.response.getTransports ? c.response.getTransports() : undefined
      }
    };
  }
  async function get(opts) {
    var pk = opts.publicKey;
    pk.challenge = u2b(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = u2b(c.id); });
    var c = await navigator.credentials.get(opts);
    return {
      id: c.id, rawId: b2u(c.rawId), type: c.type, extensions: c.getClientExtensionResults(),
      response: {
        authenticatorData: b2u(c.response.authenticatorData),
        clientDataJSON: b2u(c.response.clientDataJSON),
        signature: b2u(c.response.signature),
        userHandle: c.response.userHandle ? b2u(c.response.userHandle) : null
      }
    };
  }
  function showCodes(box, codes, next) {
    var out = box.querySelector('[data-codes]');
    if (!codes || !out) { location.assign(next); return; }
    var list = out.querySelector('ol');
    codes.forEach(function (c) { var li = document.createElement('li'); li.textContent = c; list.appendChild(li); });
    out.querySelector('a').href = next;
    out.hidden = false;
    box.querySelector('[data-passkey]').hidden = true;
  }
  var flows = {
    signin: async function (box) {
      var ch = box.dataset.challenge;
      var o = await post('/api/auth/mfa/webauthn/options', { challenge: ch });
      await post('/api/auth/mfa/webauthn', { challenge: ch, credential: await get(o) });
      location.assign(box.dataset.next || '/');
    },
    enrol: async function (box) {
      var ch = box.dataset.challenge;
      var o = await post('/api/auth/enrol/webauthn/options', { challenge: ch });
      var name = box.querySelector('[name="passkey_name"]');
      var r = await post('/api/auth/enrol/webauthn', { challenge: ch, credential: await create(o), name: name && name.value ? name.value : 'Passkey' });
      showCodes(box, r.recovery_codes, box.dataset.next || '/');
    },
    stepup: async function (box) {
      var o = await post('/api/auth/step-up/webauthn/options', {}, true);
      await post('/api/auth/step-up/webauthn', { challenge: o.challenge, credential: await get(o.options) }, true);
      location.assign(box.dataset.next || '/');
    },
    add: async function (box) {
      var o = await post('/api/me/factors/webauthn/options', {}, true);
      var name = box.querySelector('[name="passkey_name"]');
      var r = await post('/api/me/factors/webauthn', { challenge: o.challenge, credential: await create(o.options), name: name && name.value ? name.value : 'Passkey' }, true);
      showCodes(box, r.recovery_codes, '/account');
    }
  };
  document.querySelectorAll('[data-passkey-box]').forEach(function (box) {
    var btn = box.querySelector('[data-passkey]');
    var err = box.querySelector('[data-passkey-error]');
    if (!window.PublicKeyCredential) { btn.disabled = true; }
    btn.addEventListener('click', async function () {
      err.hidden = true;
      btn.disabled = true;
      try {
        await flows[box.dataset.mode](box);
      } catch (e) {
        if (e && e.message && e.message.indexOf('step-up') >= 0) { location.assign('/step-up?next=/account'); return; }
        err.textContent = err.dataset.msg + (e && e.message ? ' (' + e.message + ')' : '');
        err.hidden = false;
        btn.disabled = false;
      }
    });
  });
})();
