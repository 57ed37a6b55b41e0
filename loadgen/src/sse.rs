//! A lean Server-Sent Events client for holding tens of thousands of streams from one process:
//! a raw tokio `TcpStream` bound to a chosen loopback source address, one HTTP/1.1 `GET`, the
//! answer's head read by hand, then its body (chunked or not) cut into SSE messages line by
//! line. A stream costs its socket, a 1 KiB read buffer and the line being read: no HTTP
//! client, connection pool or per-stream task beyond the caller's own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The longest answer head (status line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The longest SSE line or chunk-size line accepted: a stream's messages are one-line JSON of a
/// few hundred bytes.
const MAX_LINE: usize = 256 * 1024;

/// One SSE message: its `id`, `event` name and `data` (lines joined by `\n`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Cuts a stream's text into messages (the SSE rules: `field: value` lines, a blank line ends a
/// message, lines starting with `:` are comments, `\n`, `\r\n` or `\r` end a line).
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous byte was `\r`: a `\n` right after it ends nothing more.
    after_cr: bool,
    pending: Message,
    /// The pending message has a field: a blank line dispatches it.
    has_field: bool,
    /// The pending message has a data line: the next one joins it after a `\n`.
    has_data: bool,
}

/// A line longer than any message of a stream: a broken or hostile server.
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an SSE line longer than {MAX_LINE} bytes")
    }
}

impl std::error::Error for LineTooLong {}

impl Parser {
    /// Feeds bytes of the stream; each complete message goes to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut impl FnMut(Message)) -> Result<(), LineTooLong> {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(out);
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= MAX_LINE {
                        return Err(LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut impl FnMut(Message)) {
        if self.line.is_empty() {
            if self.has_field {
                out(std::mem::take(&mut self.pending));
                self.has_field = false;
                self.has_data = false;
            }
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "id" => self.pending.id = Some(value.to_owned()),
            "event" => self.pending.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(value);
                self.has_data = true;
            }
            // `retry` and unknown fields do not make a message.
            _ => return,
        }
        self.has_field = true;
    }
}

/// Undoes HTTP/1.1 chunked transfer coding, whatever the chunks' boundaries in the reads.
#[derive(Debug, Default)]
pub struct Dechunk {
    state: ChunkState,
    size_line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many data bytes left in the chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The last chunk came: the body is over.
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

impl std::fmt::Display for BadChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a malformed chunk in the answer's body")
    }
}

impl std::error::Error for BadChunk {}

impl Dechunk {
    /// Feeds raw body bytes; the data they carry goes to `out`. `Ok(true)` once the body ended.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<bool, BadChunk> {
        while !bytes.is_empty() {
            match self.state {
                ChunkState::Done => return Ok(true),
                ChunkState::Size => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    if b != b'\n' {
                        if self.size_line.len() >= 1024 {
                            return Err(BadChunk);
                        }
                        self.size_line.push(b);
                        continue;
                    }
                    let line = std::str::from_utf8(&self.size_line).map_err(|_| BadChunk)?;
                    // Chunk extensions (`;name=value`) are allowed and ignored.
                    let hex = line
                        .trim_end_matches('\r')
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim();
                    let size = u64::from_str_radix(hex, 16).map_err(|_| BadChunk)?;
                    self.size_line.clear();
                    self.state = if size == 0 {
                        ChunkState::Done
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    out(&bytes[..n]);
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match b {
                        b'\r' => {}
                        b'\n' => self.state = ChunkState::Size,
                        _ => return Err(BadChunk),
                    }
                }
            }
        }
        Ok(self.state == ChunkState::Done)
    }
}

/// An answer's head: what a stream client needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    pub content_type: Option<String>,
    pub content_length: Option<usize>,
}

/// The head in `bytes`, once it is complete: the head and its length (where the body starts).
pub fn parse_head(bytes: &[u8]) -> Option<Result<(Head, usize), String>> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = match std::str::from_utf8(&bytes[..end]) {
        Ok(text) => text,
        Err(_) => return Some(Err("an answer head that is not text".into())),
    };
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let status = match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(status))) if v.starts_with("HTTP/1.") => status,
        _ => return Some(Err(format!("not an HTTP/1 status line: {status_line:?}"))),
    };
    let mut head = Head {
        status,
        chunked: false,
        content_type: None,
        content_length: None,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-type" => head.content_type = Some(value.to_owned()),
            "content-length" => head.content_length = value.parse().ok(),
            _ => {}
        }
    }
    Some(Ok((head, end)))
}

/// Why a stream could not be opened or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Connecting failed or timed out (e.g. "connect: Connection refused").
    Connect(String),
    /// The server answered with an error: status and the envelope's code, when there was one.
    Refused { status: u16, code: Option<String> },
    /// Anything else: a broken head, a broken body, a closed connection.
    Protocol(String),
}

impl Failure {
    /// "429 too_many_streams", "connect timeout", "closed".
    pub fn label(&self) -> String {
        match self {
            Failure::Connect(why) => format!("connect: {why}"),
            Failure::Refused { status, code } => {
                format!("{status} {}", code.as_deref().unwrap_or("-"))
            }
            Failure::Protocol(why) => why.clone(),
        }
    }
}

/// An open stream: its connection and the state of its body.
pub struct Stream {
    tcp: TcpStream,
    chunked: Option<Dechunk>,
    parser: Parser,
    /// Body bytes read with the head, not yet parsed.
    early: Vec<u8>,
}

/// Loopback source addresses for `count` connections, `per_address` to each:
/// 127.200.0.1, 127.200.0.2, … (the last octet skips 0 and 255), away from the 127.0.x.x
/// addresses devcluster's services listen on. One source address reaches one server port
/// through only ~28,000 ephemeral ports; spreading also keeps each address under a router's
/// per-address stream cap.
pub fn source_address(connection: usize, per_address: usize) -> IpAddr {
    let n = connection / per_address.max(1);
    let last = (n % 254) as u8 + 1;
    let middle = ((n / 254) % 256) as u8;
    let second = 200u8.wrapping_add(((n / 254 / 256) % 50) as u8);
    IpAddr::V4(Ipv4Addr::new(127, second, middle, last))
}

/// The request line and headers of a stream's `GET`.
fn request(host: &str, path: &str, last_event_id: Option<&str>) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\nUser-Agent: loadgen\r\n"
    );
    if let Some(id) = last_event_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Opens `path` on `server` from `source` and reads the answer's head within `timeout`: the
/// stream, or why not.
pub async fn open(
    server: SocketAddr,
    source: IpAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<Stream, Failure> {
    match tokio::time::timeout(timeout, open_now(server, source, host, path)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Connect("timeout".into())),
    }
}

async fn open_now(
    server: SocketAddr,
    source: IpAddr,
    host: &str,
    path: &str,
) -> Result<Stream, Failure> {
    let connect = |e: std::io::Error| Failure::Connect(e.to_string());
    let socket = TcpSocket::new_v4().map_err(connect)?;
    // Pick the source port at connect, not at bind: then a port is only unique per
    // (source, destination) pair, not per source address.
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` (a c_int, the option's type) for its given length.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket.bind(SocketAddr::new(source, 0)).map_err(connect)?;
    let mut tcp = socket.connect(server).await.map_err(connect)?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(request(host, path, None).as_bytes())
        .await
        .map_err(|e| Failure::Protocol(format!("sending the request: {e}")))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (head, body_at) = loop {
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| Failure::Protocol(format!("reading the head: {e}")))?;
        if n == 0 {
            return Err(Failure::Protocol("closed before an answer".into()));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Some(Ok(parsed)) => break parsed,
            Some(Err(why)) => return Err(Failure::Protocol(why)),
            None if buf.len() > MAX_HEAD => {
                return Err(Failure::Protocol("an answer head over 16 KiB".into()))
            }
            None => {}
        }
    };
    let early = buf.split_off(body_at);
    if head.status != 200 {
        let code = error_code(&mut tcp, &head, early).await;
        return Err(Failure::Refused {
            status: head.status,
            code,
        });
    }
    if !head
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with(wire::stream::CONTENT_TYPE))
    {
        return Err(Failure::Protocol(format!(
            "answered {:?}, not an event stream",
            head.content_type
        )));
    }
    Ok(Stream {
        tcp,
        chunked: head.chunked.then(Dechunk::default),
        parser: Parser::default(),
        early,
    })
}

/// The error envelope's code of a refusal's body, read for at most a second.
async fn error_code(tcp: &mut TcpStream, head: &Head, mut body: Vec<u8>) -> Option<String> {
    let want = head.content_length.unwrap_or(64 * 1024).min(64 * 1024);
    let read_rest = async {
        let mut chunk = [0u8; 1024];
        while body.len() < want {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
            if head.chunked && body.ends_with(b"0\r\n\r\n") {
                break;
            }
        }
        body
    };
    let body = tokio::time::timeout(Duration::from_secs(1), read_rest)
        .await
        .ok()?;
    let json = if head.chunked {
        let mut plain = Vec::new();
        let _ = Dechunk::default().feed(&body, &mut |b| plain.extend_from_slice(b));
        plain
    } else {
        body
    };
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    value["error"]["code"].as_str().map(str::to_owned)
}

impl Stream {
    /// Reads until at least one message came and hands each to `out`; an error when the stream
    /// ended or broke.
    pub async fn read(&mut self, out: &mut impl FnMut(Message)) -> Result<(), Failure> {
        let early = std::mem::take(&mut self.early);
        let mut got = self.consume(&early, out)?;
        let mut chunk = [0u8; 1024];
        while got == 0 {
            let n = self
                .tcp
                .read(&mut chunk)
                .await
                .map_err(|e| Failure::Protocol(format!("reading: {e}")))?;
            if n == 0 {
                return Err(Failure::Protocol("closed by the server".into()));
            }
            got += self.consume(&chunk[..n], out)?;
        }
        Ok(())
    }

    /// Parses body bytes; the messages they completed, counted.
    fn consume(&mut self, bytes: &[u8], out: &mut impl FnMut(Message)) -> Result<usize, Failure> {
        let parser = &mut self.parser;
        let mut count = 0;
        let mut counted = |m: Message| {
            count += 1;
            out(m);
        };
        let mut bad_line = false;
        let ended = match &mut self.chunked {
            Some(dechunk) => dechunk
                .feed(bytes, &mut |data| {
                    bad_line |= parser.feed(data, &mut counted).is_err();
                })
                .map_err(|e| Failure::Protocol(e.to_string()))?,
            None => {
                bad_line = parser.feed(bytes, &mut counted).is_err();
                false
            }
        };
        if bad_line {
            return Err(Failure::Protocol(LineTooLong.to_string()));
        }
        if ended {
            return Err(Failure::Protocol("the stream's body ended".into()));
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(parts: &[&[u8]]) -> Vec<Message> {
        let mut parser = Parser::default();
        let mut got = Vec::new();
        for part in parts {
            parser.feed(part, &mut |m| got.push(m)).unwrap();
        }
        got
    }

    #[test]
    fn messages_comments_and_retry() {
        let text = b"retry: 2000\n\n: keep-alive\n\nid: 1a.00000000000000ff\nevent: state\n\
                     data: {\"a\":1}\n\nid: 2b.0000000000000001\r\nevent: state\r\ndata:{}\r\n\r\n";
        let got = messages(&[text]);
        assert_eq!(
            got,
            vec![
                Message {
                    id: Some("1a.00000000000000ff".into()),
                    event: Some("state".into()),
                    data: "{\"a\":1}".into()
                },
                Message {
                    id: Some("2b.0000000000000001".into()),
                    event: Some("state".into()),
                    data: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn a_message_split_anywhere_is_the_same_message() {
        let text = wire::stream::message(
            wire::stream::StreamId::at(0x10, 7),
            "state",
            "{\"eventId\":\"1\"}",
        );
        let whole = messages(&[text.as_bytes()]);
        assert_eq!(whole.len(), 1);
        for at in 0..text.len() {
            let (a, b) = text.as_bytes().split_at(at);
            assert_eq!(messages(&[a, b]), whole, "split at {at}");
        }
        let id: wire::stream::StreamId = whole[0].id.as_deref().unwrap().parse().unwrap();
        assert_eq!(id.lsn, 0x10);
    }

    #[test]
    fn data_lines_join_and_lines_may_end_in_cr() {
        let got = messages(&[b"data: a\rdata: b\r\n\r"]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, "a\nb");
        assert_eq!(got[0].id, None);
        // A line with no end yet is no message.
        assert!(messages(&[b"id: 1\ndata: x\n"]).is_empty());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::default();
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(parser.feed(&long, &mut |_| {}), Err(LineTooLong));
    }

    #[test]
    fn chunks_are_undone_whatever_the_reads() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for at in 0..body.len() {
            let mut d = Dechunk::default();
            let mut out = Vec::new();
            let (a, b) = body.split_at(at);
            let first = d.feed(a, &mut |x| out.extend_from_slice(x)).unwrap();
            let done = d.feed(b, &mut |x| out.extend_from_slice(x)).unwrap();
            assert_eq!(out, b"hello, world", "split at {at}");
            assert!(done || first);
        }
        let mut d = Dechunk::default();
        assert_eq!(d.feed(b"zz\r\n", &mut |_| {}), Err(BadChunk));
        let mut d = Dechunk::default();
        assert_eq!(d.feed(b"2\r\nabX", &mut |_| {}), Err(BadChunk));
    }

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: te"), None);
        let (head, at) = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
              Transfer-Encoding: chunked\r\n\r\nrest",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            head,
            Head {
                status: 200,
                chunked: true,
                content_type: Some("text/event-stream".into()),
                content_length: None
            }
        );
        // The body starts right after the blank line.
        assert_eq!(at, 17 + 33 + 28 + 2);
        let (head, _) = parse_head(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((head.status, head.content_length), (429, Some(12)));
        assert!(parse_head(b"SMTP ready\r\n\r\n").unwrap().is_err());
    }

    #[test]
    fn source_addresses_spread_over_loopback() {
        assert_eq!(
            source_address(0, 30),
            IpAddr::V4(Ipv4Addr::new(127, 200, 0, 1))
        );
        assert_eq!(source_address(29, 30), source_address(0, 30));
        assert_eq!(
            source_address(30, 30),
            IpAddr::V4(Ipv4Addr::new(127, 200, 0, 2))
        );
        assert_eq!(
            source_address(254 * 30, 30),
            IpAddr::V4(Ipv4Addr::new(127, 200, 1, 1))
        );
        let distinct: std::collections::HashSet<IpAddr> =
            (0..100_000).map(|c| source_address(c, 30)).collect();
        assert_eq!(distinct.len(), 100_000usize.div_ceil(30));
        assert!(distinct.iter().all(|ip| ip.is_loopback()));
    }

    /// A fake server: answers one request with `answer`, then keeps the connection open.
    async fn fake(answer: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<(IpAddr, String)>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut tcp, peer) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                let n = tcp.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            tcp.write_all(&answer).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            (peer.ip(), String::from_utf8(request).unwrap())
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_chunked_stream_from_a_chosen_source_address() {
        let first = wire::stream::message(wire::stream::StreamId::at(5, 1), "state", "{}");
        let body = format!("retry: 2000\n\n{first}: keep-alive\n\n");
        // The body in two chunks that cut the message in the middle.
        let (a, b) = body.split_at(20);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             transfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n",
            a.len(),
            b.len()
        );
        let (addr, server) = fake(answer.into_bytes()).await;
        let source = source_address(40, 30);
        let host = addr.to_string();
        let mut stream = open(
            addr,
            source,
            &host,
            "/api/v1/events/9/stream",
            Duration::from_secs(5),
        )
        .await
        .map_err(|f| f.label())
        .unwrap();
        let mut got = Vec::new();
        stream.read(&mut |m| got.push(m)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id.as_deref(), Some("5.0000000000000001"));
        // The server saw the chosen source address and a plain stream GET.
        let (peer, request) = server.await.unwrap();
        assert_eq!(peer, source);
        assert!(request.starts_with("GET /api/v1/events/9/stream HTTP/1.1\r\n"));
        assert!(request.contains("Accept: text/event-stream"));
        // The server closed: the stream says so.
        assert!(stream.read(&mut |_| {}).await.is_err());
    }

    #[tokio::test]
    async fn a_refusal_carries_its_status_and_code() {
        let body = r#"{"error":{"code":"too_many_streams","message":"m","status":429}}"#;
        let answer = format!(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (addr, _server) = fake(answer.into_bytes()).await;
        let host = addr.to_string();
        let refused = open(
            addr,
            source_address(0, 1),
            &host,
            "/x",
            Duration::from_secs(5),
        )
        .await;
        let failure = refused.err().unwrap();
        assert_eq!(failure.label(), "429 too_many_streams");
        // Nobody listening: a connect failure, not a hang.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nowhere = closed.local_addr().unwrap();
        drop(closed);
        let failed = open(
            nowhere,
            source_address(0, 1),
            "x",
            "/x",
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(failed, Err(Failure::Connect(_))));
    }
}
