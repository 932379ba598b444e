// The demo's page server: Node's http module, nothing else.
//
// It plays the Rails app's part: it renders the seed's view
// (app/views/rooms/show.html.erb, unchanged) inside a layout, with the room id from
// `?room=N`, and serves the JavaScript bundle (see build.mjs) and the users' avatars.
// The WebSocket itself goes to ferrocable, on another port: the layout's
// <meta name="action-cable-url"> tells the client where.
//
// Used by dev.mjs (`npm start`) and by tests/e2e/browser.test.mjs.

import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { once } from "node:events";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const demoDir = dirname(fileURLToPath(import.meta.url));

/** The users file ferrocable is started with (Alice, Bob, Carol). */
export const usersFile = join(demoDir, "users.json");
export const users = JSON.parse(readFileSync(usersFile, "utf8"));

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

/**
 * The ERB this demo needs, no more: `<%# comment %>` renders nothing, `<%= name %>`
 * renders `locals[name]` HTML-escaped, or as is when it is a `{ html }` object (what
 * Rails calls an html_safe string). An unknown expression throws, so a template
 * change cannot go unnoticed.
 */
export function renderErb(template, locals) {
  return template.replace(/<%(#|=)\s*([\s\S]*?)\s*%>/g, (_, kind, expr) => {
    if (kind === "#") return "";
    if (!(expr in locals)) throw new Error(`template uses <%= ${expr} %>, which the demo does not provide`);
    const value = locals[expr];
    return typeof value === "object" && value !== null && "html" in value ? value.html : escapeHtml(value);
  });
}

const view = readFileSync(join(demoDir, "app/views/rooms/show.html.erb"), "utf8");
const layout = readFileSync(join(demoDir, "app/views/layouts/application.html.erb"), "utf8");

/** The page for `room` as seen by `userId` (a string from the query, or null). */
export function renderPage({ room, userId, cableUrl }) {
  const current = users.find((u) => String(u.id) === userId);
  const roomLocals = { "@room.id": room };
  const links = users
    .map((u) => `<a href="/?user_id=${u.id}&amp;room=${escapeHtml(room)}">${escapeHtml(u.name)}</a>`)
    .join("");
  return renderErb(layout, {
    ...roomLocals,
    action_cable_meta_tag: { html: `<meta name="action-cable-url" content="${escapeHtml(cableUrl)}" />` },
    current_user_name: current ? current.name : userId ? `unknown user ${userId}` : "nobody (add ?user_id=1)",
    user_links: { html: links },
    yield: { html: renderErb(view, roomLocals) },
  });
}

/** A round avatar with the name's initial, for `/avatars/<name>.svg`. */
function avatarSvg(name) {
  const palette = ["#0969da", "#1a7f37", "#8250df", "#bf3989", "#bc4c00", "#116329"];
  const hue = [...name].reduce((h, c) => h + c.charCodeAt(0), 0) % palette.length;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<circle cx="32" cy="32" r="32" fill="${palette[hue]}"/>
<text x="32" y="42" font-family="sans-serif" font-size="28" font-weight="bold" fill="#fff" text-anchor="middle">${escapeHtml(name.charAt(0).toUpperCase())}</text>
</svg>
`;
}

/**
 * Starts the page server on `host:port` (port 0 picks a free one).
 *
 * `bundlePath` is the built application.js; `cableUrl` the ferrocable WebSocket URL,
 * which may also be set later (`server.cableUrl = …`), since ferrocable's
 * `--allowed-origins` needs this server's origin first.
 */
export async function startPageServer({ host = "127.0.0.1", port = 0, bundlePath, cableUrl = "" } = {}) {
  const state = { cableUrl };
  const http = createServer((req, res) => {
    const url = new URL(req.url, "http://demo.invalid");
    const send = (status, type, body) => {
      res.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, "text/plain", "method not allowed\n");

    if (url.pathname === "/") {
      const room = url.searchParams.get("room") ?? "1";
      if (!/^[0-9]{1,9}$/.test(room)) return send(400, "text/plain", "room must be a number\n");
      return send(200, "text/html; charset=utf-8", renderPage({ room, userId: url.searchParams.get("user_id"), cableUrl: state.cableUrl }));
    }
    if (url.pathname === "/assets/application.js") {
      let js;
      try {
        js = readFileSync(bundlePath);
      } catch (e) {
        return send(500, "text/plain", `bundle not built (${e.message}); run npm run build\n`);
      }
      return send(200, "text/javascript; charset=utf-8", js);
    }
    const avatar = /^\/avatars\/([a-z0-9_-]{1,40})\.svg$/.exec(url.pathname);
    if (avatar) return send(200, "image/svg+xml", avatarSvg(avatar[1]));
    return send(404, "text/plain", "not found\n");
  });
  http.listen(port, host);
  await once(http, "listening");
  const { port: actualPort } = http.address();
  return {
    http,
    port: actualPort,
    origin: `http://${host}:${actualPort}`,
    get cableUrl() {
      return state.cableUrl;
    },
    set cableUrl(v) {
      state.cableUrl = v;
    },
    /** The page URL for a user and room. */
    pageUrl(userId, room = 1) {
      return `http://${host}:${actualPort}/?user_id=${userId}&room=${room}`;
    },
    close() {
      http.closeAllConnections();
      return new Promise((ok) => http.close(() => ok()));
    },
  };
}
