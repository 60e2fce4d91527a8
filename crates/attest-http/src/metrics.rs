//! Prometheus metrics, kept by hand: a counter of decisions by workflow, decision and reason,
//! and a latency histogram per route. A few dozen series do not need an exporter framework
//! (docs/decisions/0010-hand-written-openapi-and-metrics.md).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The registry.
#[derive(Default)]
pub struct Metrics {
    decisions: Mutex<BTreeMap<(String, String, String), u64>>,
    refusals: Mutex<BTreeMap<(String, u16, &'static str), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Counts one decision under each of its reasons (`none` when eligible).
    pub fn count_decision(&self, workflow: &str, decision: &str, reasons: &[&str]) {
        if let Ok(mut m) = self.decisions.lock() {
            let list: Vec<&str> = if reasons.is_empty() {
                vec!["none"]
            } else {
                reasons.to_vec()
            };
            for r in list {
                *m.entry((workflow.to_owned(), decision.to_owned(), r.to_owned()))
                    .or_default() += 1;
            }
        }
    }

    /// Counts one error response by route, status and stable code (malformed evidence,
    /// replayed and expired challenges, bad requests...). Routes are templates and codes are
    /// static, so the series stay few.
    pub fn count_refusal(&self, route: &str, status: u16, code: &'static str) {
        if let Ok(mut m) = self.refusals.lock() {
            *m.entry((route.to_owned(), status, code)).or_default() += 1;
        }
    }

    /// Observes one request's latency.
    pub fn observe_latency(&self, route: &str, seconds: f64) {
        if let Ok(mut m) = self.latency.lock() {
            let h = m.entry(route.to_owned()).or_default();
            for (slot, bound) in h.buckets.iter_mut().zip(BUCKETS) {
                if seconds <= bound {
                    *slot += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP enigm_attest_decisions_total Attestation decisions by workflow, decision and reason."
        );
        let _ = writeln!(out, "# TYPE enigm_attest_decisions_total counter");
        if let Ok(m) = self.decisions.lock() {
            for ((w, d, r), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "enigm_attest_decisions_total{{workflow=\"{w}\",decision=\"{d}\",reason=\"{r}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP enigm_attest_refusals_total Error responses by route, status and code."
        );
        let _ = writeln!(out, "# TYPE enigm_attest_refusals_total counter");
        if let Ok(m) = self.refusals.lock() {
            for ((route, status, code), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "enigm_attest_refusals_total{{route=\"{route}\",status=\"{status}\",code=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP enigm_attest_request_duration_seconds HTTP request latency by route."
        );
        let _ = writeln!(
            out,
            "# TYPE enigm_attest_request_duration_seconds histogram"
        );
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                for (n, bound) in h.buckets.iter().zip(BUCKETS) {
                    let _ = writeln!(
                        out,
                        "enigm_attest_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "enigm_attest_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "enigm_attest_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "enigm_attest_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        out
    }
}

/// Google's status list as gauges: entries, age, freshness, and the last fetch's result.
pub fn render_revocation(out: &mut String, r: &attest_service::RevocationReport) {
    let _ = writeln!(
        out,
        "# HELP enigm_attest_google_status_list_entries Entries of Google's attestation status list in force (absent: none yet)."
    );
    let _ = writeln!(out, "# TYPE enigm_attest_google_status_list_entries gauge");
    if let Some(n) = r.entries {
        let _ = writeln!(out, "enigm_attest_google_status_list_entries {n}");
    }
    let _ = writeln!(
        out,
        "# HELP enigm_attest_google_status_list_age_seconds Seconds since Google's status list was last fetched or confirmed."
    );
    let _ = writeln!(
        out,
        "# TYPE enigm_attest_google_status_list_age_seconds gauge"
    );
    if let Some(a) = r.age_secs {
        let _ = writeln!(out, "enigm_attest_google_status_list_age_seconds {a}");
    }
    let _ = writeln!(
        out,
        "# HELP enigm_attest_google_status_list_fresh 1 when chains at Google's anchors can be decided (list younger than the maximum age)."
    );
    let _ = writeln!(out, "# TYPE enigm_attest_google_status_list_fresh gauge");
    let _ = writeln!(
        out,
        "enigm_attest_google_status_list_fresh {}",
        u8::from(r.fresh)
    );
    let _ = writeln!(
        out,
        "# HELP enigm_attest_google_status_list_last_fetch_ok 1 when the last fetch of Google's status list succeeded (200 or 304)."
    );
    let _ = writeln!(
        out,
        "# TYPE enigm_attest_google_status_list_last_fetch_ok gauge"
    );
    if let Some((_, result)) = &r.last_attempt {
        let ok = result == "ok" || result == "not_modified";
        let _ = writeln!(
            out,
            "enigm_attest_google_status_list_last_fetch_ok {}",
            u8::from(ok)
        );
    }
}

/// The policy this replica enforces, and how many distinct policies the replicas sharing its
/// database enforce (more than 1: a reload or rollout has not reached every replica).
pub fn render_fleet(
    out: &mut String,
    replica: &str,
    policy_hash: &str,
    fleet: Option<&[(String, String)]>,
) {
    let _ = writeln!(
        out,
        "# HELP enigm_attest_policy_info The policy hash this replica enforces (value 1)."
    );
    let _ = writeln!(out, "# TYPE enigm_attest_policy_info gauge");
    let _ = writeln!(
        out,
        "enigm_attest_policy_info{{replica=\"{replica}\",policy_hash=\"{policy_hash}\"}} 1"
    );
    let Some(fleet) = fleet else {
        return;
    };
    let distinct: std::collections::BTreeSet<&str> =
        fleet.iter().map(|(_, h)| h.as_str()).collect();
    let _ = writeln!(
        out,
        "# HELP enigm_attest_fleet_replicas Replicas heard from in the last 30 s on this database."
    );
    let _ = writeln!(out, "# TYPE enigm_attest_fleet_replicas gauge");
    let _ = writeln!(out, "enigm_attest_fleet_replicas {}", fleet.len());
    let _ = writeln!(
        out,
        "# HELP enigm_attest_fleet_policy_hashes Distinct policy hashes enforced by those replicas (alert above 1)."
    );
    let _ = writeln!(out, "# TYPE enigm_attest_fleet_policy_hashes gauge");
    let _ = writeln!(out, "enigm_attest_fleet_policy_hashes {}", distinct.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.count_decision("enrollment", "eligible", &[]);
        m.count_decision(
            "registration",
            "ineligible",
            &["downgrade", "ineligible_build"],
        );
        m.observe_latency("/v1/attestations", 0.003);
        m.observe_latency("/v1/attestations", 0.3);
        let text = m.render();
        assert!(text.contains("enigm_attest_decisions_total{workflow=\"enrollment\",decision=\"eligible\",reason=\"none\"} 1"));
        assert!(text.contains("reason=\"downgrade\"} 1"));
        assert!(text.contains("route=\"/v1/attestations\",le=\"0.005\"} 1"));
        assert!(text.contains("route=\"/v1/attestations\",le=\"0.5\"} 2"));
        assert!(
            text.contains(
                "enigm_attest_request_duration_seconds_count{route=\"/v1/attestations\"} 2"
            )
        );
    }
}
