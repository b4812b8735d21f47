-- Small renditions (128×128, for lists) beside the pictures: `users/…/picture_…_small.jpg`
-- next to `users/…/picture_….jpg` (`app::domain::PhotoKey::small`). The key follows from the
-- picture's, so only whether there is one is recorded:
-- * `users.photo_small`: 1 when the picture's small rendition was checked and stored with it;
--   0 for a picture without one (from an API client, or from before this migration), which
--   lists then show in full.
-- * `uploads.small_length`: the exact length signed for the upload's small rendition, or NULL
--   when none was granted.
-- (Numbered 0008: 0007 is kept for the directory's search table.)
ALTER TABLE users ADD COLUMN photo_small BIGINT NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN small_length BIGINT;
