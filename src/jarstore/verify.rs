//! Checks bytes read back from any store against the replicated SHA-256 and size, as they
//! stream: a mismatch ends the stream with an error, never a silently wrong jar.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};

use super::ByteStream;

pub struct VerifyingStream {
    inner: ByteStream,
    hasher: Sha256,
    seen: u64,
    expected_size: u64,
    expected_sha256: String,
    key: String,
    finished: bool,
}

impl VerifyingStream {
    pub fn new(inner: ByteStream, key: &str, expected_size: u64, expected_sha256: &str) -> VerifyingStream {
        VerifyingStream {
            inner,
            hasher: Sha256::new(),
            seen: 0,
            expected_size,
            expected_sha256: expected_sha256.to_string(),
            key: key.to_string(),
            finished: false,
        }
    }

    fn mismatch(&self, what: String) -> std::io::Error {
        tracing::error!(jar = %self.key, "{what}");
        std::io::Error::new(std::io::ErrorKind::InvalidData, what)
    }
}

impl Stream for VerifyingStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected_size {
                    self.finished = true;
                    let error = self.mismatch(format!(
                        "jar {} is larger in the store than recorded ({} bytes)",
                        self.key, self.expected_size
                    ));
                    return Poll::Ready(Some(Err(error)));
                }
                self.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                let digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
                if self.seen != self.expected_size {
                    let error = self.mismatch(format!(
                        "jar {} is truncated in the store: {} of {} bytes",
                        self.key, self.seen, self.expected_size
                    ));
                    return Poll::Ready(Some(Err(error)));
                }
                if digest != self.expected_sha256 {
                    let error = self.mismatch(format!(
                        "jar {} is corrupt in the store: SHA-256 {digest}, recorded {}",
                        self.key, self.expected_sha256
                    ));
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn stream_of(data: &'static [u8]) -> ByteStream {
        Box::pin(futures::stream::iter(data.chunks(3).map(|c| Ok(Bytes::from_static(c)))))
    }

    async fn collect(stream: VerifyingStream) -> Result<Vec<u8>, std::io::Error> {
        let mut out = Vec::new();
        let mut stream = Box::pin(stream);
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn passes_matching_bytes_and_fails_on_corruption() {
        let sha = hex::encode(Sha256::digest(b"hello world"));
        assert_eq!(
            collect(VerifyingStream::new(stream_of(b"hello world"), "a", 11, &sha)).await.expect("ok"),
            b"hello world"
        );
        let corrupt = collect(VerifyingStream::new(stream_of(b"hello worle"), "a", 11, &sha)).await;
        assert!(corrupt.expect_err("corrupt").to_string().contains("corrupt"));
        let short = collect(VerifyingStream::new(stream_of(b"hello"), "a", 11, &sha)).await;
        assert!(short.expect_err("truncated").to_string().contains("truncated"));
        let long = collect(VerifyingStream::new(stream_of(b"hello world!!"), "a", 11, &sha)).await;
        assert!(long.expect_err("too long").to_string().contains("larger"));
    }
}
