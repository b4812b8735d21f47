import { test as base, expect, type Page } from "@playwright/test";

/** What a page reported that no test may ever see: an uncaught error, or a Rust panic (logged
 * by `console_error_panic_hook` before the WASM aborts). */
interface Fault {
  page: string;
  what: string;
}

function watch(page: Page, faults: Fault[]) {
  page.on("pageerror", (error) => faults.push({ page: page.url(), what: `uncaught: ${error.stack ?? error.message}` }));
  page.on("console", (message) => {
    const text = message.text();
    if (message.type() === "error" && /panicked at|RuntimeError|unreachable executed/.test(text)) {
      faults.push({ page: page.url(), what: `logged: ${text}` });
    }
  });
}

/**
 * Every browser test imports `test` from here: it fails any test during which any page of its
 * browser context threw an uncaught error or logged a panic, whatever the test itself asserted.
 * (After a panic the WASM's state cannot be trusted, so a test that "passed" would lie.)
 */
export const test = base.extend<{ faults: Fault[] }>({
  faults: [
    async ({ context }, use) => {
      const faults: Fault[] = [];
      context.pages().forEach((page) => watch(page, faults));
      context.on("page", (page) => watch(page, faults));
      await use(faults);
      expect(faults, "the page threw or panicked").toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
