//! Figures as a list of drawing primitives, rendered to SVG (text) and PNG (the `image` crate, with
//! an 8x8 bitmap font), so both files show the same figure.
//!
//! A [`Chart`] is one panel: series of points with min/max error bars, optionally a horizontal band
//! (the unpruned network's accuracy), a log-scale x axis that may run right-to-left (% of weights
//! remaining, as in the paper), or categorical x positions.

use std::fmt::Write as _;

/// An RGB colour.
pub type Color = [u8; 3];

/// The paper's palette: blue, orange, green, red, purple.
pub const COLORS: [Color; 5] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189]];

/// One point with its error bar.
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

#[derive(Debug, Clone)]
enum Prim {
    Line { pts: Vec<(f64, f64)>, color: Color, width: f64, dashed: bool },
    Rect { x: f64, y: f64, w: f64, h: f64, color: Color, alpha: f64 },
    Text { x: f64, y: f64, text: String, size: f64, anchor: Anchor, color: Color },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// A whole figure: a title and a grid of charts.
pub struct Figure {
    width: f64,
    height: f64,
    prims: Vec<Prim>,
}

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 320.0;
const BLACK: Color = [0, 0, 0];
const GREY: Color = [150, 150, 150];

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
    if v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

impl Figure {
    /// Lays out `charts` in rows of `columns` under `title` (and a red `warning` line if given).
    pub fn new(title: &str, warning: Option<&str>, charts: &[Chart], columns: usize) -> Figure {
        let columns = columns.max(1).min(charts.len().max(1));
        let rows = charts.len().div_ceil(columns).max(1);
        let width = columns as f64 * PANEL_W;
        // A title wider than the figure (8 px per character in the PNG) breaks before its " [".
        let lines: Vec<&str> = match title.find(" [") {
            Some(at) if title.len() as f64 * 8.0 > width - 16.0 => vec![&title[..at], &title[at + 1..]],
            _ => vec![title],
        };
        let mut y = 20.0;
        let mut prims = Vec::new();
        for line in &lines {
            prims.push(Prim::Text {
                x: width / 2.0,
                y,
                text: line.to_string(),
                size: 14.0,
                anchor: Anchor::Middle,
                color: BLACK,
            });
            y += 18.0;
        }
        if let Some(w) = warning {
            prims.push(Prim::Text {
                x: width / 2.0,
                y: y + 4.0,
                text: w.into(),
                size: 13.0,
                anchor: Anchor::Middle,
                color: [200, 0, 0],
            });
            y += 22.0;
        }
        let top = y - 2.0;
        let mut fig = Figure { width, height: top + rows as f64 * PANEL_H, prims };
        for (i, chart) in charts.iter().enumerate() {
            let (ox, oy) = ((i % columns) as f64 * PANEL_W, top + (i / columns) as f64 * PANEL_H);
            fig.chart(chart, ox, oy);
        }
        fig
    }

    fn text(&mut self, x: f64, y: f64, text: &str, size: f64, anchor: Anchor, color: Color) {
        self.prims.push(Prim::Text { x, y, text: text.into(), size, anchor, color });
    }

    fn line(&mut self, pts: Vec<(f64, f64)>, color: Color, width: f64, dashed: bool) {
        self.prims.push(Prim::Line { pts, color, width, dashed });
    }

    fn chart(&mut self, c: &Chart, ox: f64, oy: f64) {
        let (l, r, t, b) = (ox + 58.0, ox + PANEL_W - 14.0, oy + 44.0, oy + PANEL_H - 48.0);
        self.text((l + r) / 2.0, oy + 16.0, &c.title, 12.0, Anchor::Middle, BLACK);
        let pts: Vec<&Point> = c.series.iter().flat_map(|s| &s.points).collect();
        let tx = |x: f64| if c.x_log { x.max(1e-12).log10() } else { x };
        let (mut x0, mut x1) = if c.categories.is_empty() {
            pts.iter().map(|p| tx(p.x)).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)))
        } else {
            (-0.5, c.categories.len() as f64 - 0.5)
        };
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 - x0 < 1e-9 {
            (x0, x1) = (x0 - 0.5, x1 + 0.5);
        }
        let pad = if c.categories.is_empty() { 0.04 * (x1 - x0) } else { 0.0 };
        let (x0, x1) = (x0 - pad, x1 + pad);
        let ys = pts.iter().flat_map(|p| [p.lo, p.hi, p.y]).chain(c.band.iter().flat_map(|b| [b.lo, b.hi]));
        let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if !y0.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        let ypad = ((y1 - y0) * 0.08).max(1e-6);
        let (y0, y1) = (y0 - ypad, y1 + ypad);
        let sx = |x: f64| {
            let f = (tx(x) - x0) / (x1 - x0);
            if c.x_reversed { r - f * (r - l) } else { l + f * (r - l) }
        };
        let sxc = |i: f64| l + (i - x0) / (x1 - x0) * (r - l);
        let sy = |y: f64| b - (y - y0) / (y1 - y0) * (b - t);
        // Axes, ticks and labels.
        self.line(vec![(l, t), (l, b), (r, b)], BLACK, 1.0, false);
        for v in nice_ticks(y0, y1, 5) {
            self.line(vec![(l - 4.0, sy(v)), (l, sy(v))], BLACK, 1.0, false);
            self.text(l - 6.0, sy(v) + 4.0, &fmt_tick(v), 10.0, Anchor::End, BLACK);
        }
        if c.categories.is_empty() {
            let ticks: Vec<f64> = if c.x_log {
                let all: [f64; 15] =
                    [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0];
                let decades: Vec<f64> = all.iter().copied().filter(|v| (x0..=x1).contains(&v.log10())).collect();
                // A narrow range (a few levels) gets linear ticks between its ends.
                if decades.len() >= 3 { decades } else { nice_ticks(10f64.powf(x0), 10f64.powf(x1), 4) }
            } else {
                nice_ticks(x0, x1, 6)
            };
            for v in ticks {
                self.line(vec![(sx(v), b), (sx(v), b + 4.0)], BLACK, 1.0, false);
                self.text(sx(v), b + 16.0, &fmt_tick(v), 10.0, Anchor::Middle, BLACK);
            }
        } else {
            for (i, name) in c.categories.iter().enumerate() {
                self.text(sxc(i as f64), b + 16.0, name, 9.0, Anchor::Middle, BLACK);
            }
        }
        self.text((l + r) / 2.0, b + 34.0, &c.x_label, 11.0, Anchor::Middle, BLACK);
        self.text(ox + 8.0, oy + 34.0, &c.y_label, 10.0, Anchor::Start, BLACK);
        // Band.
        if let Some(band) = &c.band {
            let (ya, yb) = (sy(band.hi), sy(band.lo));
            self.prims.push(Prim::Rect { x: l, y: ya, w: r - l, h: (yb - ya).max(1.0), color: GREY, alpha: 0.25 });
            self.line(vec![(l, sy(band.mean)), (r, sy(band.mean))], GREY, 1.5, false);
        }
        // Series.
        let n = c.series.len().max(1) as f64;
        for (si, s) in c.series.iter().enumerate() {
            let dodge = if c.categories.is_empty() { 0.0 } else { (si as f64 - (n - 1.0) / 2.0) * 0.18 };
            let px = |p: &Point| if c.categories.is_empty() { sx(p.x) } else { sxc(p.x + dodge) };
            if c.categories.is_empty() || c.connect {
                self.line(s.points.iter().map(|p| (px(p), sy(p.y))).collect(), s.color, 2.0, s.dashed);
            }
            for p in &s.points {
                let x = px(p);
                self.line(vec![(x, sy(p.lo)), (x, sy(p.hi))], s.color, 1.2, false);
                self.line(vec![(x - 3.0, sy(p.lo)), (x + 3.0, sy(p.lo))], s.color, 1.2, false);
                self.line(vec![(x - 3.0, sy(p.hi)), (x + 3.0, sy(p.hi))], s.color, 1.2, false);
                self.prims.push(Prim::Rect {
                    x: x - 2.5,
                    y: sy(p.y) - 2.5,
                    w: 5.0,
                    h: 5.0,
                    color: s.color,
                    alpha: 1.0,
                });
            }
        }
        // Legend: top left, or top right where the top left holds data.
        let mut ly = t + 8.0;
        let entries: Vec<(String, Color, bool)> = c
            .series
            .iter()
            .map(|s| (s.name.clone(), s.color, s.dashed))
            .chain(c.band.iter().map(|b| (b.name.clone(), GREY, false)))
            .collect();
        let widest = entries.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0) as f64;
        let (w, h) = (32.0 + 7.0 * widest, 13.0 * entries.len() as f64 + 4.0);
        let covers = |x0: f64| {
            c.series.iter().enumerate().any(|(si, s)| {
                let dodge = if c.categories.is_empty() { 0.0 } else { (si as f64 - (n - 1.0) / 2.0) * 0.18 };
                s.points.iter().any(|p| {
                    let x = if c.categories.is_empty() { sx(p.x) } else { sxc(p.x + dodge) };
                    x >= x0 - 4.0 && x <= x0 + w + 4.0 && sy(p.hi) <= t + h + 4.0
                })
            })
        };
        let lx = if covers(l + 4.0) && !covers(r - w - 4.0) { r - w - 4.0 } else { l + 4.0 };
        if !entries.is_empty() {
            self.prims.push(Prim::Rect { x: lx, y: t + 1.0, w, h, color: [255, 255, 255], alpha: 0.85 });
        }
        for (name, color, dashed) in entries {
            self.line(vec![(lx + 4.0, ly), (lx + 24.0, ly)], color, 2.0, dashed);
            self.text(lx + 28.0, ly + 4.0, &name, 9.0, Anchor::Start, BLACK);
            ly += 13.0;
        }
    }

    /// The figure as an SVG document.
    pub fn svg(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#,
            w = self.width,
            h = self.height
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let rgb = |c: Color| format!("rgb({},{},{})", c[0], c[1], c[2]);
        for p in &self.prims {
            match p {
                Prim::Line { pts, color, width, dashed } => {
                    let points: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    let dash = if *dashed { r#" stroke-dasharray="6,4""# } else { "" };
                    let _ = writeln!(
                        s,
                        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{width}"{dash}/>"#,
                        points.join(" "),
                        rgb(*color)
                    );
                }
                Prim::Rect { x, y, w, h, color, alpha } => {
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}" fill-opacity="{alpha}"/>"#,
                        rgb(*color)
                    );
                }
                Prim::Text { x, y, text, size, anchor, color } => {
                    let a = match anchor {
                        Anchor::Start => "start",
                        Anchor::Middle => "middle",
                        Anchor::End => "end",
                    };
                    let esc = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
                    let _ = writeln!(
                        s,
                        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{a}" fill="{}">{esc}</text>"#,
                        rgb(*color)
                    );
                }
            }
        }
        s.push_str("</svg>\n");
        s
    }

    /// The figure as an RGB image.
    pub fn png(&self) -> image::RgbImage {
        let (w, h) = (self.width.ceil() as u32, self.height.ceil() as u32);
        let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
        let mut blend = |x: i64, y: i64, c: Color, a: f64| {
            if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                let p = img.get_pixel_mut(x as u32, y as u32);
                for (v, c) in p.0.iter_mut().zip(c) {
                    *v = (*v as f64 * (1.0 - a) + c as f64 * a).round() as u8;
                }
            }
        };
        for p in &self.prims {
            match p {
                Prim::Rect { x, y, w, h, color, alpha } => {
                    for yy in y.round() as i64..(y + h).round() as i64 {
                        for xx in x.round() as i64..(x + w).round() as i64 {
                            blend(xx, yy, *color, *alpha);
                        }
                    }
                }
                Prim::Line { pts, color, width, dashed } => {
                    let mut along = 0.0;
                    for seg in pts.windows(2) {
                        let ((ax, ay), (bx, by)) = (seg[0], seg[1]);
                        let len = ((bx - ax).powi(2) + (by - ay).powi(2)).sqrt();
                        let steps = (len * 2.0).ceil().max(1.0) as usize;
                        for i in 0..=steps {
                            let f = i as f64 / steps as f64;
                            let d = along + f * len;
                            if *dashed && (d % 10.0) > 6.0 {
                                continue;
                            }
                            let (x, y) = (ax + f * (bx - ax), ay + f * (by - ay));
                            let half = (width / 2.0).max(0.5);
                            for dy in (-(half.ceil() as i64))..=(half.ceil() as i64) {
                                for dx in (-(half.ceil() as i64))..=(half.ceil() as i64) {
                                    if ((dx * dx + dy * dy) as f64).sqrt() <= half {
                                        blend(x.round() as i64 + dx, y.round() as i64 + dy, *color, 1.0);
                                    }
                                }
                            }
                        }
                        along += len;
                    }
                }
                Prim::Text { x, y, text, size, anchor, color } => {
                    // 8x8 glyphs, one pixel per glyph pixel: close to the SVG's 10-14 pt text.
                    let _ = size;
                    let scale = 1;
                    let advance = 8 * scale;
                    let width = (text.chars().count() * advance) as f64;
                    let left = match anchor {
                        Anchor::Start => *x,
                        Anchor::Middle => x - width / 2.0,
                        Anchor::End => x - width,
                    };
                    let top = y - 7.0 * scale as f64;
                    for (i, ch) in text.chars().enumerate() {
                        let glyph = font8x8::legacy::BASIC_LEGACY.get(ch as usize).copied().unwrap_or([0; 8]);
                        for (row, bits) in glyph.iter().enumerate() {
                            for col in 0..8 {
                                if bits >> col & 1 == 1 {
                                    for sy in 0..scale {
                                        for sx in 0..scale {
                                            blend(
                                                (left + (i * advance + col * scale + sx) as f64).round() as i64,
                                                (top + (row * scale + sy) as f64).round() as i64,
                                                *color,
                                                1.0,
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_renders_to_svg_and_png_of_the_same_size() {
        let chart = Chart {
            title: "t".into(),
            x_label: "% weights remaining".into(),
            y_label: "accuracy".into(),
            x_log: true,
            x_reversed: true,
            series: vec![Series {
                name: "IMP".into(),
                color: COLORS[0],
                dashed: false,
                points: vec![
                    Point { x: 100.0, y: 0.9, lo: 0.89, hi: 0.91 },
                    Point { x: 10.0, y: 0.8, lo: 0.7, hi: 0.85 },
                ],
            }],
            band: Some(Band { name: "dense".into(), mean: 0.9, lo: 0.88, hi: 0.92 }),
            ..Default::default()
        };
        let fig = Figure::new("Figure", Some("SMOKE RUN"), &[chart.clone(), chart], 2);
        let svg = fig.svg();
        assert!(svg.starts_with("<svg") && svg.contains("SMOKE RUN") && svg.contains("stroke"));
        let png = fig.png();
        assert_eq!((png.width(), png.height()), (840, 378));
        assert!(png.pixels().any(|p| p.0 == [31, 119, 180]), "the series colour is drawn");
    }
}
