// Rails authentication end to end: the clients connect with what a browser of the
// Rails app would send — a signed `user_id` cookie in the upgrade request's `Cookie`
// header, or a JWT as a query parameter — to a ferrocable with no development
// identifier. The credentials are minted with node:crypto (rails.mjs), checked first
// against the vectors the spec computed with real Rails.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ANYCABLE, CLIENTS, closeAllTabs, openAnyCableTab, openTab, startServer, untilHealth, user } from "./support.mjs";
import { cookieHeader, jwtHs256, SECRET_KEY_BASE, signedCookie, signedStreamName } from "./rails.mjs";

const JWT_SECRET = "e2e-jwt-secret";
const hourFromNow = () => Math.floor(Date.now() / 1000) + 3600;
const presence = (room) => ({ channel: "PresenceChannel", room_id: room });
const joined = (id) => (m) => m.action === "user_joined" && m.user?.id === id;

test("the minted credentials are Rails' own (rails-cookies.md §9.3, redis-adapter.md §6.4)", () => {
  // S2: 6.0/6.1 defaults (SHA1 keys, HMAC-SHA1); S3: 7.0+ defaults (SHA256 keys).
  assert.equal(
    signedCookie("user_id", 42, { keyDigest: "sha1" }),
    "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik5EST0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--65fe059113080f12a52b038016eec36df830dc88",
  );
  assert.equal(
    signedCookie("user_id", 42, { keyDigest: "sha256" }),
    "eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik5EST0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--b1f58f26a4ac327ba55f053e7f70420bc5afb0b1",
  );
  assert.equal(
    signedStreamName("Z2lkOi8vbXktYXBwL1Jvb20vNw", { keyDigest: "sha1" }),
    "IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Ig==--b8151673d406692b1248451c7c0db6c1a7ad3af8f5bcce1ec9b2ca988c12e15a",
  );
  assert.equal(
    signedStreamName("Z2lkOi8vbXktYXBwL1Jvb20vNw:messages"),
    "IloybGtPaTh2YlhrdFlYQndMMUp2YjIwdk53Om1lc3NhZ2VzIg==--a2e03d4aca64cb2c631c3e908cb09b7cb2d75d4def5ba4a2f85a246beb193308",
  );
});

describe("Rails cookies and JWT", () => {
  let server;
  before(async () => {
    server = await startServer({
      devUser: false,
      extraArgs: [
        "--secret-key-base", SECRET_KEY_BASE,
        "--identifiers", "signed_cookie:user_id,jwt",
        "--jwt-secret", JWT_SECRET,
      ],
    });
  });
  after(async () => {
    closeAllTabs();
    await server.stop("SIGKILL");
  });

  // What the browser of a Rails 6.1 app (SHA1 keys) and of a 7.0+ app (SHA256) sends.
  const cookieOf = (id, keyDigest) => ({
    Cookie: cookieHeader({ _other: "x", user_id: signedCookie("user_id", id, { keyDigest }) }),
  });
  const clients = [
    ...CLIENTS.map((client) => ({ label: client.label, open: (opts) => openTab(client, server, opts) })),
    { label: ANYCABLE.label, open: (opts) => openAnyCableTab(server, opts) },
  ];
  /** Subscribes to `room` with either client kind. */
  const subscribe = (tab, room) =>
    tab.cable ? tab.subscribe("PresenceChannel", { room_id: room }) : tab.subscribe(presence(room));

  for (const [i, { label, open }] of clients.entries()) {
    test(`${label}: a signed cookie in the upgrade request identifies the user`, async () => {
      for (const [id, keyDigest] of [[1, "sha1"], [2, "sha256"]]) {
        const tab = await open({ headers: cookieOf(id, keyDigest) });
        const sub = subscribe(tab, 30 + i);
        const own = await sub.waitForMessage(joined(id), `user ${id}'s own join (${keyDigest} keys)`);
        assert.deepEqual(own.user, user(id));
        assert.deepEqual(tab.received()[0], { type: "welcome" }, tab.transcript());
        tab.close();
      }
    });

    test(`${label}: a JWT in ?token= identifies the user`, async () => {
      const token = jwtHs256({ user_id: 3, exp: hourFromNow() }, JWT_SECRET);
      const tab = await open({ query: { token } });
      const own = await subscribe(tab, 40 + i).waitForMessage(joined(3), "Carol's own join");
      assert.deepEqual(own.user, user(3));
      tab.close();
    });
  }

  test("refused credentials get `unauthorized` and the clients do not reconnect", { timeout: 60_000 }, async () => {
    const tampered = signedCookie("user_id", 1).replace(/.$/, (c) => (c === "0" ? "1" : "0"));
    const otherName = signedCookie("admin_id", 1); // purpose cookie.admin_id, not user_id
    const bad = [
      { what: "tampered cookie", headers: { Cookie: cookieHeader({ user_id: tampered }) } },
      { what: "cookie signed for another name", headers: { Cookie: cookieHeader({ user_id: otherName }) } },
      { what: "JWT with another secret", query: { token: jwtHs256({ user_id: 1, exp: hourFromNow() }, "not-it") } },
      { what: "expired JWT", query: { token: jwtHs256({ user_id: 1, exp: hourFromNow() - 7200 }, JWT_SECRET) } },
      { what: "unknown user", query: { token: jwtHs256({ user_id: 999, exp: hourFromNow() }, JWT_SECRET) } },
    ];
    // @rails/actioncable tabs run with ConnectionMonitor.staleThreshold = 1 s, so a
    // monitor still running would retry within about 2 s.
    const refused = [];
    for (const client of CLIENTS) {
      for (const b of bad) refused.push({ ...b, client: client.label, tab: await openTab(client, server, { ...b, staleThreshold: 1 }) });
    }
    for (const b of bad) refused.push({ ...b, client: ANYCABLE.label, tab: await openAnyCableTab(server, b) });
    // The control: a valid cookie from a foreign origin (HTTP 404), which clients retry.
    const control = await openTab(CLIENTS[0], server, { headers: cookieOf(1, "sha256"), origin: "http://evil.test", staleThreshold: 1 });
    control.subscribe(presence(50));

    for (const r of refused) {
      if (r.tab.cable) r.tab.connect();
      else r.tab.subscribe(presence(50));
    }
    for (const r of refused) {
      await r.tab.until((t) => t.frames.some((f) => f.dir === "close"), `${r.client}, ${r.what}: closed`);
      assert.deepEqual(
        r.tab.received(),
        [{ type: "disconnect", reason: "unauthorized", reconnect: false }],
        `${r.client}, ${r.what}:\n${r.tab.transcript()}`,
      );
    }
    await control.until((t) => t.sockets.length >= 3, "the control tab to reconnect twice", 20_000);
    for (const r of refused) {
      assert.equal(r.tab.sockets.length, 1, `${r.client}, ${r.what}: no reconnect:\n${r.tab.transcript()}`);
    }
    await untilHealth(server, (h) => h.connections === 0, "no connection left");
  });
});
