// Loads tests/js/cross_origin.html from its own origin in headless Chromium (Debian's, no network: any
// request to a host other than 127.0.0.1 or localhost is aborted: offline_chromium.mjs) and runs its steps against the API on another
// origin. Prints {steps, console, blocked} as JSON; the test (tests/test_cross_origin_browser.py) judges.
// usage: node cross_origin.mjs <page-url> <api-url> <token> <skill-id>
import { offlineChromium } from "./offline_chromium.mjs";

const [pageUrl, api, token, skillId] = process.argv.slice(2);
const { context, external: blocked, close } = await offlineChromium();
const console_ = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => console_.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => console_.push(`pageerror: ${error.message}`));
  await page.goto(pageUrl);
  const steps = await page.evaluate(([a, t, s]) => window.runAll(a, t, s), [api, token, skillId]);
  process.stdout.write(JSON.stringify({ steps, console: console_, blocked }));
} finally {
  await close();
}
