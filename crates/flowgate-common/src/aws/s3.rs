//! A minimal client for S3-compatible object storage: PUT, GET, HEAD and LIST (ListObjectsV2) of
//! one bucket, path-style (`{endpoint}/{bucket}/{key}`, what MinIO, Ceph and most S3-compatible
//! stores serve; AWS S3 serves it too), signed with [`super::sigv4`]. Written here rather than
//! with `aws-sdk-s3`, which brings the AWS smithy runtime and a second TLS stack for four calls.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::sigv4;

/// Where objects go and who signs.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://minio:9000`, ... (no trailing path).
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region signed for (`us-east-1` for most S3-compatible stores).
    pub region: String,
    /// The access key id.
    pub access_key_id: SecretString,
    /// The secret access key.
    pub secret_access_key: SecretString,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The store could not be reached, or the answer not read.
    #[error("object storage unreachable: {0}")]
    Transport(String),
    /// The store answered with an error status.
    #[error("object storage answered {status} to {operation}: {message}")]
    Status {
        /// `PUT`, `GET`, `HEAD`, `LIST`.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// The store's error code, if it gave one.
        message: String,
    },
    /// The configuration cannot make a request (a bad endpoint).
    #[error("object storage settings: {0}")]
    Config(String),
}

/// An S3 client over one bucket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct S3Client {
    config: S3Config,
    host: String,
    http: reqwest::Client,
}

/// The unix time in seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The text between the first `<tag>` and `</tag>` from `from`, and where it ends.
fn element<'a>(xml: &'a str, tag: &str, from: usize) -> Option<(&'a str, usize)> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.get(from..)?.find(&open)? + from + open.len();
    let end = xml.get(start..)?.find(&close)? + start;
    Some((xml.get(start..end)?, end + close.len()))
}

/// XML's five predefined entities, decoded.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

impl S3Client {
    /// The client of the audit archive, when one is configured (endpoint, bucket and keys).
    pub fn from_archive_settings(
        settings: &crate::settings::ArchiveSettings,
        timeout: Duration,
    ) -> Result<Option<Self>, S3Error> {
        let (Some(endpoint), Some(bucket), Some(access_key_id), Some(secret_access_key)) =
            (&settings.endpoint_url, &settings.bucket, &settings.access_key_id, &settings.secret_access_key)
        else {
            return Ok(None);
        };
        let config = S3Config {
            endpoint: endpoint.clone(),
            bucket: bucket.clone(),
            region: settings.region.clone(),
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
        };
        Self::new(config, timeout).map(Some)
    }

    /// A client for `config` (the HTTP client times out after `timeout`).
    pub fn new(config: S3Config, timeout: Duration) -> Result<Self, S3Error> {
        let url = reqwest::Url::parse(config.endpoint.trim_end_matches('/'))
            .map_err(|error| S3Error::Config(format!("endpoint: {error}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(S3Error::Config("endpoint: no host".to_owned())),
        };
        if config.bucket.is_empty() {
            return Err(S3Error::Config("the bucket is empty".to_owned()));
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .build()
            .map_err(|error| S3Error::Config(error.to_string()))?;
        Ok(Self { config, host, http })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// The path of `key` in the bucket, each segment percent-encoded once.
    fn path(&self, key: &str) -> String {
        let mut path = format!("/{}", sigv4::uri_encode(&self.config.bucket, false));
        if !key.is_empty() {
            path.push('/');
            path.push_str(&sigv4::uri_encode(key, true));
        }
        path
    }

    /// A signed request.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let amz_date = sigv4::amz_date(unix_now());
        let payload = sigv4::sha256_hex(&body);
        let mut headers: Vec<(&str, &str)> =
            vec![("host", &self.host), ("x-amz-content-sha256", &payload), ("x-amz-date", &amz_date)];
        headers.extend_from_slice(extra);
        let signer = sigv4::Signer {
            access_key_id: self.config.access_key_id.expose_secret(),
            secret_access_key: self.config.secret_access_key.expose_secret(),
            region: &self.config.region,
            service: "s3",
        };
        let signed = sigv4::Request { method: method.as_str(), path, query, headers: &headers, body: &body };
        let (authorization, _) = sigv4::s3_authorization(&signer, &signed, &amz_date);
        let endpoint = self.config.endpoint.trim_end_matches('/');
        let url = if query.is_empty() { format!("{endpoint}{path}") } else { format!("{endpoint}{path}?{query}") };
        let mut request = self
            .http
            .request(method, url)
            .header("x-amz-date", &amz_date)
            .header("x-amz-content-sha256", &payload)
            .header(reqwest::header::AUTHORIZATION, authorization);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.body(body)
    }

    async fn send(operation: &'static str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, S3Error> {
        let response = request.send().await.map_err(|error| S3Error::Transport(error.without_url().to_string()))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let message = element(&body, "Code", 0).map_or_else(|| "no error code".to_owned(), |(code, _)| unescape(code));
        Err(S3Error::Status { operation, status, message })
    }

    /// Stores `body` at `key`.
    pub async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), S3Error> {
        let path = self.path(key);
        let request = self.request(reqwest::Method::PUT, &path, "", body, &[("content-type", content_type)]);
        Self::send("PUT", request).await.map(drop)
    }

    /// The object at `key`, or `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        let path = self.path(key);
        match Self::send("GET", self.request(reqwest::Method::GET, &path, "", Vec::new(), &[])).await {
            Ok(response) => {
                let bytes =
                    response.bytes().await.map_err(|error| S3Error::Transport(error.without_url().to_string()))?;
                Ok(Some(bytes.to_vec()))
            }
            Err(S3Error::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The size of the object at `key`, or `None` when there is none.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let path = self.path(key);
        match Self::send("HEAD", self.request(reqwest::Method::HEAD, &path, "", Vec::new(), &[])).await {
            Ok(response) => Ok(Some(
                response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0),
            )),
            Err(S3Error::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every key starting with `prefix`, in the store's (lexicographic) order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, S3Error> {
        let path = self.path("");
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // Query parameters sorted by name, as the canonical request wants them.
            let mut query = String::new();
            if let Some(token) = &token {
                query.push_str(&format!("continuation-token={}&", sigv4::uri_encode(token, false)));
            }
            query.push_str(&format!("list-type=2&prefix={}", sigv4::uri_encode(prefix, false)));
            let response =
                Self::send("LIST", self.request(reqwest::Method::GET, &path, &query, Vec::new(), &[])).await?;
            let xml = response.text().await.map_err(|error| S3Error::Transport(error.without_url().to_string()))?;
            let mut at = 0;
            while let Some((contents, end)) = element(&xml, "Contents", at) {
                if let Some((key, _)) = element(contents, "Key", 0) {
                    keys.push(unescape(key));
                }
                at = end;
            }
            let truncated = element(&xml, "IsTruncated", 0).is_some_and(|(value, _)| value == "true");
            token = element(&xml, "NextContinuationToken", 0).map(|(value, _)| unescape(value));
            if !truncated || token.is_none() {
                return Ok(keys);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_answers_are_read_key_by_key() {
        let xml = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a/b&amp;c.gz</Key>\
                   <Size>3</Size></Contents><Contents><Key>a/d</Key></Contents></ListBucketResult>";
        let (first, end) = element(xml, "Contents", 0).unwrap();
        assert_eq!(unescape(element(first, "Key", 0).unwrap().0), "a/b&c.gz");
        assert_eq!(element(element(xml, "Contents", end).unwrap().0, "Key", 0).unwrap().0, "a/d");
        assert_eq!(element(xml, "IsTruncated", 0).unwrap().0, "false");
    }
}
