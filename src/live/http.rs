//! `--serve ADDR`: the painted video as MJPEG over HTTP, for a browser or
//! an OBS browser source.
//!
//! MJPEG (`multipart/x-mixed-replace`, one JPEG per part) is what every
//! browser shows in a plain `<img>` tag, with no JavaScript, codec or
//! player: the page at `/` is one image, `/stream.mjpg` the stream and
//! `/frame.jpg` the newest single frame. It is built on `std::net` with a
//! thread per client; each client waits for the next frame and so always
//! gets the newest one, and a client that cannot keep up simply skips
//! frames instead of slowing the others or the pipeline. Frames are
//! JPEG-encoded once, on the output's thread, and only while someone
//! watches.
//!
//! The server binds to the address given (localhost unless told
//! otherwise: the stream shows a camera). Stalled clients are dropped after
//! a write timeout, the number of clients is capped, and stopping the
//! server ends every client's stream.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::pipeline::{LiveSink, OutputFrame};
use crate::video::frame::RgbFrame;

/// The multipart boundary.
const BOUNDARY: &str = "stylestreamframe";
/// Clients served at once; more are refused with 503.
pub const MAX_CLIENTS: usize = 32;
/// A client that accepts no data for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// JPEG quality of the stream.
const QUALITY: u8 = 80;

/// Parses `--serve`: `HOST:PORT`, `:PORT` or `PORT` (both meaning
/// 127.0.0.1:PORT).
pub fn parse_serve_addr(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    let full = if s.parse::<u16>().is_ok() {
        format!("127.0.0.1:{s}")
    } else if let Some(port) = s.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        s.to_string()
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            anyhow!("--serve {s}: expected HOST:PORT, e.g. 127.0.0.1:8080 (or just a port)")
        })
}

/// The newest frame as JPEG, shared with the client threads.
struct Latest {
    seq: u64,
    jpeg: Option<Arc<Vec<u8>>>,
    closed: bool,
}

struct Shared {
    latest: Mutex<Latest>,
    changed: Condvar,
    clients: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running MJPEG server.
pub struct MjpegServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    frames_sent: u64,
}

impl MjpegServer {
    /// Binds `addr` and starts accepting clients. A port in use or an
    /// address that is not this machine's is a clear error.
    pub fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow!(
                "--serve {addr}: the port is in use by another program; choose another port"
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                anyhow!("--serve {addr}: that address is not one of this machine's")
            }
            std::io::ErrorKind::PermissionDenied => anyhow!(
                "--serve {addr}: permission denied (ports below 1024 need privileges); use a port above 1024"
            ),
            _ => anyhow!("--serve {addr}: cannot listen: {e}"),
        })?;
        let addr = listener.local_addr().unwrap_or(addr);
        // Polled, so that stopping needs no connection to ourselves.
        listener
            .set_nonblocking(true)
            .map_err(|e| anyhow!("--serve {addr}: {e}"))?;
        let shared = Arc::new(Shared {
            latest: Mutex::new(Latest {
                seq: 0,
                jpeg: None,
                closed: false,
            }),
            changed: Condvar::new(),
            clients: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("mjpeg-accept".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(|e| anyhow!("cannot start the HTTP server thread: {e}"))?;
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
            frames_sent: 0,
        })
    }

    /// The address actually bound (port 0 becomes a free port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.shared.clients.load(Ordering::Relaxed)
    }

    /// Publishes a frame to every client (encoded only if anyone watches).
    pub fn publish(&mut self, frame: &RgbFrame) -> Result<()> {
        if self.clients() == 0 {
            return Ok(());
        }
        let jpeg = encode_jpeg(frame, QUALITY)?;
        let mut l = self.shared.lock();
        l.seq += 1;
        l.jpeg = Some(Arc::new(jpeg));
        drop(l);
        self.shared.changed.notify_all();
        self.frames_sent += 1;
        Ok(())
    }

    /// Ends every stream and stops accepting.
    pub fn close(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Encodes packed RGB as a baseline JPEG (libjpeg-turbo settings, the
/// fastest: about 2 ms for 640x480 where the image crate takes 12 ms of
/// the CPU the effect needs).
pub fn encode_jpeg(frame: &RgbFrame, quality: u8) -> Result<Vec<u8>> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if w == 0 || h == 0 || frame.data.len() != 3 * w * h {
        return Err(anyhow!(
            "cannot encode a {w}x{h} frame of {} bytes",
            frame.data.len()
        ));
    }
    // libjpeg reports errors by unwinding; none is expected for a
    // well-formed buffer, but an output thread must not die of one.
    std::panic::catch_unwind(|| -> std::io::Result<Vec<u8>> {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        c.set_fastest_defaults();
        c.set_size(w, h);
        c.set_quality(f32::from(quality));
        let mut started = c.start_compress(Vec::with_capacity(frame.data.len() / 8))?;
        started.write_scanlines(&frame.data)?;
        started.finish()
    })
    .map_err(|_| anyhow!("the JPEG encoder failed"))?
    .map_err(|e| anyhow!("cannot encode a JPEG frame: {e}"))
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = shared.clone();
                // A client thread that cannot start is one client refused.
                let _ = std::thread::Builder::new()
                    .name("mjpeg-client".into())
                    .spawn(move || {
                        let _ = serve_client(stream, &s);
                    });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The page at `/`: the stream, scaled to the window.
const PAGE: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>stylestream live</title>\
<style>html,body{margin:0;height:100%;background:#000}img{width:100%;height:100%;object-fit:contain}</style>\
</head><body><img src=\"/stream.mjpg\" alt=\"stylestream live\"></body></html>\n";

/// Counts a client for as long as it lives.
struct ClientGuard<'a>(&'a Shared);

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

fn serve_client(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers; nothing in them changes the answer.
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let mut out = stream;
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut out,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        );
    }
    match path {
        "/" | "/index.html" => respond(
            &mut out,
            "200 OK",
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
        ),
        "/stream.mjpg" | "/stream" => {
            if shared.clients.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
                shared.clients.fetch_sub(1, Ordering::Relaxed);
                return respond(
                    &mut out,
                    "503 Service Unavailable",
                    "text/plain",
                    b"too many viewers\n",
                );
            }
            let _guard = ClientGuard(shared);
            stream_frames(&mut out, shared, method == "HEAD")
        }
        "/frame.jpg" => {
            shared.clients.fetch_add(1, Ordering::Relaxed);
            let _guard = ClientGuard(shared);
            match next_frame(shared, 0, Duration::from_secs(10)) {
                Some((_, jpeg)) => respond(&mut out, "200 OK", "image/jpeg", &jpeg),
                None => respond(
                    &mut out,
                    "503 Service Unavailable",
                    "text/plain",
                    b"no frame yet\n",
                ),
            }
        }
        _ => respond(
            &mut out,
            "404 Not Found",
            "text/plain",
            b"not found: try /\n",
        ),
    }
}

fn respond(out: &mut TcpStream, status: &str, kind: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)?;
    out.flush()
}

/// Waits for a frame newer than `after`; `None` when the server closes or
/// `timeout` passes.
fn next_frame(shared: &Shared, after: u64, timeout: Duration) -> Option<(u64, Arc<Vec<u8>>)> {
    let deadline = std::time::Instant::now() + timeout;
    let mut l = shared.lock();
    loop {
        if l.closed {
            return None;
        }
        if l.seq > after {
            if let Some(j) = &l.jpeg {
                return Some((l.seq, j.clone()));
            }
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return None;
        }
        l = shared
            .changed
            .wait_timeout(l, deadline - now)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

fn stream_frames(out: &mut TcpStream, shared: &Shared, head_only: bool) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
         Cache-Control: no-cache, no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"
    )?;
    if head_only {
        return out.flush();
    }
    let mut seen = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        // A long wait only means the pipeline is slow (a dream frame).
        let Some((seq, jpeg)) = next_frame(shared, seen, Duration::from_secs(60)) else {
            if shared.lock().closed {
                break;
            }
            continue;
        };
        seen = seq;
        write!(
            out,
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )?;
        out.write_all(&jpeg)?;
        out.write_all(b"\r\n")?;
        out.flush()?;
    }
    // The closing boundary tells clients the stream ended rather than broke.
    write!(out, "--{BOUNDARY}--\r\n")?;
    out.flush()
}

/// The server as a live output.
pub struct HttpSink {
    server: MjpegServer,
}

impl HttpSink {
    /// Starts serving on `addr` (see [`MjpegServer::bind`]).
    pub fn bind(addr: SocketAddr) -> Result<Self> {
        Ok(Self {
            server: MjpegServer::bind(addr)?,
        })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

impl LiveSink for HttpSink {
    fn name(&self) -> String {
        self.server.url()
    }

    fn show(&mut self, frame: &OutputFrame) -> Result<()> {
        self.server.publish(&frame.rgb)
    }

    fn finish(mut self: Box<Self>) -> Result<Option<String>> {
        self.server.close();
        Ok(Some(format!(
            "{}: {} frames streamed",
            self.server.url(),
            self.server.frames_sent
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_addresses() {
        assert_eq!(
            parse_serve_addr("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_serve_addr(":9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(
            parse_serve_addr("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert!(parse_serve_addr("nonsense").is_err());
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = MjpegServer::bind(addr).err().unwrap().to_string();
        assert!(e.contains("in use"), "{e}");
    }
}
