// The editor's Save job in the browser, ours against Chromium's own canvas pipeline, on
// generated 12 MP and 48 MP JPEGs; and what the first page load transfers. Run it with
// `cargo xtask bench-editor`. It prints figures and asserts no timing.
//
// Ours is driven through the real UI: the file goes into the editor's file input, the dialog
// opens once the photo is decoded, and Save exports the 512×512 JPEG and then asks for an
// upload URL. Every time is taken inside the page with performance.now(), so Playwright's own
// round trips are not in the figures.

import { brotliCompressSync, constants } from "node:zlib";
import { expect, test, type Page, type Response } from "@playwright/test";

const PHOTOS = [
  { name: "12 MP", width: 4000, height: 3000, runs: 7 },
  { name: "48 MP", width: 8000, height: 6000, runs: 5 },
];
/** The crops saved: untouched, and zoomed in and tilted. */
const CROPS = [
  { name: "zoom 1, 0°", zoom: 1, rotation: 0 },
  { name: "zoom 2, 30°", zoom: 2, rotation: 30 },
  // Deeper than the working copy serves: our Save decodes the file again at the size it needs.
  { name: "zoom 4, -90°", zoom: 4, rotation: -90 },
];

test.beforeEach(async ({ page }) => {
  // Every preview repaint (the editor marks each as a User Timing measure) and every task that
  // held the main thread 50 ms or more, as they happen.
  await page.addInitScript(() => {
    const w = window as any;
    w.benchRepaints = [];
    w.benchLongTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (e.name === "portrait-preview") w.benchRepaints.push(e.duration);
    }).observe({ type: "measure" });
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.benchLongTasks.push(e.duration);
    }).observe({ type: "longtask" });
  });
  // wasm-bindgen instantiates the module through one of these: keep its memory, whose size is
  // the peak of ours (WASM linear memory grows and never shrinks).
  await page.addInitScript(() => {
    for (const name of ["instantiate", "instantiateStreaming"] as const) {
      const original = WebAssembly[name] as (...args: unknown[]) => Promise<unknown>;
      (WebAssembly as any)[name] = async (...args: unknown[]) => {
        const result: any = await original.apply(WebAssembly, args);
        const instance = result.instance ?? result;
        // The split-off editor module imports the main module's memory rather than exporting it.
        if (instance.exports.memory) (window as any).benchWasmMemory = instance.exports.memory;
        return result;
      };
    }
  });
});

test("Save: file bytes to a 512×512 JPEG, ours (WASM) and Chromium's canvas", async ({ page }) => {
  const lines: string[] = [];
  await signIn(page);
  for (const photo of PHOTOS) {
    // A fresh page (and WASM instance) per size, so that each memory figure is that size's alone.
    await page.goto("/profile");
    await hydrated(page);
    await expect(page.getByRole("button", { name: "Change profile picture" })).toBeVisible();
    const bytes = await makePhoto(page, photo.width, photo.height);
    lines.push(`${photo.name} (${photo.width}×${photo.height}), a ${(bytes / 1e6).toFixed(1)} MB JPEG, median of ${photo.runs}:`);
    let afterOne: number | undefined;
    const editing = { repaints: [] as number[], longTasks: [] as number[] };
    for (const crop of CROPS) {
      const opens: number[] = [];
      const exports: number[] = [];
      for (let run = 0; run < photo.runs; run++) {
        const { open, save, repaints, longTasks } = await ourSave(page, crop);
        opens.push(open);
        exports.push(save);
        editing.repaints.push(...repaints);
        editing.longTasks.push(...longTasks);
        afterOne ??= await wasmMemory(page);
      }
      const canvas = {
        low: await repeat(photo.runs, () => canvasSave(page, crop, "low")),
        high: await repeat(photo.runs, () => canvasSave(page, crop, "high")),
      };
      const whole = (runs: { decode: number; save: number }[]) => median(runs.map((r) => r.decode + r.save));
      const part = (runs: { decode: number; save: number }[], key: "decode" | "save") => median(runs.map((r) => r[key]));
      lines.push(
        `  ${crop.name}: ours ${ms(median(opens) + median(exports))} (open: read + decode ${ms(median(opens))}, Save click → JPEG ${ms(median(exports))}); ` +
          `canvas ${ms(whole(canvas.low))} (createImageBitmap ${ms(part(canvas.low, "decode"))}, draw + toBlob ${ms(part(canvas.low, "save"))}; ` +
          `imageSmoothingQuality "low"), ${ms(whole(canvas.high))} ("high": ${ms(part(canvas.high, "decode"))} + ${ms(part(canvas.high, "save"))})`,
      );
    }
    const sorted = [...editing.repaints].sort((a, b) => a - b);
    lines.push(
      `  preview repaints while editing: ${sorted.length}, median ${sorted[sorted.length >> 1]?.toFixed(1)} ms, ` +
        `95th percentile ${sorted[Math.floor(sorted.length * 0.95)]?.toFixed(1)} ms, max ${sorted.at(-1)?.toFixed(1)} ms; ` +
        `main-thread tasks ≥ 50 ms while editing: ${editing.longTasks.length}` +
        (editing.longTasks.length ? ` (longest ${ms(Math.max(...editing.longTasks))})` : ""),
    );
    const saves = photo.runs * CROPS.length;
    lines.push(`  WASM memory (its high-water mark): ${mib(afterOne)} after one Save, ${mib(await wasmMemory(page))} after ${saves}`);
  }
  console.log(lines.join("\n"));
});

test("first-load transfer: the JS, WASM and CSS the sign-in page loads", async ({ page }) => {
  const assets: Response[] = [];
  page.on("response", (response) => {
    if (/\.(js|wasm|css)$/.test(new URL(response.url()).pathname)) assets.push(response);
  });
  await page.goto("/login");
  await hydrated(page);
  let raw = 0;
  let brotli = 0;
  const lines = [];
  for (const response of assets) {
    const body = await response.body();
    // Quality 11, as a CDN or a build step would precompress static files.
    const compressed = brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
    raw += body.length;
    brotli += compressed;
    lines.push(`  ${new URL(response.url()).pathname}: ${kb(body.length)} raw, ${kb(compressed)} brotli`);
  }
  console.log(`first load, ${assets.length} files: ${kb(raw)} raw, ${kb(brotli)} brotli\n${lines.join("\n")}`);
});

async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated]")).toBeAttached();
}

async function signIn(page: Page) {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Email").fill("ada@example.com");
  await page.getByLabel("Password").fill("portrait-demo");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/profile$/);
}

/** Draws a stand-in for a phone photo and keeps it in the page as a JPEG blob (quality 0.9):
 * gradients and shapes with sensor-like noise on top, so the file has a real photo's size
 * and the decoder real work (flat colour decodes unrealistically fast). Returns its size. */
async function makePhoto(page: Page, width: number, height: number): Promise<number> {
  return page.evaluate(
    async ([w, h]) => {
      const canvas = new OffscreenCanvas(w, h);
      const ctx = canvas.getContext("2d")!;
      const gradient = ctx.createLinearGradient(0, 0, w, h);
      gradient.addColorStop(0, "#f97316");
      gradient.addColorStop(1, "#4f46e5");
      ctx.fillStyle = gradient;
      ctx.fillRect(0, 0, w, h);
      ctx.fillStyle = "#fde68a";
      ctx.beginPath();
      ctx.arc(w / 2, h / 2, Math.min(w, h) / 4, 0, Math.PI * 2);
      ctx.fill();
      // Noise from a seeded generator, tiled: a 509-px tile (odd, so its repeats do not line up
      // with the encoder's 8-px blocks) gives the same entropy as noise over the whole photo.
      const side = 509;
      const noise = new ImageData(side, side);
      let seed = 2463534242;
      for (let i = 0; i < noise.data.length; i++) {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        noise.data[i] = (i & 3) === 3 ? 255 : seed & 255;
      }
      const tile = new OffscreenCanvas(side, side);
      tile.getContext("2d")!.putImageData(noise, 0, 0);
      ctx.globalAlpha = 0.12;
      ctx.fillStyle = ctx.createPattern(tile, "repeat")!;
      ctx.fillRect(0, 0, w, h);
      const blob = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.9 });
      (window as any).benchPhoto = blob;
      return blob.size;
    },
    [width, height] as const,
  );
}

/** Our Save job through the editor's UI, in two parts: choosing the file until the dialog is
 * there (reading and decoding it), and Save until the JPEG is ready, which is when the page
 * asks for an upload URL. The upload then runs for real, and the dialog closes. */
async function ourSave(
  page: Page,
  crop: (typeof CROPS)[number],
): Promise<{ open: number; save: number; repaints: number[]; longTasks: number[] }> {
  // What choosing a file does to the input, without shipping megabytes through Playwright.
  const open = await page.evaluate(async () => {
    const input = document.querySelector<HTMLInputElement>('input[type="file"]')!;
    const transfer = new DataTransfer();
    transfer.items.add(new File([(window as any).benchPhoto], "holiday.jpg", { type: "image/jpeg" }));
    const opened = new Promise<number>((resolve, reject) => {
      const observer = new MutationObserver(() => {
        const refused = document.querySelector('[role="alert"]');
        if (document.querySelector('[role="dialog"] canvas')) {
          observer.disconnect();
          resolve(performance.now());
        } else if (refused) {
          observer.disconnect();
          reject(new Error(`the editor refused the photo: ${refused.textContent}`));
        }
      });
      observer.observe(document.body, { childList: true, subtree: true });
    });
    input.files = transfer.files;
    const chosen = performance.now();
    input.dispatchEvent(new Event("change", { bubbles: true }));
    return (await opened) - chosen;
  });
  const dialog = page.getByRole("dialog", { name: "Edit & Adjust Profile Image" });
  // Editing: what is measured from here to Save is every preview repaint and every long task.
  await page.evaluate(() => {
    (window as any).benchRepaints = [];
    (window as any).benchLongTasks = [];
  });
  const preview = dialog.getByLabel("Crop preview");
  await preview.focus();
  for (const key of ["ArrowRight", "ArrowDown", "+", "]", "Shift+ArrowLeft", "-", "["]) {
    for (let i = 0; i < 4; i++) await page.keyboard.press(key);
  }
  const box = (await preview.boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  for (let i = 1; i <= 10; i++) await page.mouse.move(box.x + box.width / 2 + 3 * i, box.y + box.height / 2 + 2 * i);
  await page.mouse.up();
  await dialog.getByRole("slider", { name: "Zoom" }).fill(String(crop.zoom));
  await dialog.getByRole("slider", { name: "Rotate" }).fill(String(crop.rotation));
  const { repaints, longTasks } = await page.evaluate(async () => {
    // Long tasks are reported after they end: give the observer a frame to deliver them.
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)));
    return { repaints: (window as any).benchRepaints, longTasks: (window as any).benchLongTasks };
  });
  const save = await page.evaluate(async () => {
    const button = [...document.querySelectorAll<HTMLButtonElement>('[role="dialog"] button')].find(
      (b) => b.textContent?.trim() === "Save",
    )!;
    let clicked = 0;
    const asked = new Promise<number>((resolve) => {
      new PerformanceObserver((list, observer) => {
        const request = list.getEntries().find((e) => e.name.includes("/upload-url") && e.startTime > clicked);
        if (request) {
          observer.disconnect();
          resolve(request.startTime);
        }
      }).observe({ type: "resource" });
    });
    clicked = performance.now();
    button.click();
    return (await asked) - clicked;
  });
  await expect(dialog).toBeHidden();
  return { open, save, repaints, longTasks };
}

/** The same job as the browser would do it natively: decode with createImageBitmap, draw
 * scaled and rotated onto a 512×512 canvas (the crop circle's diameter spans it, as in ours),
 * and encode with toBlob, until the bytes are in hand. */
async function canvasSave(
  page: Page,
  crop: (typeof CROPS)[number],
  smoothing: ImageSmoothingQuality,
): Promise<{ decode: number; save: number }> {
  return page.evaluate(
    async ([zoom, rotation, smoothing]) => {
      const size = 512;
      const started = performance.now();
      const bitmap = await createImageBitmap((window as any).benchPhoto);
      const decoded = performance.now();
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = size;
      const ctx = canvas.getContext("2d")!;
      ctx.imageSmoothingQuality = smoothing;
      const scale = (size * zoom) / Math.min(bitmap.width, bitmap.height);
      ctx.translate(size / 2, size / 2);
      ctx.rotate((rotation * Math.PI) / 180);
      ctx.scale(scale, scale);
      ctx.drawImage(bitmap, -bitmap.width / 2, -bitmap.height / 2);
      bitmap.close();
      const jpeg = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
      await jpeg!.arrayBuffer();
      return { decode: decoded - started, save: performance.now() - decoded };
    },
    [crop.zoom, crop.rotation, smoothing] as const,
  );
}

/** The size of our WASM linear memory: it only grows, so this is the peak so far. */
async function wasmMemory(page: Page): Promise<number | undefined> {
  return page.evaluate(() => (window as any).benchWasmMemory?.buffer.byteLength as number | undefined);
}

async function repeat<T>(runs: number, f: () => Promise<T>): Promise<T[]> {
  const times = [];
  for (let i = 0; i < runs; i++) times.push(await f());
  return times;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const ms = (value: number) => `${value.toFixed(0)} ms`;
const mib = (bytes?: number) => (bytes === undefined ? "not found" : `${(bytes / 2 ** 20).toFixed(0)} MiB`);
const kb = (bytes: number) => `${(bytes / 1000).toFixed(0)} KB`;
