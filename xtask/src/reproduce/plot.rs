//! Figures drawn with `plotters`, to SVG (text kept as text) and to PNG (at twice the size, for
//! slides), both in DejaVu Sans, bundled in `xtask/fonts/` with its license.
//!
//! A [`Chart`] is one panel in the paper's style: mean lines with shaded min-max bands (or, on
//! categorical x positions, mean markers with min-max whiskers), optionally a horizontal band (the
//! unpruned network's accuracy), a log-scale x axis that may run right-to-left (% of weights
//! remaining, with the paper's ticks 100, 51.2, 26.2, ...), and a legend in the corner where it
//! covers the least data.

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::Color as _;
use plotters::style::text_anchor;

/// An RGB colour.
pub type Color = [u8; 3];

/// The paper's palette: blue, orange, green, red, purple.
pub const COLORS: [Color; 5] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189]];

/// One point with its range (min and max over replicates).
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub lo: f64,
    pub hi: f64,
}

/// A line of points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: Color,
    pub dashed: bool,
    pub points: Vec<Point>,
}

/// A horizontal band (mean line, min to max shaded).
#[derive(Debug, Clone)]
pub struct Band {
    pub name: String,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// One panel.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Log-scale x.
    pub x_log: bool,
    /// x decreases to the right.
    pub x_reversed: bool,
    /// Names of categorical x positions 0, 1, ...
    pub categories: Vec<String>,
    /// Join categorical points with lines (ordered categories, e.g. a grid of rewind points).
    pub connect: bool,
    pub series: Vec<Series>,
    pub band: Option<Band>,
}

/// A whole figure: a title, an optional warning line (red), and a grid of charts.
pub struct Figure {
    title: String,
    warning: Option<String>,
    charts: Vec<Chart>,
    columns: usize,
}

/// Panel size in SVG pixels; the PNG is drawn at [`PNG_SCALE`] times this.
const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 340.0;
const PNG_SCALE: f64 = 2.0;
const FONT: &str = "sans-serif";
const GREY: Color = [120, 120, 120];

fn rgb(c: Color) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// Registers the bundled font with plotters (once per process).
fn register_font() -> Result<()> {
    static FONT_BYTES: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok { Ok(()) } else { Err(anyhow!("the bundled font xtask/fonts/DejaVuSans.ttf does not parse")) }
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * step {
        out.push(t);
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    // Ticks computed as k·step can land on -0.
    let v = if v.abs() < 1e-12 { 0.0 } else { v };
    // As many decimals as the tick needs (13.6 and 13.8 must not both print as 14).
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// The x axis of a chart: data x to plotting coordinate u (log and reversal applied), the u
/// range, and the ticks as (u, label).
struct XAxis {
    log: bool,
    reversed: bool,
    range: (f64, f64),
    ticks: Vec<(f64, String)>,
}

impl XAxis {
    fn new(c: &Chart) -> XAxis {
        if !c.categories.is_empty() {
            let ticks = c.categories.iter().enumerate().map(|(i, n)| (i as f64, n.clone())).collect();
            return XAxis { log: false, reversed: false, range: (-0.5, c.categories.len() as f64 - 0.5), ticks };
        }
        let mut axis = XAxis { log: c.x_log, reversed: c.x_reversed, range: (0.0, 1.0), ticks: Vec::new() };
        let us: Vec<f64> = c.series.iter().flat_map(|s| &s.points).map(|p| axis.u(p.x)).collect();
        let (mut u0, mut u1) = us.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        if !u0.is_finite() {
            (u0, u1) = (0.0, 1.0);
        }
        if u1 - u0 < 1e-9 {
            (u0, u1) = (u0 - 0.5, u1 + 0.5);
        }
        let pad = 0.04 * (u1 - u0);
        axis.range = (u0 - pad, u1 + pad);
        // Ticks in data units between the ends.
        let (a, b) = {
            let (p, q) = (axis.x(axis.range.0), axis.x(axis.range.1));
            (p.min(q), p.max(q))
        };
        let candidates: Vec<f64> = if c.x_log {
            // The paper's grid of % weights remaining (0.8^n x 100) where it spans many levels,
            // else round decades.
            let paper: Vec<f64> = (0..40).map(|n| 100.0 * 0.8f64.powi(n)).filter(|v| (a..=b).contains(v)).collect();
            let decades: Vec<f64> =
                [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
                    .into_iter()
                    .filter(|v| (a..=b).contains(v))
                    .collect();
            if (4..=40).contains(&paper.len()) && c.x_reversed {
                // Every other level at most 10 ticks, always including 100.
                let every = paper.len().div_ceil(10);
                paper.into_iter().enumerate().filter(|(i, _)| i % every == 0).map(|(_, v)| v).collect()
            } else if decades.len() >= 3 {
                decades
            } else {
                nice_ticks(a, b, 4)
            }
        } else {
            nice_ticks(a, b, 6)
        };
        // One decimal, as the paper labels its grid (51.2, 16.8, 8.6), two below 1%.
        let fmt =
            |v: f64| if v >= 1.0 { fmt_tick((v * 10.0).round() / 10.0) } else { fmt_tick((v * 100.0).round() / 100.0) };
        axis.ticks = candidates
            .into_iter()
            .filter(|v| v.is_finite() && (!c.x_log || *v > 0.0))
            .map(|v| (axis.u(v), fmt(v)))
            .collect();
        axis
    }

    /// Data x to plotting coordinate.
    fn u(&self, x: f64) -> f64 {
        let v = if self.log { x.max(1e-12).log10() } else { x };
        if self.reversed { -v } else { v }
    }

    /// Plotting coordinate to data x.
    fn x(&self, u: f64) -> f64 {
        let v = if self.reversed { -u } else { u };
        if self.log { 10f64.powf(v) } else { v }
    }
}

/// The x axis as plotters sees it: a linear range in plotting coordinates, ticked exactly at the
/// axis's ticks (the paper's grid, the categories) rather than at plotters' round numbers.
struct Ticked {
    range: (f64, f64),
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = (value - self.range.0) / (self.range.1 - self.range.0);
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.0..self.range.1
    }
}

/// The y range of a chart: every point's min and max, and the band, padded by 8%.
fn y_range(c: &Chart) -> (f64, f64) {
    let pts = c.series.iter().flat_map(|s| &s.points);
    let ys = pts.flat_map(|p| [p.lo, p.hi, p.y]).chain(c.band.iter().flat_map(|b| [b.lo, b.hi]));
    let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.08).max(1e-6);
    (y0 - pad, y1 + pad)
}

/// Horizontal offset of series `si` of `n` on a categorical axis, so their whiskers do not overlap.
fn dodge(c: &Chart, si: usize) -> f64 {
    let n = c.series.len().max(1) as f64;
    if c.categories.is_empty() { 0.0 } else { (si as f64 - (n - 1.0) / 2.0) * 0.18 }
}

/// The legend box as fractions of the plotting area's width and height.
fn legend_size(c: &Chart, entries: usize) -> (f64, f64) {
    let widest = c.series.iter().map(|s| s.name.len()).chain(c.band.iter().map(|b| b.name.len())).max().unwrap_or(0);
    (
        ((34.0 + 8.0 * widest as f64) / (PANEL_W - 80.0)).min(0.9),
        ((10.0 + 20.0 * entries as f64) / (PANEL_H - 110.0)).min(0.9),
    )
}

/// The legend's corner: the one of the four whose box holds the fewest data points and band
/// lines (the upper left on ties), and how many it holds.
fn legend_corner(c: &Chart, axis: &XAxis, (y0, y1): (f64, f64), entries: usize) -> (SeriesLabelPosition, usize) {
    let (w, h) = legend_size(c, entries);
    let (u0, u1) = axis.range;
    let frac = |p: &Point, si: usize, y: f64| (((axis.u(p.x) + dodge(c, si)) - u0) / (u1 - u0), (y - y0) / (y1 - y0));
    let corners = [
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
        (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
    ];
    let covered = |fx: f64, fy: f64| -> usize {
        let inside = |b: f64| b >= fy - 0.02 && b <= fy + h + 0.02;
        // The band's mean line crosses every corner at its height.
        let mut n = c.band.iter().filter(|band| inside((band.mean - y0) / (y1 - y0))).count();
        for (si, s) in c.series.iter().enumerate() {
            for p in &s.points {
                for y in [p.lo, p.y, p.hi] {
                    let (a, b) = frac(p, si, y);
                    if a >= fx - 0.02 && a <= fx + w + 0.02 && inside(b) {
                        n += 1;
                    }
                }
            }
        }
        n
    };
    let mut best = (SeriesLabelPosition::UpperLeft, usize::MAX);
    for (pos, fx, fy) in corners {
        let n = covered(fx, fy);
        if n < best.1 {
            best = (pos, n);
        }
    }
    best
}

impl Figure {
    /// Lays out `charts` in rows of `columns` under `title` (and a red `warning` line if given).
    pub fn new(title: &str, warning: Option<&str>, charts: &[Chart], columns: usize) -> Figure {
        let columns = columns.max(1).min(charts.len().max(1));
        Figure { title: title.into(), warning: warning.map(Into::into), charts: charts.to_vec(), columns }
    }

    fn rows(&self) -> usize {
        self.charts.len().div_ceil(self.columns).max(1)
    }

    /// The title's lines: wrapped at spaces to the figure's width (about 9.5 px a character),
    /// the bracketed scale and dataset on a line of their own when it does not fit.
    fn title_lines(&self) -> Vec<String> {
        let fits = ((self.columns as f64 * PANEL_W - 16.0) / 9.5) as usize;
        if self.title.len() <= fits {
            return vec![self.title.clone()];
        }
        let (text, tail) = match self.title.find(" [") {
            Some(at) => (&self.title[..at], Some(&self.title[at + 1..])),
            None => (self.title.as_str(), None),
        };
        let mut lines: Vec<String> = Vec::new();
        for word in text.split(' ') {
            match lines.last_mut() {
                Some(line) if line.len() + 1 + word.len() <= fits => {
                    line.push(' ');
                    line.push_str(word);
                }
                _ => lines.push(word.to_string()),
            }
        }
        lines.extend(tail.map(String::from));
        lines
    }

    fn header_height(&self) -> f64 {
        12.0 + 22.0 * self.title_lines().len() as f64 + if self.warning.is_some() { 22.0 } else { 0.0 }
    }

    /// Size in SVG pixels.
    fn size(&self) -> (u32, u32) {
        let w = self.columns as f64 * PANEL_W;
        let h = self.header_height() + self.rows() as f64 * PANEL_H;
        (w.ceil() as u32, h.ceil() as u32)
    }

    /// The figure as an SVG document (text as `<text>` elements).
    pub fn svg(&self) -> Result<String> {
        register_font()?;
        let (w, h) = self.size();
        let mut s = String::new();
        {
            let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
            self.draw(&root, 1.0)?;
            root.present().map_err(|e| anyhow!("drawing the SVG: {e}"))?;
        }
        Ok(s)
    }

    /// The figure as an RGB image, at twice the SVG's size.
    pub fn png(&self) -> Result<image::RgbImage> {
        register_font()?;
        let (w, h) = self.size();
        let (w, h) = ((w as f64 * PNG_SCALE) as u32, (h as f64 * PNG_SCALE) as u32);
        let mut buf = vec![255u8; w as usize * h as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            self.draw(&root, PNG_SCALE)?;
            root.present().map_err(|e| anyhow!("drawing the PNG: {e}"))?;
        }
        image::RgbImage::from_raw(w, h, buf).ok_or_else(|| anyhow!("PNG buffer of the wrong size"))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, k: f64) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the figure: {e}");
        root.fill(&WHITE).map_err(err)?;
        let (w, _) = root.dim_in_pixel();
        let mut y = 10.0 * k;
        for line in &self.title_lines() {
            let style = TextStyle::from((FONT, 21.0 * k).into_font())
                .pos(text_anchor::Pos::new(text_anchor::HPos::Center, text_anchor::VPos::Top));
            root.draw_text(line, &style, (w as i32 / 2, y as i32)).map_err(err)?;
            y += 22.0 * k;
        }
        if let Some(warning) = &self.warning {
            let style = TextStyle::from((FONT, 18.0 * k).into_font())
                .color(&RGBColor(200, 0, 0))
                .pos(text_anchor::Pos::new(text_anchor::HPos::Center, text_anchor::VPos::Top));
            root.draw_text(warning, &style, (w as i32 / 2, y as i32)).map_err(err)?;
        }
        let (_, body) = root.split_vertically((self.header_height() * k) as u32);
        let panels = body.split_evenly((self.rows(), self.columns));
        for (chart, panel) in self.charts.iter().zip(&panels) {
            self.chart(chart, panel, k).map_err(err)?;
        }
        Ok(())
    }

    fn chart<DB: DrawingBackend>(
        &self,
        c: &Chart,
        area: &DrawingArea<DB, Shift>,
        k: f64,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let axis = XAxis::new(c);
        let (y0, mut y1) = y_range(c);
        let entries = c.series.len() + usize::from(c.band.is_some());
        let (mut corner, covered) = legend_corner(c, &axis, (y0, y1), entries);
        if covered > 0 {
            // Every corner holds data: headroom above it for the legend.
            let (_, h) = legend_size(c, entries);
            y1 += (y1 - y0) * h / (1.0 - h);
            corner = SeriesLabelPosition::UpperLeft;
        }
        let px = |v: f64| (v * k) as i32;
        let mut chart = ChartBuilder::on(area)
            .caption(&c.title, (FONT, 17.0 * k))
            .margin(px(10.0))
            .x_label_area_size(px(44.0))
            .y_label_area_size(px(56.0))
            .build_cartesian_2d(
                Ticked { range: axis.range, ticks: axis.ticks.iter().map(|t| t.0).collect() },
                y0..y1,
            )?;
        let labels: Vec<(f64, String)> = axis.ticks.clone();
        let x_label = move |u: &f64| {
            labels.iter().find(|(v, _)| (v - u).abs() < 1e-9).map(|(_, s)| s.clone()).unwrap_or_default()
        };
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225).stroke_width(px(1.0).max(1) as u32))
            .axis_style(BLACK.stroke_width(px(1.0).max(1) as u32))
            .x_desc(&c.x_label)
            .y_desc(&c.y_label)
            .x_label_formatter(&x_label)
            .y_label_formatter(&|v: &f64| fmt_tick(*v))
            .y_labels(6)
            .label_style((FONT, 14.0 * k))
            .axis_desc_style((FONT, 15.0 * k))
            .draw()?;

        let stroke = |color: Color, width: f64| rgb(color).stroke_width(((width * k).round() as u32).max(1));
        let (u0, u1) = axis.range;
        if let Some(band) = &c.band {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(u0, band.lo), (u1, band.hi)],
                rgb(GREY).mix(0.18).filled(),
            )))?;
            chart
                .draw_series(DashedLineSeries::new(
                    [(u0, band.mean), (u1, band.mean)],
                    (6.0 * k) as i32,
                    (4.0 * k) as i32,
                    stroke(GREY, 1.5),
                ))?
                .label(&band.name)
                .legend({
                    // The sample: the dashed mean line, over a grey box where the band has a range.
                    let (style, ranged) = (stroke(GREY, 1.5), band.hi > band.lo);
                    move |(x, y): (i32, i32)| {
                        let at = |v: f64| ((v * k) as i32, 0);
                        let half = if ranged { (5.0 * k) as i32 } else { 0 };
                        EmptyElement::at((x, y))
                            + Rectangle::new(
                                [(0, -half), ((20.0 * k) as i32, half)],
                                rgb(GREY).mix(if ranged { 0.3 } else { 0.0 }).filled(),
                            )
                            + PathElement::new(vec![at(0.0), at(8.0)], style)
                            + PathElement::new(vec![at(12.0), at(20.0)], style)
                    }
                });
        }
        let categorical = !c.categories.is_empty();
        for (si, s) in c.series.iter().enumerate() {
            let at = |p: &Point| axis.u(p.x) + dodge(c, si);
            let color = rgb(s.color);
            if !categorical {
                // The min-max band, then the mean line over it.
                let mut outline: Vec<(f64, f64)> = s.points.iter().map(|p| (at(p), p.hi)).collect();
                outline.extend(s.points.iter().rev().map(|p| (at(p), p.lo)));
                chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled())))?;
            } else {
                for p in &s.points {
                    let x = at(p);
                    let cap = 0.04;
                    for seg in [
                        vec![(x, p.lo), (x, p.hi)],
                        vec![(x - cap, p.lo), (x + cap, p.lo)],
                        vec![(x - cap, p.hi), (x + cap, p.hi)],
                    ] {
                        chart.draw_series(std::iter::once(PathElement::new(seg, stroke(s.color, 1.2))))?;
                    }
                }
            }
            let line: Vec<(f64, f64)> = s.points.iter().map(|p| (at(p), p.y)).collect();
            let width = 2.0;
            let legend_style = stroke(s.color, width);
            let dashed = s.dashed;
            // The legend's line sample: two segments, with a gap between them when dashed.
            let (gap_from, gap_to) = if dashed { (8.0, 12.0) } else { (10.0, 10.0) };
            let legend = move |(x, y): (i32, i32)| {
                let at = |v: f64| ((v * k) as i32, 0);
                EmptyElement::at((x, y))
                    + PathElement::new(vec![at(0.0), at(gap_from)], legend_style)
                    + PathElement::new(vec![at(gap_to), at(20.0)], legend_style)
            };
            let drawn = if categorical && !c.connect {
                chart.draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
            } else if s.dashed {
                chart.draw_series(DashedLineSeries::new(
                    line.clone(),
                    (6.0 * k) as i32,
                    (4.0 * k) as i32,
                    stroke(s.color, width),
                ))?
            } else {
                chart.draw_series(LineSeries::new(line.clone(), stroke(s.color, width)))?
            };
            drawn.label(&s.name).legend(legend);
            chart.draw_series(line.iter().map(|&(x, y)| Circle::new((x, y), (2.8 * k) as i32, color.filled())))?;
        }
        if entries > 0 {
            chart
                .configure_series_labels()
                .position(corner)
                .margin(px(6.0))
                .legend_area_size(px(24.0))
                .label_font((FONT, 14.0 * k))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        Chart {
            title: "t".into(),
            x_label: "% weights remaining".into(),
            y_label: "accuracy".into(),
            x_log: true,
            x_reversed: true,
            series: vec![Series {
                name: "IMP".into(),
                color: COLORS[0],
                dashed: false,
                points: (0..9)
                    .map(|n| {
                        let x = 100.0 * 0.8f64.powi(n);
                        Point { x, y: 0.9 - 0.01 * n as f64, lo: 0.89 - 0.01 * n as f64, hi: 0.91 - 0.01 * n as f64 }
                    })
                    .collect(),
            }],
            band: Some(Band { name: "dense".into(), mean: 0.9, lo: 0.88, hi: 0.92 }),
            ..Default::default()
        }
    }

    #[test]
    fn a_chart_renders_to_svg_with_text_and_to_png_at_twice_the_size() {
        let fig = Figure::new("Figure", Some("SMOKE RUN"), &[chart(), chart()], 2);
        let svg = fig.svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("SMOKE RUN"), "{svg}");
        assert!(
            svg.contains("<text") && svg.contains("% weights remaining") && svg.contains("dense"),
            "text as text: {svg}"
        );
        let png = fig.png().unwrap();
        let (w, h) = fig.size();
        assert_eq!((png.width(), png.height()), (2 * w, 2 * h));
        assert!(png.pixels().any(|p| p.0 == [31, 119, 180]), "the series colour is drawn");
        // Real glyphs are anti-aliased: grey levels between black and white appear.
        assert!(png.pixels().any(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2] && (60..190).contains(&p.0[0])));
    }

    #[test]
    fn a_reversed_log_axis_gets_the_papers_ticks_and_runs_right_to_left() {
        let axis = XAxis::new(&chart());
        let labels: Vec<&str> = axis.ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels[..3], ["100", "80", "64"], "{labels:?}");
        assert!(axis.ticks.windows(2).all(|w| w[0].0 < w[1].0), "100 at the left, decreasing to the right");
        assert!((axis.x(axis.u(16.8)) - 16.8).abs() < 1e-9);
    }

    #[test]
    fn the_legend_goes_where_it_covers_the_least_data() {
        let mut c = chart();
        // Points high at the left (dense end): the upper left is taken.
        let axis = XAxis::new(&c);
        assert!(!matches!(legend_corner(&c, &axis, y_range(&c), 2).0, SeriesLabelPosition::UpperLeft));
        // Points low but the last, no band: the upper left is free and chosen.
        c.series[0].points.iter_mut().for_each(|p| (p.y, p.lo, p.hi) = (0.5, 0.49, 0.51));
        if let Some(p) = c.series[0].points.last_mut() {
            (p.y, p.lo, p.hi) = (0.9, 0.89, 0.91);
        }
        c.band = None;
        let axis = XAxis::new(&c);
        assert!(matches!(legend_corner(&c, &axis, y_range(&c), 2), (SeriesLabelPosition::UpperLeft, 0)));
        // A band line high crosses the upper corners: they count as covered.
        c.band = Some(Band { name: "dense".into(), mean: 0.88, lo: 0.87, hi: 0.89 });
        let axis = XAxis::new(&c);
        assert!(legend_corner(&c, &axis, y_range(&c), 2).1 > 0);
    }
}
