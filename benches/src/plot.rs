//! SVG plots of closed-loop results: throughput and p99 latency against the number of clients,
//! and throughput against the command size. One curve per backend and label, so a before/after
//! pair or two backends share one picture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// One closed-loop run, as `raft-bench closed-loop --out` writes it (one JSON object a line).
/// The lines of the service's load generators read as records too: `raft-kv bench --json`
/// (`benches/service.sh`) and `etcd-anchor` (`benches/etcd.sh`) name their `service` and give
/// `ops_per_second`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchRecord {
    /// Which build or variant was measured (free text, may be empty).
    #[serde(default)]
    pub label: String,
    /// `storage-transport`, for example `mem-mem`; or the service measured (`raft-kv`, `etcd`).
    #[serde(alias = "service")]
    pub backend: String,
    /// `noop` or `kv` (empty for a service).
    #[serde(default)]
    pub machine: String,
    /// Command size in bytes.
    pub value_size: usize,
    /// Closed-loop clients.
    pub clients: u64,
    /// Writes completed.
    pub operations: u64,
    /// Writes that failed (dropped by a leader change, or sent to a node no longer leading).
    #[serde(default)]
    pub errors: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// Writes per second.
    #[serde(alias = "ops_per_second")]
    pub per_second: f64,
    /// Latency percentiles and maximum, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest write.
    pub max_us: u64,
    /// Resident memory of the process (three nodes and the clients) after the run, MiB.
    #[serde(default)]
    pub rss_mib: f64,
    /// When the run ended, seconds since the Unix epoch (0: not recorded).
    #[serde(default)]
    pub unix_time: u64,
    /// The host's cross-CPU hand-off round trip just before the run, nanoseconds
    /// ([`crate::handoff_round_trip`]); 0 when not measured.
    #[serde(default)]
    pub handoff_before_ns: u64,
    /// The same, just after the run.
    #[serde(default)]
    pub handoff_after_ns: u64,
}

impl BenchRecord {
    fn series(&self) -> String {
        let name = if self.machine.is_empty() {
            self.backend.clone()
        } else {
            format!("{} {}", self.backend, self.machine)
        };
        if self.label.is_empty() {
            name
        } else {
            format!("{name} ({})", self.label)
        }
    }
}

/// Reads the records of a JSON lines file.
pub fn read_records(input: &Path) -> Result<Vec<BenchRecord>, String> {
    let text = std::fs::read_to_string(input)
        .map_err(|error| format!("cannot read {}: {error}", input.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|error| format!("{}:{}: not a benchmark record: {error}", input.display(), n + 1))
        })
        .collect()
}

/// A curve: x to the median y of the runs at that x.
type Curve = BTreeMap<u64, f64>;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}

fn curves(
    records: &[&BenchRecord],
    x: impl Fn(&BenchRecord) -> u64,
    y: impl Fn(&BenchRecord) -> f64,
) -> BTreeMap<String, Curve> {
    let mut points: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for record in records {
        points
            .entry(record.series())
            .or_default()
            .entry(x(record))
            .or_default()
            .push(y(record));
    }
    points
        .into_iter()
        .map(|(series, by_x)| {
            (
                series,
                by_x.into_iter().map(|(x, mut ys)| (x, median(&mut ys))).collect(),
            )
        })
        .collect()
}

/// Draws one log-log line chart of `curves` into `path`.
fn draw(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &BTreeMap<String, Curve>,
) -> Result<(), String> {
    let failed = |error: &dyn std::fmt::Display| format!("cannot draw {}: {error}", path.display());
    let xs = curves.values().flat_map(|c| c.keys().copied());
    let ys = curves.values().flat_map(|c| c.values().copied());
    let (x_min, x_max) = xs.fold((u64::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (y_min, y_max) = ys.fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    if x_max == 0 || y_max <= 0.0 {
        return Err(format!("nothing to draw in {}", path.display()));
    }
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let x_range = (x_min.max(1) as f64 / 1.5)..(x_max as f64 * 1.5);
    let y_range = (y_min.max(1e-3) / 2.0)..(y_max * 2.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.log_scale(), y_range.log_scale())
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| failed(&e))?;
    for (n, (series, curve)) in curves.iter().enumerate() {
        let color = Palette99::pick(n).to_rgba();
        let points: Vec<(f64, f64)> = curve.iter().map(|(x, y)| (*x as f64, *y)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| failed(&e))?
            .label(series.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| failed(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

/// A run's hand-off round trip, when it was measured and the host stayed in one mode through it
/// (the measurements before and after the run within 1.5× of each other): their mean, ns.
fn steady_handoff_ns(record: &BenchRecord) -> Option<f64> {
    let (before, after) = (record.handoff_before_ns as f64, record.handoff_after_ns as f64);
    let steady = before > 0.0 && after > 0.0 && before.max(after) <= 1.5 * before.min(after);
    steady.then_some((before + after) / 2.0)
}

/// Draws a scatter of writes/s (log) against the host's hand-off round trip (linear), a colour
/// per series and client count, into `path`. `None` when no run has a steady hand-off.
fn draw_by_handoff(path: &Path, records: &[BenchRecord]) -> Result<Option<()>, String> {
    let failed = |error: &dyn std::fmt::Display| format!("cannot draw {}: {error}", path.display());
    let mut groups: BTreeMap<(String, u64), Vec<(f64, f64)>> = BTreeMap::new();
    for record in records {
        if let Some(handoff) = steady_handoff_ns(record) {
            groups
                .entry((record.series(), record.clients))
                .or_default()
                .push((handoff, record.per_second));
        }
    }
    let points = groups.values().flatten();
    let (x_max, y_min, y_max) = points.fold((0.0f64, f64::MAX, 0.0f64), |(x_hi, y_lo, y_hi), (x, y)| {
        (x_hi.max(*x), y_lo.min(*y), y_hi.max(*y))
    });
    if groups.is_empty() || y_max <= 0.0 {
        return Ok(None);
    }
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Closed-loop writes/s against the host's hand-off round trip",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        // Room on the right for the legend, past the slowest hand-off.
        .build_cartesian_2d(0.0..x_max * 1.6, (y_min.max(1e-3) / 1.5..y_max * 1.5).log_scale())
        .map_err(|e| failed(&e))?;
    chart
        .configure_mesh()
        .x_desc("cache line to the other CPU and back, ns (mean of before and after the run)")
        .y_desc("writes/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| failed(&e))?;
    for (n, ((series, clients), points)) in groups.iter().enumerate() {
        let color = Palette99::pick(n).to_rgba();
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| failed(&e))?
            .label(format!("{series}, {clients} clients"))
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))?;
    Ok(Some(()))
}

/// Draws the plots the records allow into `out_dir`, named after the input file (`runs.jsonl`
/// gives `runs-throughput-by-clients.svg` and so on): with several client counts, throughput
/// and p99 against clients at the most common command size; with several sizes, throughput
/// and payload bytes per second against size; with runs that measured the host's hand-off round
/// trip ([`crate::handoff_round_trip`]) and stayed in one mode, writes/s against it. Returns the
/// files written.
pub fn plot_results(input: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let records = read_records(input)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|error| format!("cannot create {}: {error}", out_dir.display()))?;
    let stem = input.file_stem().and_then(|s| s.to_str()).unwrap_or("bench");
    let named = |plot: &str| out_dir.join(format!("{stem}-{plot}.svg"));
    let mut written = Vec::new();
    let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
    for record in &records {
        *sizes.entry(record.value_size).or_default() += 1;
    }
    let client_counts: std::collections::BTreeSet<u64> = records.iter().map(|r| r.clients).collect();
    if let (Some((&size, _)), true) = (
        sizes.iter().max_by_key(|(_, count)| **count),
        client_counts.len() > 1,
    ) {
        // A series with no run at `size` (an anchor whose requests have another size, such as
        // openraft's empty ones) is drawn at the size it has, rather than left out.
        let series_at_size: std::collections::BTreeSet<String> = records
            .iter()
            .filter(|r| r.value_size == size)
            .map(BenchRecord::series)
            .collect();
        let at_size: Vec<&BenchRecord> = records
            .iter()
            .filter(|r| r.value_size == size || !series_at_size.contains(&r.series()))
            .collect();
        let by_clients = |r: &BenchRecord| r.clients;
        let path = named("throughput-by-clients");
        let title = format!("Closed-loop writes/s, 3 nodes, {size} B");
        draw(
            &path,
            &title,
            "clients",
            "writes/s",
            &curves(&at_size, by_clients, |r| r.per_second),
        )?;
        written.push(path);
        let path = named("p99-by-clients");
        let title = format!("p99 write latency, 3 nodes, {size} B");
        // Runs without latencies (an anchor that reports only throughput) are left out.
        let with_latency: Vec<&BenchRecord> = at_size.iter().copied().filter(|r| r.p99_us > 0).collect();
        draw(
            &path,
            &title,
            "clients",
            "p99 µs",
            &curves(&with_latency, by_clients, |r| r.p99_us as f64),
        )?;
        written.push(path);
    }
    // Against size, only the series measured at several sizes: an anchor measured at one size
    // (openraft's empty requests) would be a lone point.
    let mut sizes_of: BTreeMap<String, std::collections::BTreeSet<usize>> = BTreeMap::new();
    for record in &records {
        sizes_of
            .entry(record.series())
            .or_default()
            .insert(record.value_size);
    }
    let sized: Vec<&BenchRecord> = records
        .iter()
        .filter(|r| sizes_of.get(&r.series()).is_some_and(|sizes| sizes.len() > 1))
        .collect();
    if !sized.is_empty() {
        let by_size = curves(&sized, |r| r.value_size as u64, |r| r.per_second);
        let path = named("throughput-by-size");
        draw(
            &path,
            "Closed-loop writes/s by command size, 3 nodes",
            "command bytes",
            "writes/s",
            &by_size,
        )?;
        written.push(path);
        let megabytes = curves(
            &sized,
            |r| r.value_size as u64,
            |r| r.per_second * r.value_size as f64 / 1e6,
        );
        let path = named("megabytes-by-size");
        draw(
            &path,
            "Payload MB/s by command size, 3 nodes",
            "command bytes",
            "MB/s",
            &megabytes,
        )?;
        written.push(path);
    }
    let path = named("throughput-by-handoff");
    if draw_by_handoff(&path, &records)?.is_some() {
        written.push(path);
    }
    if written.is_empty() {
        return Err(format!(
            "{}: nothing to plot: the runs need several client counts or several command sizes",
            input.display()
        ));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(clients: u64, size: usize, per_second: f64) -> BenchRecord {
        BenchRecord {
            label: String::new(),
            backend: "mem-mem".into(),
            machine: "noop".into(),
            value_size: size,
            clients,
            operations: 1000,
            errors: 0,
            seconds: 1.0,
            per_second,
            p50_us: 10,
            p99_us: 20,
            p999_us: 30,
            max_us: 40,
            rss_mib: 30.0,
            unix_time: 0,
            handoff_before_ns: 0,
            handoff_after_ns: 0,
        }
    }

    /// openraft's figures as an anchor: empty requests, throughput only.
    fn anchor(clients: u64, per_second: f64) -> BenchRecord {
        BenchRecord {
            backend: "openraft".into(),
            p99_us: 0,
            ..record(clients, 0, per_second)
        }
    }

    fn write_records(path: &Path, records: &[BenchRecord]) {
        let lines: Vec<String> = records
            .iter()
            .map(|r| serde_json::to_string(r).expect("json"))
            .collect();
        std::fs::write(path, lines.join("\n")).expect("write");
    }

    #[test]
    fn plots_are_drawn_from_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("runs.jsonl");
        write_records(
            &input,
            &[
                record(1, 128, 50_000.0),
                record(64, 128, 400_000.0),
                record(64, 4096, 100_000.0),
                record(64, 128, 420_000.0),
            ],
        );
        let written = plot_results(&input, dir.path()).expect("plots");
        assert_eq!(written.len(), 4);
        for path in written {
            let svg = std::fs::read_to_string(&path).expect("svg");
            assert!(svg.starts_with("<svg"), "{} is an SVG", path.display());
            assert!(svg.contains("mem-mem noop"), "{} has its legend", path.display());
        }
        let names: Vec<String> = written_names(&dir.path().join("runs.jsonl"), dir.path());
        assert!(
            names.contains(&"runs-throughput-by-clients.svg".to_string()),
            "{names:?}"
        );
        // The median of the two runs at 64 clients and 128 B.
        let records = read_records(&input).expect("records");
        let refs: Vec<&BenchRecord> = records.iter().filter(|r| r.value_size == 128).collect();
        let curve = &curves(&refs, |r| r.clients, |r| r.per_second)["mem-mem noop"];
        assert_eq!(curve[&64], 410_000.0);
    }

    #[test]
    fn the_service_load_generators_lines_are_records_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("service.jsonl");
        // As `raft-kv bench --json` (with `--label`) and `etcd-anchor` print them.
        let lines = [
            r#"{"service":"raft-kv","label":"floor","clients":1,"connections":null,"value_size":128,"read_percent":0,"operations":100,"errors":0,"seconds":1.0,"ops_per_second":15000.0,"p50_us":60,"p90_us":70,"p99_us":90,"p999_us":120,"max_us":500}"#,
            r#"{"service":"raft-kv","label":"floor","clients":16,"connections":null,"value_size":128,"read_percent":0,"operations":100,"errors":0,"seconds":1.0,"ops_per_second":110000.0,"p50_us":130,"p90_us":200,"p99_us":300,"p999_us":900,"max_us":5000}"#,
            r#"{"service":"etcd","clients":1,"connections":1,"value_size":128,"operations":100,"errors":0,"seconds":1.0,"ops_per_second":1700.0,"p50_us":570,"p90_us":700,"p99_us":1000,"p999_us":2000,"max_us":9000}"#,
            r#"{"service":"etcd","clients":16,"connections":16,"value_size":128,"operations":100,"errors":0,"seconds":1.0,"ops_per_second":6500.0,"p50_us":2300,"p90_us":3000,"p99_us":5800,"p999_us":9000,"max_us":20000}"#,
        ];
        std::fs::write(&input, lines.join("\n")).expect("write");
        let records = read_records(&input).expect("records");
        assert_eq!(records[0].series(), "raft-kv (floor)");
        assert_eq!(records[2].series(), "etcd");
        assert_eq!(records[1].per_second, 110_000.0);
        plot_results(&input, dir.path()).expect("plots");
        let svg = std::fs::read_to_string(dir.path().join("service-throughput-by-clients.svg")).expect("svg");
        assert!(
            svg.contains("raft-kv (floor)") && svg.contains("etcd"),
            "both are drawn"
        );
    }

    #[test]
    fn an_anchor_of_another_size_keeps_its_curve_against_clients() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("anchored.jsonl");
        write_records(
            &input,
            &[
                record(1, 128, 20_000.0),
                record(64, 128, 500_000.0),
                record(64, 4096, 90_000.0),
                anchor(1, 15_000.0),
                anchor(64, 380_000.0),
            ],
        );
        plot_results(&input, dir.path()).expect("plots");
        let svg =
            std::fs::read_to_string(dir.path().join("anchored-throughput-by-clients.svg")).expect("svg");
        assert!(svg.contains("openraft noop"), "the anchor is drawn");
        assert!(svg.contains("mem-mem noop"), "and the runs at the common size");
        let p99 = std::fs::read_to_string(dir.path().join("anchored-p99-by-clients.svg")).expect("svg");
        assert!(
            !p99.contains("openraft noop"),
            "an anchor without latencies has no p99 curve"
        );
        let by_size =
            std::fs::read_to_string(dir.path().join("anchored-throughput-by-size.svg")).expect("svg");
        assert!(
            by_size.contains("mem-mem noop"),
            "the runs at two sizes are drawn"
        );
        assert!(
            !by_size.contains("openraft noop"),
            "an anchor at one size has no curve against size"
        );
    }

    #[test]
    fn runs_at_one_size_beside_an_anchor_at_another_get_no_size_plots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("floor.jsonl");
        write_records(
            &input,
            &[
                record(1, 128, 20_000.0),
                record(64, 128, 500_000.0),
                anchor(1, 15_000.0),
                anchor(64, 380_000.0),
            ],
        );
        let names = written_names(&input, dir.path());
        assert_eq!(
            names,
            ["floor-throughput-by-clients.svg", "floor-p99-by-clients.svg"],
            "no plots against size"
        );
    }

    fn written_names(input: &Path, out: &Path) -> Vec<String> {
        plot_results(input, out)
            .expect("plots")
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect()
    }

    fn timed(clients: u64, per_second: f64, before_ns: u64, after_ns: u64) -> BenchRecord {
        BenchRecord {
            handoff_before_ns: before_ns,
            handoff_after_ns: after_ns,
            ..record(clients, 128, per_second)
        }
    }

    #[test]
    fn runs_in_one_mode_are_drawn_against_the_hand_off_and_a_switching_run_is_left_out() {
        let steady = [timed(64, 700_000.0, 96, 104), timed(64, 420_000.0, 450, 470)];
        assert_eq!(steady_handoff_ns(&steady[0]), Some(100.0));
        assert_eq!(steady_handoff_ns(&steady[1]), Some(460.0));
        let switched = timed(1024, 900_000.0, 100, 480);
        assert_eq!(
            steady_handoff_ns(&switched),
            None,
            "the mode switched during the run"
        );
        assert_eq!(steady_handoff_ns(&record(64, 128, 1.0)), None, "not measured");

        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("modes.jsonl");
        write_records(&input, &[steady[0].clone(), steady[1].clone(), switched]);
        let names = written_names(&input, dir.path());
        assert!(
            names.contains(&"modes-throughput-by-handoff.svg".to_string()),
            "{names:?}"
        );
        let svg = std::fs::read_to_string(dir.path().join("modes-throughput-by-handoff.svg")).expect("svg");
        assert!(
            svg.contains("mem-mem noop, 64 clients"),
            "the steady runs are a series"
        );
        assert!(!svg.contains("1024 clients"), "the switching run is not drawn");

        // Runs that never measured the hand-off get no such plot.
        let input = dir.path().join("unmeasured.jsonl");
        write_records(&input, &[record(1, 128, 20_000.0), record(64, 128, 500_000.0)]);
        let names = written_names(&input, dir.path());
        assert!(!names.iter().any(|n| n.contains("handoff")), "{names:?}");
    }

    #[test]
    fn one_client_count_and_one_size_is_nothing_to_plot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("one.jsonl");
        std::fs::write(&input, serde_json::to_string(&record(1, 128, 5.0)).expect("json")).expect("write");
        let error = plot_results(&input, dir.path()).expect_err("nothing to plot");
        assert!(error.contains("nothing to plot"), "{error}");
    }

    #[test]
    fn a_line_that_is_not_a_record_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("runs.jsonl");
        std::fs::write(&input, "{\"backend\": 3}\n").expect("write");
        let error = read_records(&input).expect_err("refused");
        assert!(error.contains("runs.jsonl:1"), "{error}");
    }
}
