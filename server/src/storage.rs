//! Object storage through the S3 API: the same code for the embedded store, AWS S3 and any
//! S3-compatible service.
//!
//! Round trips to the store (head, get, delete, list) go through the SDK client. Presigned URLs
//! are signed here with `aws-sigv4` instead: the upload endpoint makes one per request, and the
//! SDK's presigner runs its whole request pipeline (interceptors, runtime components, endpoint
//! rules, config layering) around what is a handful of hashes; that pipeline was ~15% of the
//! endpoint's CPU time. What the pipeline would decide is asked of the SDK once, at start-up
//! (`Presigner::learn`), and the tests hold the URLs made here byte for byte to the SDK's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use app::domain::{ContentLength, ImageContentType, PhotoKey};
use app::service::ports::{
    BoxError, ListedObject, ObjectInfo, ObjectStore, Part, PortError, PortResult, PresignedRequest,
};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::config::{
    ProvideCredentials, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::Client;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet};
use time::OffsetDateTime;

fn storage_error(e: impl Into<BoxError>) -> PortError {
    PortError::new(Part::Storage, e)
}

pub struct S3Storage {
    client: Client,
    bucket: String,
    presigner: Presigner,
    credentials: CachedCredentials,
}

impl S3Storage {
    /// Storage in `bucket`, configured from `shared` (region and credentials, and for AWS the
    /// rest of the default chain), at `endpoint_url` when given (any S3-compatible service).
    ///
    /// Asks for credentials and presigns one URL, both local for static credentials: a broken
    /// credential chain or endpoint fails here, at start-up, rather than on the first upload.
    pub async fn connect(
        shared: &SdkConfig,
        bucket: impl Into<String>,
        endpoint_url: Option<&str>,
        force_path_style: bool,
    ) -> Result<Self, BoxError> {
        let bucket = bucket.into();
        // Checksums only when required: by default the SDK would sign a CRC32 of the (empty)
        // body into presigned PUT URLs, and every real upload would then fail the check. The
        // presigner here never adds one; the tests compare it with this client's presigner.
        let mut config = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url);
        }
        let client = Client::from_conf(config.build());
        let provider = shared
            .credentials_provider()
            .ok_or("no AWS credentials provider is configured")?;
        let credentials = CachedCredentials::load(provider).await?;
        let presigner = Presigner::learn(&client, &bucket).await?;
        Ok(Self {
            client,
            bucket,
            presigner,
            credentials,
        })
    }
}

/// What every presigned URL for the bucket shares: where the bucket is, and the scope the
/// signature is made for.
#[derive(Debug)]
struct Presigner {
    /// The URL that precedes an object's key, without a trailing slash: the endpoint with the
    /// bucket in the host (virtual-hosted) or in the path (path-style).
    base: String,
    region: String,
    service: String,
}

/// AWS's `UriEncode`: RFC 3986's unreserved characters stay, every other byte is
/// percent-encoded. This is what the SDK does for query values.
const QUERY_VALUE: &AsciiSet = app::domain::UNRESERVED;
/// The same for an object key in the path, where `/` separates segments and stays as it is.
const KEY_PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// SigV4 presigned URLs are valid for at most a week.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

impl Presigner {
    /// Asks the SDK where the bucket is and which scope it signs for, by presigning a probe.
    ///
    /// The SDK's endpoint rules (custom endpoints, path-style or virtual-hosted addressing,
    /// dotted bucket names, FIPS and dual-stack, partitions, `AWS_ENDPOINT_URL_S3`, ...) are
    /// thousands of lines of generated code. Reading their answer off one URL keeps the URLs
    /// made here the SDK's, for every configuration, without re-implementing any of it.
    async fn learn(client: &Client, bucket: &str) -> Result<Self, BoxError> {
        const PROBE: &str = "probe";
        let probe = client
            .get_object()
            .bucket(bucket)
            .key(PROBE)
            .presigned(PresigningConfig::expires_in(Duration::from_secs(60))?)
            .await?;
        let unexpected = || format!("unexpected presigned URL from the SDK: {}", probe.uri());
        let (path, query) = probe.uri().split_once('?').ok_or_else(unexpected)?;
        let base = path
            .strip_suffix(PROBE)
            .and_then(|base| base.strip_suffix('/'))
            .ok_or_else(unexpected)?;
        // X-Amz-Credential is `{access key}/{date}/{region}/{service}/aws4_request`.
        let credential = query
            .split('&')
            .find_map(|param| param.strip_prefix("X-Amz-Credential="))
            .ok_or_else(unexpected)?;
        let credential = percent_decode_str(credential).decode_utf8()?;
        let mut scope = credential.rsplit('/').skip(1);
        let (Some(service), Some(region)) = (scope.next(), scope.next()) else {
            return Err(unexpected().into());
        };
        Ok(Self {
            base: base.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        })
    }

    /// A PUT of `content_type`, of exactly `length` bytes when given.
    fn put(
        &self,
        identity: &Identity,
        key: &str,
        content_type: &str,
        length: Option<u64>,
        ttl: Duration,
        at: SystemTime,
    ) -> PortResult<PresignedRequest> {
        let length = length.map(|length| length.to_string());
        // Type and exact length are signed headers: the storage refuses any other body. Without
        // a length (the SRS's client sends only Content-Type) the confirm bounds the size.
        let mut headers = vec![("content-type", content_type)];
        if let Some(length) = &length {
            headers.push(("content-length", length.as_str()));
        }
        let url = self.sign(identity, "PUT", key, "x-id=PutObject", &headers, ttl, at)?;
        Ok(PresignedRequest {
            url,
            headers: headers
                .iter()
                .map(|&(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            expires_at: OffsetDateTime::from(at + ttl),
        })
    }

    /// A GET whose response is always `content_type`, shown inline, and may be kept by the
    /// browser as `read` allows.
    fn get(
        &self,
        identity: &Identity,
        key: &str,
        content_type: &str,
        read: ReadSigning,
    ) -> PortResult<PresignedRequest> {
        // Pin the response type to what the key was verified as, and never as an attachment or
        // HTML: a stored object can only ever be shown as the image it is. The cache lifetime
        // is signed too, so no one can stretch it. (In the SDK's order of the parameters, which
        // keeps the URL the SDK's byte for byte.)
        let cache_control = format!("private, max-age={}", read.max_age.as_secs());
        let query = format!(
            "x-id=GetObject&response-cache-control={}\
             &response-content-disposition=inline&response-content-type={}",
            utf8_percent_encode(&cache_control, QUERY_VALUE),
            utf8_percent_encode(content_type, QUERY_VALUE)
        );
        let url = self.sign(identity, "GET", key, &query, &[], read.expires_in, read.at)?;
        Ok(PresignedRequest {
            url,
            headers: BTreeMap::new(),
            expires_at: OffsetDateTime::from(read.at + read.expires_in),
        })
    }

    /// The URL of `method` on `key` with SigV4 in its query, as S3 presigns: the payload is
    /// unsigned, and `headers` (besides host) must be sent exactly as given.
    ///
    /// `query` is the operation's own parameters, encoded. It starts with `x-id=<Operation>`,
    /// which the SDK adds to every S3 request and S3 ignores: kept so that the URLs stay the
    /// SDK's byte for byte, which is how the tests prove the signing right.
    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        identity: &Identity,
        method: &str,
        key: &str,
        query: &str,
        headers: &[(&str, &str)],
        ttl: Duration,
        at: SystemTime,
    ) -> PortResult<String> {
        if ttl > MAX_TTL {
            return Err(storage_error(format!(
                "a presigned URL cannot live {ttl:?}; at most {MAX_TTL:?}"
            )));
        }
        let mut url = format!(
            "{}/{}?{query}",
            self.base,
            utf8_percent_encode(key, KEY_PATH)
        );

        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl);
        // S3's rules: the path is signed as sent (encoded once) and never normalised, since
        // `a/../b` is a key like any other.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(identity)
            .region(&self.region)
            .name(&self.service)
            .time(at)
            .settings(settings)
            .build()
            .map_err(storage_error)?
            .into();
        let request = SignableRequest::new(
            method,
            url.as_str(),
            headers.iter().copied(),
            SignableBody::UnsignedPayload,
        )
        .map_err(storage_error)?;
        let (instructions, _signature) =
            sign(request, &params).map_err(storage_error)?.into_parts();

        for (name, value) in instructions.params() {
            let value = utf8_percent_encode(value, QUERY_VALUE);
            write!(url, "&{name}={value}").expect("writing to a String cannot fail");
        }
        Ok(url)
    }
}

/// When a read URL is signed, how long it lives, and how long the browser may keep the
/// picture.
///
/// Read URLs are signed as of the start of a window of half their lifetime, and live that much
/// longer: every view within the window gets the same URL, byte for byte, so the browser shows
/// the picture it already has; each URL still has at least the whole lifetime ahead; and the
/// browser keeps the picture for that lifetime, never past the URL's end. Keys are new for
/// every upload, so a new picture always comes under a new URL.
///
/// A URL stops working when the credentials it was signed with expire (temporary ones: an
/// instance or task role). When they end before a window's URL would, the URL is signed now,
/// until they end (at most the lifetime), and kept by the browser no longer: late in each
/// credentials' life views get fresh URLs, as before there were windows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ReadSigning {
    at: SystemTime,
    expires_in: Duration,
    max_age: Duration,
}

impl ReadSigning {
    fn new(now: SystemTime, ttl: Duration, credentials_end: Option<SystemTime>) -> Self {
        let window = (ttl / 2).min(MAX_TTL.saturating_sub(ttl)).as_secs();
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let stable = Self {
            at: UNIX_EPOCH + Duration::from_secs(since_epoch - since_epoch % window.max(1)),
            expires_in: ttl + Duration::from_secs(window),
            max_age: ttl,
        };
        match credentials_end {
            Some(end) if end < stable.at + stable.expires_in => {
                let left = end.duration_since(now).unwrap_or_default().min(ttl);
                let left = Duration::from_secs(left.as_secs().max(1));
                Self {
                    at: now,
                    expires_in: left,
                    max_age: left,
                }
            }
            _ => stable,
        }
    }
}

/// Credentials for signing, asked for again shortly before they expire.
///
/// The provider is the raw credential chain: caching is the SDK client's job, and presigning
/// here bypasses the client, so asking the provider per request could mean a round trip to IMDS
/// or STS. Credentials are kept until they come within `REFRESH_MARGIN` of their expiry (static
/// ones forever), and one request at a time refreshes them while the others wait for its answer
/// rather than all asking at once.
struct CachedCredentials {
    provider: SharedCredentialsProvider,
    current: RwLock<Cached>,
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    identity: Identity,
    /// `None` for credentials that never expire.
    refresh_at: Option<SystemTime>,
}

/// A URL stops working when the credentials it was signed with expire, whatever its own expiry.
/// Five minutes covers an upload URL's whole life; a longer-lived URL signed late in the
/// credentials' life can end early, as with the SDK's presigner (which logs a warning). AWS's
/// sources publish new credentials at least five minutes ahead, so asking earlier would only
/// get the old ones back.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Credentials that arrive already within the margin (a provider that has nothing newer yet, or
/// hands out short-lived ones) are used as they are and asked for again after this long, rather
/// than on every request.
const RETRY_AFTER: Duration = Duration::from_secs(10);

impl Cached {
    fn new(identity: Identity, at: SystemTime) -> Self {
        let refresh_at = identity.expiration().map(|expiry| {
            let ahead = expiry.checked_sub(REFRESH_MARGIN).unwrap_or(expiry);
            ahead.max(at + RETRY_AFTER)
        });
        Self {
            identity,
            refresh_at,
        }
    }

    fn fresh_at(&self, at: SystemTime) -> bool {
        self.refresh_at.is_none_or(|refresh_at| at < refresh_at)
    }
}

impl CachedCredentials {
    async fn load(provider: SharedCredentialsProvider) -> Result<Self, BoxError> {
        let identity = Identity::from(provider.provide_credentials().await?);
        Ok(Self {
            provider,
            current: RwLock::new(Cached::new(identity, SystemTime::now())),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Credentials to sign with at `at`.
    async fn get(&self, at: SystemTime) -> PortResult<Identity> {
        if let Some(identity) = self.fresh(at) {
            return Ok(identity);
        }
        let _only_one = self.refreshing.lock().await;
        // Another request may have refreshed them while this one waited.
        if let Some(identity) = self.fresh(at) {
            return Ok(identity);
        }
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .map_err(storage_error)?;
        let cached = Cached::new(Identity::from(credentials), at);
        let identity = cached.identity.clone();
        // The lock only guards a clone or an assignment, which cannot panic half-way.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = cached;
        Ok(identity)
    }

    fn fresh(&self, at: SystemTime) -> Option<Identity> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        current.fresh_at(at).then(|| current.identity.clone())
    }
}

#[async_trait]
impl ObjectStore for S3Storage {
    async fn ping(&self) -> PortResult<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn presign_put(
        &self,
        key: &PhotoKey,
        content_type: ImageContentType,
        length: Option<ContentLength>,
        ttl: Duration,
    ) -> PortResult<PresignedRequest> {
        let now = SystemTime::now();
        let identity = self.credentials.get(now).await?;
        self.presigner.put(
            &identity,
            key.as_str(),
            content_type.mime(),
            length.map(ContentLength::get),
            ttl,
            now,
        )
    }

    async fn presign_get(&self, key: &PhotoKey, ttl: Duration) -> PortResult<PresignedRequest> {
        let now = SystemTime::now();
        let identity = self.credentials.get(now).await?;
        let read = ReadSigning::new(now, ttl, identity.expiration());
        self.presigner
            .get(&identity, key.as_str(), key.content_type().mime(), read)
    }

    async fn head(&self, key: &PhotoKey) -> PortResult<Option<ObjectInfo>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(head) => Ok(Some(ObjectInfo {
                size: head.content_length().unwrap_or(0).max(0) as u64,
                content_type: head.content_type().map(str::to_owned),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn read_prefix(
        &self,
        key: &PhotoKey,
        len: u64,
    ) -> PortResult<Option<(ObjectInfo, Vec<u8>)>> {
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .range(format!("bytes=0-{}", len.saturating_sub(1)))
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            // A range of an empty object cannot be satisfied: S3 answers 416.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                let info = ObjectInfo {
                    size: 0,
                    content_type: None,
                };
                return Ok(Some((info, Vec::new())));
            }
            Err(e) => return Err(storage_error(e)),
        };
        // `Content-Range: bytes 0-{end}/{size}` carries the whole object's size.
        let size = object
            .content_range()
            .and_then(|range| range.rsplit_once('/'))
            .and_then(|(_, size)| size.parse().ok())
            .or_else(|| object.content_length().map(|n| n.max(0) as u64))
            .ok_or_else(|| storage_error("a ranged GET without the object's size"))?;
        let info = ObjectInfo {
            size,
            content_type: object.content_type().map(str::to_owned),
        };
        let body = object.body.collect().await.map_err(storage_error)?;
        Ok(Some((info, body.into_bytes().to_vec())))
    }

    async fn copy(&self, from: &PhotoKey, to: &PhotoKey) -> PortResult<bool> {
        let source = format!(
            "{}/{}",
            self.bucket,
            utf8_percent_encode(from.as_str(), KEY_PATH)
        );
        match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to.as_str())
            .copy_source(source)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.code() == Some("NoSuchKey")) =>
            {
                Ok(false)
            }
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn delete(&self, key: &PhotoKey) -> PortResult<()> {
        // S3 answers 204 for a key that is already gone, which is what we want.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> PortResult<Vec<ListedObject>> {
        let mut objects = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(storage_error)?;
            objects.extend(page.contents().iter().filter_map(|o| {
                Some(ListedObject {
                    key: o.key()?.to_owned(),
                    last_modified: o
                        .last_modified()
                        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
                })
            }));
        }
        Ok(objects)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_credential_types::provider::{future, ProvideCredentials};
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

    use super::*;

    const BUCKET: &str = "portrait-test";
    const TTL: Duration = Duration::from_secs(300);

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn shared(credentials: impl ProvideCredentials + 'static) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-central-1"))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()
    }

    /// Temporary credentials: the session token has characters that need encoding.
    fn session_credentials() -> Credentials {
        Credentials::new(
            "ASIAEXAMPLE",
            "secret/key+with=specials",
            Some("IQoJb3JpZ2luX2VjE/token+with=/specials==".into()),
            None,
            "test",
        )
    }

    /// Path-style at a custom endpoint, as the embedded store; virtual-hosted on AWS's default.
    async fn storages() -> [(S3Storage, &'static str); 2] {
        let shared = shared(session_credentials());
        let path_style = S3Storage::connect(&shared, BUCKET, Some("http://127.0.0.1:9000"), true);
        let aws = S3Storage::connect(&shared, BUCKET, None, false);
        [
            (
                path_style.await.unwrap(),
                "http://127.0.0.1:9000/portrait-test/",
            ),
            (
                aws.await.unwrap(),
                "https://portrait-test.s3.eu-central-1.amazonaws.com/",
            ),
        ]
    }

    fn sdk_config(at: SystemTime) -> PresigningConfig {
        PresigningConfig::builder()
            .start_time(at)
            .expires_in(TTL)
            .build()
            .unwrap()
    }

    /// Our URLs against the SDK's presigner for the same key, time and credentials.
    async fn assert_presigned_as_sdk(storage: &S3Storage, key: &str) {
        let identity = storage.credentials.get(at()).await.unwrap();

        // With a length, and as the SRS's request (only the type is signed).
        for length in [Some(12345), None] {
            let ours = storage
                .presigner
                .put(&identity, key, "image/webp", length, TTL, at())
                .unwrap();
            let mut sdk = storage
                .client
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .content_type("image/webp");
            if let Some(length) = length {
                sdk = sdk.content_length(length as i64);
            }
            let sdk = sdk.presigned(sdk_config(at())).await.unwrap();
            assert_eq!(ours.url, sdk.uri());
            let sdk_headers: BTreeMap<_, _> = sdk
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            assert_eq!(ours.headers, sdk_headers);
            assert_eq!(ours.headers.len(), 1 + usize::from(length.is_some()));
            assert_eq!(ours.expires_at, OffsetDateTime::from(at() + TTL));
        }

        let read = ReadSigning {
            at: at(),
            expires_in: TTL,
            max_age: Duration::from_secs(120),
        };
        let ours = storage
            .presigner
            .get(&identity, key, "image/webp", read)
            .unwrap();
        let sdk = storage
            .client
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .response_cache_control("private, max-age=120")
            .response_content_type("image/webp")
            .response_content_disposition("inline")
            .presigned(sdk_config(at()))
            .await
            .unwrap();
        assert_eq!(ours.url, sdk.uri());
        assert!(ours.headers.is_empty());
        assert_eq!(sdk.headers().count(), 0);
    }

    #[tokio::test]
    async fn presigned_urls_are_the_sdks_in_both_addressing_styles() {
        for (storage, base) in storages().await {
            let key = "users/0b7e6a52-6f1c-4c59-9d1e-2f5a8c3d4e5f/profile_1700000000_ab12cd.webp";
            assert_presigned_as_sdk(&storage, key).await;
            let url = storage
                .presigner
                .put(
                    &storage.credentials.get(at()).await.unwrap(),
                    key,
                    "image/webp",
                    Some(1),
                    TTL,
                    at(),
                )
                .unwrap()
                .url;
            assert!(url.starts_with(&format!("{base}{key}?")), "{url}");
            assert!(url.contains("X-Amz-Expires=300&"), "{url}");
            assert!(
                url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&"),
                "{url}"
            );
            assert!(!url.contains("checksum"), "{url}");
        }
    }

    #[tokio::test]
    async fn keys_are_encoded_as_the_sdk_encodes_them() {
        let keys = [
            "a b/c+d=e&f?g#h%25i",
            "users/ünïcödé/日本語.png",
            "dots/./and/../tilde~_-.jpg",
            "sub-delims/!$'()*,;:@[]{}|^`\"<>\\.gif",
            "/leading/and//double/slash/",
        ];
        for (storage, _) in storages().await {
            for key in keys {
                assert_presigned_as_sdk(&storage, key).await;
            }
        }
    }

    #[tokio::test]
    async fn presigning_fails_beyond_a_week() {
        let [(storage, _), _] = storages().await;
        let identity = storage.credentials.get(at()).await.unwrap();
        let week = Duration::from_secs(7 * 24 * 60 * 60);
        let lasting = |expires_in| ReadSigning {
            at: at(),
            expires_in,
            max_age: TTL,
        };
        let get = |expires_in| {
            storage
                .presigner
                .get(&identity, "k", "image/png", lasting(expires_in))
        };
        assert!(get(week).is_ok());
        assert!(get(week + Duration::from_secs(1)).is_err());
        // A week-long lifetime leaves no room for a window: such URLs are signed as they are.
        let signed = ReadSigning::new(at(), week, None);
        assert_eq!((signed.at, signed.expires_in), (at(), week));
    }

    #[test]
    fn read_urls_are_the_same_within_a_window_and_keep_their_whole_lifetime() {
        let ttl = minutes(15);
        let window = at() - Duration::from_secs(1_700_000_000 % 450);
        let first = ReadSigning::new(window, ttl, None);
        for later in [1, 60, 449] {
            let now = window + Duration::from_secs(later);
            let read = ReadSigning::new(now, ttl, None);
            assert_eq!(read, first, "{later} s into the window");
            let left = (read.at + read.expires_in).duration_since(now).unwrap();
            assert!(
                left >= ttl && read.max_age == ttl,
                "{left:?} left, {read:?}"
            );
        }
        let next = ReadSigning::new(window + Duration::from_secs(450), ttl, None);
        assert_eq!(next.at, first.at + Duration::from_secs(450));
    }

    #[test]
    fn read_urls_never_outlive_the_credentials_they_are_signed_with() {
        let ttl = minutes(15);
        let now = at() + Duration::from_secs(123);
        // Credentials that outlast the window's URL change nothing.
        assert_eq!(
            ReadSigning::new(now, ttl, Some(now + minutes(60))),
            ReadSigning::new(now, ttl, None)
        );
        // Ending sooner: signed now, until they end, and kept by the browser no longer.
        for (end, lives) in [(minutes(20), minutes(15)), (minutes(10), minutes(10))] {
            let read = ReadSigning::new(now, ttl, Some(now + end));
            assert_eq!(
                (read.at, read.expires_in, read.max_age),
                (now, lives, lives)
            );
        }
    }

    /// Credentials that expire `lifetime` from the real clock.
    #[derive(Debug)]
    struct Expiring(Duration);

    impl ProvideCredentials for Expiring {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let expiry = SystemTime::now() + self.0;
            let credentials = Credentials::new(
                "ASIATEMP",
                "secret",
                Some("token".into()),
                Some(expiry),
                "temp",
            );
            future::ProvideCredentials::ready(Ok(credentials))
        }
    }

    #[tokio::test]
    async fn the_store_signs_one_url_per_window_within_the_credentials_life() {
        let owner = app::domain::UserId::parse("0b7e6a52-6f1c-4c59-9d1e-2f5a8c3d4e5f").unwrap();
        let key = PhotoKey::generate(
            &owner,
            app::domain::KeyKind::Picture,
            app::domain::ImageContentType::Webp,
            1_700_000_000_000,
            7,
        );
        for (lifetime, stable) in [(minutes(600), true), (minutes(8), false)] {
            let shared = shared(Expiring(lifetime));
            let storage = S3Storage::connect(&shared, BUCKET, None, false)
                .await
                .unwrap();
            let signed_before = SystemTime::now();
            let mut urls = Vec::new();
            for _ in 0..3 {
                urls.push(storage.presign_get(&key, minutes(15)).await.unwrap());
            }
            let (first, second, third) = (&urls[0], &urls[1].url, &urls[2].url);
            let end = OffsetDateTime::from(signed_before + lifetime);
            assert!(first.expires_at <= end, "{lifetime:?}: {first:?}");
            assert!(first
                .url
                .contains("response-cache-control=private%2C%20max-age%3D"));
            if stable {
                // Two in a row are the same (three, should the first two fall either side of
                // a window's end).
                assert!(&first.url == second || second == third, "{urls:?}");
                assert!(first.url.contains("max-age%3D900&"), "{}", first.url);
            } else {
                assert!(!first.url.contains("max-age%3D900&"), "{}", first.url);
            }
        }
    }

    /// Hands out credentials that expire `lifetime` after `at()` (`None`: never), and counts
    /// the calls.
    #[derive(Debug, Clone)]
    struct Rotating {
        calls: Arc<AtomicUsize>,
        lifetime: Option<Duration>,
    }

    impl ProvideCredentials for Rotating {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let expiry = self.lifetime.map(|lifetime| at() + lifetime);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{call}"),
                "secret",
                None,
                expiry,
                "rotating",
            )))
        }
    }

    async fn cache(lifetime: Option<Duration>) -> (CachedCredentials, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = Rotating {
            calls: calls.clone(),
            lifetime,
        };
        let cache = CachedCredentials {
            current: RwLock::new(Cached::new(
                Identity::from(provider.provide_credentials().await.unwrap()),
                at(),
            )),
            provider: SharedCredentialsProvider::new(provider),
            refreshing: tokio::sync::Mutex::new(()),
        };
        (cache, calls)
    }

    fn minutes(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    #[tokio::test]
    async fn credentials_without_expiry_are_asked_for_once() {
        let (cache, calls) = cache(None).await;
        for later in [0, 60, 60 * 24 * 365] {
            cache.get(at() + minutes(later)).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_are_refreshed_five_minutes_before_they_expire() {
        let (cache, calls) = cache(Some(minutes(60))).await;
        cache.get(at() + minutes(54)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let identity = cache.get(at() + minutes(56)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let credentials = identity.data::<Credentials>().unwrap();
        assert_eq!(credentials.access_key_id(), "AKID1");
    }

    #[tokio::test]
    async fn short_lived_credentials_are_not_asked_for_on_every_request() {
        // The provider keeps handing out credentials already inside the margin.
        let (cache, calls) = cache(Some(minutes(2))).await;
        cache.get(at() + Duration::from_secs(5)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.get(at() + Duration::from_secs(11)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        cache.get(at() + Duration::from_secs(12)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
