// The demo page at /demo in Debian's Chromium, driven by playwright-core: two browser
// contexts are two users of the demo tenant who chat both ways and see each other's
// messages, typing and presence; a reload resumes the history; a direct room one
// opens appears in the other's list without a reload. Then, in a tenant of its own
// (HARK_TENANT_CREATION=open), a member reports a message and blocks its sender, and
// the tenant's owner acts from the moderation queue. Two users talk in a thread, with
// a mention, and find a message by search. A room created while the page is still
// starting receives live messages. Screenshots go to
// target/screenshots/. Run by scripts/client-tests.sh (HARK_URL, tenant `demo`).
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { test } from 'node:test';
import { chromium } from 'playwright-core';

const baseUrl = process.env.HARK_URL ?? 'http://127.0.0.1:8080';
const tenant = process.env.HARK_DEMO_TENANT ?? 'demo';
const screenshots = new URL('../../target/screenshots/', import.meta.url).pathname;
const password = 'correct horse battery staple';
const suffix = Date.now().toString(36);

// Flags for this closed network and for running as root (shared/STACK.md).
const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

async function registerIn(page, username, slug = tenant) {
  await page.goto(`${baseUrl}/demo`);
  await page.fill('#tenant', slug);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('#register-button');
  await page.locator('#whoami').getByText(username).waitFor();
}

async function say(page, text) {
  await page.fill('#message-input', text);
  await page.click('#send-button');
}

test('two users chat in the demo page, see typing and presence, a reload resumes the history, and a direct room appears without a reload', async () => {
  await mkdir(screenshots, { recursive: true });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: chromiumArgs });
  try {
    const ana = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
    const ben = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
    const anaName = `ana-${suffix}`;
    const benName = `ben-${suffix}`;

    await registerIn(ana, anaName);
    await ana.fill('#new-room', `lobby ${suffix}`);
    await ana.click('#create-room button');
    await ana.locator('#room-name').getByText(`lobby ${suffix}`).waitFor();
    const code = (await ana.textContent('#invite-code')).trim();
    assert.match(code, /^\S{6,}$/, 'the owner sees an invite code');

    await registerIn(ben, benName);
    await ben.fill('#invite-input', code);
    await ben.click('#join-room button');
    await ben.locator('#room-name').getByText(`lobby ${suffix}`).waitFor();

    // Presence: each sees the other online.
    await ana.locator('#online').getByText(benName).waitFor();
    await ben.locator('#online').getByText(anaName).waitFor();

    // Typing: ben sees ana typing before her message arrives.
    await ana.fill('#message-input', 'hello b');
    await ana.type('#message-input', 'en');
    await ben.locator('#typing').getByText(`${anaName} is typing`).waitFor();
    await ben.screenshot({ path: `${screenshots}demo-typing.png` });
    await ana.click('#send-button');
    await ben.locator('#messages').getByText('hello ben').waitFor();

    await say(ben, 'hi ana, loud and clear');
    await ana.locator('#messages').getByText('hi ana, loud and clear').waitFor();
    await say(ana, 'third message');
    await ben.locator('#messages').getByText('third message').waitFor();

    // Read markers: ana's page learns that ben has read her last message.
    await ana.locator('#seen').getByText(`Seen by ${benName}`).waitFor({ timeout: 10_000 });
    await ana.screenshot({ path: `${screenshots}demo-ana.png` });
    await ben.screenshot({ path: `${screenshots}demo-ben.png` });

    // A reload resumes the session and the history, and live delivery goes on.
    await ben.reload();
    await ben.locator('#messages').getByText('hello ben').waitFor();
    await ben.locator('#messages').getByText('third message').waitFor();
    await ben.locator('#connection').getByText('live').waitFor();
    await say(ana, 'after the reload');
    await ben.locator('#messages').getByText('after the reload').waitFor();
    const bodies = await ben.locator('#messages li.message .bubble').allTextContents();
    assert.deepEqual(bodies, ['hello ben', 'hi ana, loud and clear', 'third message', 'after the reload']);
    await ben.screenshot({ path: `${screenshots}demo-ben-after-reload.png` });

    // Ana opens a direct room with ben: it appears in ben's list without a reload
    // (his feed), and her message is there when he opens it.
    await ana.fill('#direct-input', benName);
    await ana.click('#direct-room button');
    await ana.locator('#room-name').getByText(benName).waitFor();
    await say(ana, 'just between us');
    await ben.locator('#rooms').getByText(anaName).waitFor();
    await ben.locator('#rooms').getByText(anaName).click();
    await ben.locator('#messages').getByText('just between us').waitFor();
    await ben.screenshot({ path: `${screenshots}demo-ben-direct.png` });
    console.log(`demo page: ${bodies.length} messages both ways; screenshots in ${screenshots}`);
  } finally {
    await browser.close();
  }
});

test('a member reports a message and blocks its sender, and a moderator deletes it and mutes from the queue', async () => {
  await mkdir(screenshots, { recursive: true });
  const slug = `mod-${suffix}`;
  const created = await fetch(`${baseUrl}/v1/tenants`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ slug, name: 'Moderated', registration_open: true, owner: { username: 'mia', password } }),
  });
  assert.equal(created.status, 201, await created.text());
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: chromiumArgs });
  try {
    const page = async () => (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
    const [mia, ben, cleo] = [await page(), await page(), await page()];
    await mia.goto(`${baseUrl}/demo`);
    await mia.fill('#tenant', slug);
    await mia.fill('#username', 'mia');
    await mia.fill('#password', password);
    await mia.click('#login-button');
    await mia.locator('#whoami').getByText('mia').waitFor();
    await mia.fill('#new-room', 'town square');
    await mia.click('#create-room button');
    await mia.locator('#room-name').getByText('town square').waitFor();
    const code = (await mia.textContent('#invite-code')).trim();
    for (const [user, name] of [[ben, 'ben'], [cleo, 'cleo']]) {
      await registerIn(user, name, slug);
      await user.fill('#invite-input', code);
      await user.click('#join-room button');
      await user.locator('#room-name').getByText('town square').waitFor();
    }
    assert.equal(await ben.isVisible('#moderation-button'), false, 'members have no queue');

    // Ben reports cleo's spam, then blocks her: her messages are hidden for him alone.
    await say(cleo, 'buy cheap pills now');
    const spam = ben.locator('#messages li.message', { hasText: 'buy cheap pills now' });
    await spam.waitFor();
    await spam.locator('button.report').click();
    await ben.selectOption('#report-reason', 'spam');
    await ben.fill('#report-details', 'she posts this everywhere');
    await ben.click('#report-submit');
    await ben.locator('#notice').getByText('Reported').waitFor();
    await spam.locator('button.block').click();
    await ben.locator('#notice').getByText('You blocked cleo').waitFor();
    await ben.locator('#messages li.hidden-message').first().waitFor();
    await say(cleo, 'really cheap');
    await mia.locator('#messages').getByText('really cheap').waitFor();
    await ben.locator('#messages li.hidden-message').nth(1).waitFor();
    assert.equal(await ben.locator('#messages').getByText('really cheap').count(), 0, 'hidden for the blocker');
    await ben.screenshot({ path: `${screenshots}demo-ben-blocked.png` });

    // Mia, the tenant's owner, deletes the message from the queue and then mutes cleo.
    await mia.click('#moderation-button');
    const report = mia.locator('#reports li.report', { hasText: 'buy cheap pills now' });
    await report.waitFor();
    await report.getByText('she posts this everywhere').waitFor();
    await mia.screenshot({ path: `${screenshots}demo-moderation-queue.png` });
    await report.locator('button.delete_message').click();
    await mia.locator('#reports').getByText('Nothing to review.').waitFor();
    await mia.click('#close-moderation');
    await mia.locator('#messages li.message', { hasText: '(deleted)' }).waitFor();
    await cleo.locator('#messages li.message', { hasText: '(deleted)' }).waitFor();

    await say(cleo, 'last chance pills');
    const again = mia.locator('#messages li.message', { hasText: 'last chance pills' });
    await again.waitFor();
    await again.locator('button.report').click();
    await mia.click('#report-submit');
    await mia.locator('#notice').getByText('Reported').waitFor();
    await mia.click('#moderation-button');
    await mia.locator('#reports li.report', { hasText: 'last chance pills' }).locator('button.mute').click();
    await mia.locator('#reports').getByText('Nothing to review.').waitFor();
    await say(cleo, 'can I still talk?');
    await cleo.locator('#notice').getByText('Not sent').waitFor();
    assert.match(await cleo.textContent('#notice'), /muted/);
    await cleo.screenshot({ path: `${screenshots}demo-cleo-muted.png` });
    console.log('demo page: report, block and the moderation queue work');
  } finally {
    await browser.close();
  }
});

test('two users talk in a thread with a mention, and find a message by searching for it', async () => {
  await mkdir(screenshots, { recursive: true });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: chromiumArgs });
  try {
    const page = async () => (await browser.newContext({ viewport: { width: 1200, height: 700 } })).newPage();
    const [ana, ben] = [await page(), await page()];
    const anaName = `tana-${suffix}`;
    const benName = `tben-${suffix}`;
    await registerIn(ana, anaName);
    await ana.fill('#new-room', `trips ${suffix}`);
    await ana.click('#create-room button');
    await ana.locator('#room-name').getByText(`trips ${suffix}`).waitFor();
    const code = (await ana.textContent('#invite-code')).trim();
    await registerIn(ben, benName);
    await ben.fill('#invite-input', code);
    await ben.click('#join-room button');
    await ben.locator('#room-name').getByText(`trips ${suffix}`).waitFor();

    await say(ana, `planning the harbour trip ${suffix}`);
    const parent = ben.locator('#messages li.message', { hasText: 'planning the harbour trip' });
    await parent.waitFor();
    await parent.locator('button.thread').click();
    await ben.locator('#panel-title').getByText('Thread').waitFor();
    await ben.fill('#thread-input', 'count me in');
    await ben.click('#thread-send');
    await ben.locator('#panel-list').getByText('count me in').waitFor();
    // The reply is in the thread, counted on its first message, not in the timeline.
    const anasParent = ana.locator('#messages li.message', { hasText: 'planning the harbour trip' });
    await anasParent.locator('button.thread', { hasText: '1 reply' }).waitFor();
    assert.equal(await ana.locator('#messages').getByText('count me in').count(), 0);
    await anasParent.locator('button.thread').click();
    await ana.locator('#panel-list').getByText('count me in').waitFor();
    await ana.fill('#thread-input', `@${benName} bring snacks`);
    await ana.click('#thread-send');
    // Ben sees the mention highlighted in the thread he has open.
    await ben.locator('#panel-list li.mentioned', { hasText: 'bring snacks' }).waitFor();
    await ben.screenshot({ path: `${screenshots}demo-thread.png` });

    // Search, without diacritics and by a word's start, marks what matched.
    await ben.fill('#search-input', `HARB ${suffix}`);
    await ben.press('#search-input', 'Enter');
    const hit = ben.locator('#panel-list li.hit', { hasText: 'planning the harbour trip' });
    await hit.waitFor();
    assert.equal(await hit.locator('mark').first().textContent(), 'harbour');
    await ben.screenshot({ path: `${screenshots}demo-search.png` });
    await ben.fill('#search-input', 'snacks');
    await ben.press('#search-input', 'Enter');
    await ben.locator('#panel-list li.hit', { hasText: 'bring snacks' }).click();
    await ben.locator('#panel-title').getByText('Thread').waitFor();
    await ben.locator('#panel-list').getByText('count me in').waitFor();
    console.log('demo page: a thread with a mention, and search');
  } finally {
    await browser.close();
  }
});

test('a room created while the page is still starting receives live messages', async () => {
  const slug = `early-${suffix}`;
  const created = await fetch(`${baseUrl}/v1/tenants`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ slug, name: 'Early', owner: { username: 'olga', password } }),
  });
  const answer = await created.json();
  assert.equal(created.status, 201, JSON.stringify(answer));
  const token = answer.session.access_token;
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: chromiumArgs });
  try {
    const page = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
    // The page's start is slow: the room is created before its connection exists.
    await page.route('**/v1/users/me/blocks*', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await route.continue();
    });
    await page.goto(`${baseUrl}/demo`);
    await page.fill('#tenant', slug);
    await page.fill('#username', 'olga');
    await page.fill('#password', password);
    await page.click('#login-button');
    await page.locator('#whoami').getByText('olga').waitFor();
    await page.fill('#new-room', 'early bird');
    await page.click('#create-room button');
    await page.locator('#room-name').getByText('early bird').waitFor();
    await page.locator('#connection').getByText('live').waitFor();
    const rooms = await (await fetch(`${baseUrl}/v1/rooms`, { headers: { authorization: `Bearer ${token}` } })).json();
    const sent = await fetch(`${baseUrl}/v1/rooms/${rooms.items[0].id}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ body: 'sent from elsewhere' }),
    });
    assert.equal(sent.status, 201, await sent.text());
    await page.locator('#messages').getByText('sent from elsewhere').waitFor({ timeout: 10_000 });
  } finally {
    await browser.close();
  }
});
