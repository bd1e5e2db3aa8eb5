// A person doing a SMART standalone launch in headless Chromium (Debian's, driven by playwright-core):
// open the app's launch page, sign in, pick the patient, approve, and read what the app then shows.
//
// Usage: node standalone_launch.mjs '<json>' with
//   {"launchUrl", "login", "password", "patientId", "patientFamily", "chromium"?, "screenshot"?}
// Prints one JSON object: the pages seen, the authorize and token requests as sent, the token response
// (secrets replaced by "present"), the app's DOM, and "error" (null when every step worked). A failed step
// still prints (exit 0), so the test shows how far the flow got; a bad invocation exits 2.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const SECRETS = ["access_token", "refresh_token", "id_token"];
const STEP_TIMEOUT_MS = 30_000;
const pendingBodies = []; // token response bodies still being read

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function withoutSecrets(body) {
  const copy = { ...body };
  for (const name of SECRETS) {
    if (name in copy) copy[name] = "present";
  }
  return copy;
}

function recordTraffic(page, result) {
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.pathname === "/auth/authorize" && request.method() === "GET" && !result.authorizeRequest) {
      result.authorizeRequest = Object.fromEntries(url.searchParams);
    }
    if (url.pathname === "/app/index.html" && request.isNavigationRequest()) {
      const query = Object.fromEntries(url.searchParams);
      result.redirect = { ...query, code: query.code ? "present" : undefined };
    }
    if (url.pathname === "/auth/token" && request.method() === "POST") {
      const form = Object.fromEntries(new URLSearchParams(request.postData() || ""));
      for (const secret of ["code", "refresh_token"]) {
        if (form[secret]) form[secret] = "present";
      }
      result.tokenRequests.push({ form, headers: request.headers() });
    }
  });
  page.on("response", (response) => {
    const url = new URL(response.url());
    if (url.pathname === "/auth/token" && response.request().method() === "POST") {
      const entry = { status: response.status(), body: null }; // in the order the responses came
      result.tokenResponses.push(entry);
      pendingBodies.push(response.json().then((body) => (entry.body = withoutSecrets(body)), () => {}));
    }
  });
  page.on("console", (message) => result.console.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => result.console.push(`pageerror: ${error.message}`));
}

async function heading(page, name) {
  const h1 = page.getByRole("heading", { level: 1, name });
  await h1.waitFor();
  return (await h1.textContent()).trim();
}

async function launch(page, config, result) {
  await page.goto(config.launchUrl);

  result.pages.push(await heading(page, "Sign in"));
  await page.getByLabel("User name").fill(config.login);
  await page.getByLabel("Password").fill(config.password);
  await page.getByRole("button", { name: "Sign in" }).click();

  result.pages.push(await heading(page, "Choose a patient"));
  await page.getByRole("searchbox", { name: "Search patients by name" }).fill(config.patientFamily);
  await page.getByRole("button", { name: "Search" }).click();
  // The result list's legend names the search, so this waits for the answer to our search.
  const results = page.getByRole("group", { name: `Patients named “${config.patientFamily}”` });
  await results.waitFor();
  await results.getByRole("radio", { name: new RegExp(`\\(id ${escapeRegExp(config.patientId)}\\)$`) }).check();
  await page.getByRole("button", { name: "Continue" }).click();

  result.pages.push(await heading(page, /^Allow .* access\?$/));
  result.consentText = await page.locator("main > p").first().innerText();
  result.consentScopes = await page.getByRole("checkbox").evaluateAll((boxes) => boxes.map((box) => box.value));
  await page.getByRole("button", { name: "Allow checked access" }).click();

  await page.waitForURL((url) => url.pathname === "/app/index.html");
  const app = page.locator("#app:not([data-status='waiting'])");
  await app.waitFor();
  const text = (id) => page.locator(`#${id}`).textContent();
  const json = async (id) => JSON.parse((await text(id)) || "null");
  result.app = {
    url: page.url(),
    status: await app.getAttribute("data-status"),
    patientName: await text("patient-name"),
    patientId: await text("patient-id"),
    readError: await text("read-error"),
    tokenResponse: await json("token-response"),
    refreshResponse: await json("refresh-response"),
    refreshError: await text("refresh-error"),
    error: await text("error"),
  };
  if (result.app.status !== "done") {
    throw new Error(`the app got no token: ${result.app.error}`);
  }
}

async function main() {
  let config;
  try {
    config = JSON.parse(process.argv[2]);
  } catch {
    console.error("usage: node standalone_launch.mjs '<json configuration>'");
    process.exit(2);
  }
  const result = { pages: [], console: [], consentScopes: [], tokenRequests: [], tokenResponses: [], error: null };
  const profile = mkdtempSync(join(tmpdir(), "e2e-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: config.chromium || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  recordTraffic(page, result);
  try {
    await launch(page, config, result);
    await Promise.all(pendingBodies);
  } catch (error) {
    result.error = String(error.message || error).split("\n")[0];
    result.failedAt = page.url();
    result.failedPage = (await page.locator("body").innerText().catch(() => "")).slice(0, 2000);
    if (config.screenshot) await page.screenshot({ path: config.screenshot }).catch(() => {});
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

await main();
