// Writes the GitHub deliveries of the `sources` benchmark into
// benches/fixtures: @octokit/webhooks-examples' first `push` payload (about
// 7 KB) and the same push with its commits repeated to 64 KiB, each with
// the X-Hub-Signature-256 that @octokit/webhooks-methods' `sign` makes
// with the secret `bench-secret`; and the first `pull_request` `opened`
// payload (about 21 KB), signed the same way, for the mapping benchmark.
//
//   node tests/senders/bench_fixtures.mjs
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { sign } from "@octokit/webhooks-methods";

const require = createRequire(import.meta.url);
const push = require("@octokit/webhooks-examples").find((e) => e.name === "push").examples[0];
const dir = new URL("../../benches/fixtures/", import.meta.url);

const small = JSON.stringify(push);
const large = structuredClone(push);
const commits = push.commits.length ? push.commits : [push.head_commit];
large.commits = [];
while (JSON.stringify(large).length < 64 * 1024) {
  large.commits.push(...commits.map((c, i) => ({ ...c, id: `${c.id.slice(0, 30)}${large.commits.length + i}`.padEnd(40, "0") })));
}
const opened = require("@octokit/webhooks-examples")
  .find((e) => e.name === "pull_request")
  .examples.find((e) => e.action === "opened");
for (const [name, body] of [
  ["github_push", small],
  ["github_push_64k", JSON.stringify(large)],
  ["github_pull_request", JSON.stringify(opened)],
]) {
  writeFileSync(new URL(`${name}.json`, dir), body);
  writeFileSync(new URL(`${name}.sig`, dir), await sign("bench-secret", body));
}
