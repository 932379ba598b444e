// Headless Chromium for the browser tests: Debian's package driven by playwright-core
// (`npx playwright install` cannot work here). Required: a missing Chromium fails the
// tests (they never skip); `.ci/run` installs it, or set CHROMIUM_BIN.

import { existsSync } from "node:fs";
import { chromium } from "playwright-core";

export const chromiumPath = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

// As the machine notes say: without the background-networking flags Chromium keeps
// trying hosts this closed network refuses. headless is set by playwright.
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-quic",
  "--disable-sync",
];

/** Launches Chromium, or throws saying how to get it. */
export async function launchChromium() {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `Chromium not found at ${chromiumPath}. The browser tests need Debian's chromium ` +
        `package (apt-get install chromium; .ci/run installs it) or CHROMIUM_BIN=/path/to/chromium. ` +
        `They fail rather than skip.`,
    );
  }
  return chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS });
}
