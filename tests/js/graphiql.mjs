// Drives Fluxopus's own GraphiQL page (GET /graphql) in headless Chromium (Debian's) with no network:
// every request to a host other than 127.0.0.1/localhost is aborted and recorded, and host names do
// not even resolve. Steps: the editor renders with the default query; that query runs without a
// token, with one typed into the token field, then with a header in the Headers pane; a reload keeps
// the token; a runSkill subscription streams over the page's WebSocket. Prints what it saw as JSON;
// tests/test_graphiql_browser.py judges.
// usage: node graphiql.mjs <server-url> <token> <skill-id> <screenshot.png>
// (the query's result in <screenshot.png>, the subscription's in <screenshot>-subscription.png)
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { offlineChromium } from "./offline_chromium.mjs";

const [server, token, skillId, screenshot] = process.argv.slice(2);
const STEP_MS = 20_000;

const { context, external, close } = await offlineChromium({ viewport: { width: 1280, height: 800 } });

const outcome = { external, requested: [], console: [], sockets: [] };
const editor = (which) => `.graphiql-${which} .CodeMirror`;

// CodeMirror 5 keeps its instance on its wrapper element: the editors' text, as the user sees it.
const text = (page, which) =>
  page.evaluate((selector) => document.querySelector(selector)?.CodeMirror.getValue() ?? null, editor(which));

async function run(page) {
  const before = await text(page, "response");
  await page.click(".graphiql-execute-button");
  await page.waitForFunction(
    ([selector, previous]) => {
      const value = document.querySelector(selector)?.CodeMirror.getValue();
      return value && value !== previous && !document.querySelector(".graphiql-spinner");
    },
    [editor("response"), before],
    { timeout: STEP_MS },
  );
  return text(page, "response");
}

try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("request", (request) => outcome.requested.push(request.url()));
  page.on("console", (message) => outcome.console.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => outcome.console.push(`pageerror: ${error.message}`));
  page.on("websocket", (socket) => {
    const record = { url: socket.url(), sent: [], received: [] };
    outcome.sockets.push(record);
    socket.on("framesent", (frame) => record.sent.push(JSON.parse(frame.payload)));
    socket.on("framereceived", (frame) => record.received.push(JSON.parse(frame.payload)));
  });

  await page.goto(`${server}/graphql`);
  await page.locator(editor("query-editor")).waitFor({ state: "visible", timeout: STEP_MS });
  outcome.title = await page.title();
  outcome.defaultQuery = await text(page, "query-editor");
  // The schema is fetched without a token (introspection): the Docs explorer can show it.
  outcome.anonymous = await run(page);

  await page.fill("#fluxopus-token", token);
  outcome.tokenState = await page.textContent("#fluxopus-token-state");
  outcome.query = await run(page);
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });

  // An Authorization header in the Headers pane takes the token field's place.
  await page.getByRole("button", { name: "Headers", exact: true }).click();
  const headers = page.locator(".graphiql-editor-tool .CodeMirror").filter({ visible: true });
  const setHeaders = (value) => headers.evaluate((element, v) => element.CodeMirror.setValue(v), value);
  await setHeaders('{"Authorization": "Bearer not-a-token"}');
  outcome.paneHeader = await run(page);
  await setHeaders("");

  await page.reload();
  await page.locator(editor("query-editor")).waitFor({ state: "visible", timeout: STEP_MS });
  outcome.rememberedToken = await page.inputValue("#fluxopus-token");

  const subscription = `subscription Run {\n  runSkill(id: "${skillId}", input: {name: "Ada"}) {\n    __typename\n  }\n}\n`;
  await page.evaluate(
    ([selector, value]) => document.querySelector(selector).CodeMirror.setValue(value),
    [editor("query-editor"), subscription],
  );
  // GraphiQL learns the new operation's name (and so that it is a subscription, for the WebSocket)
  // a moment after the edit, when the tab takes that name: run before, and it would POST it.
  await page
    .locator(".graphiql-tab-active .graphiql-tab-button", { hasText: /^Run$/ })
    .waitFor({ state: "visible", timeout: STEP_MS });
  await page.click(".graphiql-execute-button");
  // Done when the server ended the operation on the socket; then the pane shows its last event.
  const ended = () =>
    outcome.sockets.some((socket) => socket.received.some((m) => m.type === "complete" || m.type === "error"));
  const began = Date.now();
  while (!ended()) {
    if (Date.now() - began > STEP_MS) throw new Error("the subscription did not end");
    await page.waitForTimeout(50);
  }
  await page.waitForFunction(
    () => document.querySelector(".graphiql-execute-button")?.getAttribute("aria-label")?.startsWith("Execute"),
    null,
    { timeout: STEP_MS },
  );
  outcome.subscription = await text(page, "response");

  await page.screenshot({ path: screenshot.replace(/\.png$/, "-subscription.png") });
  process.stdout.write(JSON.stringify(outcome));
} catch (error) {
  outcome.error = String(error?.stack ?? error);
  process.stdout.write(JSON.stringify(outcome));
  process.exitCode = 1;
} finally {
  await close();
}
