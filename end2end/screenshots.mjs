// The README's screenshots (docs/profile.png, docs/editor.png), taken from a running app:
//
//   cargo xtask run &            # or any server with the demo accounts, on a fresh data directory
//   cd end2end && node screenshots.mjs [http://127.0.0.1:3000]
//
// It signs in as the demo user Ada, opens a generated photo in the editor (zoomed and turned a
// little), shoots the dialog, saves, and shoots the profile with its new picture.

import { chromium } from "@playwright/test";

const base = process.argv[2] ?? "http://127.0.0.1:3000";
const out = new URL("../docs/", import.meta.url);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 760 }, deviceScaleFactor: 1 });
await page.goto(`${base}/login`);
await page.locator("body[data-hydrated]").waitFor({ state: "attached" });
await page.getByLabel("Email").fill("ada@example.com");
await page.getByLabel("Password").fill("portrait-demo");
await page.getByRole("button", { name: "Sign in" }).click();
await page.waitForURL(/\/profile$/);

// A landscape drawn by the browser: sky, sun, two hills.
const bytes = await page.evaluate(async () => {
  const [w, h] = [1600, 1200];
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d");
  const sky = ctx.createLinearGradient(0, 0, 0, h);
  sky.addColorStop(0, "#5b8def");
  sky.addColorStop(0.6, "#f9c58d");
  ctx.fillStyle = sky;
  ctx.fillRect(0, 0, w, h);
  ctx.fillStyle = "#fff3c4";
  ctx.beginPath();
  ctx.arc(w * 0.62, h * 0.42, 150, 0, Math.PI * 2);
  ctx.fill();
  for (const [colour, top, phase] of [["#3f7d4e", 0.62, 0], ["#2c5a39", 0.74, 2]]) {
    ctx.fillStyle = colour;
    ctx.beginPath();
    ctx.moveTo(0, h);
    for (let x = 0; x <= w; x += 20) ctx.lineTo(x, h * top + Math.sin(x / 260 + phase) * 60);
    ctx.lineTo(w, h);
    ctx.fill();
  }
  const blob = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.92 });
  return Array.from(new Uint8Array(await blob.arrayBuffer()));
});

const chooser = page.waitForEvent("filechooser");
await page.getByRole("button", { name: "Change profile picture" }).click();
await (await chooser).setFiles({ name: "hills.jpg", mimeType: "image/jpeg", buffer: Buffer.from(bytes) });
const dialog = page.getByRole("dialog", { name: "Edit & Adjust Profile Image" });
await dialog.getByRole("slider", { name: "Zoom" }).fill("1.4");
await dialog.getByRole("slider", { name: "Rotate" }).fill("8");
await page.waitForTimeout(300); // the preview repaints on the next frame
await page.screenshot({ path: new URL("editor.png", out).pathname });

await dialog.getByRole("button", { name: "Save" }).click();
await dialog.waitFor({ state: "hidden" });
const avatar = page.getByRole("img", { name: "Profile picture of Ada Dev" });
// The initials give way to the picture once it is confirmed; wait until it has loaded.
for (let tries = 0; ; tries++) {
  const loaded = await avatar.evaluate((el) => el.tagName === "IMG" && el.complete && el.naturalWidth > 0);
  if (loaded) break;
  if (tries > 100) throw new Error("the new picture never loaded");
  await page.waitForTimeout(100);
}
await page.screenshot({ path: new URL("profile.png", out).pathname });
await browser.close();
console.log(`wrote ${new URL("editor.png", out).pathname} and profile.png`);
