// The clients' connection monitors against ferrocable's pings: a connected client
// stays connected for 20 s — no disconnect, no reconnect — while pings keep arriving.
// Waiting 20 s of wall time is the point of this test (the monitors judge staleness
// by the clock: 6 s for @rails/actioncable, two missed 3 s pings for AnyCable), so
// all three clients are watched at once, and `node --test` runs this file
// concurrently with the others.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ANYCABLE, CLIENTS, closeAllTabs, openAnyCableTab, openTab, startServer } from "./support.mjs";

const WATCH_MS = 20_000;
/** ferrocable pings every 3 s, as Rails does. */
const PING_EVERY_MS = 3_000;

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  closeAllTabs();
  await server.stop("SIGKILL");
});

test(`every client stays connected for ${WATCH_MS / 1000} s and keeps receiving pings`, { timeout: 60_000 }, async () => {
  const watched = [];
  for (const [i, client] of CLIENTS.entries()) {
    const tab = await openTab(client, server, { userId: i + 1 });
    const sub = tab.subscribe({ channel: "PresenceChannel", room_id: 20 });
    watched.push({ label: client.label, tab, sub, connectedType: "connected", disconnectedTypes: ["disconnected", "rejected"] });
  }
  const any = await openAnyCableTab(server, { userId: 3 });
  watched.push({
    label: ANYCABLE.label,
    tab: any,
    sub: any.subscribe("PresenceChannel", { room_id: 20 }),
    connectedType: "connect",
    disconnectedTypes: ["disconnect", "close"],
  });
  for (const w of watched) await w.sub.waitFor((e) => e.type === w.connectedType, `${w.label}: subscribed`);

  const pingsBefore = watched.map((w) => w.tab.pings().length);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, WATCH_MS));
  const elapsed = performance.now() - t0;

  for (const [i, w] of watched.entries()) {
    const what = `${w.label}\n${w.tab.transcript()}`;
    assert.equal(w.tab.sockets.length, 1, `no reconnect: ${what}`);
    assert.ok(!w.tab.frames.some((f) => f.dir === "close"), `socket never closed: ${what}`);
    assert.ok(!w.tab.received().some((f) => f.type === "disconnect"), `no disconnect frame: ${what}`);
    assert.ok(!w.sub.events.some((e) => w.disconnectedTypes.includes(e.type)), `no disconnected callback: ${w.sub.describe()}`);
    const pings = w.tab.pings().length - pingsBefore[i];
    // 20 s at one ping per 3 s is 6 or 7; allow one lost to scheduling.
    assert.ok(pings >= Math.floor(elapsed / PING_EVERY_MS) - 1, `${pings} pings in ${Math.round(elapsed)} ms: ${what}`);
    // Each ping carries the server's clock, in seconds, increasing.
    const stamps = w.tab.pings().map((p) => p.message);
    assert.ok(stamps.every((s, j) => j === 0 || s > stamps[j - 1]), `ping times increase: ${stamps}`);
  }
  for (const w of watched.slice(0, CLIENTS.length)) {
    assert.equal(w.tab.consumer.connection.isOpen(), true);
    assert.equal(w.tab.consumer.connection.monitor.isRunning(), true);
  }
  assert.equal(any.cable.state, "connected");
  const health = await server.health();
  assert.equal(health.connections, watched.length, JSON.stringify(health));
});
