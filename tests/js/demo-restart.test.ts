// The demo page in Chromium, through a proxy in front of two instances (the SDK's test
// fleet, clients/typescript/test/fleet.ts): while another member writes, both
// instances restart one after the other (1012, then a kill) and the page's
// connection is cut; every message then shows on the page once, in order.
// Run by scripts/client-tests.sh.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { createTenant, Fleet, PASSWORD } from '../../clients/typescript/test/fleet.ts';

const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const screenshots = new URL('../../target/screenshots/', import.meta.url).pathname;

async function post(url: string, token: string, path: string, body: unknown): Promise<any> {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

test('the demo page survives an instance restart with no lost or repeated message on screen', async () => {
  const fleet = await Fleet.start();
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: chromiumArgs });
  try {
    const { slug, owner } = await createTenant(fleet.url);
    const page = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
    await page.goto(`${fleet.url}/demo`);
    await page.fill('#tenant', slug);
    await page.fill('#username', 'viewer');
    await page.fill('#password', PASSWORD);
    await page.click('#register-button');
    await page.fill('#new-room', 'restarts');
    await page.click('#create-room button');
    await page.locator('#room-name').getByText('restarts').waitFor();
    await page.locator('#connection').getByText('live').waitFor();
    const code = (await page.textContent('#invite-code'))!.trim();
    const room = await post(fleet.url, owner.access_token, '/v1/rooms/join', { code });

    // The writer goes to the instances directly, to whichever is up, with one
    // client_id per message across its retries.
    const expected: string[] = [];
    const write = async (index: number) => {
      const body = { body: `line ${index}`, client_id: `line-${index}` };
      for (let attempt = 0; ; attempt++) {
        const instance = fleet.instances[(index + attempt) % 2];
        try {
          await post(`http://127.0.0.1:${instance.port}`, owner.access_token, `/v1/rooms/${room.id}/messages`, body);
          expected.push(body.body);
          return;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    for (let index = 0; index < 60; index++) {
      if (index === 15) await fleet.kill(0, 'SIGTERM');
      if (index === 25) await fleet.restart(0);
      if (index === 35) await fleet.restart(1);
      if (index === 45) fleet.cut();
      await write(index);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    await page.locator('#messages').getByText('line 59', { exact: true }).waitFor({ timeout: 30_000 });
    await page.locator('#connection').getByText('live').waitFor();
    const shown = await page.$$eval('#messages li.message .bubble', (bubbles) => bubbles.map((bubble) => bubble.textContent));
    assert.deepEqual(shown, expected, 'every message on screen once, in order');
    await page.screenshot({ path: `${screenshots}demo-restart.png` });
  } finally {
    await browser.close();
    await fleet.stop();
  }
});
