//! Domain types, parsed once at the edge so that the rest of the code can trust them.
//!
//! Everything here is isomorphic: the browser uses `ImageContentType` and the limits too, so that
//! it can refuse a bad file before asking the server for anything.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest picture we accept. The editor always produces a 512×512 JPEG of a few tens of KB;
/// the margin is for API clients that upload their own (already small) PNG or WebP.
pub const MAX_PICTURE_BYTES: u64 = 5 * 1024 * 1024;

/// The sizes a picture is kept in: the full picture the profile shows, and a small rendition
/// for lists and small avatars, so that a page of 50 people does not download 50 full pictures.
/// The small one is optional: a picture uploaded without it (by an API client) is shown
/// everywhere in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rendition {
    Full,
    Small,
}

impl Rendition {
    /// Side of the small rendition the editor makes: 64 CSS pixels at 2×.
    pub const SMALL_SIDE: u32 = 128;

    /// The largest size accepted. The full one's margin is for API clients that upload their
    /// own (already small) PNG or WebP; a 128×128 JPEG is a few KB.
    pub const fn max_bytes(self) -> u64 {
        match self {
            Self::Full => MAX_PICTURE_BYTES,
            Self::Small => 256 * 1024,
        }
    }

    /// The largest side accepted: refuses decompression bombs that are small on disk, and a
    /// "small" rendition that is not small.
    pub const fn max_side(self) -> u32 {
        match self {
            Self::Full => 4096,
            Self::Small => 2 * Self::SMALL_SIDE,
        }
    }

    /// How messages name it.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Full => "image",
            Self::Small => "small image",
        }
    }
}

/// File names are informational only (the key is server-generated), but we still refuse absurd ones.
pub const MAX_FILE_NAME_CHARS: usize = 255;

/// Why a value from outside was refused. The message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn invalid(message: impl Into<String>) -> ParseError {
    ParseError(message.into())
}

/// A user's stable identifier: the `sub` claim of their token (a UUID in Cognito).
///
/// Restricted to a conservative alphabet because it becomes part of object keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, ParseError> {
        let raw = raw.into();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if raw.is_empty() || raw.len() > 128 || !raw.chars().all(ok_char) {
            return Err(invalid("Invalid user id."));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> Self {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The image types a profile picture may have. Anything else (SVG, HTML, HEIC...) is refused
/// before a URL is ever signed, and again when the stored object is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ImageContentType {
    Jpeg,
    Png,
    Webp,
}

impl ImageContentType {
    pub const ALL: [ImageContentType; 3] = [Self::Jpeg, Self::Png, Self::Webp];

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        // Media types are case-insensitive; parameters such as `;charset=` make no sense here.
        match raw.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" => Ok(Self::Jpeg),
            "image/png" => Ok(Self::Png),
            "image/webp" => Ok(Self::Webp),
            _ => Err(invalid(
                "Unsupported content type: use image/jpeg, image/png or image/webp.",
            )),
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    fn from_extension(ext: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.extension() == ext)
    }

    /// Whether `bytes` start with this type's signature. Used on what is really stored, because a
    /// signed Content-Type only proves what the uploader *claimed*.
    pub fn matches_magic(self, bytes: &[u8]) -> bool {
        match self {
            Self::Jpeg => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
            Self::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            Self::Webp => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        }
    }
}

impl TryFrom<String> for ImageContentType {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<ImageContentType> for String {
    fn from(t: ImageContentType) -> Self {
        t.mime().to_owned()
    }
}

/// The exact size of an upload, 1 byte to its rendition's [`Rendition::max_bytes`]. It is
/// signed into the URL, so the storage itself refuses a body of any other length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct ContentLength(u64);

impl ContentLength {
    /// The length of a full picture.
    pub fn parse(raw: u64) -> Result<Self, ParseError> {
        Self::parse_for(Rendition::Full, raw)
    }

    pub fn parse_for(rendition: Rendition, raw: u64) -> Result<Self, ParseError> {
        let max = rendition.max_bytes();
        match raw {
            0 => Err(invalid(format!("The {} is empty.", rendition.noun()))),
            n if n > max => Err(invalid(format!(
                "The {} is too large: the limit is {}.",
                rendition.noun(),
                if max >= 1024 * 1024 {
                    format!("{} MB", max / (1024 * 1024))
                } else {
                    format!("{} KB", max / 1024)
                }
            ))),
            n => Ok(Self(n)),
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for ContentLength {
    type Error = ParseError;
    fn try_from(raw: u64) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<ContentLength> for u64 {
    fn from(len: ContentLength) -> Self {
        len.0
    }
}

/// The client's name for the file. Only kept for logs; it never becomes part of a key.
pub fn check_file_name(raw: &str) -> Result<(), ParseError> {
    if raw.trim().is_empty() {
        return Err(invalid("fileName is required."));
    }
    if raw.chars().count() > MAX_FILE_NAME_CHARS {
        return Err(invalid(format!(
            "fileName is too long (at most {MAX_FILE_NAME_CHARS} characters)."
        )));
    }
    Ok(())
}

/// What an object key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `profile_…`: the target of a presigned PUT URL, writable by its owner until the URL
    /// expires. This is the SRS's `photoKey`.
    Upload,
    /// `picture_…`: the checked copy the confirm makes of an upload, under a fresh key. No URL
    /// is ever signed for it, so once checked its bytes cannot change.
    Picture,
}

impl KeyKind {
    fn stem(self) -> &'static str {
        match self {
            Self::Upload => "profile_",
            Self::Picture => "picture_",
        }
    }
}

/// The object key of one picture: `users/{userId}/profile_{millis}_{random}.{ext}` for an
/// upload, `users/{userId}/picture_{millis}_{random}.{ext}` for a stored copy; each with its
/// small rendition beside it, `…_{random}_small.{ext}` ([`PhotoKey::small`]). A small key is
/// never recorded anywhere: it follows from its full key, so whatever removes a picture removes
/// its small one with it.
///
/// Keys are only ever generated by the server; parsing one that came back from a client checks
/// the exact shape, so `..`, absolute paths, other prefixes or oversized strings never reach S3.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhotoKey {
    key: String,
    owner: UserId,
    content_type: ImageContentType,
    kind: KeyKind,
    rendition: Rendition,
}

impl PhotoKey {
    const PREFIX: &'static str = "users/";
    const MAX_LEN: usize = 256;
    const SMALL_SUFFIX: &'static str = "_small";

    /// A fresh key. `random` must come from a CSPRNG: it makes keys unguessable, and with the
    /// millisecond timestamp it makes collisions practically impossible.
    pub fn generate(
        owner: &UserId,
        kind: KeyKind,
        content_type: ImageContentType,
        unix_millis: u64,
        random: u64,
    ) -> Self {
        let key = format!(
            "{}{}/{}{unix_millis}_{random:016x}.{}",
            Self::PREFIX,
            owner,
            kind.stem(),
            content_type.extension()
        );
        Self {
            key,
            owner: owner.clone(),
            content_type,
            kind,
            rendition: Rendition::Full,
        }
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn rendition(&self) -> Rendition {
        self.rendition
    }

    /// The key of this picture in `rendition`.
    pub fn in_rendition(&self, rendition: Rendition) -> PhotoKey {
        match rendition {
            Rendition::Full => self.full(),
            Rendition::Small => self.small(),
        }
    }

    /// The key of this picture's small rendition (itself, for a small key).
    pub fn small(&self) -> PhotoKey {
        if self.rendition == Rendition::Small {
            return self.clone();
        }
        let ext = self.content_type.extension();
        let stem = &self.key[..self.key.len() - ext.len() - 1];
        Self {
            key: format!("{stem}{}.{ext}", Self::SMALL_SUFFIX),
            rendition: Rendition::Small,
            ..self.clone()
        }
    }

    /// The key of the full picture this key is a rendition of (itself, for a full key).
    pub fn full(&self) -> PhotoKey {
        if self.rendition == Rendition::Full {
            return self.clone();
        }
        let ext = self.content_type.extension();
        let stem = &self.key[..self.key.len() - ext.len() - 1 - Self::SMALL_SUFFIX.len()];
        Self {
            key: format!("{stem}.{ext}"),
            rendition: Rendition::Full,
            ..self.clone()
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let bad = || invalid("Invalid photoKey.");
        if raw.len() > Self::MAX_LEN {
            return Err(bad());
        }
        let rest = raw.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        let (owner, file) = rest.split_once('/').ok_or_else(bad)?;
        let owner = UserId::parse(owner).map_err(|_| bad())?;
        let (stem, ext) = file.rsplit_once('.').ok_or_else(bad)?;
        let content_type = ImageContentType::from_extension(ext).ok_or_else(bad)?;
        let (stem, rendition) = match stem.strip_suffix(Self::SMALL_SUFFIX) {
            Some(stem) => (stem, Rendition::Small),
            None => (stem, Rendition::Full),
        };
        let (kind, rest) = [KeyKind::Upload, KeyKind::Picture]
            .into_iter()
            .find_map(|kind| Some((kind, stem.strip_prefix(kind.stem())?)))
            .ok_or_else(bad)?;
        let (millis, random) = rest.split_once('_').ok_or_else(bad)?;
        let is_digits = |s: &str, max: usize, radix: u32| {
            !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_digit(radix))
        };
        if !is_digits(millis, 20, 10) || random.len() != 16 || !is_digits(random, 16, 16) {
            return Err(bad());
        }
        Ok(Self {
            key: raw.to_owned(),
            owner,
            content_type,
            kind,
            rendition,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.key
    }

    pub fn owner(&self) -> &UserId {
        &self.owner
    }

    /// The type the key was issued for (its extension).
    pub fn content_type(&self) -> ImageContentType {
        self.content_type
    }

    /// The prefix under which all of one user's objects live.
    pub fn user_prefix(owner: &UserId) -> String {
        format!("{}{}/", Self::PREFIX, owner)
    }
}

impl TryFrom<String> for PhotoKey {
    type Error = ParseError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<PhotoKey> for String {
    fn from(key: PhotoKey) -> Self {
        key.key
    }
}

impl fmt::Display for PhotoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// Up to two initials for the avatar placeholder: "Ada Dev" → "AD", "grace" → "G".
pub fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|word| word.chars().next())
        .flat_map(char::to_uppercase)
        .take(2)
        .collect()
}

/// How the directory orders and searches names and emails: case-folded, so that "adam" and
/// "Adam" sort together and a search ignores case. The database keeps this beside each row
/// (`users.name_key`, `users.email_key`), written by the app, so both databases fold alike
/// (SQLite's own `lower()` folds ASCII only).
pub fn search_key(text: &str) -> String {
    text.to_lowercase()
}

/// How many people one page of the directory lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const DEFAULT: Self = Self(50);
    pub const MAX: u32 = 200;

    /// The `limit` query parameter: absent means the default.
    pub fn parse(raw: Option<&str>) -> Result<Self, ParseError> {
        let Some(raw) = raw else {
            return Ok(Self::DEFAULT);
        };
        match raw.trim().parse::<u32>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(invalid(format!(
                "Invalid limit: use a whole number from 1 to {}.",
                Self::MAX
            ))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where a page of the directory starts: just after the row with this name key and id, in
/// the order (name key, id). Opaque to clients: hex of `{id}\0{name_key}` (an id never holds
/// a NUL), so a cursor is a plain URL-safe token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryCursor {
    pub name_key: String,
    pub id: UserId,
}

/// Longest name key a cursor may carry: far beyond any real name, small enough to refuse junk.
const MAX_CURSOR_NAME_BYTES: usize = 1024;

impl DirectoryCursor {
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let refused =
            || invalid("Invalid cursor: use the one from the previous page's Link header.");
        let bytes = decode_hex(raw).ok_or_else(refused)?;
        let text = String::from_utf8(bytes).map_err(|_| refused())?;
        let (id, name_key) = text.split_once('\0').ok_or_else(refused)?;
        if name_key.len() > MAX_CURSOR_NAME_BYTES {
            return Err(refused());
        }
        Ok(Self {
            id: UserId::parse(id).map_err(|_| refused())?,
            name_key: name_key.to_owned(),
        })
    }

    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(2 * (self.id.as_str().len() + 1 + self.name_key.len()));
        for byte in [self.id.as_str().as_bytes(), b"\0", self.name_key.as_bytes()].concat() {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

fn decode_hex(raw: &str) -> Option<Vec<u8>> {
    if !raw.len().is_multiple_of(2) || raw.len() > 2 * (MAX_CURSOR_NAME_BYTES + 200) {
        return None;
    }
    (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(raw.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A directory search: people whose name or email starts with this, ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPrefix(String);

/// Longest search accepted: a prefix longer than any name or email finds nothing anyway.
const MAX_SEARCH_CHARS: usize = 100;

impl SearchPrefix {
    /// The `q` query parameter; blank (or absent) is no search at all.
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, ParseError> {
        let Some(raw) = raw.map(str::trim).filter(|q| !q.is_empty()) else {
            return Ok(None);
        };
        if raw.chars().count() > MAX_SEARCH_CHARS {
            return Err(invalid(format!(
                "The search is too long: at most {MAX_SEARCH_CHARS} characters."
            )));
        }
        Ok(Some(Self(search_key(raw))))
    }

    /// The folded prefix, as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A LIKE pattern (with `ESCAPE '\'`) matching exactly the keys that start with the
    /// prefix: `%` and `_` in a search are literal characters, not wildcards.
    pub fn like_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.0.len() + 2);
        for c in self.0.chars() {
            if matches!(c, '\\' | '%' | '_') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        pattern
    }

    /// A bound above every key that starts with the prefix, for an index range scan
    /// (`key >= prefix AND key < bound`); the LIKE pattern stays the exact test. Built from
    /// the prefix's ASCII letters and digits only (trailing others dropped, then the last one
    /// raised: "abz" -> "ac"), so it holds in byte order (SQLite, PostgreSQL's C collation)
    /// and in linguistic collations alike, where punctuation and accents do not weigh first.
    /// None when nothing is left: then the pattern alone decides.
    pub fn upper_bound(&self) -> Option<String> {
        let mut bound: Vec<char> = self.0.chars().collect();
        while let Some(last) = bound.pop() {
            if matches!(last, 'a'..='y' | '0'..='8') {
                bound.push((last as u8 + 1) as char);
                return Some(bound.into_iter().collect());
            }
        }
        None
    }
}

/// One request for a page of the directory, parsed from its query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryRequest {
    pub limit: PageLimit,
    pub after: Option<DirectoryCursor>,
    pub search: Option<SearchPrefix>,
}

impl DirectoryRequest {
    /// `limit`, `cursor` and `q`, as they came.
    pub fn parse(
        limit: Option<&str>,
        cursor: Option<&str>,
        q: Option<&str>,
    ) -> Result<Self, ParseError> {
        Ok(Self {
            limit: PageLimit::parse(limit)?,
            after: cursor.map(DirectoryCursor::parse).transpose()?,
            search: SearchPrefix::parse(q)?,
        })
    }

    /// The query string of the page after this one, which starts after `last`.
    pub fn next_query(&self, last: &DirectoryCursor) -> String {
        let mut query = format!("limit={}", self.limit.get());
        if let Some(search) = &self.search {
            query.push_str("&q=");
            query.push_str(&percent_encode(search.as_str()));
        }
        query.push_str("&cursor=");
        query.push_str(&last.encode());
        query
    }
}

/// RFC 3986's unreserved characters: everything else is percent-encoded in a query value.
/// (Also AWS's `UriEncode`, which the presigned URLs use.)
pub const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("3f2a-user_1").unwrap()
    }

    #[test]
    fn generated_keys_round_trip_and_name_their_owner() {
        let key = PhotoKey::generate(
            &user(),
            KeyKind::Upload,
            ImageContentType::Png,
            1_700_000_000_123,
            0xabc,
        );
        assert_eq!(
            key.as_str(),
            "users/3f2a-user_1/profile_1700000000123_0000000000000abc.png"
        );
        let parsed = PhotoKey::parse(key.as_str()).unwrap();
        assert_eq!(parsed, key);
        assert_eq!(parsed.owner(), &user());
        assert_eq!(parsed.content_type(), ImageContentType::Png);
        assert_eq!(parsed.kind(), KeyKind::Upload);
    }

    #[test]
    fn stored_pictures_have_keys_of_their_own() {
        let key = PhotoKey::generate(
            &user(),
            KeyKind::Picture,
            ImageContentType::Jpeg,
            1_700_000_000_123,
            0xabc,
        );
        assert_eq!(
            key.as_str(),
            "users/3f2a-user_1/picture_1700000000123_0000000000000abc.jpg"
        );
        let parsed = PhotoKey::parse(key.as_str()).unwrap();
        assert_eq!(parsed, key);
        assert_eq!(parsed.kind(), KeyKind::Picture);

        // Its small rendition sits beside it.
        let small = key.small();
        assert_eq!(
            small.as_str(),
            "users/3f2a-user_1/picture_1700000000123_0000000000000abc_small.jpg"
        );
        assert_eq!(small.rendition(), Rendition::Small);
        assert_eq!(PhotoKey::parse(small.as_str()).unwrap(), small);
        assert_eq!(small.small(), small);
        assert_eq!(small.full(), key);
        assert_eq!(key.full(), key);
        assert_eq!(key.rendition(), Rendition::Full);
        assert!(PhotoKey::parse("users/u/picture_1_0000000000000000_small_small.jpg").is_err());
    }

    #[test]
    fn lengths_are_bounded_per_rendition() {
        let small = Rendition::Small.max_bytes();
        assert!(ContentLength::parse_for(Rendition::Small, small).is_ok());
        let err = ContentLength::parse_for(Rendition::Small, small + 1).unwrap_err();
        assert_eq!(err.0, "The small image is too large: the limit is 256 KB.");
        assert!(ContentLength::parse(small + 1).is_ok());
        assert!(ContentLength::parse_for(Rendition::Small, 0).is_err());
    }

    #[test]
    fn hostile_keys_are_refused() {
        let long = format!("users/u/profile_1_{}.jpg", "a".repeat(10_000));
        for raw in [
            "",
            "/users/u/profile_1_0000000000000000.jpg",
            "users/../profile_1_0000000000000000.jpg",
            "users/u/../v/profile_1_0000000000000000.jpg",
            "users/u/profile_1_0000000000000000.svg",
            "users/u/profile_1_000000000000000.jpg",
            "users/u/profile_x_0000000000000000.jpg",
            "users/u/other_1_0000000000000000.jpg",
            "users/u v/profile_1_0000000000000000.jpg",
            "avatars/u/profile_1_0000000000000000.jpg",
            "users/u/profile_1_000000000000000g.jpg",
            long.as_str(),
        ] {
            assert!(PhotoKey::parse(raw).is_err(), "accepted {raw:?}");
        }
    }

    #[test]
    fn content_types_parse_case_insensitively_and_refuse_the_rest() {
        assert_eq!(
            ImageContentType::parse("IMAGE/JPEG"),
            Ok(ImageContentType::Jpeg)
        );
        assert_eq!(
            ImageContentType::parse("image/webp"),
            Ok(ImageContentType::Webp)
        );
        for raw in ["image/svg+xml", "text/html", "image/heic", ""] {
            assert!(ImageContentType::parse(raw).is_err(), "accepted {raw:?}");
        }
    }

    #[test]
    fn magic_bytes_are_checked_per_type() {
        assert!(ImageContentType::Jpeg.matches_magic(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(!ImageContentType::Jpeg.matches_magic(b"<svg xmlns="));
        assert!(ImageContentType::Png.matches_magic(b"\x89PNG\r\n\x1a\n...."));
        assert!(ImageContentType::Webp.matches_magic(b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(!ImageContentType::Webp.matches_magic(b"RIFF\0\0\0\0WAVE"));
    }

    #[test]
    fn lengths_are_bounded() {
        assert!(ContentLength::parse(0).is_err());
        assert!(ContentLength::parse(MAX_PICTURE_BYTES + 1).is_err());
        assert_eq!(ContentLength::parse(42).unwrap().get(), 42);
    }

    #[test]
    fn user_ids_refuse_path_characters() {
        for raw in ["", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(UserId::parse(raw).is_err(), "accepted {raw:?}");
        }
    }

    #[test]
    fn initials_take_the_first_letters_of_two_words() {
        assert_eq!(initials("Ada Dev"), "AD");
        assert_eq!(initials("grace brewster hopper"), "GB");
        assert_eq!(initials("  "), "");
    }

    #[test]
    fn file_names_are_bounded() {
        assert!(check_file_name("me.jpg").is_ok());
        assert!(check_file_name(" ").is_err());
        assert!(check_file_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn page_limits_default_cap_and_refuse() {
        assert_eq!(PageLimit::parse(None).unwrap().get(), 50);
        assert_eq!(PageLimit::parse(Some("200")).unwrap().get(), 200);
        assert_eq!(PageLimit::parse(Some("1")).unwrap().get(), 1);
        for bad in ["0", "201", "-1", "ten", "", "1.5"] {
            let err = PageLimit::parse(Some(bad)).unwrap_err();
            assert!(err.0.contains("1 to 200"), "{bad}: {err}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let cursor = DirectoryCursor {
            name_key: "zoë o'brien".into(),
            id: user(),
        };
        let token = cursor.encode();
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        assert_eq!(DirectoryCursor::parse(&token), Ok(cursor));
        // Not hex, odd, cut, no separator, no id, not UTF-8, an id no user can have.
        for bad in [
            "",
            "zz",
            "abc",
            &token[1..],
            "6161",
            "0061",
            "ff00ff",
            "2f0061",
        ] {
            assert!(DirectoryCursor::parse(bad).is_err(), "{bad:?}");
        }
        // A well-formed cursor is only a position: edited, it is another (harmless) one.
        assert!(DirectoryCursor::parse("6100").is_ok());
    }

    #[test]
    fn searches_fold_case_and_escape_wildcards() {
        assert_eq!(SearchPrefix::parse(None), Ok(None));
        assert_eq!(SearchPrefix::parse(Some("   ")), Ok(None));
        let q = SearchPrefix::parse(Some(" ÁLi ")).unwrap().unwrap();
        assert_eq!(q.as_str(), "áli");
        let wild = SearchPrefix::parse(Some("50%_a\\b")).unwrap().unwrap();
        assert_eq!(wild.like_pattern(), "50\\%\\_a\\\\b%");
        assert!(SearchPrefix::parse(Some(&"x".repeat(101))).is_err());
    }

    #[test]
    fn search_bounds_hold_in_any_collation() {
        let bound = |q: &str| SearchPrefix::parse(Some(q)).unwrap().unwrap().upper_bound();
        assert_eq!(bound("ali").as_deref(), Some("alj"));
        assert_eq!(bound("abz").as_deref(), Some("ac"));
        assert_eq!(bound("ada ").as_deref(), Some("adb"));
        assert_eq!(bound("o'b").as_deref(), Some("o'c"));
        assert_eq!(bound("a9").as_deref(), Some("b"));
        assert_eq!(bound("café").as_deref(), Some("cag"));
        assert_eq!(bound("%"), None);
        assert_eq!(bound("zz"), None);
    }

    #[test]
    fn the_next_page_keeps_the_search_and_the_limit() {
        let request = DirectoryRequest::parse(Some("20"), None, Some("Ann & Bo")).unwrap();
        let last = DirectoryCursor {
            name_key: "ann & bob".into(),
            id: user(),
        };
        let query = request.next_query(&last);
        assert_eq!(
            query,
            format!("limit=20&q=ann%20%26%20bo&cursor={}", last.encode())
        );
        let plain = DirectoryRequest::parse(None, None, None).unwrap();
        assert!(plain.next_query(&last).starts_with("limit=50&cursor="));
        assert!(DirectoryRequest::parse(None, Some("nope"), None).is_err());
    }
}
