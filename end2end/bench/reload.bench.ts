// Edit → reload in `cargo leptos watch`: how long a change to a component takes to reach the
// browser. Run it with `cargo xtask bench-reload`, which starts the watch loop exactly as a
// developer types it and tells this spec where (PORTRAIT_BASE_URL) and what to edit
// (PORTRAIT_RELOAD_FILE, a component's source, and PORTRAIT_RELOAD_TEXT, a text it shows on
// /login). It prints figures and asserts no timing.
//
// Each round changes that text in the source file and waits, with the page left alone, until
// the page has reloaded itself (the watch loop's websocket says so once the new server is up),
// shows the new text and has hydrated. The file is restored afterwards.

import { readFileSync, writeFileSync } from "node:fs";
import { expect, test } from "@playwright/test";

import { hydrated } from "../tests/helpers";

const FILE = process.env.PORTRAIT_RELOAD_FILE ?? "";
const TEXT = process.env.PORTRAIT_RELOAD_TEXT ?? "";
const ROUNDS = Number(process.env.PORTRAIT_RELOAD_ROUNDS ?? 3);

test("edit a component, see it in the browser", async ({ page }) => {
  test.skip(!FILE || !TEXT, "skipped: run through `cargo xtask bench-reload`");
  // Rebuilds take their time, and the first page load may wait for the first build.
  test.setTimeout((ROUNDS + 1) * 5 * 60_000);
  const original = readFileSync(FILE, "utf8");
  expect(original, `${FILE} shows ${JSON.stringify(TEXT)}`).toContain(`"${TEXT}"`);
  const blocked: string[] = [];
  page.on("console", (m) => {
    if (m.text().includes("Content Security Policy")) blocked.push(m.text());
  });

  await page.goto("/login");
  await hydrated(page);
  const lines: string[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const changed = `${TEXT} (edit ${round})`;
      let reloaded = 0;
      const onLoad = () => (reloaded = Date.now());
      page.once("load", onLoad);
      const start = Date.now();
      writeFileSync(FILE, original.replace(`"${TEXT}"`, `"${changed}"`));
      await expect(page.getByText(changed, { exact: true })).toBeVisible({ timeout: 5 * 60_000 });
      const shown = Date.now();
      await hydrated(page);
      const interactive = Date.now();
      page.off("load", onLoad);
      const s = (t: number) => `${((t - start) / 1000).toFixed(1)} s`;
      lines.push(
        `round ${round}: reloaded at ${reloaded ? s(reloaded) : "?"}, new text at ${s(shown)}, hydrated at ${s(interactive)}`,
      );
    }
  } finally {
    writeFileSync(FILE, original);
  }
  console.log(["edit → reload in cargo leptos watch (from writing the file):", ...lines].join("\n"));
  // The reload comes through a websocket to the watch loop's own port; a policy that refused it
  // would leave the page stale, and the rounds above would have timed out.
  expect(blocked).toEqual([]);
});
