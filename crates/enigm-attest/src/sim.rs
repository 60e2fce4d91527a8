//! `enigm-attest sim`: software devices (from `attest-device`) that enroll and attest for every
//! workflow against a running service, over real HTTP. The service must trust the simulator
//! root (`serve --test-trust-simulator`, test only).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use attest_core::Workflow;
use attest_device::SoftwareDevice;
use attest_service::proof_message;
use attest_token::{b64url, b64url_decode};
use serde_json::{Value, json};

use crate::trust::CliError;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Base URL of the service (plain HTTP).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// How many devices to simulate.
    #[arg(long, value_name = "N", default_value_t = 1)]
    devices: u32,
    /// Resource to ask for in every gated workflow.
    #[arg(long, value_name = "NAME", default_value = "sim")]
    resource: String,
    /// Seconds to wait for the service's /readyz before starting.
    #[arg(long = "wait", value_name = "SECONDS", default_value_t = 30)]
    wait_secs: u64,
}

struct Client {
    host: String,
}

impl Client {
    fn new(server: &str) -> Result<Client, CliError> {
        let rest = server.strip_prefix("http://").ok_or_else(|| {
            CliError(format!(
                "--server {server:?}: only http:// URLs are supported"
            ))
        })?;
        let host = rest.trim_end_matches('/').to_owned();
        if host.is_empty() || host.contains('/') {
            return Err(CliError(format!(
                "--server {server:?}: give scheme, host and port only"
            )));
        }
        Ok(Client { host })
    }

    fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), CliError> {
        self.request("POST", path, Some(body))
    }

    /// Waits (at most `limit`) until the service answers `/readyz` with 200, so that `sim`
    /// started right after `serve` does not race it.
    fn wait_ready(&self, limit: Duration) -> Result<(), CliError> {
        let started = std::time::Instant::now();
        loop {
            let last = match self.request("GET", "/readyz", None) {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("/readyz answered {status}: {body}"),
                Err(CliError(e)) => e,
            };
            if started.elapsed() >= limit {
                return Err(CliError(format!(
                    "the service at {} is not ready after {} s ({last})",
                    self.host,
                    limit.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), CliError> {
        let io = |e: std::io::Error| CliError(format!("{}: {e}", self.host));
        let addr = self
            .host
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| CliError(format!("{}: no address", self.host)))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(io)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(io)?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(io)?;
        let (head, payload) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| CliError("malformed HTTP response".into()))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| CliError("malformed HTTP status line".into()))?;
        Ok((status, serde_json::from_str(payload).unwrap_or(Value::Null)))
    }

    fn challenge(&self, body: &Value) -> Result<(String, Vec<u8>), CliError> {
        let (status, r) = self.post("/v1/challenges", body)?;
        let id = r.get("challenge_id").and_then(Value::as_str);
        let nonce = r
            .get("nonce")
            .and_then(Value::as_str)
            .and_then(b64url_decode);
        match (status, id, nonce) {
            (201, Some(id), Some(nonce)) => Ok((id.to_owned(), nonce)),
            _ => Err(CliError(format!("challenge refused ({status}): {r}"))),
        }
    }
}

fn chain_b64(chain: &[Vec<u8>]) -> Vec<String> {
    use base64::Engine;
    chain
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

/// Runs the devices; `Ok(true)` when every attestation was eligible.
pub fn run(args: &SimArgs) -> Result<bool, CliError> {
    let client = Client::new(&args.server)?;
    client.wait_ready(Duration::from_secs(args.wait_secs))?;
    let mut total = 0u32;
    let mut eligible = 0u32;
    let sim = |e: attest_device::DeviceError| CliError(format!("simulated device: {e}"));
    for n in 0..args.devices {
        let device = SoftwareDevice::simulated().map_err(sim)?;
        let (id, nonce) = client.challenge(&json!({"workflow": "enrollment"}))?;
        let enrollment = device.attest(&nonce).map_err(sim)?;
        let (_, r) = client.post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": chain_b64(&enrollment.chain)}),
        )?;
        total += 1;
        if !report(n, "enrollment", &r, &mut eligible) {
            return Ok(total == eligible);
        }
        let Some(handle) = r
            .get("device_handle")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        for workflow in Workflow::ALL.iter().skip(1) {
            let w = workflow.as_str();
            let (id, nonce) = client.challenge(
                &json!({"workflow": w, "resource": args.resource, "device_handle": handle}),
            )?;
            let fresh = device.attest(&nonce).map_err(sim)?;
            let proof = enrollment
                .key
                .sign(&proof_message(
                    &id,
                    &nonce,
                    w,
                    &args.resource,
                    fresh.key.spki(),
                ))
                .map_err(sim)?;
            let (_, r) = client.post(
                "/v1/attestations",
                &json!({"challenge_id": id, "certificate_chain": chain_b64(&fresh.chain), "device_handle": handle, "proof": b64url(&proof)}),
            )?;
            total += 1;
            if !report(n, w, &r, &mut eligible) {
                return Ok(total == eligible);
            }
        }
    }
    eprintln!("sim: {total} attestations, {eligible} eligible");
    Ok(total == eligible)
}

/// Prints one decision line; `false` when standard output is closed (`sim | head`): then the
/// run stops quietly instead of panicking.
fn report(device: u32, workflow: &str, r: &Value, eligible: &mut u32) -> bool {
    let decision = r.get("decision").and_then(Value::as_str).unwrap_or("error");
    if decision == "eligible" {
        *eligible += 1;
    }
    let reasons = r
        .get("reasons")
        .cloned()
        .or_else(|| r.get("error").cloned())
        .unwrap_or(Value::Null);
    let line =
        json!({"device": device, "workflow": workflow, "decision": decision, "reasons": reasons});
    writeln!(std::io::stdout(), "{line}").is_ok()
}
