// Test support for the end-to-end suite: a real ferrocable process, and simulated
// browser tabs, each running its own copy of an unmodified Action Cable client.
//
// Synchronisation is always on an event (a client callback, a frame, the server's
// /health counters); timeouts exist only to turn a hang into a clear failure.

import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createServer as createNetServer } from "node:net";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { fileURLToPath, pathToFileURL } from "node:url";
import WebSocket from "ws";
import { activeSupportJson } from "./rails.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** How long any single wait may take before the test fails. */
export const WAIT_MS = 10_000;

/** The users file every server is started with. */
export const USERS = [
  { id: 1, name: "Alice", avatar_url: "https://example.test/avatars/alice.png" },
  { id: 2, name: "Bob", avatar_url: "https://example.test/avatars/bob.png" },
  { id: 3, name: "Carol", avatar_url: "https://example.test/avatars/carol.png" },
];

/** A user's presence payload, as the server should send it. */
export const user = (id) => USERS.find((u) => u.id === id);

// ---------------------------------------------------------------------------
// Client packages under test

function clientPackage(pkg) {
  const manifestPath = require.resolve(`${pkg}/package.json`);
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  return {
    pkg,
    version: manifest.version,
    label: `${manifest.name}@${manifest.version}${pkg === manifest.name ? "" : ` (as ${pkg})`}`,
    // The package's ESM build ("module" field, else the "." export), which is what
    // bundlers load.
    esmUrl: pathToFileURL(join(dirname(manifestPath), manifest.module ?? manifest.exports["."])).href,
  };
}

/** The clients every scenario runs against: the current one and an older one. */
export const CLIENTS = [clientPackage("@rails/actioncable"), clientPackage("actioncable7")];

/** AnyCable's client, speaking plain `actioncable-v1-json` (see `openAnyCableTab`). */
export const ANYCABLE = clientPackage("@anycable/core");

// ---------------------------------------------------------------------------
// Browser globals the client touches in Node.
//
// Read from the ESM builds (8.1 and 7.0):
// - 7.0 reads `self.console` and `self.WebSocket` when the module loads;
// - ConnectionMonitor calls the bare globals `addEventListener` /
//   `removeEventListener` ("visibilitychange") and reads `document.visibilityState`;
// - `createWebSocketURL` uses `document.createElement("a")` only for non-ws URLs, and
//   `createConsumer()` without a URL reads `document.head.querySelector(meta)`.
// We always pass a ws:// URL, so only the first two matter; the rest is stubbed
// minimally so a mistake fails loudly instead of with a ReferenceError deep inside.
// These globals are the process's "window", shared by the tabs (an ES module's free
// identifiers resolve against the one global object); module state is not shared.
function installBrowserGlobals() {
  if (globalThis.__ferrocableE2eGlobals) return;
  globalThis.__ferrocableE2eGlobals = true;
  const windowTarget = new EventTarget();
  globalThis.self ??= globalThis;
  globalThis.window ??= globalThis;
  globalThis.addEventListener ??= windowTarget.addEventListener.bind(windowTarget);
  globalThis.removeEventListener ??= windowTarget.removeEventListener.bind(windowTarget);
  const documentTarget = new EventTarget();
  globalThis.document ??= {
    visibilityState: "visible",
    addEventListener: documentTarget.addEventListener.bind(documentTarget),
    removeEventListener: documentTarget.removeEventListener.bind(documentTarget),
    head: { querySelector: () => null },
    createElement() {
      throw new Error("e2e: the client tried to resolve a relative cable URL; pass a ws:// URL");
    },
  };
}

// ---------------------------------------------------------------------------
// The server process

const liveServers = new Set();

function killAllServers() {
  for (const server of liveServers) server.child.kill("SIGKILL");
}
process.on("exit", killAllServers);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    killAllServers();
    process.exit(128 + (sig === "SIGINT" ? 2 : 15));
  });
}

/** Path of the server binary under test. */
export const serverBinary = resolve(
  here,
  process.env.FERROCABLE_BIN ?? "../../target/debug/ferrocable",
);

/**
 * Starts `ferrocable --port 0` (or `port`) with the dev user parameter (unless
 * `devUser: false`) and a temp users file (`users`, default `USERS`), in Redis mode
 * when `redis` is given, and resolves once it has printed its URL. Stop it with
 * `server.stop()`.
 */
export async function startServer({ extraArgs = [], users = USERS, port: wantedPort = 0, devUser = true, redis } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "ferrocable-e2e-"));
  const usersFile = join(dir, "users.json");
  writeFileSync(usersFile, JSON.stringify(users));
  const args = ["--port", String(wantedPort), "--users-file", usersFile];
  let port;
  if (devUser) args.push("--dev-user-param", "user_id");
  // Redis mode: `redis` is `{ url, prefix }` (see `redisServer()`).
  if (redis) args.push("--redis-url", redis.url, "--channel-prefix", redis.prefix);
  const child = spawn(
    serverBinary,
    [...args, ...extraArgs],
    {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info" },
    },
  );
  const stderr = [];
  createInterface({ input: child.stderr }).on("line", (line) => {
    stderr.push(line);
    if (process.env.FERROCABLE_E2E_SERVER_LOGS) process.stderr.write(`[server] ${line}\n`);
  });
  const exited = once(child, "exit").then(([code, signal]) => {
    liveServers.delete(server);
    rmSync(dir, { recursive: true, force: true });
    return { code, signal };
  });
  const server = { child, stderr, exited };
  liveServers.add(server);

  const lines = createInterface({ input: child.stdout });
  const firstLine = new Promise((ok, fail) => {
    lines.once("line", ok);
    child.once("error", fail);
    exited.then(({ code, signal }) =>
      fail(new Error(`ferrocable exited (code ${code}, signal ${signal}) before printing its URL:\n${stderr.join("\n")}`)),
    );
  });
  const line = await withTimeout(firstLine, WAIT_MS, `ferrocable (${serverBinary}) to print its URL`);
  const m = /^ferrocable listening on (http:\/\/127\.0\.0\.1:(\d+)(\/\S*))$/.exec(line);
  if (!m) {
    child.kill("SIGKILL");
    throw new Error(`unexpected first stdout line from ferrocable: ${JSON.stringify(line)}`);
  }
  const [, httpUrl, boundPort, path] = m;
  port = Number(boundPort);
  Object.assign(server, {
    port,
    origin: `http://127.0.0.1:${port}`,
    cableUrl: `ws://127.0.0.1:${port}${path}`,
    httpUrl,
    /** The server's /health JSON. */
    async health() {
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      return res.json();
    },
    /** Sends `signal` and resolves with the exit status. */
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return withTimeout(exited, 15_000, `ferrocable to exit after ${signal}`);
    },
  });
  return server;
}

/**
 * The reference app's ChatChannel as a `[[channels]]` declaration
 * (`stream_from "chat_#{params[:room]}"`, `speak` re-broadcasting `text` with the
 * user id), written to a temp file; pass the path as `--channels-file`.
 */
export function chatChannelsFile() {
  const dir = mkdtempSync(join(tmpdir(), "ferrocable-e2e-channels-"));
  const path = join(dir, "channels.toml");
  writeFileSync(
    path,
    ['[[channels]]', 'name = "ChatChannel"', 'stream = "chat_{room}"', 'required = ["room"]', "[channels.actions]", 'speak = ["text"]', ""].join("\n"),
  );
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return path;
}

// ---------------------------------------------------------------------------
// Redis

let redisStarted;
const execFileAsync = promisify(execFile);

/**
 * The Redis server the Redis-mode tests share, with `prefix` (a `channel_prefix` of
 * this test process's own, so servers of concurrent test files never hear each
 * other's broadcasts; presence keys are kept apart by `uniqueRoom()`).
 *
 * `cargo test --test js_client` starts a `redis-server` on a free port and passes
 * `FERROCABLE_E2E_REDIS_URL`; without it (a plain `node --test`) this process starts
 * its own, killed when the process exits. Never the machine's default Redis.
 */
export async function redisServer() {
  redisStarted ??= process.env.FERROCABLE_E2E_REDIS_URL
    ? Promise.resolve(process.env.FERROCABLE_E2E_REDIS_URL)
    : spawnRedis();
  const url = await redisStarted;
  return {
    url,
    prefix: `e2e${process.pid}`,
    /** Runs `redis-cli -u url …args` and resolves with its (raw) output. */
    async cli(...args) {
      const { stdout } = await execFileAsync("redis-cli", ["-u", url, ...args]);
      return stdout.replace(/\n$/, "");
    },
    /** The member ids of the seed's `room:<id>:members` set, sorted. */
    async members(room) {
      const out = await this.cli("SMEMBERS", `room:${room}:members`);
      return out === "" ? [] : out.split("\n").map(Number).sort((a, b) => a - b);
    },
    /**
     * `ActionCable.server.broadcast(stream, message)` as the Rails Redis adapter does it:
     * PUBLISH of `ActiveSupport::JSON.encode(message)` on `<prefix>:<stream>`. Resolves
     * with the number of Redis subscribers that received it.
     */
    async broadcast(stream, message) {
      return Number(await this.cli("PUBLISH", `${this.prefix}:${stream}`, activeSupportJson(message)));
    },
  };
}

async function spawnRedis() {
  const port = await new Promise((ok, fail) => {
    const probe = createNetServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
    probe.on("error", fail);
  });
  const dir = mkdtempSync(join(tmpdir(), "ferrocable-e2e-redis-"));
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  process.on("exit", () => {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  const ready = new Promise((ok, fail) => {
    child.once("error", (e) =>
      fail(new Error(`cannot start redis-server (apt-get install redis-server): ${e.message}`)),
    );
    child.once("exit", (code) => fail(new Error(`redis-server on port ${port} exited (${code})`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.includes("Ready to accept connections")) ok();
    });
  });
  await withTimeout(ready, WAIT_MS, `redis-server on port ${port} to start`);
  // It must not keep this test process alive; the exit handler above stops it.
  child.unref();
  child.stdout.unref();
  return `redis://127.0.0.1:${port}`;
}

let roomCounter = 0;
/** A room id no other test (in any test process) uses, as Redis keys are shared. */
export const uniqueRoom = () => process.pid * 1000 + ++roomCounter;

// ---------------------------------------------------------------------------
// Tabs

let tabCounter = 0;
const openTabs = new Set();

/**
 * The recording part of a tab, shared by every client: `sockets` (every WebSocket the
 * client constructed, in order), `frames` (`{ dir: "in" | "out" | "close", socket,
 * data }`), waits on frames, and `WebSocket`, a `ws` subclass that sends `origin` (as
 * browsers do; `null`: none) and any extra request `headers` (the browser's `Cookie`).
 */
function recordingTab(n, { origin, headers = {} }) {
  const tab = { n, sockets: [], frames: [], closed: false, listeners: new Set() };

  // Counting constructions is how a reconnect attempt is observed: the client makes a
  // new WebSocket for every (re)connect.
  class TabWebSocket extends WebSocket {
    static CONNECTING = WebSocket.CONNECTING;
    static OPEN = WebSocket.OPEN;
    static CLOSING = WebSocket.CLOSING;
    static CLOSED = WebSocket.CLOSED;
    constructor(url, protocols) {
      // Browsers always send Origin; ferrocable (like Rails) refuses a missing one.
      super(url, protocols, { headers, ...(origin === null ? {} : { origin }) });
      const index = tab.sockets.push(this) - 1;
      this.addEventListener("message", (ev) => tab.record({ dir: "in", socket: index, data: String(ev.data) }));
      this.addEventListener("close", (ev) =>
        tab.record({ dir: "close", socket: index, code: ev.code, reason: ev.reason }),
      );
      if (tab.closed) {
        // Only a stray reopen timer can get here after teardown; stop it for good.
        queueMicrotask(() => {
          tab.stopClient();
          this.terminate();
        });
      }
    }
    send(data) {
      tab.record({ dir: "out", socket: tab.sockets.indexOf(this), data });
      return super.send(data);
    }
  }
  tab.WebSocket = TabWebSocket;

  tab.record = (frame) => {
    tab.frames.push(frame);
    for (const l of tab.listeners) l();
  };
  /** Frames received from the server, parsed. */
  tab.received = () => tab.frames.filter((f) => f.dir === "in").map((f) => JSON.parse(f.data));
  /** Pings received so far. */
  tab.pings = () => tab.received().filter((f) => f.type === "ping");
  /** A readable transcript, for assertion messages. */
  tab.transcript = () =>
    tab.frames
      .map((f) => (f.dir === "close" ? `#${f.socket} closed ${f.code}` : `#${f.socket} ${f.dir === "in" ? "←" : "→"} ${f.data}`))
      .join("\n");
  /** Resolves once `predicate(tab)` holds, re-checked on every frame. */
  tab.until = (predicate, what, ms = WAIT_MS) => waitOn(tab.listeners, () => predicate(tab), `tab ${n}: ${what}`, ms, tab.transcript);
  /** Closes the tab, as a page unload would. */
  tab.close = () => {
    if (tab.closed) return;
    tab.closed = true;
    tab.stopClient();
    openTabs.delete(tab);
  };
  /** Closes the tab and drops any socket left (teardown). */
  tab.dispose = () => {
    tab.close();
    for (const ws of tab.sockets) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  };
  openTabs.add(tab);
  return tab;
}

/** `cableUrl` with `query` (an object; `user_id` from `userId`) appended. */
function cableUrlFor(server, { userId, query = {} }) {
  const url = new URL(server.cableUrl);
  if (userId !== undefined) url.searchParams.set("user_id", String(userId));
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  return url.href;
}

/**
 * A simulated browser tab: a fresh instance of `client`'s module (imported under a
 * unique URL, so nothing — adapters, logger, classes' static settings — is shared with
 * other tabs), a WebSocket shim built on `ws`, and a consumer for `server`.
 *
 * Options: `userId` (omitted: no `user_id` query parameter), `query` (more query
 * parameters, e.g. a JWT), `headers` (extra upgrade request headers, e.g. `Cookie`),
 * `origin` (default: the same-origin value the server accepts), `staleThreshold` (the
 * client's `ConnectionMonitor.staleThreshold`, for this tab only).
 */
export async function openTab(client, server, { userId, query, headers, origin = server.origin, staleThreshold } = {}) {
  installBrowserGlobals();
  const n = ++tabCounter;
  const ActionCable = await import(`${client.esmUrl}?tab=${n}`);
  const tab = recordingTab(n, { origin, headers });
  Object.assign(tab, { client, ActionCable });
  tab.stopClient = () => tab.consumer.disconnect();
  const TabWebSocket = tab.WebSocket;

  ActionCable.adapters.WebSocket = TabWebSocket;
  ActionCable.adapters.logger = { log: (...args) => console.error(`[tab ${n} ${client.version}]`, ...args) };
  ActionCable.logger.enabled = Boolean(process.env.ACTIONCABLE_DEBUG);
  if (staleThreshold !== undefined) ActionCable.ConnectionMonitor.staleThreshold = staleThreshold;

  tab.consumer = ActionCable.createConsumer(cableUrlFor(server, { userId, query }));

  /** Creates a subscription whose callbacks are recorded; see `Recorder`. */
  tab.subscribe = (params) => {
    const rec = new Recorder(`tab ${n} ${JSON.stringify(params)}`, tab.transcript);
    rec.subscription = tab.consumer.subscriptions.create(params, rec.mixin());
    return rec;
  };

  return tab;
}

/**
 * A tab running `@anycable/core`'s `createCable` with `protocol: "actioncable-v1-json"`
 * and our recording `ws` subclass as `websocketImplementation`. Options as `openTab`,
 * plus `cable` (more createCable options). The cable's own events (`connect`,
 * `disconnect`, `close`) are kept in `tab.cableEvents` (a `Recorder`).
 *
 * The entry module is imported per tab, but its internal modules are shared between
 * tabs (they hold no per-connection state: only a command counter).
 */
export async function openAnyCableTab(server, { userId, query, headers, origin = server.origin, cable = {} } = {}) {
  const n = ++tabCounter;
  const AnyCable = await import(`${ANYCABLE.esmUrl}?tab=${n}`);
  const tab = recordingTab(n, { origin, headers });
  tab.client = ANYCABLE;
  tab.cableEvents = new Recorder(`tab ${n} cable`, tab.transcript);
  const logLevel = process.env.ACTIONCABLE_DEBUG ? "debug" : "error";
  tab.cable = AnyCable.createCable(cableUrlFor(server, { userId, query }), {
    protocol: "actioncable-v1-json",
    websocketImplementation: tab.WebSocket,
    logLevel,
    ...cable,
  });
  for (const type of ["connect", "disconnect", "close"]) {
    tab.cable.on(type, (ev) => tab.cableEvents.push(type, ev));
  }
  tab.stopClient = () => tab.cable.disconnect();
  /** Connects; resolves with `undefined`, or the error when the connection is refused. */
  tab.connect = () => tab.cable.connect().then(() => undefined, (e) => e);

  /**
   * `cable.subscribeTo(channel, params)`, with the channel's events recorded as
   * `connect`, `disconnect`, `close` and `received` (the `message` event).
   */
  tab.subscribe = (channel, params) => {
    const rec = new Recorder(`tab ${n} ${channel} ${JSON.stringify(params)}`, tab.transcript);
    rec.channel = tab.cable.subscribeTo(channel, params);
    for (const type of ["connect", "disconnect", "close"]) rec.channel.on(type, (ev) => rec.push(type, ev));
    rec.channel.on("message", (msg) => rec.push("received", msg));
    return rec;
  };
  return tab;
}

/** Closes every tab still open and drops any socket left (teardown). */
export function closeAllTabs() {
  for (const tab of [...openTabs]) tab.dispose();
}

/**
 * Records a subscription's callbacks (`initialized`, `connected`, `disconnected`,
 * `rejected`, `received`) as `{ type, arg }` events, and waits for them.
 */
export class Recorder {
  constructor(name, transcript) {
    this.name = name;
    this.transcript = transcript;
    this.events = [];
    this.listeners = new Set();
  }

  /** Records an event. */
  push(type, arg) {
    this.events.push({ type, arg });
    for (const l of this.listeners) l();
  }

  mixin() {
    const push = (type) => (arg) => this.push(type, arg);
    return {
      initialized: push("initialized"),
      connected: push("connected"),
      disconnected: push("disconnected"),
      rejected: push("rejected"),
      received: push("received"),
    };
  }

  /** Payloads of the `received` callback, in order. */
  get messages() {
    return this.events.filter((e) => e.type === "received").map((e) => e.arg);
  }

  /** Resolves with the first event (at index >= `from`) matching `predicate`. */
  waitFor(predicate, what, { from = 0, ms = WAIT_MS } = {}) {
    const find = () => this.events.slice(from).find(predicate);
    return waitOn(this.listeners, find, `${this.name}: ${what}`, ms, () => this.describe());
  }

  /** Resolves with the first `received` payload (at index >= `from`) matching `predicate`. */
  async waitForMessage(predicate, what, opts) {
    const ev = await this.waitFor((e) => e.type === "received" && predicate(e.arg), what, opts);
    return ev.arg;
  }

  describe() {
    return `callbacks:\n${this.events.map((e) => `  ${e.type} ${JSON.stringify(e.arg) ?? ""}`).join("\n")}\nframes:\n${this.transcript()}`;
  }
}

// ---------------------------------------------------------------------------
// Waiting

function waitOn(listeners, check, what, ms, describe) {
  const hit = check();
  if (hit) return Promise.resolve(hit);
  return new Promise((ok, fail) => {
    const listener = () => {
      const value = check();
      if (value) {
        done();
        ok(value);
      }
    };
    const timer = setTimeout(() => {
      done();
      fail(new Error(`timed out after ${ms} ms waiting for ${what}\n${describe?.() ?? ""}`));
    }, ms);
    const done = () => {
      clearTimeout(timer);
      listeners.delete(listener);
    };
    listeners.add(listener);
  });
}

/** Rejects if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, fail) => {
    timer = setTimeout(() => fail(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Resolves once the server's /health JSON satisfies `predicate`. The server has no
 * push notification for "this connection is fully torn down", so this re-reads the
 * counters (every 20 ms) until they say so; the timeout bounds a failure.
 */
export async function untilHealth(server, predicate, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await server.health();
    if (predicate(last)) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for /health: ${what}; last ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
