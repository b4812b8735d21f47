import { expect, test } from "./fixtures";

import { ADA, choosePhoto, removePicture, saveAndSeePicture, signIn } from "./helpers";

// What every build must give, with `--split` (the editor a WASM module of its own, fetched on
// first use) or without (the editor compiled into the main module): a page that hydrates and an
// editor that opens and saves. `cargo xtask test` runs this spec alone against a plain
// `cargo leptos end-to-end` (PORTRAIT_E2E_BUILD=plain, see playwright.config.ts), and with the
// whole suite against the split build (PORTRAIT_E2E_BUILD=split); it then also checks which of
// the two it was served. Unset (any other `cargo leptos end-to-end`), only what both must do.
const build = process.env.PORTRAIT_E2E_BUILD;

test("the page hydrates and the editor opens and saves, in this build", async ({ page, request }) => {
  const wasm: string[] = [];
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (path.endsWith(".wasm")) wasm.push(path);
  });
  await removePicture(request, ADA.email);
  // Waits for hydration: a WASM that cannot start never gets there.
  await signIn(page, ADA.email);
  const dialog = await choosePhoto(page);
  await expect(dialog.getByRole("slider", { name: "Zoom" })).toBeVisible();
  await saveAndSeePicture(page, dialog, ADA.name);

  const editorModule = wasm.filter((path) => path.includes("split_portrait_editor"));
  if (build === "plain") {
    expect(editorModule, "a build without --split has no editor module to fetch").toEqual([]);
  } else if (build === "split") {
    expect(editorModule, "the split build fetches the editor's module once").toHaveLength(1);
  }
  expect(wasm.length, `WASM files fetched: ${wasm.join(", ")}`).toBeGreaterThan(0);
});
