// Loads tests/js/cross_origin.html from its own origin in headless Chromium (Debian's, no network: any
// request to a host other than 127.0.0.1 is aborted) and runs its steps against the API on another
// origin. Prints {steps, console, blocked} as JSON; the test (tests/test_cross_origin_browser.py) judges.
// usage: node cross_origin.mjs <page-url> <api-url> <token> <skill-id>
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [pageUrl, api, token, skillId] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "fluxopus-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const blocked = [];
const console_ = [];
try {
  await context.route("**/*", (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host === "127.0.0.1") return route.continue();
    blocked.push(route.request().url());
    return route.abort();
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (message) => console_.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => console_.push(`pageerror: ${error.message}`));
  await page.goto(pageUrl);
  const steps = await page.evaluate(([a, t, s]) => window.runAll(a, t, s), [api, token, skillId]);
  process.stdout.write(JSON.stringify({ steps, console: console_, blocked }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
