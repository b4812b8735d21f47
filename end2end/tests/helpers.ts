// What every browser spec does: the demo accounts, signing in once the page has hydrated,
// a clean start, and a photo through the editor's file chooser.
import { expect, type Locator, type Page, type APIRequestContext } from "@playwright/test";

export const PASSWORD = "portrait-demo";
export const ADA = { email: "ada@example.com", name: "Ada Dev", initials: "AD" };
export const GRACE = { email: "grace@example.com", name: "Grace Hopper", initials: "GH" };

/** Waits until the WASM has hydrated the page: before that, clicks would do nothing. */
export async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated]")).toBeAttached();
}

export async function signIn(page: Page, email: string) {
  await page.goto("/login");
  await hydrated(page);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/profile$/);
}

/** Starts a test from a known state: the user has no picture (through the public API). */
export async function removePicture(request: APIRequestContext, email: string) {
  const login = await request.post("/api/auth/login", { data: { email, password: PASSWORD } });
  expect(login.ok()).toBeTruthy();
  const { accessToken } = await login.json();
  const removed = await request.delete("/api/auth/user/picture", {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  expect(removed.ok()).toBeTruthy();
}

/** A photo made by the browser itself, so the tests need no fixture files. With `halves`, the
 * left half is red and the right half blue, so which way up it ended is easy to check. */
export async function photo(page: Page, width = 1200, height = 900, halves = false, type = "image/jpeg"): Promise<Buffer> {
  const bytes = await page.evaluate(
    async ([w, h, halves, type]) => {
      const canvas = new OffscreenCanvas(w, h);
      const ctx = canvas.getContext("2d")!;
      if (halves) {
        ctx.fillStyle = "#e61414";
        ctx.fillRect(0, 0, w / 2, h);
        ctx.fillStyle = "#1414e6";
        ctx.fillRect(w / 2, 0, w / 2, h);
      } else {
        const gradient = ctx.createLinearGradient(0, 0, w, h);
        gradient.addColorStop(0, "#f97316");
        gradient.addColorStop(1, "#4f46e5");
        ctx.fillStyle = gradient;
        ctx.fillRect(0, 0, w, h);
        ctx.fillStyle = "#ffffff";
        ctx.beginPath();
        ctx.arc(w / 2, h / 2, Math.min(w, h) / 4, 0, Math.PI * 2);
        ctx.fill();
      }
      const blob = await canvas.convertToBlob({ type, quality: 0.9 });
      return Array.from(new Uint8Array(await blob.arrayBuffer()));
    },
    [width, height, halves, type] as const,
  );
  return Buffer.from(bytes);
}

export async function choosePhoto(page: Page, buffer?: Buffer, name = "holiday.jpg", mimeType = "image/jpeg") {
  const chooser = page.waitForEvent("filechooser");
  await page.getByRole("button", { name: "Change profile picture" }).click();
  await (await chooser).setFiles({ name, mimeType, buffer: buffer ?? (await photo(page)) });
  return page.getByRole("dialog", { name: "Edit & Adjust Profile Image" });
}

/** Saves the editor's picture and waits until the avatar shows it: the 512×512 square loaded. */
export async function saveAndSeePicture(page: Page, dialog: Locator, name: string) {
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  const avatar = page.getByRole("img", { name: `Profile picture of ${name}` });
  await expect
    .poll(() => avatar.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
    .toBe(512);
}
