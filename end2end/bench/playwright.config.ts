import { defineConfig } from "@playwright/test";

import { chromium } from "../chromium";

// The editor benchmark, kept out of the tests (`testDir` there is ./tests): it prints figures
// and asserts no timing. `cargo xtask bench-editor` builds a release, serves it and runs this.
export default defineConfig({
  testDir: ".",
  testMatch: "*.bench.ts",
  // Decoding 48 MP photos several times over is slow by nature, in both pipelines.
  timeout: 15 * 60_000,
  expect: { timeout: 120_000 },
  workers: 1,
  retries: 0,
  reporter: "list",
  use: { baseURL: process.env.PORTRAIT_BASE_URL ?? "http://127.0.0.1:3000" },
  projects: [chromium],
});
