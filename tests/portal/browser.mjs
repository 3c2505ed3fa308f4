// Drives the portal in Debian's Chromium with playwright-core, in two phases sharing one fresh
// profile (so the session cookie carries over):
//
//   node browser.mjs create BASE_URL ADMIN_KEY PROFILE_DIR SHOTS_DIR   -> {"key": "...", "id": "..."}
//   node browser.mjs finish BASE_URL ADMIN_KEY PROFILE_DIR SHOTS_DIR   -> {"csrf_status": 403, ...}
//
// Prints one JSON line; any failed expectation throws (non-zero exit). Screenshots of every page
// go to SHOTS_DIR.
import { chromium } from 'playwright-core';

const [phase, base, adminKey, profile, shots] = process.argv.slice(2);
const NAME = '<script>alert(1)</script>';

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
const dialogs = [];
page.on('dialog', async (dialog) => {
  dialogs.push(dialog.message());
  await dialog.dismiss();
});
const violations = [];
page.on('console', (message) => {
  if (message.type() === 'error') violations.push(message.text());
});
const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
const result = {};

try {
  if (phase === 'create') {
    await page.goto(`${base}/ui`);
    expect(page.url().endsWith('/ui/sign-in'), `not sent to sign in: ${page.url()}`);
    await shot('01-sign-in');
    await page.fill('#admin_key', adminKey);
    await Promise.all([page.waitForURL('**/ui/keys'), page.click('button[type=submit]')]);
    await shot('02-keys');
    await page.fill('#name', NAME);
    await Promise.all([page.waitForLoadState(), page.click('fieldset button[type=submit]')]);
    const key = (await page.textContent('#new-key')).trim();
    expect(key.startsWith('sk-fg-'), `no key shown: ${key}`);
    expect((await page.content()).includes('&lt;script&gt;alert(1)&lt;/script&gt;'), 'the name is not shown escaped');
    await shot('03-key-created');
    await page.goto(`${base}/ui/keys`);
    expect(!(await page.content()).includes(key), 'the key is shown again');
    const row = page.locator('tr', { hasText: NAME });
    result.id = (await row.locator('code').first().textContent()).trim();
    result.key = key;
  } else {
    await page.goto(`${base}/ui/keys`);
    expect(page.url().endsWith('/ui/keys'), `the session did not carry over: ${page.url()}`);
    // A form posted without its CSRF token (as another site would) is refused.
    result.csrf_status = await page.evaluate(async () => {
      const response = await fetch('/ui/keys', { method: 'POST', body: new URLSearchParams({ name: 'forged' }) });
      return response.status;
    });
    await Promise.all([page.waitForURL('**/ui/keys'), page.click(`button[aria-label="Revoke ${NAME}"]`)]);
    const status = await page.locator('tr', { hasText: NAME }).locator('td').nth(3).textContent();
    expect(status.trim() === 'revoked', `not revoked: ${status}`);
    await shot('04-revoked');
    await page.goto(`${base}/ui/tenants`);
    await shot('05-tenants');
    await page.goto(`${base}/ui/audit`);
    expect((await page.content()).includes('POST /api/enterprise/vkeys/{id}/revoke'), 'no audit record of the revoke');
    await shot('06-audit');
    await Promise.all([page.waitForURL('**/ui/sign-in'), page.click('header button[type=submit]')]);
    await shot('07-signed-out');
    await page.goto(`${base}/ui/keys`);
    result.after_sign_out = new URL(page.url()).pathname;
  }
  result.dialogs = dialogs;
  result.console_errors = violations;
  console.log(JSON.stringify(result));
} finally {
  await context.close();
}
