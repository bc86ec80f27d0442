//! The body of `GET /v1/samples/stream`: newline-delimited JSON, the latest sample at once,
//! then each new one as the sampler publishes it.
//!
//! The body pulls from the sampler's watch channel only when hyper asks for the next frame,
//! i.e. when the client has read the previous one: a slow reader skips to the newest sample
//! and never holds up the sampler or other streams. When the sampler stops (shutdown), the
//! channel closes and the body ends cleanly.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::sync::watch;
use tokio_util::sync::ReusableBoxFuture;

use crate::sampler::Latest;

type Next = (Option<Bytes>, watch::Receiver<Latest>);

/// An endless NDJSON body of samples.
pub struct SampleStream {
    next: ReusableBoxFuture<'static, Next>,
    done: bool,
}

impl SampleStream {
    pub fn new(rx: watch::Receiver<Latest>) -> Self {
        SampleStream {
            next: ReusableBoxFuture::new(next_line(rx, false)),
            done: false,
        }
    }
}

async fn next_line(mut rx: watch::Receiver<Latest>, wait: bool) -> Next {
    if wait && rx.changed().await.is_err() {
        return (None, rx);
    }
    let line = rx.borrow_and_update().line.clone();
    (Some(line), rx)
}

impl Body for SampleStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let (line, rx) = ready!(Pin::new(&mut self.next).poll(cx));
        match line {
            Some(line) => {
                self.next.set(next_line(rx, true));
                Poll::Ready(Some(Ok(Frame::data(line))))
            }
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use lab_api::metrics::Sample;

    fn latest(seq: u64) -> Latest {
        Latest {
            sample: std::sync::Arc::new(Sample {
                board: "b".into(),
                seq,
                timestamp_ms: 0,
                host: Default::default(),
                roles: Vec::new(),
            }),
            line: Bytes::from(format!("{seq}\n")),
        }
    }

    async fn next(body: &mut SampleStream) -> Option<Bytes> {
        body.frame().await.and_then(|f| f.ok()?.into_data().ok())
    }

    #[tokio::test]
    async fn slow_reader_skips_to_latest_and_stream_ends_with_sampler() {
        let (tx, rx) = watch::channel(latest(0));
        let mut body = SampleStream::new(rx);
        assert_eq!(next(&mut body).await.as_deref(), Some(b"0\n".as_slice()));
        // Three samples while the reader was away: it gets the newest only.
        for seq in 1..=3 {
            tx.send_replace(latest(seq));
        }
        assert_eq!(next(&mut body).await.as_deref(), Some(b"3\n".as_slice()));
        drop(tx);
        assert_eq!(next(&mut body).await, None);
        assert!(body.is_end_stream());
    }
}
