// ferrocable in Redis mode (--redis-url, --channel-prefix) with the real Action Cable
// clients: presence checked against the seed's Redis keys, broadcasts published
// exactly as the Rails Redis adapter publishes them, and a server restart after which
// the clients' own ConnectionMonitor reconnects and resubscribes.
//
// The tests run concurrently (each has its own server and rooms; the Redis server is
// shared, see `redisServer()`), so the restart's reconnect wait overlaps the others.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { chatChannelsFile, CLIENTS, openTab, redisServer, startServer, uniqueRoom, untilHealth, user } from "./support.mjs";

const presence = (room) => ({ channel: "PresenceChannel", room_id: room });
const sorted = (ids) => [...ids].sort((a, b) => a - b);
const joined = (id) => (m) => m.action === "user_joined" && m.user?.id === id;
const left = (id) => (m) => m.action === "user_left" && m.user?.id === id;
const withMembers = (ids) => (m) => JSON.stringify(sorted(m.member_ids ?? [])) === JSON.stringify(ids);
const isConnected = (e) => e.type === "connected";

/**
 * Runs `body(server, open, redis)` against a Redis-mode ferrocable; `open` opens tabs
 * that are closed (with the server) afterwards, whatever happens.
 */
async function withRedisServer({ extraArgs = [] } = {}, body) {
  const redis = await redisServer();
  const state = { server: await startServer({ redis, extraArgs }) };
  const tabs = [];
  const open = async (client, opts) => {
    const tab = await openTab(client, state.server, opts);
    tabs.push(tab);
    return tab;
  };
  try {
    return await body(state, open, redis);
  } finally {
    for (const tab of tabs) tab.dispose();
    await state.server.stop("SIGTERM");
  }
}

for (const client of CLIENTS) {
  describe(`${client.label}, Redis mode`, { concurrency: true }, () => {
    test("two users join and leave; member_ids and member_count match Redis", async () => {
      await withRedisServer({}, async (_, open, redis) => {
        const room = uniqueRoom();
        const alice = await open(client, { userId: 1 });
        const a = alice.subscribe(presence(room));
        await a.waitForMessage(joined(1), "Alice's own join");
        assert.deepEqual(await redis.members(room), [1], "room:<id>:members after Alice");

        const bob = await open(client, { userId: 2 });
        const b = bob.subscribe(presence(room));
        const bobJoin = await a.waitForMessage(joined(2), "Bob's join, seen by Alice");
        await b.waitForMessage(joined(2), "Bob's own join");
        const inRedis = await redis.members(room);
        assert.deepEqual(inRedis, [1, 2]);
        assert.deepEqual(sorted(bobJoin.member_ids), inRedis, "member_ids are Redis' set");
        assert.equal(bobJoin.member_count, inRedis.length);
        assert.deepEqual(bobJoin.user, user(2));

        bob.close();
        const gone = await a.waitForMessage(left(2), "Bob's user_left");
        assert.deepEqual(gone, { action: "user_left", user: user(2), member_ids: [1], member_count: 1 });
        assert.deepEqual(await redis.members(room), [1], "Bob removed from Redis");

        alice.close();
        // Nobody is left to hear Alice go; Redis shows it once the server has run it.
        await waitForMembers(redis, room, []);
      });
    });

    test("one user in two tabs stays a member in Redis until the last tab closes", async () => {
      await withRedisServer({}, async (state, open, redis) => {
        const room = uniqueRoom();
        const tab1 = await open(client, { userId: 1 });
        await tab1.subscribe(presence(room)).waitForMessage(joined(1), "tab 1's own join");
        const tab2 = await open(client, { userId: 1 });
        const again = await tab2.subscribe(presence(room)).waitForMessage(joined(1), "tab 2's own join");
        assert.deepEqual(again.member_ids, [1], "a second tab adds no member");
        const bob = await open(client, { userId: 2 });
        const watcher = bob.subscribe(presence(room));
        await watcher.waitForMessage(joined(2), "Bob's own join");
        assert.deepEqual(await redis.members(room), [1, 2]);

        const from = watcher.events.length;
        tab1.close();
        // The server runs a connection's presence leaves before it stops counting it, so
        // once /health shows 2 connections a user_left for tab 1 would already be out.
        await untilHealth(state.server, (h) => h.connections === 2, "tab 1's connection gone");
        const carol = await open(client, { userId: 3 });
        carol.subscribe(presence(room));
        const carolJoin = await watcher.waitForMessage(joined(3), "Carol's join", { from });
        assert.deepEqual(sorted(carolJoin.member_ids), [1, 2, 3], "Alice is still a member");
        assert.deepEqual(await redis.members(room), [1, 2, 3]);
        assert.equal(watcher.messages.filter(left(1)).length, 0, watcher.describe());

        tab2.close();
        const gone = await watcher.waitForMessage(left(1), "Alice's user_left after her last tab");
        assert.deepEqual(sorted(gone.member_ids), [2, 3]);
        assert.deepEqual(await redis.members(room), [2, 3]);
      });
    });

    test("a broadcast PUBLISHed in Rails' format reaches subscribers", async () => {
      await withRedisServer({ extraArgs: ["--channels-file", chatChannelsFile()] }, async (_, open, redis) => {
        const room = uniqueRoom();
        const alice = await open(client, { userId: 1 });
        const bob = await open(client, { userId: 2 });
        const a = alice.subscribe(presence(room));
        await a.waitForMessage(joined(1), "Alice's own join");
        const chats = [alice, bob].map((tab) => tab.subscribe({ channel: "ChatChannel", room: `r${room}` }));
        for (const chat of chats) await chat.waitFor(isConnected, "ChatChannel confirmed");

        // ActionCable.server.broadcast("presence_room_<id>", …) from the Rails app.
        const notice = { action: "announcement", text: "<b>Tea</b> & cake\u2028at 5" };
        assert.equal(await redis.broadcast(`presence_room_${room}`, notice), 1, "ferrocable listens");
        assert.deepEqual(await a.waitForMessage((m) => m.action === "announcement", "the announcement"), notice);

        // ChatChannel.broadcast_to-style message on the declared channel's stream.
        const line = { text: "hello from Rails", user_id: 3 };
        await redis.broadcast(`chat_r${room}`, line);
        for (const chat of chats) assert.deepEqual(await chat.waitForMessage((m) => m.user_id === 3, "Rails' line"), line);

        // And `speak` from a client goes through Redis to the other.
        chats[0].subscription.perform("speak", { text: "hi Bob", ignored: true });
        const said = await chats[1].waitForMessage((m) => m.user_id === 1, "Alice's line");
        assert.deepEqual(said, { text: "hi Bob", user_id: 1 });
      });
    });

    test("server restart: the clients reconnect, resubscribe, and presence is whole again", { timeout: 90_000 }, async () => {
      await withRedisServer({}, async (state, open, redis) => {
        const room = uniqueRoom();
        const tabs = [await open(client, { userId: 1 }), await open(client, { userId: 2 })];
        const subs = tabs.map((tab) => tab.subscribe(presence(room)));
        for (const sub of subs) await sub.waitForMessage(joined(2), "Bob's join");
        assert.deepEqual(await redis.members(room), [1, 2]);

        const marks = subs.map((sub) => sub.events.length);
        const { port } = state.server;
        const exit = await state.server.stop("SIGTERM");
        assert.deepEqual(exit, { code: 0, signal: null }, "graceful exit:\n" + state.server.stderr.join("\n"));
        for (const [i, sub] of subs.entries()) {
          const ev = await sub.waitFor((e) => e.type === "disconnected", "disconnected", { from: marks[i] });
          assert.deepEqual(ev.arg, { willAttemptReconnect: true }, sub.describe());
        }
        // The graceful shutdown ran the presence leaves.
        assert.deepEqual(await redis.members(room), [], "members removed on SIGTERM");

        state.server = await startServer({ redis: await redisServer(), port });
        // Nothing is done for the clients: their ConnectionMonitor (default
        // staleThreshold, 6 s) notices the dead connection and reopens it, and the
        // consumer subscribes again on welcome.
        for (const [i, sub] of subs.entries()) {
          await sub.waitFor(isConnected, "`connected` again", { from: marks[i], ms: 30_000 });
          const whole = await sub.waitForMessage(withMembers([1, 2]), "member_ids [1, 2] again", { from: marks[i] });
          assert.equal(whole.member_count, 2, sub.describe());
          const tab = tabs[i];
          assert.ok(tab.sockets.length >= 2, tab.transcript());
          const resubscribed = tab.frames.some(
            (f) => f.dir === "out" && f.socket > 0 && JSON.parse(f.data).command === "subscribe",
          );
          assert.ok(resubscribed, "the client resubscribed by itself:\n" + tab.transcript());
        }
        assert.deepEqual(await redis.members(room), [1, 2]);
        const health = await state.server.health();
        assert.equal(health.connections, 2, JSON.stringify(health));
      });
    });
  });
}

/** Polls Redis until the room's members are `ids` (no event tells the test). */
async function waitForMembers(redis, room, ids, ms = 10_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await redis.members(room);
    if (JSON.stringify(last) === JSON.stringify(ids)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`room:${room}:members is ${JSON.stringify(last)}, expected ${JSON.stringify(ids)}`);
}
