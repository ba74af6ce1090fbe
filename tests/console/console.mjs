// The console in a real browser: Debian's Chromium driven by Playwright,
// against a webhook_server with PostgreSQL and a real Camunda 7 that
// tests/console.rs started. It sends the deliveries itself (GitHub's signed
// by @octokit/webhooks-methods, GitHub's own example payload), then signs
// in, looks, filters, retries a dead delivery once its cause is fixed, and
// checks that nothing a sender sent runs as markup and no credential is on
// any page. Screenshots of each page go to $SCREENSHOTS.
//
// Environment: WEBHOOK_BASE, ADMIN_BASE, ADMIN_TOKEN, TOKEN, GITHUB_SECRET,
// CAMUNDA_URL, DEAD_KEY, REPO_UUID, REFUND_UUID, SCREENSHOTS, CHROMIUM.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";
import { sign } from "@octokit/webhooks-methods";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is set`);
  return value;
};
const [webhook, admin, adminToken, token, githubSecret] = [
  "WEBHOOK_BASE", "ADMIN_BASE", "ADMIN_TOKEN", "TOKEN", "GITHUB_SECRET",
].map(env);
const [camunda, deadKey, repo, refund, shots] = [
  "CAMUNDA_URL", "DEAD_KEY", "REPO_UUID", "REFUND_UUID", "SCREENSHOTS",
].map(env);
mkdirSync(shots, { recursive: true });
const step = (text) => console.log(`console: ${text}`);

// The deliveries, sent as their senders send them.
const examples = require("@octokit/webhooks-examples");
const push = JSON.stringify(examples.find((e) => e.name === "push").examples[0]);
const delivery = crypto.randomUUID();
const github = await fetch(`${webhook}/webhook/send?uid=${repo}&source=github-repo`, {
  method: "POST",
  headers: {
    "content-type": "application/json",
    "x-github-event": "push",
    "x-github-delivery": delivery,
    "x-hub-signature-256": await sign(githubSecret, push),
    "user-agent": "GitHub-Hookshot/044aadd",
  },
  body: push,
});
assert.equal(github.status, 202, await github.clone().text());
step(`GitHub push ${delivery}: ${github.status}`);
const hostile = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`;
const byToken = (body) =>
  fetch(`${webhook}/webhook/send?uid=${refund}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
const refused = await byToken({ reason: hostile });
assert.equal(refused.status, 422);
const queued = await byToken({ orderNumber: hostile });
assert.equal(queued.status, 202);
const deadId = (await queued.json()).deliveryId;
step(`refused 422, and ${deadId} queued for a definition Camunda does not have`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const failures = [];
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("dialog", async (dialog) => {
    failures.push(`a dialog opened: ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on("request", (request) => {
    if (!request.url().startsWith(admin)) failures.push(`a request left the console: ${request.url()}`);
  });
  const secrets = [adminToken, token, githubSecret, "x-hub-signature", "sha256=", "authorization"];
  const noSecrets = async (what) => {
    const html = (await page.content()).toLowerCase();
    for (const secret of secrets) {
      assert.ok(!html.includes(secret.toLowerCase()), `${what} holds ${secret.slice(0, 12)}…`);
    }
  };
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  // No session: the console sends the browser to sign in.
  let response = await page.goto(`${admin}/`);
  assert.ok(page.url().endsWith("/sign-in"), page.url());
  assert.match(response.headers()["content-security-policy"], /default-src 'none'/);
  await shot("01-sign-in");
  await page.fill("#token", "not-the-admin-token-but-long-enough-32");
  await page.click("button[type=submit]");
  assert.match(await page.textContent("main"), /the admin token is not valid/);
  await shot("02-wrong-token");
  step("a missing session redirects to sign-in; a wrong token is refused");
  await page.fill("#token", adminToken);
  await page.click("button[type=submit]");
  assert.ok(page.url() === `${admin}/`, page.url());
  const cookie = (await context.cookies()).find((c) => c.name === "pw_admin");
  assert.ok(cookie && cookie.httpOnly && cookie.sameSite === "Strict", JSON.stringify(cookie));
  step("signed in: the session cookie is HttpOnly and SameSite=Strict");

  // The GitHub delivery: its source, event and instance, once Camunda started it.
  const rowOf = (text) => page.locator("#deliveries tbody tr", { hasText: text });
  const waitFor = async (what, check) => {
    for (let i = 0; i < 60; i++) {
      if (await check()) return;
      await page.waitForTimeout(500);
      await page.reload();
    }
    await page.screenshot({ path: `${shots}/never.png`, fullPage: true });
    throw new Error(`never: ${what} (the page: ${shots}/never.png)`);
  };
  const started = rowOf("github-repo").filter({ hasText: "started" });
  await waitFor("the GitHub delivery started", async () => (await started.count()) === 1);
  const cells = await started.locator("td").allTextContents();
  assert.equal(cells[1], "github-repo");
  assert.equal(cells[2], "push");
  assert.equal(cells[4], "started");
  assert.match(cells[6], /^[0-9a-f-]{36}$/, `the instance: ${cells[6]}`);
  await shot("03-deliveries");
  await noSecrets("the deliveries list");
  step(`the GitHub delivery is listed: source, event, started, instance ${cells[6]}`);

  // The refused one: its code, its violations, its payload as text.
  await rowOf("refused").locator("a").click();
  assert.match(await page.textContent("#delivery"), /invalid_payload/);
  assert.match(await page.textContent("#problem"), /orderNumber/);
  // As JSON text: the quote escaped, every angle bracket as sent.
  const asJson = JSON.stringify(hostile).slice(1, -1);
  assert.ok((await page.textContent("#payload")).includes(asJson), "the payload is shown as sent");
  assert.equal(await page.locator("#payload script, #payload img, main img, main script").count(), 0);
  await shot("04-refused");
  await noSecrets("a refused delivery's page");
  step("a refused delivery shows its code, its violations and its payload as text");

  // Filter by status: the dead delivery, after Camunda refused it.
  await page.goto(`${admin}/`);
  await page.selectOption("select[name=status]", "dead");
  await page.click("form.filters button[type=submit]");
  assert.match(page.url(), /status=dead/);
  await waitFor("the delivery is dead", async () => (await rowOf("dead").count()) >= 1);
  const outcomes = await page.locator("#deliveries tbody tr td:nth-child(5)").allTextContents();
  assert.ok(outcomes.length >= 1 && outcomes.every((o) => o === "dead"), outcomes.join());
  await shot("05-filtered-dead");
  await page.goto(`${admin}/deliveries/${deadId}`);
  assert.equal(await page.locator("#delivery tr", { hasText: "Outcome" }).locator("td").textContent(), "dead");
  assert.match(await page.textContent("#attempts"), /dead/);
  assert.ok((await page.textContent("#payload")).includes(JSON.stringify(hostile).slice(1, -1)));
  await shot("06-dead");
  step("filtered by status: the dead delivery, with the engine's refusal among its attempts");

  // The cause fixed (the definition deployed), retried from its page.
  const bpmn = `<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="${deadKey}" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start"><bpmn:outgoing>flow</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="flow" sourceRef="start" targetRef="end"/>
    <bpmn:endEvent id="end"><bpmn:incoming>flow</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>`;
  const form = new FormData();
  form.append("deployment-name", deadKey);
  form.append("data", new Blob([bpmn], { type: "application/xml" }), `${deadKey}.bpmn`);
  const deployed = await fetch(`${camunda}/deployment/create`, { method: "POST", body: form });
  assert.equal(deployed.status, 200, await deployed.clone().text());
  step(`deployed ${deadKey} to Camunda`);
  await page.click("#retry");
  assert.ok(page.url().endsWith(`/deliveries/${deadId}`), page.url());
  await waitFor("the retried delivery started", async () =>
    (await page.locator("#delivery tr", { hasText: "Outcome" }).locator("td").textContent()) === "started");
  assert.match(await page.locator("#delivery tr", { hasText: "Instance" }).textContent(), /[0-9a-f-]{36}/);
  await shot("07-retried-started");
  await noSecrets("a retried delivery's page");
  step("retried from its page: started");

  // A form without the session's CSRF token is refused.
  const forged = await page.request.post(`${admin}/deliveries/${deadId}/discard`, {
    form: { csrf: "not-the-session-token" },
  });
  assert.equal(forged.status(), 403);

  await page.goto(`${admin}/sources`);
  assert.match(await page.textContent("#sources"), /github-repo/);
  await shot("08-sources");
  await noSecrets("the sources page");
  step("the sources overview lists github-repo");

  await page.click("header button[type=submit]");
  assert.ok(page.url().endsWith("/sign-in"));
  await page.goto(`${admin}/`);
  assert.ok(page.url().endsWith("/sign-in"), "signed out");
  await context.close();
} finally {
  await browser.close();
}
assert.deepEqual(failures, []);
step("no dialog opened and no request left the console");
