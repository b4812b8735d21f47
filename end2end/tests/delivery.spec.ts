import type { CDPSession, Locator, Page } from "@playwright/test";

import { expect, test } from "./fixtures";
import { ADA, choosePhoto, hydrated, saveAndSeePicture, signIn } from "./helpers";

// What a browser downloads, as Chromium's network layer counts it (bytes on the wire, headers
// included; 0 for an answer served from the browser's cache). `cargo xtask test` runs the whole
// suite against the release build (PORTRAIT_E2E_BUILD=split): compressed, hashed file names.
const release = process.env.PORTRAIT_E2E_BUILD === "split";

/** The first-load budget of the sign-in page, in bytes as transferred (issue 15). */
const FIRST_LOAD_BUDGET = 250 * 1024;

/** Counts what the page's requests transferred, by URL, from the moment it is created. */
async function transfers(page: Page) {
  const cdp: CDPSession = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const urls = new Map<string, string>();
  const bytes = new Map<string, number>();
  cdp.on("Network.requestWillBeSent", (e) => urls.set(e.requestId, e.request.url));
  cdp.on("Network.loadingFinished", (e) => {
    const url = urls.get(e.requestId);
    if (url) bytes.set(url, (bytes.get(url) ?? 0) + e.encodedDataLength);
  });
  return {
    /** Bytes transferred for URLs matching `what` since the last `reset`. */
    total: (what: (url: URL) => boolean) =>
      [...bytes].filter(([url]) => what(new URL(url))).reduce((sum, [, n]) => sum + n, 0),
    list: () => [...bytes].map(([url, n]) => `${n} ${url}`).join("\n"),
    reset: () => bytes.clear(),
  };
}

const buildFile = (url: URL) => url.pathname.startsWith("/pkg/");

test("the sign-in page's first load is within its budget", async ({ page }) => {
  test.skip(!release, "the budget is the release build's (PORTRAIT_E2E_BUILD=split)");
  // Known to be over: the main WASM alone is 277 KB with brotli since the directory page came
  // (docs/performance.md, "First load"). Marked as failing, so that the day it fits this test
  // reports an unexpected pass and the mark must go.
  test.fail(true, "over budget: see docs/performance.md#first-load (issue 15)");
  const network = await transfers(page);
  await page.goto("/login");
  await hydrated(page);
  const first = network.total(() => true);
  console.log(`first load of /login: ${first} bytes transferred\n${network.list()}`);
  expect(network.total(buildFile), "the page's WASM, JS and CSS").toBeGreaterThan(0);
  expect(first, network.list()).toBeLessThanOrEqual(FIRST_LOAD_BUDGET);
});

test("build files are sent compressed and kept: coming back fetches nothing under /pkg", async ({ page }) => {
  test.skip(!release, "hashed names and precompressed files are the release build's");
  const network = await transfers(page);
  await page.goto("/login");
  await hydrated(page);
  // Brotli (or gzip): far less than the WASM's own size on disk (about 880 KB).
  const wasm = network.total((url) => url.pathname.endsWith(".wasm"));
  expect(wasm, network.list()).toBeGreaterThan(0);
  expect(wasm, network.list()).toBeLessThan(450 * 1024);

  network.reset();
  await page.goto("/login");
  await hydrated(page);
  expect(network.total(buildFile), network.list()).toBe(0);
});

test("pictures are downloaded once: a reload shows them from the browser's cache", async ({ page }) => {
  const network = await transfers(page);
  await signIn(page, ADA.email);
  const dialog = await choosePhoto(page);
  await saveAndSeePicture(page, dialog, ADA.name);
  const avatar = page.getByRole("img", { name: `Profile picture of ${ADA.name}` });
  const saved = await avatar.getAttribute("src");
  const storage = (url: URL) => saved !== null && url.origin === new URL(saved).origin;

  const width = (img: Locator) => img.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth);
  // The list shows the small rendition Save made with the picture, under a URL of its own.
  await page.goto("/users");
  await hydrated(page);
  const listed = page.getByRole("img", { name: `Profile picture of ${ADA.name}` }).first();
  await expect.poll(() => width(listed)).toBe(128);
  expect(await listed.getAttribute("src")).toContain("_small.jpg");
  await page.goto("/");
  await hydrated(page);
  await expect.poll(() => width(avatar)).toBe(512);

  // Coming back to either, the bytes are already here.
  network.reset();
  await page.reload();
  await hydrated(page);
  await expect.poll(() => width(avatar)).toBe(512);
  await page.goto("/users");
  await hydrated(page);
  await expect.poll(() => width(listed)).toBe(128);
  expect(network.total(storage), `picture bytes fetched again:\n${network.list()}`).toBe(0);

  // A new picture is a new key and so a new URL: it shows at once, never the kept one.
  await page.goto("/");
  await hydrated(page);
  const again = await choosePhoto(page);
  await saveAndSeePicture(page, again, ADA.name);
  const replaced = await avatar.getAttribute("src");
  expect(replaced).not.toBe(saved);
  expect(network.total(storage), "the new picture was downloaded").toBeGreaterThan(0);
});
