// The demo page at /demo in Debian's Chromium, driven by playwright-core: two browser
// contexts are two users of the demo tenant who chat both ways and see each other's
// messages, typing and presence; a reload resumes the history; a direct room one
// opens appears in the other's list without a reload. Screenshots go to
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

async function registerIn(page, username) {
  await page.goto(`${baseUrl}/demo`);
  await page.fill('#tenant', tenant);
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
