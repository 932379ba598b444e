// The seed's presence page in a real browser: headless Chromium (Debian's package,
// driven by playwright-core) loads examples/presence-demo — the seed's view and its
// Stimulus controller, byte for byte, bundled with @hotwired/stimulus and
// @rails/actioncable by esbuild — from a page server on one port, talking to the real
// ferrocable binary on another, with the Origin check on (`--allowed-origins` naming
// the page's origin exactly).
//
// Chromium is required: when it is missing this file fails (it never skips). CI
// installs it (`.ci/run`); locally `apt-get install chromium`, or point CHROMIUM_BIN
// at another build. Every wait is on the page's DOM (a MutationObserver re-checks on DOM
// mutations) or on a browser event; timeouts only turn a hang into a failure.
// Screenshots go to tests/e2e/artifacts/.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { launchChromium } from "./browser.mjs";
import { bundle } from "../../examples/presence-demo/build.mjs";
import { startPageServer, users as demoUsers } from "../../examples/presence-demo/server.mjs";
import { startServer, WAIT_MS, withTimeout } from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const artifacts = join(here, "artifacts");
/** The issue's bound for a departure to reach the other window. */
const LEAVE_MS = 5_000;

/** What the page shows: the member count and the member list's names and avatars. */
function readRoster() {
  const count = document.querySelector('[data-presence-target="memberCount"]')?.textContent ?? null;
  const members = [...document.querySelectorAll('[data-presence-target="memberList"] [data-user-id]')];
  return {
    count,
    names: members.map((m) => m.querySelector("span")?.textContent),
    ids: members.map((m) => m.getAttribute("data-user-id")),
  };
}

// The seed, a test asset of the repository (tests/seed/README.md). Missing, this test
// fails: the page below would otherwise be checked against nothing.
const seedPath = join(here, "../seed/presence-tracking.md");
const demoDir = join(here, "../../examples/presence-demo");

test("the demo's controller and view are the seed's, byte for byte", () => {
  assert.ok(existsSync(seedPath), `the seed is missing: ${seedPath}`);
  const blocks = [...readFileSync(seedPath, "utf8").matchAll(/```(\w+)\n([\s\S]*?)```/g)];
  const block = (lang) => {
    const found = blocks.find((m) => m[1] === lang);
    assert.ok(found, `the seed has no \`\`\`${lang} block`);
    return found[2];
  };
  const controller = readFileSync(join(demoDir, "app/javascript/controllers/presence_controller.js"), "utf8");
  const view = readFileSync(join(demoDir, "app/views/rooms/show.html.erb"), "utf8");
  assert.equal(controller, block("javascript"));
  assert.equal(view, block("erb"));
});

describe("presence demo page in headless Chromium", () => {
  let workDir;
  let bundlePath;
  let pages; // the demo's page server (allowed origin)
  let server; // ferrocable
  let browser;

  // Set up once, by the first test that needs it: a missing Chromium then fails each
  // test (counted as failed, not as cancelled by a hook).
  let setUp;
  const ready = () => (setUp ??= setUpOnce());
  async function setUpOnce() {
    workDir = mkdtempSync(join(tmpdir(), "ferrocable-browser-"));
    bundlePath = await bundle(esbuild, {
      outfile: join(workDir, "application.js"),
      nodePaths: [join(here, "node_modules")],
    });
    pages = await startPageServer({ bundlePath });
    server = await startServer({ users: demoUsers, extraArgs: ["--allowed-origins", pages.origin] });
    pages.cableUrl = server.cableUrl;
    browser = await launchChromium();
    mkdirSync(artifacts, { recursive: true });
  }

  after(async () => {
    await browser?.close();
    await pages?.close();
    await server?.stop("SIGKILL");
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  /**
   * A window of its own (a browser context: own cookies, own storage) for `userId`,
   * on `room`, loaded from `pageServer`. Page errors and the WebSocket's
   * frames are kept for failure messages.
   */
  async function openWindow(userId, room, pageServer = pages) {
    const context = await browser.newContext({ viewport: { width: 520, height: 330 } });
    const page = await context.newPage();
    const win = { userId, context, page, log: [], sockets: [], pageErrors: [] };
    let firstSocket;
    win.firstSocket = new Promise((ok) => (firstSocket = ok));
    page.on("console", (m) => win.log.push(`console.${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => win.pageErrors.push(e));
    page.on("websocket", (ws) => {
      let ended;
      const rec = { ws, frames: [], closed: false, errors: [], ended: new Promise((ok) => (ended = ok)) };
      win.sockets.push(rec);
      firstSocket(rec);
      ws.on("framereceived", (f) => rec.frames.push(`← ${f.payload}`));
      ws.on("framesent", (f) => rec.frames.push(`→ ${f.payload}`));
      ws.on("socketerror", (e) => {
        rec.errors.push(String(e));
        ended();
      });
      ws.on("close", () => {
        rec.closed = true;
        ended();
      });
    });
    win.describe = async () => {
      const roster = page.isClosed() ? "(closed)" : JSON.stringify(await page.evaluate(readRoster));
      const socks = win.sockets
        .map((s, i) => `  socket #${i} ${s.ws.url()}${s.closed ? " (closed)" : ""} ${s.errors.join("; ")}\n${s.frames.map((f) => `    ${f}`).join("\n")}`)
        .join("\n");
      return `user ${userId}: roster ${roster}\n  page errors: ${win.pageErrors.join("; ") || "none"}\n  ${win.log.join("\n  ")}\n${socks}`;
    };
    /** Resolves once `predicate(readRoster())` holds in the page. */
    win.until = async (predicate, what, timeout = WAIT_MS) => {
      try {
        // A MutationObserver in the page re-checks on every DOM change (functions cross
        // into the page as source text).
        await page.evaluate(
          ({ readRoster, predicate, timeout }) =>
            new Promise((ok, fail) => {
              const holds = new Function(`return (${predicate})((${readRoster})())`);
              if (holds()) return ok();
              const observer = new MutationObserver(() => {
                if (holds()) {
                  observer.disconnect();
                  clearTimeout(timer);
                  ok();
                }
              });
              observer.observe(document.body, { subtree: true, childList: true, characterData: true });
              const timer = setTimeout(() => {
                observer.disconnect();
                fail(new Error(`timed out after ${timeout} ms`));
              }, timeout);
            }),
          { readRoster: readRoster.toString(), predicate: predicate.toString(), timeout },
        );
      } catch (e) {
        throw new Error(`user ${userId}: ${what}: ${e.message}\n${await win.describe()}`);
      }
    };
    await page.goto(pageServer.pageUrl(userId, room));
    return win;
  }

  test("two users in one room see each other; one closes, the other shows 1 online", { timeout: 60_000 }, async (t) => {
    await ready();
    const alice = await openWindow(1, 1);
    const bob = await openWindow(2, 1);

    const bothHere = (r) => r.count === "2" && [...r.names].sort().join() === "Alice,Bob";
    await Promise.all([
      alice.until(bothHere, "2 online, Alice and Bob"),
      bob.until(bothHere, "2 online, Alice and Bob"),
    ]);
    for (const win of [alice, bob]) {
      // The avatars (avatar_url from ferrocable's users file, served by the page server).
      const loaded = await win.page.locator(".member img").evaluateAll((imgs) =>
        Promise.all(
          imgs.map((img) =>
            img.complete
              ? img.naturalWidth > 0
              : new Promise((ok) => {
                  img.addEventListener("load", () => ok(img.naturalWidth > 0));
                  img.addEventListener("error", () => ok(false));
                }),
          ),
        ),
      );
      assert.deepEqual(loaded, [true, true], `avatars did not load\n${await win.describe()}`);
      const roster = await win.page.evaluate(readRoster);
      assert.deepEqual([...roster.ids].sort(), ["1", "2"], await win.describe());
      assert.equal(
        await win.page.locator(".member-header").innerText(),
        "2 online",
        await win.describe(),
      );
    }
    await alice.page.screenshot({ path: join(artifacts, "presence.png") });

    const t0 = performance.now();
    await alice.context.close(); // the window goes away: no unsubscribe, the socket just ends
    await bob.until(
      (r) => r.count === "1" && r.names.join() === "Bob",
      `1 online (only Bob) within ${LEAVE_MS} ms of Alice closing`,
      LEAVE_MS,
    );
    const ms = Math.round(performance.now() - t0);
    t.diagnostic(`Alice's departure reached Bob's page in ${ms} ms`);
    assert.equal(await bob.page.locator(".member-header").innerText(), "1 online");
    await bob.page.screenshot({ path: join(artifacts, "presence-after-leave.png") });

    for (const win of [alice, bob]) assert.deepEqual(win.pageErrors, [], await win.describe());
    await bob.context.close();
  });

  test("a page from an origin ferrocable does not allow is refused", { timeout: 30_000 }, async () => {
    await ready();
    const other = await startPageServer({ bundlePath, cableUrl: server.cableUrl });
    try {
      const carol = await openWindow(3, 2, other);
      // The client opens a socket; the handshake is refused before any frame.
      const rec = await withTimeout(carol.firstSocket, WAIT_MS, "Carol's page to open a WebSocket");
      await withTimeout(rec.ended, WAIT_MS, "the refused WebSocket to end");
      // Refused as Rails refuses it: an HTTP 404 instead of the upgrade.
      assert.match(rec.errors.join("\n"), /response code: 404/, await carol.describe());
      assert.ok(
        server.stderr.some((l) => l.includes("request origin not allowed") && l.includes(other.origin)),
        `ferrocable did not log the refused origin ${other.origin}:\n${server.stderr.join("\n")}`,
      );
      assert.deepEqual(rec.frames, [], `refused origin got frames\n${await carol.describe()}`);
      assert.equal((await carol.page.evaluate(readRoster)).count, "0");
      await carol.context.close();
    } finally {
      await other.close();
    }
  });
});
