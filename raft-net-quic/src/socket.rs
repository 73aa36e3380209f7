//! The endpoint's UDP socket, wrapped so that closing the transport can wait until the port is
//! free again.
//!
//! quinn's endpoint driver and every connection hold the socket, and each lets go of it on its
//! own schedule after the endpoint closes: the driver once it notices that its last handle is
//! gone, a connection once its last handle and its driver have dropped. A node that stops and
//! starts again in the same process (a test, an embedder that restarts a node) would otherwise
//! race them for the port and lose with `AddrInUse`. [`watched`] hands quinn a socket whose last
//! drop, after the file descriptor itself is closed, resolves a [`Released`].

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::oneshot;

/// Resolves once every holder of the socket has dropped it and its descriptor is closed.
pub(crate) type Released = oneshot::Receiver<()>;

/// Wraps `socket` (already made the runtime's) so that its release can be awaited.
pub(crate) fn watched(socket: Arc<dyn AsyncUdpSocket>) -> (Arc<dyn AsyncUdpSocket>, Released) {
    let (signal, released) = oneshot::channel();
    let watched = WatchedSocket {
        inner: socket,
        _signal: signal,
    };
    (Arc::new(watched), released)
}

/// A socket that drops its inner socket, and then its signal, when its last holder goes.
struct WatchedSocket {
    // Fields drop in declaration order: the socket first, so the signal means it is closed.
    inner: Arc<dyn AsyncUdpSocket>,
    _signal: oneshot::Sender<()>,
}

impl fmt::Debug for WatchedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AsyncUdpSocket for WatchedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        // The inner poller holds the inner socket: the poller keeps this wrapper too, and drops
        // it after its own poller, so the signal still comes after the last inner handle.
        let poller = self.inner.clone().create_io_poller();
        Box::pin(WatchedPoller {
            poller,
            _socket: self,
        })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// The inner socket's poller, holding the wrapper until after the poller is gone.
struct WatchedPoller {
    poller: Pin<Box<dyn UdpPoller>>,
    _socket: Arc<WatchedSocket>,
}

impl fmt::Debug for WatchedPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedPoller").finish_non_exhaustive()
    }
}

impl UdpPoller for WatchedPoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        // `WatchedPoller` is `Unpin` (a pinned box and an `Arc`), so it can be reached mutably.
        self.get_mut().poller.as_mut().poll_writable(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_port_is_free_once_the_last_holder_drops_the_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = socket.local_addr().expect("addr");
        let runtime = quinn::default_runtime().expect("runtime");
        let (socket, mut released) = watched(runtime.wrap_udp_socket(socket).expect("wrap"));
        let poller = socket.clone().create_io_poller();
        drop(socket);
        assert!(released
            .try_recv()
            .is_err_and(|e| e == oneshot::error::TryRecvError::Empty));
        assert!(
            std::net::UdpSocket::bind(addr).is_err(),
            "the poller still holds it"
        );
        drop(poller);
        assert!(released.await.is_err(), "the signal is dropped, never sent");
        std::net::UdpSocket::bind(addr).expect("the port is free once released resolves");
    }
}
