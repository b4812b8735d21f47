//! Domain types, parsed once at the edge so that the rest of the code can trust them.
//!
//! Everything here is isomorphic: the browser uses `ImageContentType` and the limits too, so that
//! it can refuse a bad file before asking the server for anything.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest picture we accept. The editor always produces a 512×512 JPEG of a few tens of KB;
/// the margin is for API clients that upload their own (already small) PNG or WebP.
pub const MAX_PICTURE_BYTES: u64 = 5 * 1024 * 1024;

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

/// The exact size of an upload, 1 byte to [`MAX_PICTURE_BYTES`]. It is signed into the URL, so
/// the storage itself refuses a body of any other length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct ContentLength(u64);

impl ContentLength {
    pub fn parse(raw: u64) -> Result<Self, ParseError> {
        match raw {
            0 => Err(invalid("The image is empty.")),
            n if n > MAX_PICTURE_BYTES => Err(invalid(format!(
                "The image is too large: the limit is {} MB.",
                MAX_PICTURE_BYTES / (1024 * 1024)
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
/// upload, `users/{userId}/picture_{millis}_{random}.{ext}` for a stored copy.
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
}

impl PhotoKey {
    const PREFIX: &'static str = "users/";
    const MAX_LEN: usize = 256;

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
        }
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
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
}
