import { expect, test } from "./fixtures";
import { ADA, GRACE, choosePhoto, hydrated, removePicture, saveAndSeePicture, signIn } from "./helpers";

// The suite's server seeds synthetic people (`PORTRAIT_SEED_PEOPLE=60`, set by `cargo xtask
// test`), so the directory has more than one page. Without them (a `cargo leptos end-to-end` as
// typed) there are the two demo accounts, and the test of a second page is skipped.
const PAGE = 50;
const morePeopleThanAPage = Number(process.env.PORTRAIT_SEED_PEOPLE ?? 0) >= PAGE;

async function openPeople(page: import("@playwright/test").Page) {
  await page.goto("/users");
  await hydrated(page);
  await expect(page.locator(".user-row").first()).toBeVisible();
}

test("the search box filters as you type, keeps the search in the URL, and says when no one matches", async ({ page }) => {
  await signIn(page, GRACE.email);
  await openPeople(page);
  const search = page.getByRole("searchbox", { name: "Search people" });
  await search.fill("ADA");
  await expect(page).toHaveURL(/\/users\?q=ADA$/);
  const rows = page.locator(".user-row");
  await expect(rows).toHaveCount(1);
  await expect(rows).toContainText(ADA.name);

  // A reload keeps the search, in the box and in the results.
  await page.reload();
  await hydrated(page);
  await expect(search).toHaveValue("ADA");
  await expect(rows).toHaveCount(1);

  // Enter searches at once; an empty search lists everyone again.
  await search.fill("no one like this");
  await search.press("Enter");
  await expect(page.getByText("No one matches “no one like this”.")).toBeVisible();
  await expect(rows).toHaveCount(0);
  await search.fill("");
  await expect(page).toHaveURL(/\/users$/);
  await expect(rows).toHaveCount(morePeopleThanAPage ? PAGE : 2);
});

test("Show more fetches the next page, and the signed-in user's own row is marked", async ({ page }) => {
  test.skip(!morePeopleThanAPage, "needs more people than a page: PORTRAIT_SEED_PEOPLE=60, as cargo xtask test sets");
  await signIn(page, GRACE.email);
  await openPeople(page);
  const rows = page.locator(".user-row");
  await expect(rows).toHaveCount(PAGE);
  const more = page.getByRole("button", { name: "Show more" });
  await expect(more, "more than one page: the server runs with PORTRAIT_SEED_PEOPLE=60").toBeVisible();
  // By keyboard: it is a real button.
  await more.focus();
  await page.keyboard.press("Enter");
  await expect(rows).toHaveCount(62);
  await expect(more).toBeHidden();
  const ids = await rows.evaluateAll((items) => items.map((item) => item.textContent));
  expect(new Set(ids).size).toBe(ids.length);

  const mine = page.locator(".user-row.is-you");
  await expect(mine).toHaveCount(1);
  await expect(mine).toContainText(GRACE.name);
  await expect(mine.getByText("You", { exact: true })).toBeVisible();
});

test("an admin removes someone's picture after confirming; a member has no such control", async ({ page, request }) => {
  await removePicture(request, GRACE.email);
  await signIn(page, GRACE.email);
  await saveAndSeePicture(page, await choosePhoto(page), GRACE.name);

  // Grace is a member: her list offers no removal, not even of her own picture.
  await page.goto("/users?q=grace");
  await hydrated(page);
  await expect(page.getByRole("img", { name: `Profile picture of ${GRACE.name}` })).toHaveJSProperty("tagName", "IMG");
  await expect(page.getByRole("button", { name: /Remove picture/ })).toHaveCount(0);

  await page.context().clearCookies();
  await signIn(page, ADA.email);
  await page.goto("/users?q=grace");
  await hydrated(page);
  const remove = page.getByRole("button", { name: `Remove picture of ${GRACE.name}` });
  const dialog = page.getByRole("dialog", { name: "Remove this picture?" });

  // Escape closes the dialog and gives focus back; nothing is removed.
  await remove.click();
  await expect(dialog).toBeVisible();
  await expect(dialog).toContainText(`${GRACE.name}’s picture will be removed`);
  await expect(dialog.locator(":focus")).toHaveCount(1);
  await page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
  await expect(remove).toBeFocused();
  const avatar = page.getByRole("img", { name: `Profile picture of ${GRACE.name}` });
  await expect(avatar).toHaveJSProperty("tagName", "IMG");

  // Cancel too.
  await remove.click();
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await expect(dialog).toBeHidden();
  await expect(avatar).toHaveJSProperty("tagName", "IMG");

  await remove.click();
  await dialog.getByRole("button", { name: "Remove", exact: true }).click();
  await expect(dialog).toBeHidden();
  await expect(avatar).toHaveText(GRACE.initials);
  await expect(remove).toHaveCount(0);

  // It is gone for Grace as well.
  await page.reload();
  await hydrated(page);
  await expect(avatar).toHaveText(GRACE.initials);
});
