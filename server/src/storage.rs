//! Object storage through the S3 API: the same code for the embedded store, AWS S3 and any
//! S3-compatible service. The client is built once; presigning is local computation.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use app::domain::{ContentLength, ImageContentType, PhotoKey};
use app::service::ports::{
    BoxError, ObjectInfo, ObjectStore, Part, PortError, PortResult, PresignedRequest,
};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::presigning::{PresignedRequest as SdkPresigned, PresigningConfig};
use aws_sdk_s3::Client;
use time::OffsetDateTime;

fn storage_error(e: impl Into<BoxError>) -> PortError {
    PortError::new(Part::Storage, e)
}

pub struct S3Storage {
    client: Client,
    bucket: String,
}

impl S3Storage {
    /// Storage in `bucket`, configured from `shared` (region and credentials, and for AWS the
    /// rest of the default chain), at `endpoint_url` when given (any S3-compatible service).
    pub async fn connect(
        shared: &SdkConfig,
        bucket: impl Into<String>,
        endpoint_url: Option<&str>,
        force_path_style: bool,
    ) -> Result<Self, BoxError> {
        // Checksums only when required: by default the SDK would sign a CRC32 of the (empty)
        // body into presigned PUT URLs, and every real upload would then fail the check.
        let mut config = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url);
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            bucket: bucket.into(),
        })
    }

    fn presigning(ttl: Duration) -> PortResult<(PresigningConfig, OffsetDateTime)> {
        let now = SystemTime::now();
        let config = PresigningConfig::builder()
            .start_time(now)
            .expires_in(ttl)
            .build()
            .map_err(storage_error)?;
        Ok((config, OffsetDateTime::from(now + ttl)))
    }
}

fn to_port(presigned: SdkPresigned, expires_at: OffsetDateTime) -> PresignedRequest {
    PresignedRequest {
        url: presigned.uri().to_owned(),
        headers: presigned
            .headers()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect::<BTreeMap<_, _>>(),
        expires_at,
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
        length: ContentLength,
        ttl: Duration,
    ) -> PortResult<PresignedRequest> {
        let (config, expires_at) = Self::presigning(ttl)?;
        // Type and exact length are signed headers: the storage refuses any other body.
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type.mime())
            .content_length(length.get() as i64)
            .presigned(config)
            .await
            .map_err(storage_error)?;
        Ok(to_port(presigned, expires_at))
    }

    async fn presign_get(&self, key: &PhotoKey, ttl: Duration) -> PortResult<PresignedRequest> {
        let (config, expires_at) = Self::presigning(ttl)?;
        // Pin the response type to what the key was verified as, and never as an attachment or
        // HTML: a stored object can only ever be shown as the image it is.
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .response_content_type(key.content_type().mime())
            .response_content_disposition("inline")
            .presigned(config)
            .await
            .map_err(storage_error)?;
        Ok(to_port(presigned, expires_at))
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

    async fn read_prefix(&self, key: &PhotoKey, len: u64) -> PortResult<Vec<u8>> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .range(format!("bytes=0-{}", len.saturating_sub(1)))
            .send()
            .await
            .map_err(storage_error)?;
        let body = object.body.collect().await.map_err(storage_error)?;
        Ok(body.into_bytes().to_vec())
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

    async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(storage_error)?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }
}
