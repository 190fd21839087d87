//! The latency table `bridge-run bench` prints (percentiles from `bridge_data::stats`, the
//! workspace's one percentile helper: numpy's linear interpolation).

use bridge_data::stats::quantile_of;

/// One row of the latency table, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    pub name: String,
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl LatencyRow {
    /// The row for `samples_s` (seconds).
    pub fn of(name: &str, samples_s: &[f64]) -> LatencyRow {
        let ms = |q: f64| quantile_of(samples_s, q).map(|s| s * 1e3);
        LatencyRow {
            name: name.to_string(),
            count: samples_s.len(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            max_ms: ms(1.0),
        }
    }
}

/// The rows as an aligned text table (milliseconds).
pub fn latency_table(rows: &[LatencyRow]) -> String {
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    let mut out = format!(
        "{:<28} {:>8} {:>10} {:>10} {:>10}\n",
        "metric", "samples", "p50 ms", "p99 ms", "max ms"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<28} {:>8} {:>10} {:>10} {:>10}\n",
            row.name,
            row.count,
            cell(row.p50_ms),
            cell(row.p99_ms),
            cell(row.max_ms)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_rows_in_milliseconds() {
        let row = LatencyRow::of("control period", &[0.010, 0.011, 0.012]);
        assert_eq!(row.count, 3);
        assert!((row.max_ms.unwrap() - 12.0).abs() < 1e-9);
        let text = latency_table(&[row, LatencyRow::of("inference", &[])]);
        assert!(
            text.contains("control period") && text.contains("12.00"),
            "{text}"
        );
        assert!(text.lines().nth(2).unwrap().contains(" - "), "{text}");
    }
}
