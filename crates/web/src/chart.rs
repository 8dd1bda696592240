//! A report section drawn as an SVG bar chart on the server: bars from
//! some columns, a percentage line from another, each row a group. No
//! script draws it, so it shows without JavaScript; the section's table
//! stands beside it with the figures (the chart's description says so).

use maud::{Markup, html};
use rapport_node::reports::Section;

/// Most groups drawn: a long ranking is read from its table and CSV.
pub(crate) const MOST: usize = 40;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 44.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 72.0;
/// Colours that stay apart for the common colour blindnesses (Okabe–Ito).
const COLOURS: [&str; 4] = ["#0072b2", "#e69f00", "#009e73", "#cc79a7"];
const LINE: &str = "#d55e00";

/// A cell as a number: amounts, counts, percentages; "–" and words are 0.
fn number(cell: &str) -> f64 {
    cell.trim().trim_end_matches('%').parse().unwrap_or(0.0)
}

fn clip(s: &str, most: usize) -> String {
    if s.chars().count() <= most {
        s.to_string()
    } else {
        let cut: String = s.chars().take(most - 1).collect();
        format!("{cut}…")
    }
}

/// The section's chart, if it has one and rows to draw; `id` makes the
/// title and description ids unique on the page.
pub(crate) fn svg(section: &Section, id: &str) -> Option<Markup> {
    let chart = section.chart.as_ref()?;
    let rows = &section.rows[..section.rows.len().min(MOST)];
    // A total row ("all") repeats the others: it is read from the table.
    let rows: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r.get(chart.label).is_none_or(|l| l != "all"))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let column = |i: usize| section.columns.get(i).cloned().unwrap_or_default();
    let value = |r: &Vec<String>, i: usize| r.get(i).map_or(0.0, |c| number(c)).max(0.0);
    let top = rows
        .iter()
        .flat_map(|r| chart.bars.iter().map(|b| value(r, *b)))
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top } else { 1.0 };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let group = plot_w / rows.len() as f64;
    let bar = group * 0.8 / chart.bars.len().max(1) as f64;
    let y = |v: f64| TOP + plot_h - v / top * plot_h;
    let line_y = |pct: f64| TOP + plot_h - pct.clamp(0.0, 100.0) / 100.0 * plot_h;
    let line_points: Option<String> = chart.line.map(|l| {
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + group * (i as f64 + 0.5),
                    line_y(value(r, l))
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    let shown = if section.rows.len() > MOST {
        format!(" The first {} rows are drawn.", rows.len())
    } else {
        String::new()
    };
    Some(html! {
        figure class="chart" {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
                aria-labelledby={ (title_id) " " (desc_id) } {
                title id=(title_id) { (section.title) }
                desc id=(desc_id) {
                    "Bars: " (chart.bars.iter().map(|b| column(*b)).collect::<Vec<_>>().join(", "))
                    @if let Some(l) = chart.line { "; line: " (column(l)) }
                    ", by " (column(chart.label)) ". The table below gives every figure." (shown)
                }
                // Axis and scale.
                line x1=(LEFT) y1=(TOP + plot_h) x2=(LEFT + plot_w) y2=(TOP + plot_h) stroke="#4a5360" {}
                @for f in [0.0, 0.5, 1.0] {
                    line x1=(LEFT) x2=(LEFT + plot_w) y1=(y(top * f)) y2=(y(top * f)) stroke="#c9d0da" stroke-dasharray="3 3" {}
                    text x=(LEFT - 6.0) y=(y(top * f) + 4.0) text-anchor="end" font-size="11" { (short(top * f)) }
                }
                @for (i, r) in rows.iter().enumerate() {
                    @for (j, b) in chart.bars.iter().enumerate() {
                        @let v = value(r, *b);
                        rect x=(format!("{:.1}", LEFT + group * i as f64 + group * 0.1 + bar * j as f64))
                            y=(format!("{:.1}", y(v))) width=(format!("{:.1}", bar.max(1.0)))
                            height=(format!("{:.1}", TOP + plot_h - y(v))) fill=(COLOURS[j % COLOURS.len()]) {
                            title { (r.get(chart.label).cloned().unwrap_or_default()) ", " (column(*b)) ": " (r.get(*b).cloned().unwrap_or_default()) }
                        }
                    }
                    @let x = LEFT + group * (i as f64 + 0.5);
                    text x=(format!("{x:.1}")) y=(TOP + plot_h + 12.0) font-size="11" text-anchor="end"
                        transform=(format!("rotate(-35 {x:.1} {:.1})", TOP + plot_h + 12.0)) {
                        (clip(r.get(chart.label).map_or("", String::as_str), 16))
                    }
                }
                @if let Some(points) = &line_points {
                    polyline points=(points) fill="none" stroke=(LINE) stroke-width="2" {}
                    text x=(LEFT + plot_w + 4.0) y=(line_y(100.0) + 4.0) font-size="11" { "100%" }
                    text x=(LEFT + plot_w + 4.0) y=(line_y(0.0) + 4.0) font-size="11" { "0%" }
                }
            }
            figcaption class="legend" {
                @for (j, b) in chart.bars.iter().enumerate() {
                    span { span class="swatch" style={ "background:" (COLOURS[j % COLOURS.len()]) } {} (column(*b)) }
                }
                @if let Some(l) = chart.line {
                    span { span class="swatch line" style={ "background:" (LINE) } {} (column(l)) }
                }
            }
        }
    })
}

/// A scale label: 1.2k, 3.4M.
fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e4 => format!("{:.0}k", v / 1e3),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v if v.fract() == 0.0 => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_node::reports::Chart;

    fn section(rows: &[[&str; 3]]) -> Section {
        Section {
            title: "Customers <by> revenue".into(),
            columns: vec!["customer".into(), "revenue".into(), "cumulative %".into()],
            rows: rows
                .iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect(),
            chart: Some(Chart {
                label: 0,
                bars: vec![1],
                line: Some(2),
            }),
        }
    }

    #[test]
    fn bars_scale_to_the_largest_and_the_line_to_percent() {
        let s = section(&[["Acme", "800.00", "80.0"], ["Beta", "200.00", "100.0"]]);
        let svg = svg(&s, "c1").expect("a chart").into_string();
        assert!(
            svg.contains(r#"role="img""#) && svg.contains("c1-title c1-desc"),
            "{svg}"
        );
        assert!(
            svg.contains("Customers &lt;by&gt; revenue"),
            "escaped: {svg}"
        );
        assert!(svg.contains("The table below gives every figure."));
        // The plot is 192 high: Acme's bar fills it, Beta's is a quarter.
        assert!(svg.contains(r#"height="192.0""#), "{svg}");
        assert!(svg.contains(r#"height="48.0""#), "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("Acme, revenue: 800.00"), "{svg}");
    }

    #[test]
    fn no_rows_or_only_a_total_draw_nothing_and_many_rows_are_cut() {
        assert!(svg(&section(&[]), "c").is_none());
        assert!(svg(&section(&[["all", "1", "1"]]), "c").is_none());
        let many: Vec<[&str; 3]> = (0..60).map(|_| ["x", "1", "50"]).collect();
        let svg = svg(&section(&many), "c").expect("chart").into_string();
        assert_eq!(svg.matches("<rect").count(), MOST);
        assert!(svg.contains("The first 40 rows are drawn."));
    }
}
