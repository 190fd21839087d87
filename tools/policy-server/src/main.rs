//! `policy-server`: answers action queries from an MQE (or GCBC) checkpoint, so that code in any
//! language (a robot loop, an evaluation script) can use a trained policy.
//!
//! ```text
//! policy-server CHECKPOINT_DIR                      # JSON lines on stdin -> stdout
//! policy-server CHECKPOINT_DIR --listen 127.0.0.1:7070   # the same over TCP, a thread per connection
//! policy-server CHECKPOINT_DIR --bench 1000         # per-query latency over loopback TCP
//! ```
//!
//! Protocol (see `protocol.rs`): `{"obs": [...], "goal": [...]}` -> `{"action": [...],
//! "distance": d}`, or `{"error": "..."}` for a bad line. Pixel checkpoints take each image as a
//! flat array of H*W*C integers 0..=255 in HWC row-major order. With `--listen`, the first line
//! on stdout is `listening on ADDR` (the bound address, useful with port 0).
//!
//! Not for: training (`bridge-train`) or driving the arm (`bridge-run`).

mod protocol;

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use mqe::{Agent, DeviceChoice, ObsKind, select_device};
use protocol::{MAX_LINE_BYTES, Policy};

#[derive(Parser)]
#[command(
    name = "policy-server",
    version,
    about = "Serve an MQE checkpoint as JSON lines (stdin/stdout or TCP)"
)]
struct Cli {
    /// Checkpoint directory (model.safetensors + config.toml), e.g. the --out of bridge-train fit.
    checkpoint: PathBuf,
    /// Serve over TCP on this address instead of stdin/stdout (port 0 picks a free port).
    #[arg(long, conflicts_with = "bench")]
    listen: Option<SocketAddr>,
    /// Measure per-query latency over N queries on a loopback TCP connection, print p50/p99, exit.
    #[arg(long, value_name = "N")]
    bench: Option<usize>,
    /// Where the policy runs: auto (a usable GPU, else the CPU), cpu or cuda.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

fn main() -> Result<()> {
    // SAFETY: first statement of main: no other thread has been started yet.
    unsafe { mqe::threads::prefer_inline_elementwise_ops() };
    let cli = Cli::parse();
    let selected = select_device(cli.device)?;
    eprintln!("policy-server: {}", selected.summary);
    let device = selected.device;
    let agent = Agent::load(&cli.checkpoint, &device)
        .with_context(|| format!("loading checkpoint {}", cli.checkpoint.display()))?;
    let policy = Arc::new(Policy::new(agent));
    eprintln!(
        "policy-server: {} checkpoint at step {}, obs and goal: {}",
        match policy.agent().model_config().algo {
            mqe::Algo::Mqe => "mqe",
            mqe::Algo::Gcbc => "gcbc",
        },
        policy.agent().step(),
        policy.obs_description()
    );
    if let Some(queries) = cli.bench {
        return bench(policy, queries);
    }
    match cli.listen {
        Some(addr) => listen(policy, addr),
        None => {
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            serve(&policy, stdin, stdout).context("serving stdin/stdout")
        }
    }
}

/// Answers every line of `input` on `output`, flushing after each answer.
fn serve(policy: &Policy, input: impl Read, output: impl Write) -> std::io::Result<()> {
    let mut reader = BufReader::new(input);
    let mut writer = BufWriter::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        let answer = if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            skip_rest_of_line(&mut reader)?;
            error_line(&format!("request line longer than {MAX_LINE_BYTES} bytes"))
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => policy.answer(text),
                Err(e) => error_line(&format!("request is not UTF-8: {e}")),
            }
        };
        writer.write_all(answer.as_bytes())?;
        writer.write_all(b"\n")?;
        writer.flush()?;
    }
}

fn skip_rest_of_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

fn error_line(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Accepts connections forever, one thread each.
fn listen(policy: Arc<Policy>, addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {bound}").context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("policy-server: accept failed: {e}");
                continue;
            }
        };
        let policy = Arc::clone(&policy);
        std::thread::spawn(move || {
            let peer = stream.peer_addr().map_or("?".into(), |a| a.to_string());
            if let Err(e) = serve_connection(&policy, stream) {
                eprintln!("policy-server: connection {peer}: {e}");
            }
        });
    }
    Ok(())
}

fn serve_connection(policy: &Policy, stream: TcpStream) -> std::io::Result<()> {
    // Small request/answer messages: send each answer at once.
    stream.set_nodelay(true)?;
    let reader = stream.try_clone()?;
    serve(policy, reader, stream)
}

/// Round-trip latency of `queries` requests over a loopback connection to an in-process server.
fn bench(policy: Arc<Policy>, queries: usize) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let server_policy = Arc::clone(&policy);
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let _ = serve_connection(&server_policy, stream);
        }
    });
    let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let mut reader = BufReader::new(stream.try_clone().context("cloning the stream")?);
    let mut writer = stream;
    let request = bench_request(&policy);
    let mut answer = String::new();
    let mut latencies_ms = Vec::with_capacity(queries);
    for i in 0..queries.max(1) + 5 {
        let start = Instant::now();
        writer
            .write_all(request.as_bytes())
            .context("sending a query")?;
        answer.clear();
        reader.read_line(&mut answer).context("reading an answer")?;
        if i >= 5 {
            latencies_ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        if answer.contains("\"error\"") {
            anyhow::bail!("the server answered an error: {answer}");
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    let at = |q: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{} queries over loopback TCP ({}): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies_ms.len(),
        policy.obs_description(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

/// A valid request of the checkpoint's shape (mid-grey images, or small state values).
fn bench_request(policy: &Policy) -> String {
    let n = policy.obs_len();
    let (obs, goal): (Vec<serde_json::Value>, Vec<serde_json::Value>) =
        match policy.agent().model_config().obs {
            ObsKind::State { .. } => (
                (0..n).map(|i| (i as f64 * 0.1).into()).collect(),
                (0..n).map(|i| (1.0 - i as f64 * 0.1).into()).collect(),
            ),
            ObsKind::Pixels { .. } => (
                (0..n).map(|i| (i % 256).into()).collect(),
                vec![128.into(); n],
            ),
        };
    format!("{}\n", serde_json::json!({ "obs": obs, "goal": goal }))
}
