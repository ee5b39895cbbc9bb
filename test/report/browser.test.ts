/**
 * The report as a browser shows it: headless Chromium (playwright-core driving Debian's chromium,
 * infra/install-browser.sh; `LAYERFLOW_CHROMIUM` names another executable) opens the written
 * file from disk with every network request refused, and sees no console error, no page error, no
 * request leaving the file, and each figure's data marks in the DOM (rects per bar / heatmap cell,
 * symbols per point). Full-page screenshots go to test-artifacts/report.png (LayerIF) and
 * test-artifacts/report-ndr.png. Without chromium the tests fail, saying how to install it.
 */
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { writeReport, type Report } from '../../src/report/report.ts';
import { layerifFixture, ndrFixture, LAYERS, TASKS, NDR_GROUPS, NDR_AGGS, NDR_LS } from './fixture.ts';

const test = anyTest as TestFn;
const CHROMIUM = process.env.LAYERFLOW_CHROMIUM ?? '/usr/bin/chromium';

/** Open the written report in a fresh headless Chromium (closed in teardown); collect problems and requests. */
async function open(t: ExecutionContext, report: Report & { path: string }): Promise<{ page: Page; problems: string[]; requests: string[]; url: string } | undefined> {
  if (!existsSync(CHROMIUM)) {
    t.fail(`no Chromium at ${CHROMIUM}: run \`bash infra/install-browser.sh\` (Debian's chromium) or set LAYERFLOW_CHROMIUM to a Chromium executable`);
    return undefined;
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const requests: string[] = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    requests.push(url);
    return url.startsWith('file:') ? route.continue() : route.abort();
  });
  const url = pathToFileURL(report.path).href;
  await page.goto(url, { waitUntil: 'load' });
  return { page, problems, requests, url };
}

const marks = (page: Page, plot: string, type: string) => page.locator(`figure[data-plot="${plot}"] svg g.mark-${type}.role-mark > path`).count();

async function drawn(t: ExecutionContext, page: Page, plots: string[]) {
  for (const plot of plots) {
    const box = await page.locator(`figure[data-plot="${plot}"] svg`).boundingBox();
    t.true(box !== null && box.width > 100 && box.height > 50, `${plot} drawn with a real size: ${JSON.stringify(box)}`);
  }
}

async function screenshot(page: Page, file: string) {
  await mkdir('test-artifacts', { recursive: true });
  await page.screenshot({ path: `test-artifacts/${file}`, fullPage: true });
}

test.serial('the LayerIF report in Chromium: no errors, no network, every mark in the DOM; screenshot saved', async (t) => {
  const fx = await layerifFixture();
  t.teardown(fx.cleanup);
  const report = await writeReport(fx.env, fx.plan.sweep);
  const o = await open(t, report);
  if (!o) return;
  const { page } = o;
  t.deepEqual(o.problems, []);
  t.deepEqual(o.requests, [o.url], 'the page loads nothing but itself');
  t.is(await page.title(), 'LayerFlow report: report-layerif');
  t.is(await marks(page, 'layer-scores', 'rect'), 2 * TASKS.length * LAYERS, 'heatmap: variant × task × layer');
  t.is(await marks(page, 'experts', 'rect'), TASKS.length * 3 * LAYERS, 'experts: task × allocation × layer');
  t.is(await marks(page, 'sparsity', 'symbol'), TASKS.length * 3 * LAYERS, 'sparsity: task × allocation × layer');
  t.is(await marks(page, 'sparsity', 'line'), TASKS.length * 3, 'sparsity: a line per task × allocation');
  await drawn(t, page, report.plots);
  // Two layer-score tables (variants +VE and TOP25) under the heatmap, then acc and acc_norm of both branches and perplexity.
  t.is(await page.locator('div.result table').count(), 7);
  t.is(await page.locator('div.result[data-table^="Layer scores"] table').count(), 2);
  t.is(await page.locator('div.result[data-table^="Layer scores"] table tbody tr').first().locator('td').first().textContent(), 'a');
  t.is(await page.locator('div.result:not([data-table^="Layer scores"]) table').count(), 5, 'acc and acc_norm of both branches, perplexity');
  t.is(await page.locator('div.result:not([data-table^="Layer scores"]) table tbody tr').first().locator('td').first().textContent(), 'layerif +VE');
  await screenshot(page, 'report.png');
  t.true(existsSync('test-artifacts/report.png'));
});

test.serial('the NDR report in Chromium: curves and bars in the DOM, the four NDR tables; screenshot saved', async (t) => {
  const fx = await ndrFixture();
  t.teardown(fx.cleanup);
  const report = await writeReport(fx.env, fx.plan.sweep);
  const o = await open(t, report);
  if (!o) return;
  const { page } = o;
  t.deepEqual(o.problems, []);
  t.deepEqual(o.requests, [o.url]);
  const panels = 2 * NDR_GROUPS.length;
  t.is(await marks(page, 'ndr-curves', 'symbol'), panels * NDR_AGGS.length * NDR_LS.length, 'a point per method × group × aggregation × L');
  t.is(await marks(page, 'ndr-curves', 'line'), panels * NDR_AGGS.length);
  t.is(await marks(page, 'ndr30', 'rect'), 2 * NDR_GROUPS.length * NDR_AGGS.length, 'a bar per method × group × aggregation');
  await drawn(t, page, report.plots);
  t.is(await page.locator('div.result table').count(), 4);
  await screenshot(page, 'report-ndr.png');
});
