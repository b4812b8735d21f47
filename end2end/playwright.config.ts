import { defineConfig } from "@playwright/test";

import { chromium } from "./chromium";

// Driven by `cargo leptos end-to-end` (see `cargo xtask test`), which builds and serves the app
// on the site address from Cargo.toml before running these tests.
//
// PORTRAIT_E2E_BUILD=plain (set by `cargo xtask test` for its build without `--split`) runs only
// the spec that checks what any build must give; the whole suite runs against the split build.
const buildCheckOnly = process.env.PORTRAIT_E2E_BUILD === "plain";

export default defineConfig({
  testDir: "./tests",
  ...(buildCheckOnly ? { testMatch: "build.spec.ts" } : {}),
  timeout: 60_000,
  expect: { timeout: 15_000 },
  // One browser at a time: the tests share the demo accounts of one server.
  fullyParallel: false,
  workers: 1,
  forbidOnly: !!process.env.CI,
  retries: 0,
  reporter: "list",
  use: {
    baseURL: process.env.PORTRAIT_BASE_URL ?? "http://127.0.0.1:3000",
    trace: "retain-on-failure",
  },
  projects: [chromium],
});
