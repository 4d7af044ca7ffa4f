//! Datagram I/O on one UDP socket: batched receives that know which local address each datagram
//! arrived on ([`UdpIo`]), and the [`Outbox`] that sends a tracker's replies, in runs through
//! GSO where the system has it.

use socket2::SockRef;
use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use tendril_core::tracker::{Datagram, Transmit};

/// One datagram's room in a receive buffer: the largest UDP payload, so nothing is ever cut
/// short.
///
/// A GRO batch (several datagrams of one flow that the kernel coalesced) fits too: Linux
/// coalesces UDP only while the packet stays under 64 KiB, headers included
/// (`GRO_LEGACY_MAX_SIZE`, `skb_gro_receive`: only TCP may grow past it), and a GSO send is
/// limited by the UDP length field. So one slot per datagram, not one per possible GRO segment
/// (`quinn-udp`'s `gro_segments()` sizes buffers for MTU-sized slots, which is not our case).
pub const MAX_DATAGRAM: usize = 65_536;

/// The most datagrams (or GRO batches) one [`UdpIo::recv`] call takes from the socket:
/// `recvmmsg` on Linux, 1 where the platform has no batch receive.
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// The most datagrams one batched send (`sendmmsg`) carries.
const SEND_BATCH: usize = RECV_BATCH;

/// The most payload bytes one GSO send may carry (the IPv4 UDP limit, 65,535 minus the IP and
/// UDP headers; IPv6 allows a little more).
const MAX_GSO_BYTES: usize = 65_507;

/// One received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The sender.
    pub remote: SocketAddr,
    /// The local address it arrived on (the socket's own address unless the socket is
    /// wildcard-bound and the platform says which interface address received it).
    pub local: SocketAddr,
    /// Where the datagram is in the buffer passed to [`UdpIo::recv`].
    pub start: usize,
    /// Its length.
    pub len: usize,
}

impl Received {
    /// The datagram in `buf` (the buffer given to [`UdpIo::recv`]), for
    /// [`Tracker::handle_datagrams`](tendril_core::tracker::Tracker::handle_datagrams).
    pub fn datagram<'b>(&self, buf: &'b [u8]) -> Datagram<'b> {
        Datagram::new(
            self.local,
            self.remote,
            &buf[self.start..self.start + self.len],
        )
    }
}

/// Datagram I/O on one socket: receives batches with the destination address of each datagram,
/// sends replies from a chosen local address (`quinn-udp`: `recvmmsg`, `IP_PKTINFO`, GRO and
/// GSO where available).
#[derive(Debug)]
pub struct UdpIo {
    state: quinn_udp::UdpSocketState,
    local: SocketAddr,
}

/// Give back the system's default for datagrams larger than the path MTU: fragment them.
///
/// `quinn-udp` sets `IP_PMTUDISC_PROBE` (QUIC sizes its own packets and must never be
/// fragmented), under which a datagram larger than the interface's MTU fails with `EMSGSIZE`.
/// Datagram protocols such as DNS send replies larger than 1,500 bytes (EDNS(0) allows 4,096) and
/// rely on IP fragmentation, so the socket goes back to `IP_PMTUDISC_WANT`: path MTU discovery,
/// and fragmentation of what does not fit.
#[cfg(target_os = "linux")]
fn allow_fragmentation<S: std::os::fd::AsFd>(socket: &S, ipv4: bool) -> io::Result<()> {
    use rustix::net::sockopt;
    if ipv4 {
        sockopt::set_ip_mtu_discover(socket, sockopt::Ipv4PathMtuDiscovery::WANT)?;
    } else {
        sockopt::set_ipv6_mtu_discover(socket, sockopt::Ipv6PathMtuDiscovery::WANT)?;
        // A dual-stack socket also sends IPv4 (to IPv4-mapped peers); an IPv6-only one has no
        // IPv4 option to set.
        let _ = sockopt::set_ip_mtu_discover(socket, sockopt::Ipv4PathMtuDiscovery::WANT);
    }
    Ok(())
}

impl UdpIo {
    /// Prepare `socket` (sets the options `quinn-udp` needs, e.g. `IP_PKTINFO`, and turns GRO
    /// on where the system has it).
    pub fn new<S: std::os::fd::AsFd>(socket: &S) -> io::Result<Self> {
        let sock = SockRef::from(socket);
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))?;
        let state = quinn_udp::UdpSocketState::new(socket.into())?;
        #[cfg(target_os = "linux")]
        allow_fragmentation(socket, local.is_ipv4())?;
        Ok(UdpIo { state, local })
    }

    /// The socket's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The local address replies from `remote` will arrive on. On a wildcard-bound socket that
    /// is the address the system routes `remote` from, not `0.0.0.0`: trackers key peers by the
    /// address each datagram arrived on, so a peer tracked under the wildcard would never be
    /// matched by its replies.
    pub fn local_for(&self, remote: SocketAddr) -> SocketAddr {
        if !self.local.ip().is_unspecified() {
            return self.local;
        }
        let probe =
            std::net::UdpSocket::bind(SocketAddr::new(self.local.ip(), 0)).and_then(|probe| {
                probe.connect(remote)?;
                probe.local_addr()
            });
        match probe {
            Ok(routed) => SocketAddr::new(routed.ip(), self.local.port()),
            Err(_) => self.local,
        }
    }

    /// The buffer size that holds one receive call's datagrams: [`RECV_BATCH`] slots of
    /// [`MAX_DATAGRAM`] (2 MiB on Linux). Allocate it zeroed (`vec![0; n]`): the system then
    /// maps pages only as datagrams land in them, so small datagrams keep it mostly virtual.
    pub fn buffer_size(&self) -> usize {
        MAX_DATAGRAM * RECV_BATCH
    }

    /// Receive the datagrams waiting on the socket, up to one per [`MAX_DATAGRAM`] slot of `buf`
    /// (at most [`RECV_BATCH`]) in one system call, calling `each` for every datagram in
    /// arrival order (GRO batches are split into their datagrams). Returns how many datagrams
    /// `each` saw; `WouldBlock` on a non-blocking socket with nothing to read. `buf` shorter
    /// than one slot is refused, so a datagram is never cut short.
    ///
    /// On a *blocking* socket pass one slot (`&mut buf[..MAX_DATAGRAM]`): `recvmmsg` there
    /// waits until every slot is filled (checked in debug builds).
    pub fn recv<S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        buf: &mut [u8],
        mut each: impl FnMut(Received),
    ) -> io::Result<usize> {
        let slots = (buf.len() / MAX_DATAGRAM).min(RECV_BATCH);
        if slots == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a datagram receive buffer needs at least {MAX_DATAGRAM} bytes"),
            ));
        }
        debug_assert!(
            slots == 1 || SockRef::from(socket).nonblocking().unwrap_or(true),
            "a batch receive on a blocking socket waits for a full batch"
        );
        let mut chunks = buf.chunks_exact_mut(MAX_DATAGRAM);
        let mut bufs: [IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let mut meta = [quinn_udp::RecvMeta::default(); RECV_BATCH];
        let n = self
            .state
            .recv(socket.into(), &mut bufs[..slots], &mut meta[..slots])?;
        let mut delivered = 0;
        for (slot, meta) in meta[..n].iter().enumerate() {
            let local = match meta.dst_ip {
                Some(ip) if self.local.ip().is_unspecified() => {
                    SocketAddr::new(ip, self.local.port())
                }
                _ => self.local,
            };
            let base = slot * MAX_DATAGRAM;
            let received = |start, len| Received {
                remote: meta.addr,
                local,
                start: base + start,
                len,
            };
            if meta.len == 0 {
                // An empty datagram is a datagram too.
                each(received(0, 0));
                delivered += 1;
                continue;
            }
            let stride = meta.stride.clamp(1, meta.len);
            let mut start = 0;
            while start < meta.len {
                each(received(start, stride.min(meta.len - start)));
                delivered += 1;
                start += stride;
            }
        }
        Ok(delivered)
    }

    /// The most datagrams one [`send_segments`](Self::send_segments) call may carry: 1 where
    /// the system has no GSO (or it failed once on this socket's route).
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Send `data` to `remote`, from `local`'s IP when the socket is wildcard-bound.
    pub fn send<S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        data: &[u8],
    ) -> io::Result<()> {
        self.send_segments(socket, local, remote, data, data.len())
    }

    /// Send `data` as consecutive datagrams of `segment_size` bytes (the last may be shorter)
    /// to `remote` in one system call (GSO), from `local`'s IP when the socket is
    /// wildcard-bound. The receiver gets separate datagrams (or one GRO batch it splits).
    /// At most [`max_segments`](Self::max_segments) datagrams; with `segment_size >=
    /// data.len()` this is a plain send.
    pub fn send_segments<S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        data: &[u8],
        segment_size: usize,
    ) -> io::Result<()> {
        let src_ip = local
            .map(|l| l.ip())
            .filter(|ip| self.local.ip().is_unspecified() && !ip.is_unspecified());
        let transmit = quinn_udp::Transmit {
            destination: remote,
            ecn: None,
            contents: data,
            segment_size: (segment_size > 0 && segment_size < data.len()).then_some(segment_size),
            src_ip,
        };
        self.state.try_send(socket.into(), &transmit)
    }

    /// `true` when datagrams to different peers may leave in one system call
    /// ([`send_batch`](Self::send_batch)): on Linux, from a socket bound to one address. A
    /// wildcard-bound socket names each datagram's source address in an `IP_PKTINFO` control
    /// message, which `rustix`'s `sendmmsg` does not carry, so it sends them one by one.
    fn sends_batches(&self) -> bool {
        cfg!(target_os = "linux") && !self.local.ip().is_unspecified()
    }

    /// Send each of `datagrams` (at most [`SEND_BATCH`]; the rest wait) as its own datagram in
    /// one `sendmmsg`. Returns how many left, at least one; an error is the first datagram's.
    #[cfg(target_os = "linux")]
    fn send_batch<'d, S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'d [u8])>,
    ) -> io::Result<usize> {
        use rustix::net::addr::SocketAddrArg;
        use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
        use std::io::IoSlice;
        let mut datagrams = datagrams.into_iter();
        let mut count = 0;
        let parts: [(SocketAddrAny, [IoSlice<'d>; 1]); SEND_BATCH] =
            std::array::from_fn(|_| match datagrams.next() {
                Some((remote, data)) => {
                    count += 1;
                    (self.addressable(remote).as_any(), [IoSlice::new(data)])
                }
                None => (self.local.as_any(), [IoSlice::new(&[])]),
            });
        let mut controls: [SendAncillaryBuffer<'_, '_, '_>; SEND_BATCH] =
            std::array::from_fn(|_| SendAncillaryBuffer::default());
        let mut next = 0;
        let mut messages = controls.each_mut().map(|control| {
            let (remote, iov) = &parts[next];
            next += 1;
            MMsgHdr::new_with_addr(remote, iov, control)
        });
        Ok(rustix::net::sendmmsg(
            socket,
            &mut messages[..count],
            SendFlags::empty(),
        )?)
    }

    /// Without `sendmmsg`: the first datagram alone.
    #[cfg(not(target_os = "linux"))]
    fn send_batch<'d, S: std::os::fd::AsFd>(
        &self,
        socket: &S,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'d [u8])>,
    ) -> io::Result<usize> {
        match datagrams.into_iter().next() {
            Some((remote, data)) => self.send(socket, None, remote, data).map(|()| 1),
            None => Ok(0),
        }
    }

    /// `remote` in the socket's address family: an IPv4 peer of an IPv6 (dual-stack) socket
    /// as its IPv4-mapped address, as the kernel reported it.
    #[cfg(target_os = "linux")]
    fn addressable(&self, remote: SocketAddr) -> SocketAddr {
        match remote {
            SocketAddr::V4(v4) if self.local.is_ipv6() => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            other => other,
        }
    }
}

/// Datagrams waiting for the socket, in order: what a driver's UDP loop takes from the tracker
/// and sends. Consecutive datagrams from one local address to one peer, of one size (the last
/// of a run may be shorter), leave in one system call through GSO where the system has it (an
/// echo or request-reply server answering a peer's burst); the peer still receives separate
/// datagrams.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Transmit>,
    /// Where a GSO run is laid out contiguously.
    scratch: Vec<u8>,
    /// Datagrams at the front to send one by one (a GSO send of them failed).
    unbatched: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue a datagram.
    pub fn push(&mut self, transmit: Transmit) {
        self.queue.push_back(transmit);
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// `true` when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Send the waiting datagrams until none is left (`Ok`) or the socket would block
    /// (`WouldBlock`, or `TimedOut`/`Interrupted` from a blocking socket with a send timeout;
    /// the rest stays queued, in order). `attempt` runs each system call: Tokio's
    /// `UdpSocket::try_io` (so readiness is cleared on `WouldBlock`), `|send| send()` elsewhere.
    /// A datagram that fails otherwise is dropped and reported to `failed`: UDP is unreliable,
    /// and one peer's trouble is not the socket's. Datagrams without IP addresses are dropped.
    pub fn flush<S: std::os::fd::AsFd>(
        &mut self,
        io: &UdpIo,
        socket: &S,
        mut attempt: impl FnMut(&mut dyn FnMut() -> io::Result<()>) -> io::Result<()>,
        mut failed: impl FnMut(SocketAddr, io::Error),
    ) -> io::Result<()> {
        while let Some(first) = self.queue.front() {
            let (Some(local), Some(remote)) = (first.local.ip(), first.remote.ip()) else {
                self.pop(1);
                continue;
            };
            let (count, segment_size) = self.run(io.max_segments());
            let singles = if count == 1 { self.singles(io) } else { 0 };
            let result = if singles > 1 {
                let mut sent = 0;
                let batch = self.queue.iter().take(singles);
                let batch = batch.filter_map(|t| Some((t.remote.ip()?, &t.data[..])));
                attempt(&mut || {
                    sent = io.send_batch(socket, batch.clone())?;
                    Ok(())
                })
                .map(|()| sent)
            } else if count == 1 {
                attempt(&mut || io.send(socket, Some(local), remote, &first.data)).map(|()| 1)
            } else {
                self.scratch.clear();
                for t in self.queue.iter().take(count) {
                    self.scratch.extend_from_slice(&t.data);
                }
                let data = &self.scratch;
                attempt(&mut || io.send_segments(socket, Some(local), remote, data, segment_size))
                    .map(|()| count)
            };
            let sent = match result {
                // Full for now (or, on a blocking socket, its send timeout passed): later.
                Err(e) if crate::transient(&e) => return Err(e),
                Err(_) if count > 1 => {
                    // No GSO on this route after all (`quinn-udp` turns it off on EIO/EINVAL):
                    // the same datagrams, one by one.
                    self.unbatched = count;
                    continue;
                }
                // A batch reports the error of its first datagram.
                Err(e) => {
                    failed(remote, e);
                    1
                }
                Ok(sent) => sent,
            };
            self.pop(sent);
        }
        Ok(())
    }

    /// How many datagrams at the front, each leaving alone (not the start of a GSO run), go
    /// out in one batched send: at most [`SEND_BATCH`], all with IP addresses; 1 where the
    /// socket cannot batch.
    fn singles(&self, io: &UdpIo) -> usize {
        if !io.sends_batches() {
            return 1;
        }
        let gso = io.max_segments() > 1 && self.unbatched == 0;
        let mut queue = self.queue.iter().peekable();
        let mut n = 0;
        while let Some(t) = queue.next() {
            let addressed = t.local.ip().is_some() && t.remote.ip().is_some();
            let starts_run = queue
                .peek()
                .is_some_and(|next| next.remote == t.remote && next.local == t.local);
            if n == SEND_BATCH || !addressed || (n > 0 && gso && starts_run) {
                break;
            }
            n += 1;
        }
        n.max(1)
    }

    /// How many datagrams at the front leave together, and their segment size.
    fn run(&self, max_segments: usize) -> (usize, usize) {
        let Some(first) = self.queue.front() else {
            return (0, 0);
        };
        let size = first.data.len();
        if self.unbatched > 0 || max_segments < 2 || size == 0 {
            return (1, size);
        }
        let (mut count, mut total) = (1, size);
        for t in self.queue.iter().skip(1) {
            let len = t.data.len();
            if count == max_segments
                || len == 0
                || len > size
                || total + len > MAX_GSO_BYTES
                || t.remote != first.remote
                || t.local != first.local
            {
                break;
            }
            count += 1;
            total += len;
            if len < size {
                break;
            }
        }
        (count, size)
    }

    fn pop(&mut self, count: usize) {
        self.queue.drain(..count);
        self.unbatched = self.unbatched.saturating_sub(count);
    }
}

/// The one error policy for a datagram socket's receive: `true` for an error that is one
/// peer's trouble, not the socket's — an ICMP report of an earlier send (port or host
/// unreachable, a reset) or a passing shortage — after which the socket goes on serving every
/// other peer. Any other error means the socket itself failed: its peers close with the error
/// as their reason, and its task ends (rather than retrying a broken socket forever).
///
/// ```
/// use std::io::{Error, ErrorKind};
///
/// assert!(tendril_net::peer_trouble(&Error::from(ErrorKind::ConnectionRefused)));
/// assert!(!tendril_net::peer_trouble(&Error::from(ErrorKind::InvalidInput)));
/// ```
pub fn peer_trouble(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    crate::transient(e)
        || matches!(
            e.kind(),
            ConnectionRefused
                | ConnectionReset
                | HostUnreachable
                | NetworkUnreachable
                | OutOfMemory
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{udp_socket, WrapperChain};

    /// A bound server socket with its `UdpIo`, and a plain client socket.
    fn udp_pair(server_addr: &str) -> (std::net::UdpSocket, UdpIo, std::net::UdpSocket, u16) {
        let server = udp_socket(server_addr.parse().unwrap(), &WrapperChain::new()).unwrap();
        let io = UdpIo::new(&server).unwrap();
        let port = server.local_addr().unwrap().port();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        (server, io, client, port)
    }

    /// Receive until `n` datagrams arrived (waiting in a blocking `peek`, not a sleep); returns
    /// them with their bytes and the number of receive calls that returned something.
    fn recv_n(
        io: &UdpIo,
        socket: &std::net::UdpSocket,
        n: usize,
    ) -> (Vec<(Received, Vec<u8>)>, usize) {
        let mut buf = vec![0; io.buffer_size()];
        let (mut got, mut calls) = (Vec::new(), 0);
        while got.len() < n {
            let mut batch = Vec::new();
            match io.recv(socket, &mut buf, |r| batch.push(r)) {
                Ok(_) => {
                    calls += 1;
                    got.extend(
                        batch
                            .into_iter()
                            .map(|r| (r, buf[r.start..r.start + r.len].to_vec())),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    socket.set_nonblocking(false).unwrap();
                    socket.peek(&mut [0; 1]).unwrap();
                    socket.set_nonblocking(true).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        (got, calls)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn datagrams_larger_than_the_path_mtu_may_be_fragmented() {
        use rustix::net::sockopt;
        // quinn-udp forbids fragmentation; a 4 KiB DNS reply over a 1,500-byte link needs it.
        let (server, _io, _, _) = udp_pair("127.0.0.1:0");
        assert_eq!(
            sockopt::ip_mtu_discover(&server).unwrap(),
            sockopt::Ipv4PathMtuDiscovery::WANT
        );
        let (server, _io, _, _) = udp_pair("[::1]:0");
        assert_eq!(
            sockopt::ipv6_mtu_discover(&server).unwrap(),
            sockopt::Ipv6PathMtuDiscovery::WANT
        );
    }

    #[test]
    fn udp_io_reports_the_local_address_of_a_wildcard_socket() {
        let (server, io, client, port) = udp_pair("0.0.0.0:0");
        client.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        let (got, _) = recv_n(&io, &server, 1);
        assert_eq!(got.len(), 1);
        let (r, data) = &got[0];
        assert_eq!(r.local, SocketAddr::new("127.0.0.1".parse().unwrap(), port));
        assert_eq!(data, b"hi");
        io.send(&server, Some(r.local), r.remote, b"back").unwrap();
        let mut reply = [0; 16];
        let (n, from) = client.recv_from(&mut reply).unwrap();
        assert_eq!((&reply[..n], from), (&b"back"[..], r.local));
    }

    #[test]
    fn one_receive_call_takes_several_waiting_datagrams_each_whole_and_in_order() {
        let (server, io, client, port) = udp_pair("0.0.0.0:0");
        // Sizes up to the largest IPv4 UDP payload, which needs a full-size slot (all of them
        // well within the default receive buffer, so none is dropped).
        let mut sizes: Vec<usize> = (0..20).map(|i| [1, 64, 1500][i % 3]).collect();
        sizes[7] = 65_507;
        sizes[12] = 9000;
        for (i, &size) in sizes.iter().enumerate() {
            client
                .send_to(&vec![i as u8; size], ("127.0.0.1", port))
                .unwrap();
        }
        let (got, calls) = recv_n(&io, &server, sizes.len());
        assert!(
            calls < sizes.len(),
            "{calls} calls for {} datagrams",
            sizes.len()
        );
        let here = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        for (i, (r, data)) in got.iter().enumerate() {
            assert_eq!((r.local, r.remote), (here, client.local_addr().unwrap()));
            assert_eq!(data, &vec![i as u8; sizes[i]]);
        }
    }

    #[test]
    fn a_receive_buffer_smaller_than_one_datagram_slot_is_refused() {
        let (server, io, _client, _) = udp_pair("127.0.0.1:0");
        let mut small = vec![0; MAX_DATAGRAM - 1];
        let err = io.recv(&server, &mut small, |_| {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn an_empty_datagram_is_delivered() {
        let (server, io, client, port) = udp_pair("127.0.0.1:0");
        client.send_to(b"", ("127.0.0.1", port)).unwrap();
        client.send_to(b"x", ("127.0.0.1", port)).unwrap();
        let (got, _) = recv_n(&io, &server, 2);
        assert_eq!((got[0].1.len(), &got[1].1[..]), (0, &b"x"[..]));
    }

    #[test]
    fn segments_sent_in_one_call_arrive_as_separate_datagrams_and_gro_batches_are_split() {
        let (server, io, plain, port) = udp_pair("127.0.0.1:0");
        let sender = udp_socket("127.0.0.1:0".parse().unwrap(), &WrapperChain::new()).unwrap();
        let sender_io = UdpIo::new(&sender).unwrap();
        let segments = sender_io.max_segments().min(60);
        // Up to 60 × 1000 bytes: a GRO batch close to the 64 KiB bound, in one slot.
        let mut data: Vec<u8> = (0..segments - 1)
            .flat_map(|i| vec![i as u8; 1000])
            .collect();
        data.extend_from_slice(&[0xee; 10]);
        let to = |port| SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        // To a socket without GRO: the kernel cuts the segments apart.
        sender_io
            .send_segments(&sender, None, plain.local_addr().unwrap(), &data, 1000)
            .unwrap();
        let mut buf = vec![0; MAX_DATAGRAM];
        for i in 0..segments {
            let n = plain.recv(&mut buf).unwrap();
            let want = if i + 1 == segments { 10 } else { 1000 };
            assert_eq!(n, want, "segment {i}");
        }
        // To our socket (GRO on): one batch or several, split into the datagrams either way.
        sender_io
            .send_segments(&sender, None, to(port), &data, 1000)
            .unwrap();
        let (got, _) = recv_n(&io, &server, segments);
        let lens: Vec<usize> = got.iter().map(|(r, _)| r.len).collect();
        let mut want = vec![1000; segments - 1];
        want.push(10);
        assert_eq!(lens, want);
        assert_eq!(got[1].1, vec![1u8; 1000]);
    }

    fn transmit(local: SocketAddr, remote: SocketAddr, data: &[u8]) -> Transmit {
        Transmit {
            local: local.into(),
            remote: remote.into(),
            data: bytes::Bytes::copy_from_slice(data),
        }
    }

    #[test]
    fn an_outbox_sends_runs_to_each_peer_from_the_receiving_address_as_separate_datagrams() {
        let (server, io, a, port) = udp_pair("0.0.0.0:0");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let here = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut outbox = Outbox::new();
        // A run to a (the last shorter), one to b, then a run to a cut by a longer datagram.
        let plan: &[(SocketAddr, usize)] = &[
            (to_a, 64),
            (to_a, 64),
            (to_a, 64),
            (to_a, 10),
            (to_b, 64),
            (to_b, 64),
            (to_a, 5),
            (to_a, 5),
            (to_a, 300),
            (to_a, 0),
        ];
        for (i, &(to, len)) in plan.iter().enumerate() {
            outbox.push(transmit(here, to, &vec![i as u8; len]));
        }
        let mut failures = 0;
        outbox
            .flush(&io, &server, |send| send(), |_, _| failures += 1)
            .unwrap();
        assert!(outbox.is_empty());
        assert_eq!(failures, 0);
        let mut buf = vec![0; MAX_DATAGRAM];
        for (i, &(to, len)) in plan.iter().enumerate() {
            let socket = if to == to_a { &a } else { &b };
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!((n, from), (len, here), "datagram {i}");
            assert!(buf[..n].iter().all(|&x| x == i as u8));
        }
    }

    #[test]
    fn an_outbox_sends_datagrams_to_different_peers_in_one_call_from_a_socket_bound_to_one_address()
    {
        let (server, io, a, port) = udp_pair("127.0.0.1:0");
        let peers = [a, std::net::UdpSocket::bind("127.0.0.1:0").unwrap()];
        let here = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
        let mut outbox = Outbox::new();
        // A GSO run to the first peer, then 30 datagrams taking turns between the two.
        let mut plan: Vec<(usize, usize)> = vec![(0, 64), (0, 64)];
        plan.extend((0..30).map(|i| (i % 2, 10 + i)));
        for (i, &(peer, len)) in plan.iter().enumerate() {
            let to = peers[peer].local_addr().unwrap();
            outbox.push(transmit(here, to, &vec![i as u8; len]));
        }
        let mut calls = 0;
        outbox
            .flush(
                &io,
                &server,
                |send| {
                    calls += 1;
                    send()
                },
                |to, e| panic!("{to}: {e}"),
            )
            .unwrap();
        assert!(outbox.is_empty());
        let gso = usize::from(io.max_segments() > 1);
        if cfg!(target_os = "linux") {
            // One GSO send (or two plain ones) and one `sendmmsg` for the 30.
            assert_eq!(calls, 1 + (1 - gso) + 1);
        }
        let mut buf = vec![0; MAX_DATAGRAM];
        for (i, &(peer, len)) in plan.iter().enumerate() {
            let (n, from) = peers[peer].recv_from(&mut buf).unwrap();
            assert_eq!((n, from), (len, here), "datagram {i}");
            assert!(buf[..n].iter().all(|&x| x == i as u8));
        }
    }
}
