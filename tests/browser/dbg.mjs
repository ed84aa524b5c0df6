import { startKura, setupWorld, launchBrowser, newContext, signIn, Api } from './lib/server.mjs';
const s = await startKura();
try {
  const w = await setupWorld(s);
  const api = await new Api(s.base).login(w.users.aUser.email);
  const f = await api.upload(w.project.id, w.project.root_folder_id, 'x.txt', Buffer.from('x'));
  const b = await launchBrowser();
  const ctx = await newContext(b);
  const page = await ctx.newPage();
  await signIn(page, s.base, w.users.aUser.email);
  page.on('request', r => console.log('REQ', r.method(), r.url(), r.resourceType(), r.headers().origin));
  page.on('response', r => console.log('RESP', r.status(), r.url()));
  await page.goto(`${s.base}/projects/${w.project.id}/nodes/${f.id}`);
  page.once('dialog', async d => { console.log('dialog', d.message()); await d.accept(); });
  await page.click('form[action$="/delete"] button[type="submit"]');
  await page.waitForTimeout(2000);
  console.log(page.url());
  await b.close();
} finally { await s.stop(); }
