// PresenceChannel end to end: the real ferrocable binary and unmodified Action Cable
// JavaScript clients (current and older), one isolated client copy per simulated tab.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import {
  CLIENTS,
  closeAllTabs,
  openTab,
  startServer,
  untilHealth,
  user,
} from "./support.mjs";

const presence = (room) => ({ channel: "PresenceChannel", room_id: room });
const sorted = (ids) => [...ids].sort((a, b) => a - b);
const joined = (id) => (m) => m.action === "user_joined" && m.user?.id === id;
const left = (id) => (m) => m.action === "user_left" && m.user?.id === id;
const event = (action, id, memberIds) => ({
  action,
  user: user(id),
  member_ids: memberIds,
  member_count: memberIds.length,
});
/** Compares a presence payload with member_ids taken as a set. */
const assertEvent = (actual, expected, msg) =>
  assert.deepEqual({ ...actual, member_ids: sorted(actual.member_ids ?? []) }, expected, msg);

for (const client of CLIENTS) {
  describe(client.label, () => {
    let server;
    beforeEach(async () => {
      server = await startServer();
    });
    afterEach(async () => {
      closeAllTabs();
      await server.stop("SIGKILL");
    });

    test("welcome, then connected and the subscriber's own user_joined", async () => {
      const tab = await openTab(client, server, { userId: 1 });
      const sub = tab.subscribe(presence(1));
      await sub.waitFor((e) => e.type === "connected", "connected");
      const own = await sub.waitForMessage(joined(1), "own user_joined");
      assertEvent(own, event("user_joined", 1, [1]));

      const frames = tab.received();
      assert.deepEqual(frames[0], { type: "welcome" }, tab.transcript());
      assert.equal(tab.sockets[0].protocol, "actioncable-v1-json");
      assert.deepEqual(
        sub.events.filter((e) => e.type === "connected").length,
        1,
        sub.describe(),
      );
      assert.deepEqual(sub.messages, [own], "nothing but the own join: " + sub.describe());
    });

    test("two users in one room see each other; closing one tab sends user_left", async () => {
      const alice = await openTab(client, server, { userId: 1 });
      const a = alice.subscribe(presence(7));
      await a.waitForMessage(joined(1), "Alice's own join");

      const bob = await openTab(client, server, { userId: 2 });
      const b = bob.subscribe(presence(7));
      await b.waitFor((e) => e.type === "connected", "connected");
      const bobSeesAlice = await b.waitForMessage(joined(1), "roster replay of Alice");
      const bobOwn = await b.waitForMessage(joined(2), "Bob's own join");
      const aliceSeesBob = await a.waitForMessage(joined(2), "Bob's join, seen by Alice");

      // A roster frame: the user and the count, no member_ids (linear in the room).
      assert.deepEqual(bobSeesAlice, { action: "user_joined", user: user(1), member_count: 2 });
      assertEvent(bobOwn, event("user_joined", 2, [1, 2]));
      assertEvent(aliceSeesBob, event("user_joined", 2, [1, 2]));
      const seen = (rec) => sorted(new Set(rec.messages.filter((m) => m.action === "user_joined").map((m) => m.user.id)));
      assert.deepEqual(seen(a), [1, 2], a.describe());
      assert.deepEqual(seen(b), [1, 2], b.describe());

      const from = b.events.length;
      alice.close();
      const gone = await b.waitForMessage(left(1), "Alice's user_left", { from });
      assertEvent(gone, event("user_left", 1, [2]));
    });

    test("one user in two tabs leaves only with the last tab", async () => {
      const tab1 = await openTab(client, server, { userId: 1 });
      const s1 = tab1.subscribe(presence(3));
      await s1.waitForMessage(joined(1), "tab 1's own join");
      const tab2 = await openTab(client, server, { userId: 1 });
      const s2 = tab2.subscribe(presence(3));
      const again = await s2.waitForMessage(joined(1), "tab 2's own join");
      assertEvent(again, event("user_joined", 1, [1]), "a second tab does not add a member");

      const bob = await openTab(client, server, { userId: 2 });
      const watcher = bob.subscribe(presence(3));
      await watcher.waitForMessage(joined(2), "Bob's own join");

      const from = watcher.events.length;
      tab1.close();
      // The server runs a connection's presence leaves before it stops counting the
      // connection, so once /health shows 2 connections any user_left for tab 1 has
      // already been queued to Bob, ahead of the join below.
      await untilHealth(server, (h) => h.connections === 2, "tab 1's connection gone");
      const carol = await openTab(client, server, { userId: 3 });
      carol.subscribe(presence(3));
      const carolJoin = await watcher.waitForMessage(joined(3), "Carol's join", { from });
      assertEvent(carolJoin, event("user_joined", 3, [1, 2, 3]), "Alice is still a member");
      assert.equal(
        watcher.messages.filter(left(1)).length,
        0,
        "no user_left while Alice still has a tab: " + watcher.describe(),
      );

      tab2.close();
      const gone = await watcher.waitForMessage(left(1), "Alice's user_left after her last tab");
      assertEvent(gone, event("user_left", 1, [2, 3]));
    });

    test("a refused connection gets `unauthorized` and does not reconnect", async () => {
      // Every tab here runs its client with ConnectionMonitor.staleThreshold = 1 s
      // (default 6 s), so a monitor that is still running would try again within
      // seconds: its poll interval becomes 1-2 s, and a closed socket is reopened at
      // the first poll at which the close is >= 1 s old.
      const staleThreshold = 1;
      const noUser = await openTab(client, server, { staleThreshold });
      const unknownUser = await openTab(client, server, { userId: 999, staleThreshold });
      // The control: refused at the HTTP level (bad Origin -> 404), which the client
      // treats as a network error and retries. Seeing it reconnect twice
      // (= at least two poll intervals) is how long we watch the refused tabs.
      const control = await openTab(client, server, { origin: "http://evil.test", staleThreshold });

      const refused = [noUser, unknownUser];
      const subs = refused.map((tab) => tab.subscribe(presence(1)));
      control.subscribe(presence(1));

      for (const [i, sub] of subs.entries()) {
        const ev = await sub.waitFor((e) => e.type === "disconnected", "disconnected");
        assert.deepEqual(ev.arg, { willAttemptReconnect: false }, sub.describe());
        const tab = refused[i];
        assert.deepEqual(
          tab.received(),
          [{ type: "disconnect", reason: "unauthorized", reconnect: false }],
          tab.transcript(),
        );
        assert.equal(tab.consumer.connection.monitor.isRunning(), false, "monitor stopped");
        assert.ok(!sub.events.some((e) => e.type === "connected"), sub.describe());
      }

      await control.until((t) => t.sockets.length >= 3, "the control tab to reconnect twice", 15_000);
      for (const tab of refused) {
        assert.equal(tab.sockets.length, 1, "no reconnect attempt:\n" + tab.transcript());
      }
    });

    test("perform('heartbeat') is accepted and the subscription stays", async () => {
      const alice = await openTab(client, server, { userId: 1 });
      const a = alice.subscribe(presence(5));
      await a.waitForMessage(joined(1), "own join");

      assert.equal(a.subscription.perform("heartbeat"), true, "sent");
      assert.equal(a.subscription.perform("heartbeat"), true, "sent");
      // Commands on one connection are processed in order, so this confirmation means
      // both heartbeats were handled before it.
      const other = alice.subscribe(presence(6));
      await other.waitFor((e) => e.type === "connected", "second subscription confirmed");

      const bob = await openTab(client, server, { userId: 2 });
      bob.subscribe(presence(5));
      const bobJoin = await a.waitForMessage(joined(2), "Bob's join, still delivered");
      assertEvent(bobJoin, event("user_joined", 2, [1, 2]));

      assert.ok(
        !a.events.some((e) => e.type === "disconnected" || e.type === "rejected"),
        a.describe(),
      );
      assert.equal(alice.sockets.length, 1);
      assert.ok(
        !alice.received().some((f) => f.type === "disconnect"),
        alice.transcript(),
      );
      const health = await server.health();
      assert.equal(health.connections, 2, JSON.stringify(health));
      // Rooms 5 and 6. (Not `subscriptions`: that gauge is known to double-count.)
      assert.equal(health.streams, 2, JSON.stringify(health));
    });

    test("SIGTERM: clients get server_restart and `disconnected`", async () => {
      const tabs = [await openTab(client, server, { userId: 1 }), await openTab(client, server, { userId: 2 })];
      const subs = tabs.map((tab) => tab.subscribe(presence(9)));
      for (const [i, sub] of subs.entries()) {
        await sub.waitForMessage(joined(i + 1), "own join");
      }

      const exit = server.stop("SIGTERM");
      for (const [i, sub] of subs.entries()) {
        const ev = await sub.waitFor((e) => e.type === "disconnected", "disconnected");
        assert.deepEqual(ev.arg, { willAttemptReconnect: true }, sub.describe());
        const frames = tabs[i].received();
        assert.deepEqual(
          frames.at(-1),
          { type: "disconnect", reason: "server_restart", reconnect: true },
          tabs[i].transcript(),
        );
        assert.equal(tabs[i].consumer.connection.monitor.isRunning(), true, "the client will reconnect");
      }
      assert.deepEqual(await exit, { code: 0, signal: null }, "graceful exit:\n" + server.stderr.join("\n"));
    });
  });
}
