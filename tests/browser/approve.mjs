// Approves a gate from the Temporal web UI in a real headless Chromium (Debian's /usr/bin/chromium,
// never a downloaded browser), as an operator would:
//   1. open the workflow list filtered with RunbookStatus="WaitingApproval" and find the run;
//   2. open it and check its current details name the gate and the signal to send;
//   3. More Actions -> Send a Signal -> "approve" with the signed JSON of --print-signal (INPUT);
//   4. wait until the UI shows the run Completed; keep screenshots.
// Environment: UI_URL, WORKFLOW_ID, GATE, BY, ARTIFACTS (folder), PROFILE (fresh folder),
// CHROMIUM (default /usr/bin/chromium). Exit code 0 on success; the Go test checks the run too.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined || v === '') throw new Error(`${k} is not set`);
  return v;
};
const ui = env('UI_URL').replace(/\/$/, '');
const id = env('WORKFLOW_ID');
const gate = env('GATE');
const by = env('BY');
const artifacts = env('ARTIFACTS');
mkdirSync(artifacts, { recursive: true });
const log = (...a) => console.log(new Date().toISOString(), ...a);

const context = await chromium.launchPersistentContext(env('PROFILE'), {
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const page = context.pages()[0] ?? await context.newPage();
page.setDefaultTimeout(20000);
const shot = async (name) => page.screenshot({ path: join(artifacts, name), fullPage: true });

try {
  // 1. The list, filtered by the search attribute every runbook keeps current.
  const query = 'RunbookStatus="WaitingApproval"';
  const listURL = `${ui}/namespaces/default/workflows?query=${encodeURIComponent(query)}`;
  const row = page.getByTestId('workflows-summary-configurable-table-row').filter({ hasText: id });
  let found = false;
  for (let i = 0; i < 30 && !found; i++) {
    await page.goto(listURL);
    try {
      await row.first().waitFor({ timeout: 3000 });
      found = true;
    } catch {
      log('run not listed yet; reloading');
    }
  }
  if (!found) throw new Error(`run ${id} not listed under ${query}`);
  log('listed under', query);
  await shot('1-waiting-list.png');

  // 2. Open the run from the list.
  await row.first().getByRole('link', { name: id }).first().click();
  await page.waitForURL(/\/workflows\/.+/);
  // Current details (the User Metadata tab) carry the gate, the plan and the exact signal to send.
  await page.getByText('User Metadata', { exact: true }).first().click();
  // The UI renders the Markdown in a sandboxed frame: look in every frame.
  const inAnyFrame = async (text) => {
    for (let i = 0; i < 40; i++) {
      for (const f of page.frames()) {
        const body = await f.evaluate(() => document.body?.innerText ?? '').catch(() => '');
        if (body.includes(text)) return;
      }
      await page.waitForTimeout(500);
    }
    throw new Error(`current details do not show ${JSON.stringify(text)}`);
  };
  await inAnyFrame(`Waiting for approval at gate ${gate}`);
  await inAnyFrame(`send signal approve with input {"gate":"${gate}"`);
  log('current details name the gate and the signal');
  await shot('2-run-waiting.png');

  // 3. Send the approve signal from the UI.
  await page.getByRole('button', { name: 'More Actions' }).click();
  await page.getByRole('menuitem', { name: 'Send a Signal' }).click();
  const dialog = page.locator('dialog[data-testid=signal-confirmation-modal]:visible');
  await dialog.waitFor();
  await dialog.getByTestId('signal-select-button').click();
  const option = page.getByRole('option', { name: 'approve', exact: true });
  if (await option.count() > 0) {
    await option.first().click();
  } else {
    log('approve not offered; using Custom');
    await page.getByRole('option', { name: 'Custom' }).first().click();
    await dialog.getByTestId('signal-name').fill('approve');
  }
  const editor = dialog.locator('[contenteditable=true][data-language=json]');
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  // INPUT is the signed JSON of `stackrun approve ... --print-signal` (a bare {gate, by} is
  // refused as unsigned on a two-person gate).
  const input = process.env.INPUT || JSON.stringify({ gate, by, comment: 'approved from the Temporal web UI' });
  await page.keyboard.insertText(input);
  // The editor reformats on blur and moves the submit button: blur first, then click.
  await editor.evaluate((e) => e.blur());
  await page.waitForTimeout(300);
  await shot('3-signal-dialog.png');
  await dialog.getByTestId('confirm-modal-button').click();
  await dialog.waitFor({ state: 'hidden' });
  log('signal sent');

  // 4. The run completes.
  const runURL = page.url();
  let completed = false;
  for (let i = 0; i < 20 && !completed; i++) {
    await page.waitForTimeout(500);
    await page.goto(runURL);
    await page.getByRole('heading', { name: id }).first().waitFor().catch(() => {});
    completed = await page.getByText('Completed', { exact: true }).first()
      .waitFor({ timeout: 3000 }).then(() => true, () => false);
  }
  await shot('4-run-completed.png');
  if (!completed) throw new Error('the UI never showed the run Completed');
  log('run completed');
} catch (e) {
  await shot('failure.png').catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await context.close();
}
