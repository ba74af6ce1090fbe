// Signs a delivery with the sender's own library, as the sender would:
//
//   node sign.mjs '{"scheme": "github", "secret": "…", "body": "…", …}'
//
// prints the headers to send, as a JSON object. Shopify, GitLab and the
// generic HMAC have no client library: their headers follow the senders'
// documented recipes, with Node's own crypto. `node sign.mjs example push`
// prints the first of @octokit/webhooks-examples' payloads of an event;
// `node sign.mjs examples SECRET` prints every example of every event as a
// JSON array of {event, action, body, signature, form, formSignature},
// each body signed with @octokit/webhooks-methods as GitHub signs a
// delivery, and again as the form GitHub posts by default
// (`payload=<the JSON>`, application/x-www-form-urlencoded);
// `node sign.mjs multipart '{"fields": [[name, value], …], "files": [[name,
// file name, content], …]}'` prints {"contentType", "body" (base64)}: the
// multipart/form-data body that fetch (Node's own FormData, as browsers
// send it) makes of them.
import { createRequire } from "node:module";
import { createHmac } from "node:crypto";
import { sign as githubSign } from "@octokit/webhooks-methods";

const require = createRequire(import.meta.url);

async function headers(r) {
  switch (r.scheme) {
    case "github":
      return { "X-Hub-Signature-256": await githubSign(r.secret, r.body) };
    case "stripe": {
      const Stripe = require("stripe");
      const stripe = new Stripe("sk_test_unused");
      const header = stripe.webhooks.generateTestHeaderString({
        payload: r.body,
        secret: r.secret,
        timestamp: r.timestamp,
      });
      return { "Stripe-Signature": header };
    }
    case "twilio": {
      const twilio = require("twilio");
      // Twilio signs form parameters, or (a JSON body) the URL alone.
      const signature = twilio.getExpectedTwilioSignature(r.secret, r.url, r.params ?? {});
      return { "X-Twilio-Signature": signature };
    }
    case "standard-webhooks": {
      const { Webhook } = require("standardwebhooks");
      const signature = new Webhook(r.secret).sign(r.id, new Date(r.timestamp * 1000), r.body);
      return { "webhook-id": r.id, "webhook-timestamp": String(r.timestamp), "webhook-signature": signature };
    }
    case "shopify":
      // https://shopify.dev/docs/apps/build/webhooks/subscribe/https#step-5-verify-the-webhook
      return { "X-Shopify-Hmac-Sha256": createHmac("sha256", r.secret).update(r.body, "utf8").digest("base64") };
    case "gitlab":
      // https://docs.gitlab.com/user/project/integrations/webhooks/#create-a-webhook: the secret token as sent.
      return { "X-Gitlab-Token": r.secret };
    case "hmac": {
      const signed = r.timestamp === undefined ? r.body : `${r.timestamp}.${r.body}`;
      const digest = createHmac(r.algorithm, r.secret).update(signed, "utf8").digest(r.encoding);
      return { [r.header]: `${r.prefix ?? ""}${digest}` };
    }
    default:
      throw new Error(`no such scheme: ${r.scheme}`);
  }
}

if (process.argv[2] === "multipart") {
  const r = JSON.parse(process.argv[3]);
  const form = new FormData();
  for (const [name, value] of r.fields ?? []) form.append(name, value);
  for (const [name, file, content] of r.files ?? []) form.append(name, new Blob([content]), file);
  const encoded = new Response(form);
  const body = Buffer.from(await encoded.arrayBuffer()).toString("base64");
  process.stdout.write(JSON.stringify({ contentType: encoded.headers.get("content-type"), body }));
} else if (process.argv[2] === "examples") {
  const examples = require("@octokit/webhooks-examples");
  const signed = [];
  for (const event of examples) {
    for (const example of event.examples) {
      const body = JSON.stringify(example);
      // GitHub's other content type (its default): the JSON in the form
      // field `payload`, the form's bytes signed.
      const form = new URLSearchParams({ payload: body }).toString();
      signed.push({
        event: event.name,
        action: example.action ?? null,
        body,
        signature: await githubSign(process.argv[3], body),
        form,
        formSignature: await githubSign(process.argv[3], form),
      });
    }
  }
  process.stdout.write(JSON.stringify(signed));
} else if (process.argv[2] === "example") {
  const examples = require("@octokit/webhooks-examples");
  const event = examples.find((e) => e.name === process.argv[3]);
  process.stdout.write(JSON.stringify(event.examples[0]));
} else {
  process.stdout.write(JSON.stringify(await headers(JSON.parse(process.argv[2]))));
}
