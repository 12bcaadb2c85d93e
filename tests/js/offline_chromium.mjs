// Debian's headless Chromium with no network, for the browser tests: a fresh profile, the flags that
// keep it from calling home, host names other than 127.0.0.1/localhost unresolvable, and every request
// to another host aborted and recorded in `external` (the tests assert it stays empty where it must).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const LOCAL = new Set(["127.0.0.1", "localhost"]);

export async function offlineChromium(options = {}) {
  const profile = mkdtempSync(join(tmpdir(), "fluxopus-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    ...options,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Below the route's refusal, a second wall: no other host name resolves.
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ],
  });
  const external = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (LOCAL.has(new URL(url).hostname)) return route.continue();
    external.push(url);
    return route.abort("blockedbyclient");
  });
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, external, close };
}
