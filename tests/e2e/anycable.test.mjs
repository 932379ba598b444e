// AnyCable's JavaScript client (@anycable/core) against ferrocable, speaking plain
// `actioncable-v1-json` over the `ws` package: the third client, beside the two
// @rails/actioncable versions.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ANYCABLE, closeAllTabs, openAnyCableTab, startServer, user } from "./support.mjs";

const isType = (type) => (e) => e.type === type;

describe(ANYCABLE.label, () => {
  let server;
  beforeEach(async () => {
    server = await startServer();
  });
  afterEach(async () => {
    closeAllTabs();
    await server.stop("SIGKILL");
  });

  test("welcome and connect; subscribed to PresenceChannel, the own user_joined arrives", async () => {
    const tab = await openAnyCableTab(server, { userId: 1 });
    assert.equal(await tab.connect(), undefined, "connected");
    const connect = await tab.cableEvents.waitFor(isType("connect"), "the cable's connect event");
    assert.deepEqual(connect.arg, { reconnect: false, restored: false });
    assert.equal(tab.sockets[0].protocol, "actioncable-v1-json");
    assert.deepEqual(tab.received()[0], { type: "welcome" }, tab.transcript());

    const sub = tab.subscribe("PresenceChannel", { room_id: 1 });
    await sub.channel.ensureSubscribed();
    assert.equal(sub.channel.state, "connected", sub.describe());
    const own = await sub.waitForMessage((m) => m.action === "user_joined", "own user_joined");
    assert.deepEqual(own, { action: "user_joined", user: user(1), member_ids: [1], member_count: 1 });
    // AnyCable sorts the identifier's keys; ferrocable echoes it as sent.
    const confirm = tab.received().find((f) => f.type === "confirm_subscription");
    assert.equal(confirm.identifier, '{"channel":"PresenceChannel","room_id":1}', tab.transcript());
  });

  test("a broadcast reaches an AnyCable subscriber: another user's join, then leave", async () => {
    const alice = await openAnyCableTab(server, { userId: 1 });
    const a = alice.subscribe("PresenceChannel", { room_id: 4 });
    await a.waitForMessage((m) => m.action === "user_joined" && m.user.id === 1, "own join");

    const bob = await openAnyCableTab(server, { userId: 2 });
    const b = bob.subscribe("PresenceChannel", { room_id: 4 });
    await b.channel.ensureSubscribed();
    const seen = await a.waitForMessage((m) => m.action === "user_joined" && m.user.id === 2, "Bob's join");
    assert.deepEqual(seen.member_count, 2);
    assert.deepEqual([...seen.member_ids].sort(), [1, 2]);

    bob.close();
    const gone = await a.waitForMessage((m) => m.action === "user_left", "Bob's user_left");
    assert.deepEqual(gone, { action: "user_left", user: user(2), member_ids: [1], member_count: 1 });
  });

  test("a refused connection closes with `unauthorized` and does not reconnect", async () => {
    // No user: refused after the upgrade with reconnect: false.
    const refused = await openAnyCableTab(server, {});
    // The control, refused by Origin (HTTP 404): a network error, which AnyCable's
    // monitor retries with backoff. Two retries of it is how long we watch.
    const control = await openAnyCableTab(server, { userId: 1, origin: "http://evil.test" });

    const err = await refused.connect();
    assert.equal(err?.reason, "unauthorized", `rejected as unauthorized: ${err}`);
    const closed = await refused.cableEvents.waitFor(isType("close"), "the cable's close event");
    assert.equal(closed.arg.reason, "unauthorized");
    assert.deepEqual(
      refused.received(),
      [{ type: "disconnect", reason: "unauthorized", reconnect: false }],
      refused.transcript(),
    );
    assert.equal(refused.cable.state, "closed");

    control.connect();
    await control.until((t) => t.sockets.length >= 3, "the control tab to reconnect twice", 20_000);
    assert.equal(refused.sockets.length, 1, "no reconnect attempt:\n" + refused.transcript());
    assert.ok(!refused.cableEvents.events.some(isType("connect")), refused.cableEvents.describe());
  });
});
