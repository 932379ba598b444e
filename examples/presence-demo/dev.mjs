// Runs the demo: bundles the page, starts the page server and ferrocable, prints a
// URL per user. Ctrl-C stops both. Normally started by run.sh (`npm start`).
//
// Environment: FERROCABLE_BIN (the binary; run.sh sets it), PAGE_PORT (3000),
// CABLE_PORT (8080), HOST (127.0.0.1).

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { bundle, defaultOutfile } from "./build.mjs";
import { startPageServer, users, usersFile } from "./server.mjs";

const bin = process.env.FERROCABLE_BIN;
if (!bin) {
  console.error("FERROCABLE_BIN is not set; start the demo with ./run.sh (or npm start)");
  process.exit(2);
}
const host = process.env.HOST ?? "127.0.0.1";
const pagePort = Number(process.env.PAGE_PORT ?? 3000);
const cablePort = Number(process.env.CABLE_PORT ?? 8080);

await bundle(await import("esbuild"), { outfile: defaultOutfile });
const page = await startPageServer({ host, port: pagePort, bundlePath: defaultOutfile });

// The page's origin differs from the cable's (another port), so it is allowed by exact
// match; the Origin check itself stays on. localhost is listed too, for convenience.
const origins = [page.origin];
if (host === "127.0.0.1") origins.push(`http://localhost:${page.port}`);
const args = [
  "--host", host,
  "--port", String(cablePort),
  "--dev-user-param", "user_id",
  "--users-file", usersFile,
  "--allowed-origins", origins.join(","),
];
console.error(`$ ${bin} ${args.join(" ")}`);
const cable = spawn(bin, args, { stdio: ["ignore", "pipe", "inherit"] });
cable.on("exit", (code, signal) => {
  console.error(`ferrocable exited (code ${code}, signal ${signal})`);
  page.close();
  process.exit(code ?? 1);
});
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => cable.kill("SIGTERM"));

const lines = createInterface({ input: cable.stdout });
lines.once("line", (line) => {
  const m = /^ferrocable listening on http:\/\/(\S+)$/.exec(line);
  if (!m) {
    console.error(`unexpected output from ferrocable: ${line}`);
    cable.kill();
    return;
  }
  page.cableUrl = `ws://${m[1]}`;
  console.log(`\nferrocable: ${page.cableUrl}   page server: ${page.origin}\n`);
  console.log("Open each URL in its own browser window (a private window for the second):\n");
  for (const u of users) console.log(`  ${u.name.padEnd(6)} ${page.pageUrl(u.id, 1)}`);
  console.log("\nClose a window and watch the other's count drop. Ctrl-C stops everything.\n");
});
