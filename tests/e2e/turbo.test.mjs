// Beyond presence, in a real browser: a page as a Rails app renders it with
// `turbo_stream_from @room, :messages` (a <turbo-cable-stream-source> with the signed
// stream name, computed as turbo-rails computes it) and a chat on the declared
// ChatChannel (`[[channels]]`: stream `chat_{room}`, action `speak` with `text`),
// bundled with @hotwired/turbo-rails by esbuild. ferrocable runs in Redis mode with
// the app's secret_key_base; what the "Rails app" broadcasts is PUBLISHed into Redis
// exactly as the Rails Redis adapter writes it.
//
// Chromium is required (see browser.mjs). Waits are on the page's DOM (a
// MutationObserver re-checks on every change); the screenshot goes to
// tests/e2e/artifacts/turbo-chat.png.

import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { launchChromium } from "./browser.mjs";
import { activeSupportJson, SECRET_KEY_BASE, signedStreamName } from "./rails.mjs";
import { chatChannelsFile, redisServer, startServer, uniqueRoom, USERS, WAIT_MS } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const pageDir = join(here, "turbo-page");
const artifacts = join(here, "artifacts");

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

/** `@room.to_gid_param` for a Room with `id` (URL-safe base64 of the GlobalID, unpadded). */
const roomGidParam = (id) => Buffer.from(`gid://e2e-app/Room/${id}`).toString("base64url");

/**
 * The "Rails app": renders turbo-page/index.html for `?user_id=N&room=R` and serves
 * the bundle. `state.cableUrl` is set once ferrocable (which needs this origin) runs.
 */
async function startPageServer(bundlePath, state) {
  const template = readFileSync(join(pageDir, "index.html"), "utf8");
  const http = createServer((req, res) => {
    const url = new URL(req.url, "http://page");
    if (url.pathname === "/application.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      return res.end(readFileSync(bundlePath));
    }
    if (url.pathname !== "/") {
      res.writeHead(404);
      return res.end();
    }
    const userId = url.searchParams.get("user_id");
    const room = url.searchParams.get("room");
    const cable = new URL(state.cableUrl);
    cable.searchParams.set("user_id", userId);
    const locals = {
      room,
      userName: USERS.find((u) => String(u.id) === userId)?.name ?? "nobody",
      cableUrl: cable.href,
      // turbo_stream_from @room, :messages → signed "<gid param>:messages"
      signedStreamName: signedStreamName(`${roomGidParam(room)}:messages`),
      names: JSON.stringify(Object.fromEntries(USERS.map((u) => [u.id, u.name]))),
    };
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(template.replace(/\{\{(\w+)\}\}/g, (_, k) => escapeHtml(locals[k])));
  });
  http.listen(0, "127.0.0.1");
  await once(http, "listening");
  const origin = `http://127.0.0.1:${http.address().port}`;
  return { origin, close: () => new Promise((ok) => http.close(ok)) };
}

/** Resolves once `check()` (page-side source, returning truthy) holds in `page`. */
async function untilInPage(page, check, what, timeout = WAIT_MS) {
  try {
    await page.evaluate(
      ({ check, timeout }) =>
        new Promise((ok, fail) => {
          const holds = new Function(`return (${check})()`);
          if (holds()) return ok();
          const observer = new MutationObserver(() => {
            if (holds()) {
              observer.disconnect();
              clearTimeout(timer);
              ok();
            }
          });
          observer.observe(document.documentElement, { subtree: true, childList: true, characterData: true, attributes: true });
          const timer = setTimeout(() => {
            observer.disconnect();
            fail(new Error(`timed out after ${timeout} ms`));
          }, timeout);
        }),
      { check: check.toString(), timeout },
    );
  } catch (e) {
    const body = page.isClosed() ? "(closed)" : await page.evaluate(() => document.body.innerHTML);
    throw new Error(`${what}: ${e.message}\n${body}`);
  }
}

describe("turbo_stream_from and a declared chat channel in headless Chromium", () => {
  let workDir;
  let pages;
  let server;
  let browser;
  let redis;
  const state = {};

  before(async () => {
    workDir = mkdtempSync(join(tmpdir(), "ferrocable-turbo-"));
    const bundlePath = join(workDir, "application.js");
    await esbuild.build({
      entryPoints: [join(pageDir, "application.js")],
      outfile: bundlePath,
      bundle: true,
      format: "iife",
      platform: "browser",
      target: "es2020",
      logLevel: "warning",
    });
    pages = await startPageServer(bundlePath, state);
    redis = await redisServer();
    server = await startServer({
      redis,
      extraArgs: [
        "--allowed-origins", pages.origin,
        "--secret-key-base", SECRET_KEY_BASE,
        "--channels-file", chatChannelsFile(),
      ],
    });
    state.cableUrl = server.cableUrl;
    browser = await launchChromium();
    mkdirSync(artifacts, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await pages?.close();
    await server?.stop("SIGTERM");
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  async function openWindow(userId, room) {
    const context = await browser.newContext({ viewport: { width: 520, height: 420 } });
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e));
    await page.goto(`${pages.origin}/?user_id=${userId}&room=${room}`);
    return { context, page, errors };
  }

  test("a Turbo Stream published in Rails' format appears; a chat line reaches the other user", { timeout: 60_000 }, async () => {
    const room = uniqueRoom();
    const alice = await openWindow(1, room);
    const bob = await openWindow(2, room);
    for (const win of [alice, bob]) {
      // turbo-rails sets `connected` on the element once the subscription is confirmed.
      await untilInPage(win.page, () => document.querySelector("turbo-cable-stream-source[connected]"), "Turbo stream subscribed");
      await untilInPage(win.page, () => document.querySelector("#chat-form[connected]"), "ChatChannel subscribed");
    }

    // Turbo::StreamsChannel.broadcast_append_to(@room, :messages, …) in the Rails app:
    // the rendered <turbo-stream> as a JSON string on "<prefix>:<gid param>:messages".
    const html =
      '<turbo-stream action="append" target="messages"><template>' +
      '<p class="message" id="message_1">Tea &amp; cake at <b>5</b></p></template></turbo-stream>';
    assert.ok(activeSupportJson(html).includes("\\u003cturbo-stream"), "published as ActiveSupport writes it");
    const receivers = await redis.broadcast(`${roomGidParam(room)}:messages`, html);
    assert.equal(receivers, 1, "ferrocable is subscribed to the stream in Redis");
    for (const win of [alice, bob]) {
      await untilInPage(
        win.page,
        () => document.querySelector("#messages #message_1")?.textContent === "Tea & cake at 5",
        "the Turbo Stream appended to #messages",
      );
    }

    // Alice types a line; ChatChannel#speak re-broadcasts it to the room's stream.
    await alice.page.fill("#chat-form input[name=text]", "Hello Bob <3");
    await alice.page.press("#chat-form input[name=text]", "Enter");
    for (const win of [bob, alice]) {
      await untilInPage(
        win.page,
        () => [...document.querySelectorAll("#chat li")].some((li) => li.textContent === "Alice: Hello Bob <3" && li.dataset.userId === "1"),
        "Alice's chat line",
      );
    }
    await bob.page.screenshot({ path: join(artifacts, "turbo-chat.png") });

    // A name signed with another secret is refused: the element never connects.
    const forged = signedStreamName(`${roomGidParam(room)}:messages`, { secret: "not-the-app-secret".repeat(4) });
    await bob.page.evaluate((name) => {
      const el = document.createElement("turbo-cable-stream-source");
      el.id = "forged";
      el.setAttribute("channel", "Turbo::StreamsChannel");
      el.setAttribute("signed-stream-name", name);
      document.body.append(el);
    }, forged);
    // Barrier: a chat line sent after the forged subscribe is answered after it.
    await bob.page.fill("#chat-form input[name=text]", "after the forgery");
    await bob.page.press("#chat-form input[name=text]", "Enter");
    await untilInPage(
      bob.page,
      () => [...document.querySelectorAll("#chat li")].some((li) => li.textContent === "Bob: after the forgery"),
      "Bob's own line",
    );
    assert.equal(await bob.page.evaluate(() => document.getElementById("forged").hasAttribute("connected")), false);

    for (const win of [alice, bob]) {
      assert.deepEqual(win.errors, []);
      await win.context.close();
    }
  });
});
