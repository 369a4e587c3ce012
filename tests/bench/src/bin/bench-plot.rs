//! bench-plot: the controller's sizing curve, from the JSON figures that
//! `tests/bench/controller` writes beside each report. Two panels against
//! the number of SealedSecrets: the time until all are Ready (cold start,
//! the API server's ceiling when measured, and a restart with everything
//! unsealed), and the controller's peak RSS against the chart's memory
//! limit. Operators size from a curve, not a table. Run it through
//! `tests/bench/plot`.
#![allow(
    clippy::too_many_lines,
    reason = "a benchmark driver: each run is one long sequence of timed steps"
)]

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Parser;
use plotters::prelude::*;

#[derive(Parser, Debug)]
#[command(
    name = "bench-plot",
    about = "Plots bench-controller figures (JSON) as an SVG"
)]
struct Args {
    /// Where the SVG goes.
    #[arg(long)]
    out: PathBuf,
    /// The memory limit drawn across the RSS panel, in MiB (the chart's).
    #[arg(long, default_value_t = 128.0)]
    limit_mib: f64,
    /// A caption under the title: machine, flags.
    #[arg(long, default_value = "")]
    subtitle: String,
    /// JSON figures of bench-controller runs, one per N.
    #[arg(required = true)]
    figures: Vec<PathBuf>,
}

/// What the plot reads of a run's figures.
#[derive(serde::Deserialize, Debug)]
struct Figures {
    n: usize,
    all_ready_s: Option<f64>,
    peak_rss_mib: f64,
    ceiling_s: Option<f64>,
    restart_caught_up_s: Option<f64>,
    restart_peak_rss_mib: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runs = Vec::new();
    for p in &args.figures {
        let f: Figures =
            serde_json::from_slice(&std::fs::read(p).with_context(|| p.display().to_string())?)
                .with_context(|| format!("{}: not bench-controller figures", p.display()))?;
        if f.all_ready_s.is_none() {
            bail!("{}: the run timed out; nothing to plot", p.display());
        }
        runs.push(f);
    }
    runs.sort_by_key(|f| f.n);
    runs.dedup_by_key(|f| f.n);
    plot(&args, &runs)?;
    println!("wrote {}", args.out.display());
    Ok(())
}

type Series = Vec<(f64, f64)>;

fn series(runs: &[Figures], value: impl Fn(&Figures) -> Option<f64>) -> Series {
    runs.iter()
        .filter_map(|f| Some((f.n as f64, value(f)?)))
        .collect()
}

fn plot(args: &Args, runs: &[Figures]) -> anyhow::Result<()> {
    let max_n = runs.iter().map(|f| f.n).max().unwrap_or(1) as f64 * 1.05;
    let cold = series(runs, |f| f.all_ready_s);
    let ceiling = series(runs, |f| f.ceiling_s);
    let restart = series(runs, |f| f.restart_caught_up_s);
    let rss = series(runs, |f| Some(f.peak_rss_mib));
    let restart_rss = series(runs, |f| f.restart_peak_rss_mib);
    let max_s = cold
        .iter()
        .chain(&ceiling)
        .chain(&restart)
        .map(|p| p.1)
        .fold(60.0, f64::max)
        * 1.1;
    let max_mib = rss.iter().map(|p| p.1).fold(args.limit_mib, f64::max) * 1.15;

    let root = SVGBackend::new(&args.out, (1000, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(50);
    top.draw_text(
        "coffer-controller: SealedSecrets (3 items each) against time and memory",
        &("sans-serif", 18).into_text_style(&top),
        (12, 6),
    )?;
    top.draw_text(
        &args.subtitle,
        &("sans-serif", 13)
            .into_text_style(&top)
            .color(&BLACK.mix(0.6)),
        (12, 30),
    )?;
    let (left, right) = body.split_horizontally(500);
    let thousands = |x: &f64| format!("{}k", (x / 1000.0).round());

    let mut time = ChartBuilder::on(&left)
        .caption("until every SealedSecret is reconciled", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_n, 0f64..max_s)?;
    time.configure_mesh()
        .x_desc("SealedSecrets")
        .y_desc("seconds")
        .x_label_formatter(&thousands)
        .draw()?;
    let lines: [(&str, &Series, RGBColor); 3] = [
        ("cold start → all Ready", &cold, RGBColor(31, 119, 180)),
        (
            "API server ceiling (writes only)",
            &ceiling,
            RGBColor(150, 150, 150),
        ),
        ("restart, all unsealed", &restart, RGBColor(44, 160, 44)),
    ];
    for (label, points, color) in lines {
        if points.is_empty() {
            continue;
        }
        time.draw_series(LineSeries::new(
            points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        time.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    time.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;

    let mut mem = ChartBuilder::on(&right)
        .caption("controller peak RSS", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..max_n, 0f64..max_mib)?;
    mem.configure_mesh()
        .x_desc("SealedSecrets")
        .y_desc("MiB")
        .x_label_formatter(&thousands)
        .draw()?;
    let red = RGBColor(214, 39, 40);
    mem.draw_series(LineSeries::new(
        [(0.0, args.limit_mib), (max_n, args.limit_mib)],
        red.stroke_width(1),
    ))?
    .label(format!("chart memory limit ({} MiB)", args.limit_mib))
    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red));
    let blue = RGBColor(31, 119, 180);
    mem.draw_series(LineSeries::new(rss.iter().copied(), blue.stroke_width(2)))?
        .label("cold start")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(2)));
    mem.draw_series(rss.iter().map(|&p| Circle::new(p, 3, blue.filled())))?;
    if !restart_rss.is_empty() {
        let green = RGBColor(44, 160, 44);
        mem.draw_series(LineSeries::new(
            restart_rss.iter().copied(),
            green.stroke_width(2),
        ))?
        .label("restart")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], green.stroke_width(2)));
    }
    mem.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
