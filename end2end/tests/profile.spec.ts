import { type Locator, type Page } from "@playwright/test";

import { expect, test } from "./fixtures";
import { ADA, GRACE, PASSWORD, choosePhoto, hydrated, photo, removePicture, saveAndSeePicture, signIn } from "./helpers";

/** `jpeg` as a phone writes it: an EXIF APP1 segment with an Orientation tag and a GPS IFD
 * (GPSLatitudeRef "N"), built by hand: a few bytes of little-endian TIFF. */
function withExif(jpeg: Buffer, orientation: number): Buffer {
  const tiff = Buffer.alloc(56);
  tiff.write("II", 0, "latin1");
  tiff.writeUInt16LE(42, 2);
  tiff.writeUInt32LE(8, 4); // IFD0 at 8, two entries
  tiff.writeUInt16LE(2, 8);
  tiff.writeUInt16LE(0x0112, 10); // Orientation, SHORT, 1 value, inline
  tiff.writeUInt16LE(3, 12);
  tiff.writeUInt32LE(1, 14);
  tiff.writeUInt16LE(orientation, 18);
  tiff.writeUInt16LE(0x8825, 22); // GPS IFD pointer, LONG, 1 value: right after IFD0
  tiff.writeUInt16LE(4, 24);
  tiff.writeUInt32LE(1, 26);
  tiff.writeUInt32LE(38, 30);
  tiff.writeUInt32LE(0, 34); // no IFD1
  tiff.writeUInt16LE(1, 38); // GPS IFD: GPSLatitudeRef, ASCII, 2 bytes, inline
  tiff.writeUInt16LE(1, 40);
  tiff.writeUInt16LE(2, 42);
  tiff.writeUInt32LE(2, 44);
  tiff.write("N\0", 48, "latin1");
  tiff.writeUInt32LE(0, 52);
  const app1 = Buffer.concat([Buffer.from("Exif\0\0", "latin1"), tiff]);
  const header = Buffer.from([0xff, 0xd8, 0xff, 0xe1, 0, 0]);
  header.writeUInt16BE(app1.length + 2, 4);
  return Buffer.concat([header, app1, jpeg.subarray(2)]);
}

/** A Windows icon holding one PNG image: a format Chromium decodes and our build does not. */
function icoOf(png: Buffer, width: number, height: number): Buffer {
  const header = Buffer.alloc(22);
  header.writeUInt16LE(1, 2); // type: icon
  header.writeUInt16LE(1, 4); // one image
  header.writeUInt8(width, 6);
  header.writeUInt8(height, 7);
  header.writeUInt16LE(1, 10); // colour planes
  header.writeUInt16LE(32, 12); // bits per pixel
  header.writeUInt32LE(png.length, 14);
  header.writeUInt32LE(22, 18); // the PNG starts right after this header
  return Buffer.concat([header, png]);
}

/** The colour of one pixel of the editor's preview canvas. */
async function previewPixel(preview: Locator, x: number, y: number): Promise<number[]> {
  return preview.evaluate(
    (canvas: HTMLCanvasElement, [x, y]) => Array.from(canvas.getContext("2d")!.getImageData(x, y, 1, 1).data),
    [x, y] as const,
  );
}

test("signing in shows the profile with initials and personal info", async ({ page, request }) => {
  const violations: string[] = [];
  page.on("console", (m) => {
    if (m.text().includes("Content Security Policy")) violations.push(m.text());
  });
  await removePicture(request, GRACE.email);
  await signIn(page, GRACE.email);
  const avatar = page.getByRole("img", { name: `Profile picture of ${GRACE.name}` });
  await expect(avatar).toHaveText(GRACE.initials);
  await expect(page.getByRole("heading", { name: GRACE.name })).toBeVisible();
  await expect(page.getByRole("tab", { name: "Personal Info" })).toHaveAttribute("aria-selected", "true");
  const panel = page.getByRole("tabpanel");
  for (const label of ["Email", "Phone", "Role", "Status", "Joined"]) {
    await expect(panel.getByText(label, { exact: true })).toBeVisible();
  }
  await expect(panel.getByText(GRACE.email)).toBeVisible();
  await expect(panel.getByText("Member")).toBeVisible();
  // Everything above ran under the page's strict policy without tripping it.
  expect(violations).toEqual([]);
});

test("pages need a session, and wrong passwords are refused", async ({ page }) => {
  await page.goto("/profile");
  await expect(page).toHaveURL(/\/login$/);
  await hydrated(page);
  await page.getByLabel("Email").fill(ADA.email);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("Incorrect email or password.");
  await expect(page).toHaveURL(/\/login$/);
});

test("an expired session is renewed from the refresh cookie; signing out ends both", async ({ page, context }) => {
  await signIn(page, ADA.email);
  const names = async () => (await context.cookies()).map((c) => c.name).sort();
  expect(await names()).toEqual(["portrait_refresh", "portrait_session"]);
  // The access token's cookie runs out (as it does after an hour away)...
  await context.clearCookies({ name: "portrait_session" });
  // ...so /profile sends the browser to the sign-in page, which trades the refresh cookie for
  // new tokens without asking and goes on (too fast to catch the URL in between).
  const renewed = page.waitForResponse((r) => r.url().endsWith("/api/auth/refresh") && r.status() === 200);
  await page.goto("/profile");
  await renewed;
  await expect(page).toHaveURL(/\/profile$/);
  await expect(page.getByRole("heading", { name: ADA.name })).toBeVisible();
  expect(await names()).toEqual(["portrait_refresh", "portrait_session"]);

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await hydrated(page);
  await expect.poll(names).toEqual([]);
  await page.goto("/profile");
  await expect(page).toHaveURL(/\/login$/);
});

test("Cancel closes the editor without calling the API", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const pictureCalls: string[] = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/auth/user/picture") || r.method() === "PUT") pictureCalls.push(r.url());
  });
  const dialog = await choosePhoto(page);
  await expect(dialog).toBeVisible();
  await expect(dialog.getByRole("slider", { name: "Zoom" })).toBeVisible();
  await expect(dialog.getByRole("slider", { name: "Rotate" })).toBeVisible();
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await expect(dialog).toBeHidden();
  expect(pictureCalls).toEqual([]);
  await expect(page.getByRole("img", { name: `Profile picture of ${ADA.name}` })).toHaveText(ADA.initials);
});

test("the editor opens and closes every way without a panic, and reopens", async ({ page, request }) => {
  // The fixture fails this test on any panic; each close below once panicked the WASM.
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const avatar = page.getByRole("img", { name: `Profile picture of ${ADA.name}` });
  let dialog = await choosePhoto(page);
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await expect(dialog).toBeHidden();
  dialog = await choosePhoto(page);
  await dialog.getByRole("slider", { name: "Zoom" }).fill("1.5");
  await page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
  dialog = await choosePhoto(page);
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  await expect(avatar).toHaveJSProperty("tagName", "IMG");
  // After a Save the editor still works: open it again and save again.
  dialog = await choosePhoto(page);
  await dialog.getByRole("button", { name: "Rotate right" }).click();
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  await expect(avatar).toHaveJSProperty("tagName", "IMG");
});

test("leaving the page with the editor open, or while it saves, does not panic", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  // Back (the browser's own button) while the dialog is open: the router drops the card.
  let dialog = await choosePhoto(page);
  await expect(dialog).toBeVisible();
  await page.goBack();
  await expect(dialog).toBeHidden();
  await page.goto("/profile");
  await hydrated(page);
  // Back right after Save: the save the person started still completes.
  await page.getByRole("link", { name: "People" }).click();
  await page.getByRole("link", { name: "Profile" }).click();
  dialog = await choosePhoto(page);
  await dialog.getByRole("button", { name: "Save" }).click();
  await page.goBack();
  const login = await request.post("/api/auth/login", { data: { email: ADA.email, password: PASSWORD } });
  const { accessToken } = await login.json();
  await expect
    .poll(async () => {
      const me = await request.get("/api/auth/user/profile", { headers: { authorization: `Bearer ${accessToken}` } });
      return (await me.json()).pictureUrl !== null;
    })
    .toBe(true);
  // The page the person went back to still works.
  await page.goto("/profile");
  await hydrated(page);
  await expect(page.getByRole("img", { name: `Profile picture of ${ADA.name}` })).toHaveJSProperty("tagName", "IMG");
});

test("Save uploads straight to storage and shows the new picture at once", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const puts = recordPuts(page);
  const dialog = await choosePhoto(page);
  await dialog.getByRole("slider", { name: "Zoom" }).fill("2");
  await dialog.getByRole("slider", { name: "Rotate" }).fill("45");
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();

  const avatar = page.getByRole("img", { name: `Profile picture of ${ADA.name}` });
  await expect(avatar).toHaveJSProperty("tagName", "IMG");
  // The bytes went to the storage, not through the app server: the picture and its small copy.
  expect(puts.picture).toHaveLength(1);
  expect(puts.small).toHaveLength(1);
  for (const url of puts.urls) {
    expect(new URL(url).origin).not.toBe(new URL(page.url()).origin);
    expect(url).toContain("X-Amz-Signature=");
  }
  // The picture really loads, and it is the 512×512 square the editor made.
  await expect
    .poll(() => avatar.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
    .toBe(512);

  // And it is still there after a reload, in the people list too.
  await page.reload();
  await expect(page.getByRole("img", { name: `Profile picture of ${ADA.name}` })).toHaveJSProperty("tagName", "IMG");
  await page.getByRole("link", { name: "People" }).click();
  await expect(page.getByRole("img", { name: `Profile picture of ${ADA.name}` })).toHaveJSProperty("tagName", "IMG");
  await expect(page.getByRole("img", { name: `Profile picture of ${GRACE.name}` })).toBeVisible();
});

test("a failed upload to storage shows the error and keeps the old avatar", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  // The storage refuses the PUT, as S3 does for an expired or tampered URL.
  await page.route(
    (url) => url.searchParams.has("X-Amz-Signature"),
    (route) => (route.request().method() === "PUT" ? route.fulfill({ status: 403, body: "AccessDenied" }) : route.continue()),
  );
  const confirms: string[] = [];
  page.on("request", (r) => {
    if (r.url().includes("/picture/uploaded")) confirms.push(r.url());
  });
  const dialog = await choosePhoto(page);
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(page.getByRole("alert")).toHaveText("Failed to upload image to storage");
  expect(confirms).toEqual([]);
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await expect(page.getByRole("img", { name: `Profile picture of ${ADA.name}` })).toHaveText(ADA.initials);
});

test("Remove picture asks first, then goes back to initials", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const dialog = await choosePhoto(page);
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  const avatar = page.getByRole("img", { name: `Profile picture of ${ADA.name}` });
  await expect(avatar).toHaveJSProperty("tagName", "IMG");

  page.once("dialog", (confirm) => confirm.dismiss());
  await page.getByRole("button", { name: "Remove picture" }).click();
  await expect(avatar).toHaveJSProperty("tagName", "IMG");

  page.once("dialog", (confirm) => confirm.accept());
  await page.getByRole("button", { name: "Remove picture" }).click();
  await expect(avatar).toHaveText(ADA.initials);
  await expect(page.getByRole("button", { name: "Remove picture" })).toBeHidden();
});

test("an expired upload URL is replaced once without asking; a wrong clock is named", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const s3Error = (code: string, message: string) =>
    `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  // The picture's first PUT meets an expired URL, as if the user had waited too long; the next
  // one passes. (Only the picture's PUT decides; its small copy is not counted.)
  let puts = 0;
  await page.route(
    (url) => url.searchParams.has("X-Amz-Signature"),
    (route) => {
      if (route.request().method() !== "PUT" || isSmall(route.request().url())) return route.continue();
      puts += 1;
      return puts === 1
        ? route.fulfill({ status: 403, contentType: "application/xml", body: s3Error("AccessDenied", "Request has expired") })
        : route.continue();
    },
  );
  let dialog = await choosePhoto(page);
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  expect(puts).toBe(2);
  await expect(page.getByRole("img", { name: `Profile picture of ${ADA.name}` })).toHaveJSProperty("tagName", "IMG");

  // A clock the storage refuses is named as such.
  await page.unroute((url) => url.searchParams.has("X-Amz-Signature"));
  await page.route(
    (url) => url.searchParams.has("X-Amz-Signature"),
    (route) =>
      route.request().method() === "PUT"
        ? route.fulfill({ status: 403, contentType: "application/xml", body: s3Error("RequestTimeTooSkewed", "too far") })
        : route.continue(),
  );
  dialog = await choosePhoto(page);
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(page.getByRole("alert")).toHaveText(
    "Failed to upload image to storage: your device's clock is wrong. Set it right and try again.",
  );
});

test("the editor is a real modal: focus inside, Tab wraps, keys edit and announce, Escape returns focus", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const dialog = await choosePhoto(page);
  const preview = dialog.getByLabel("Crop preview");
  await expect(preview).toBeFocused();

  // Shift+Tab from the first control wraps to the last, Tab from the last back to the first.
  await page.keyboard.press("Shift+Tab");
  await expect(dialog.getByRole("button", { name: "Save" })).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(preview).toBeFocused();

  // The keyboard edits the crop, and a polite live region says what changed.
  const live = dialog.locator("[aria-live=polite]");
  await page.keyboard.press("=");
  await expect(live).toHaveText("Zoom 110%, rotated 0°");
  await page.keyboard.press("]");
  await page.keyboard.press("]");
  await expect(live).toHaveText("Zoom 110%, rotated 2°");
  await expect(dialog.getByRole("slider", { name: "Rotate" })).toHaveValue("2");

  await page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
  await expect(page.getByRole("button", { name: "Change profile picture" })).toBeFocused();
});

test("dragging pans the photo and the mouse wheel zooms it", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const dialog = await choosePhoto(page);
  const preview = dialog.getByLabel("Crop preview");
  const pixels = () => preview.evaluate((canvas: HTMLCanvasElement) => canvas.toDataURL());
  const box = (await preview.boundingBox())!;
  const centre = { x: box.x + box.width / 2, y: box.y + box.height / 2 };

  // The generated photo is 4:3, so at zoom 1 it can move sideways under the circle.
  const before = await pixels();
  await page.mouse.move(centre.x, centre.y);
  await page.mouse.down();
  await page.mouse.move(centre.x + 60, centre.y, { steps: 6 });
  await page.mouse.up();
  await expect.poll(pixels).not.toBe(before);

  // Wheel up zooms in, and the live region says by how much.
  const live = dialog.locator("[aria-live=polite]");
  await expect(live).toHaveText("Zoom 100%, rotated 0°");
  await page.mouse.move(centre.x, centre.y);
  await page.mouse.wheel(0, -200);
  await expect(live).not.toHaveText("Zoom 100%, rotated 0°");
  const zoom = Number(await dialog.getByRole("slider", { name: "Zoom" }).inputValue());
  expect(zoom).toBeGreaterThan(1.2);
});

test("a sideways phone photo with GPS is uploaded upright and with no metadata at all", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  // Stored 1200×900 with red on the left; Orientation 6 says "turn 90° clockwise to show", so
  // upright it is 900×1200 with red on top.
  const input = withExif(await photo(page, 1200, 900, true), 6);
  expect(input.includes(Buffer.from("Exif"))).toBeTruthy();
  const puts = recordPuts(page);
  const dialog = await choosePhoto(page, input);
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();

  expect(puts.picture).toHaveLength(1);
  expect(puts.small).toHaveLength(1);
  for (const body of [...puts.picture, ...puts.small]) {
    expect([...body.subarray(0, 2)]).toEqual([0xff, 0xd8]);
    for (const marker of ["Exif", "ICC_PROFILE", "\xff\xe1", "\xff\xe2", "\xff\xed"]) {
      expect(body.includes(Buffer.from(marker, "latin1")), `upload holds ${JSON.stringify(marker)}`).toBeFalsy();
    }
  }
  const uploaded = puts.picture[0];
  // Decoded by the browser: red at the top, blue at the bottom.
  const [top, bottom] = await page.evaluate(async (bytes) => {
    const bitmap = await createImageBitmap(new Blob([new Uint8Array(bytes)], { type: "image/jpeg" }));
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = canvas.getContext("2d")!;
    ctx.drawImage(bitmap, 0, 0);
    const at = (y: number) => Array.from(ctx.getImageData(bitmap.width / 2, y, 1, 1).data.slice(0, 3));
    return [at(bitmap.height / 8), at((bitmap.height * 7) / 8)];
  }, Array.from(uploaded));
  expect(top[0]).toBeGreaterThan(150);
  expect(top[2]).toBeLessThan(100);
  expect(bottom[2]).toBeGreaterThan(150);
  expect(bottom[0]).toBeLessThan(100);
});

/** The colour at the left and right quarter of a JPEG's middle row, decoded by the browser. */
async function leftAndRight(page: Page, jpeg: Buffer): Promise<number[][]> {
  return page.evaluate(async (bytes) => {
    const bitmap = await createImageBitmap(new Blob([new Uint8Array(bytes)], { type: "image/jpeg" }));
    const ctx = new OffscreenCanvas(bitmap.width, bitmap.height).getContext("2d")!;
    ctx.drawImage(bitmap, 0, 0);
    const at = (x: number) => Array.from(ctx.getImageData(x, bitmap.height / 2, 1, 1).data.slice(0, 3));
    return [at(bitmap.width / 4), at((bitmap.width * 3) / 4)];
  }, Array.from(jpeg));
}

/** Whether a storage URL is the small rendition's (its key ends `_small`, beside the picture's). */
const isSmall = (url: string) => /_small\.\w+$/.test(new URL(url).pathname);

/** Every PUT the page sends to storage, the pictures and their small copies apart. */
function recordPuts(page: Page) {
  const puts = { urls: [] as string[], picture: [] as Buffer[], small: [] as Buffer[] };
  page.on("request", (r) => {
    if (r.method() !== "PUT") return;
    puts.urls.push(r.url());
    (isSmall(r.url()) ? puts.small : puts.picture).push(r.postDataBuffer() ?? Buffer.alloc(0));
  });
  return puts;
}

const isRed = (c: number[]) => c[0] > 150 && c[2] < 100;
const isBlue = (c: number[]) => c[2] > 150 && c[0] < 100;

test("Flip mirrors the preview and the saved picture; Reset undoes it", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const puts = recordPuts(page);
  // Red on the left, blue on the right.
  const dialog = await choosePhoto(page, await photo(page, 1200, 900, true));
  const preview = dialog.getByLabel("Crop preview");
  const small = dialog.getByRole("img", { name: "How your picture will look in lists" });
  expect(isRed(await previewPixel(preview, 60, 160))).toBeTruthy();
  const flip = dialog.getByRole("button", { name: "Flip" });
  await flip.click();
  await expect(flip).toHaveAttribute("aria-pressed", "true");
  await expect(dialog.locator("[aria-live=polite]")).toHaveText("Zoom 100%, rotated 0°, mirrored");
  expect(isBlue(await previewPixel(preview, 60, 160))).toBeTruthy();
  // The small preview shows the same picture at the size of the people list.
  expect(isBlue(await previewPixel(small, 15, 44))).toBeTruthy();
  expect(isRed(await previewPixel(small, 73, 44))).toBeTruthy();
  // Reset brings the photo back as it was; F flips from the keyboard.
  await dialog.getByRole("button", { name: "Reset" }).click();
  await expect(flip).toHaveAttribute("aria-pressed", "false");
  expect(isRed(await previewPixel(preview, 60, 160))).toBeTruthy();
  await preview.focus();
  await page.keyboard.press("f");
  await expect(flip).toHaveAttribute("aria-pressed", "true");
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  // What was saved is what the preview showed: mirrored, blue on the left, in both sizes.
  expect(puts.picture).toHaveLength(1);
  expect(puts.small).toHaveLength(1);
  for (const body of [puts.picture[0], puts.small[0]]) {
    const [left, right] = await leftAndRight(page, body);
    expect(isBlue(left), `left is ${left}`).toBeTruthy();
    expect(isRed(right), `right is ${right}`).toBeTruthy();
  }
});

/** A DataTransfer in the page holding one photo, for drop and paste events. */
async function transferOf(page: Page, bytes: Buffer) {
  return page.evaluateHandle((bytes) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(bytes)], "dropped.jpg", { type: "image/jpeg" }));
    return transfer;
  }, Array.from(bytes));
}

test("a photo comes in by drop, by paste and by the camera input, each to the same editor", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const dialog = page.getByRole("dialog", { name: "Edit & Adjust Profile Image" });
  const avatar = page.getByRole("img", { name: `Profile picture of ${ADA.name}` });
  const card = page.locator(".profile-card");

  // Dragging a file over the card shows where it can go; dropping it opens the editor.
  const dropped = await transferOf(page, await photo(page));
  await card.dispatchEvent("dragover", { dataTransfer: dropped });
  await expect(card).toHaveClass(/drop-target/);
  await card.dispatchEvent("drop", { dataTransfer: dropped });
  await expect(card).not.toHaveClass(/drop-target/);
  await expect(dialog).toBeVisible();
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  await expect(avatar).toHaveJSProperty("tagName", "IMG");
  const first = await avatar.getAttribute("src");

  // Ctrl/Cmd+V with an image on the clipboard: a paste event carrying the file.
  const pasted = await transferOf(page, await photo(page, 800, 800, true));
  await page.evaluate((transfer) => {
    document.body.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true }));
  }, pasted);
  await expect(dialog).toBeVisible();
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  await expect(avatar).not.toHaveAttribute("src", first!);
  const second = await avatar.getAttribute("src");

  // The camera input (a phone's front camera; on a desktop, a file chooser).
  const camera = page.getByTestId("camera-input");
  await expect(camera).toHaveAttribute("capture", "user");
  await camera.setInputFiles({ name: "selfie.jpg", mimeType: "image/jpeg", buffer: await photo(page, 900, 1200) });
  await expect(dialog).toBeVisible();
  await dialog.getByRole("button", { name: "Save" }).click();
  await expect(dialog).toBeHidden();
  await expect(avatar).not.toHaveAttribute("src", second!);

  // A text paste is left to the browser, and opens nothing.
  await page.evaluate(() => {
    const transfer = new DataTransfer();
    transfer.setData("text/plain", "hello");
    document.body.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true }));
  });
  await expect(page.getByText("Opening your photo…")).toBeHidden();
  await expect(dialog).toBeHidden();
});

test("pinching with two fingers zooms", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const dialog = await choosePhoto(page);
  const preview = dialog.getByLabel("Crop preview");
  // Two touch pointers 40 px apart; the second moves out to 80 px apart: twice the zoom.
  await preview.evaluate((canvas: HTMLCanvasElement) => {
    const box = canvas.getBoundingClientRect();
    const [x, y] = [box.left + box.width / 2, box.top + box.height / 2];
    const touch = (type: string, pointerId: number, clientX: number) =>
      canvas.dispatchEvent(
        new PointerEvent(type, { pointerId, pointerType: "touch", clientX, clientY: y, bubbles: true }),
      );
    touch("pointerdown", 11, x - 20);
    touch("pointerdown", 12, x + 20);
    touch("pointermove", 12, x + 60);
    touch("pointerup", 12, x + 60);
    touch("pointerup", 11, x - 20);
  });
  await expect(dialog.locator("[aria-live=polite]")).toHaveText("Zoom 200%, rotated 0°");
  await expect(dialog.getByRole("slider", { name: "Zoom" })).toHaveValue("2");
});

test("a format only the browser can decode opens through the browser's decoder and saves like a photo", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const png = await photo(page, 200, 150, true, "image/png");
  const dialog = await choosePhoto(page, icoOf(png, 200, 150), "logo.ico", "image/x-icon");
  await expect(dialog).toBeVisible();
  // The crop circle covers the middle 150×150: red on its left, blue on its right.
  const preview = dialog.getByLabel("Crop preview");
  const [leftRed, , leftBlue] = await previewPixel(preview, 40, 160);
  const [rightRed, , rightBlue] = await previewPixel(preview, 280, 160);
  expect(leftRed).toBeGreaterThan(180);
  expect(leftBlue).toBeLessThan(80);
  expect(rightBlue).toBeGreaterThan(180);
  expect(rightRed).toBeLessThan(80);

  await saveAndSeePicture(page, dialog, ADA.name);
});

test("files that cannot be opened say why, and the page goes on working", async ({ page, request }) => {
  await removePicture(request, ADA.email);
  await signIn(page, ADA.email);
  const dialog = page.getByRole("dialog", { name: "Edit & Adjust Profile Image" });
  const alert = page.getByRole("alert");

  // An iPhone photo (HEIC) in a browser that cannot decode it either: the formats that work.
  const heic = Buffer.concat([
    Buffer.from([0, 0, 0, 0x18]),
    Buffer.from("ftypheic\0\0\0\0mif1heic", "latin1"),
    Buffer.alloc(2048, 7),
  ]);
  await choosePhoto(page, heic, "IMG_0001.HEIC", "image/heic");
  await expect(alert).toContainText("not supported");
  await expect(alert).toContainText("JPEG, PNG, WebP, GIF or BMP");
  await expect(dialog).toBeHidden();

  // A JPEG whose header says 12,000×10,000 (120 MP): refused before decoding, no frozen tab.
  const huge = await photo(page, 64, 64);
  const sof = huge.indexOf(Buffer.from([0xff, 0xc0]));
  huge.writeUInt16BE(10000, sof + 5);
  huge.writeUInt16BE(12000, sof + 7);
  await choosePhoto(page, huge);
  await expect(alert).toContainText("12000×10000 pixels");
  await expect(alert).toContainText("under 100 megapixels");

  // A 60 MB file, handed to the input inside the page (no need to ship it through Playwright).
  await page.evaluate(() => {
    const input = document.querySelector<HTMLInputElement>('input[type="file"]')!;
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(60 * 1024 * 1024)], "scan.jpg", { type: "image/jpeg" }));
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
  await expect(alert).toContainText("too large (60 MB)");
  await expect(alert).toContainText("under 50 MB");

  // And a real photo still opens, with the message gone.
  await choosePhoto(page);
  await expect(dialog).toBeVisible();
  await expect(alert).toBeHidden();
});

for (const screen of [
  { name: "a 360 px wide phone", width: 360, height: 740 },
  // What a 1280×800 window shows at 200% browser zoom: the layout sees 640×400 CSS pixels.
  { name: "200% browser zoom", width: 640, height: 400 },
]) {
  test(`the editor works on ${screen.name}`, async ({ page, request }) => {
    await removePicture(request, ADA.email);
    await page.setViewportSize({ width: screen.width, height: screen.height });
    await signIn(page, ADA.email);
    const dialog = await choosePhoto(page);
    await expect(dialog).toBeVisible();

    // Nothing sticks out sideways, and the preview is still a usable size.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    const box = (await dialog.boundingBox())!;
    expect(box.x).toBeGreaterThanOrEqual(0);
    expect(box.x + box.width).toBeLessThanOrEqual(screen.width);
    const preview = (await dialog.getByLabel("Crop preview").boundingBox())!;
    expect(preview.width).toBeGreaterThanOrEqual(Math.min(320, screen.width - 80));

    // Taller than the window, the dialog scrolls: its heading and its buttons can all be reached.
    const heading = dialog.getByRole("heading", { name: "Edit & Adjust Profile Image" });
    await heading.scrollIntoViewIfNeeded();
    await expect(heading).toBeInViewport();
    for (const control of [
      dialog.getByRole("slider", { name: "Zoom" }),
      dialog.getByRole("slider", { name: "Rotate" }),
      dialog.getByRole("button", { name: "Cancel" }),
      dialog.getByRole("button", { name: "Save" }),
    ]) {
      await control.scrollIntoViewIfNeeded();
      await expect(control).toBeInViewport();
    }
    await dialog.getByRole("slider", { name: "Zoom" }).fill("1.5");
    await dialog.getByRole("button", { name: "Save" }).click();
    await expect(dialog).toBeHidden();
    await expect(page.getByRole("img", { name: `Profile picture of ${ADA.name}` })).toHaveJSProperty("tagName", "IMG");
  });
}
