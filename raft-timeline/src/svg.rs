//! Draws [`Lanes`] as an SVG picture with plotters.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::event::{Fault, Role};
use crate::lanes::{LaneState, Lanes};

/// The picture's width, and each lane's height, in pixels.
const WIDTH: u32 = 1200;
const LANE: u32 = 64;
/// Above the lanes: the title and the legend; below: the time axis.
const TOP: u32 = 70;
const BOTTOM: u32 = 50;
/// Left of the lanes: their names.
const LEFT: u32 = 70;
const RIGHT: u32 = 20;

/// The colour of each state.
pub(crate) fn colour(state: LaneState) -> RGBColor {
    match state {
        LaneState::Role(Role::Follower) => RGBColor(0xc6, 0xdb, 0xef),
        LaneState::Role(Role::PreCandidate) => RGBColor(0xfd, 0xe0, 0x8a),
        LaneState::Role(Role::Candidate) => RGBColor(0xfd, 0xae, 0x6b),
        LaneState::Role(Role::Leader) => RGBColor(0x31, 0xa3, 0x54),
        LaneState::Role(Role::Learner) => RGBColor(0xda, 0xc8, 0xf0),
        LaneState::Paused => RGBColor(0xbd, 0xbd, 0xbd),
        LaneState::Down => RGBColor(0x63, 0x63, 0x63),
    }
}

const LEGEND: [(LaneState, &str); 7] = [
    (LaneState::Role(Role::Follower), "follower"),
    (LaneState::Role(Role::PreCandidate), "pre-candidate"),
    (LaneState::Role(Role::Candidate), "candidate"),
    (LaneState::Role(Role::Leader), "leader"),
    (LaneState::Role(Role::Learner), "learner"),
    (LaneState::Paused, "paused"),
    (LaneState::Down, "down"),
];

/// Labels along one line, each drawn only where it does not overlap the one before (a busy run
/// has more markers than room for their words; the markers themselves are all drawn).
#[derive(Default)]
struct LabelRow {
    free_from: i32,
}

impl LabelRow {
    /// Whether a label of `chars` characters at font `size` fits at `x`; if so, takes the room.
    fn fits(&mut self, x: i32, chars: usize, size: u32) -> bool {
        if x < self.free_from {
            return false;
        }
        self.free_from = x + (chars as i32 * size as i32 * 7) / 10 + 6;
        true
    }
}

/// Maps a time to an x pixel and a lane to its top pixel.
struct Scale {
    start: f64,
    per_unit: f64,
}

impl Scale {
    fn x(&self, time: f64) -> i32 {
        LEFT as i32 + ((time - self.start) * self.per_unit).round() as i32
    }
}

fn lane_top(row: usize) -> i32 {
    TOP as i32 + row as i32 * LANE as i32
}

/// Draws `lanes` into an SVG document and returns it.
pub(crate) fn render(
    lanes: &Lanes,
    title: &str,
    unit: &str,
) -> Result<String, DrawingAreaErrorKind<std::io::Error>> {
    let height = TOP + LANE * lanes.lanes.len().max(1) as u32 + BOTTOM;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        draw(&root, lanes, title, unit, height).map_err(|e| match e {
            DrawingAreaErrorKind::BackendError(_) => DrawingAreaErrorKind::LayoutError,
            DrawingAreaErrorKind::SharingError => DrawingAreaErrorKind::SharingError,
            DrawingAreaErrorKind::LayoutError => DrawingAreaErrorKind::LayoutError,
        })?;
        root.present().map_err(|_| DrawingAreaErrorKind::LayoutError)?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(root: &Area<'_>, lanes: &Lanes, title: &str, unit: &str, height: u32) -> DrawResult {
    root.fill(&WHITE)?;
    let text = |size: u32| ("sans-serif", size).into_font().color(&BLACK);
    root.draw(&Text::new(title.to_string(), (LEFT as i32, 8), text(18)))?;
    // The legend.
    let mut x = LEFT as i32;
    for (state, name) in LEGEND {
        root.draw(&Rectangle::new([(x, 36), (x + 14, 50)], colour(state).filled()))?;
        root.draw(&Text::new(name, (x + 18, 37), text(12)))?;
        x += 26 + 8 * name.len() as i32;
    }
    root.draw(&PathElement::new(
        vec![(x, 43), (x + 18, 43)],
        BLACK.stroke_width(2),
    ))?;
    root.draw(&Text::new("commit index", (x + 22, 37), text(12)))?;

    let (start, end) = lanes.span;
    let plot_width = f64::from(WIDTH - LEFT - RIGHT);
    let scale = Scale {
        start,
        per_unit: plot_width / (end - start).max(f64::MIN_POSITIVE),
    };
    let max_commit = lanes.max_commit.max(1) as f64;
    for (row, (node, lane)) in lanes.lanes.iter().enumerate() {
        let top = lane_top(row);
        let band_top = top + 6;
        let band_bottom = top + LANE as i32 - 6;
        root.draw(&Text::new(
            format!("node {node}"),
            (8, top + LANE as i32 / 2),
            text(14).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        for band in &lane.bands {
            let (x0, x1) = (
                scale.x(band.start),
                scale.x(band.end).max(scale.x(band.start) + 1),
            );
            root.draw(&Rectangle::new(
                [(x0, band_top), (x1, band_bottom)],
                colour(band.state).filled(),
            ))?;
        }
        let mut term_labels = LabelRow::default();
        for (time, term) in &lane.terms {
            let x = scale.x(*time);
            root.draw(&PathElement::new(
                vec![(x, band_top), (x, band_top + 8)],
                BLACK.stroke_width(1),
            ))?;
            let label = format!("t{term}");
            if term_labels.fits(x + 2, label.len(), 10) {
                root.draw(&Text::new(label, (x + 2, band_top + 1), text(10)))?;
            }
        }
        // The commit index as a step line within the lane.
        let y =
            |index: u64| band_bottom - ((index as f64 / max_commit) * f64::from(LANE - 16)).round() as i32;
        let mut points = Vec::with_capacity(lane.commits.len() * 2);
        let mut last = 0;
        for (time, index) in &lane.commits {
            let x = scale.x(*time);
            points.push((x, y(last)));
            points.push((x, y(*index)));
            last = *index;
        }
        if let Some(&(x, _)) = points.last() {
            points.push((x.max(scale.x(end)), y(last)));
            root.draw(&PathElement::new(points, BLACK.stroke_width(1)))?;
        }
        let mut fault_labels = LabelRow::default();
        for (time, fault, detail) in &lane.faults {
            let x = scale.x(*time);
            let red = RGBColor(0xcb, 0x18, 0x1d);
            root.draw(&TriangleMarker::new((x, top + 4), 5, red.filled()))?;
            let label = if detail.is_empty() {
                fault.label().to_string()
            } else {
                format!("{} {detail}", fault.label())
            };
            if *fault != Fault::Cut && fault_labels.fits(x + 5, label.chars().count(), 10) {
                root.draw(&Text::new(
                    label,
                    (x + 5, top + LANE as i32 - 18),
                    text(10).color(&red),
                ))?;
            }
        }
    }
    let lanes_bottom = lane_top(lanes.lanes.len());
    // Cluster-wide faults and membership changes: a line across every lane.
    let mut cluster_labels = LabelRow::default();
    for (time, fault, detail) in &lanes.cluster_faults {
        let x = scale.x(*time);
        let blue = RGBColor(0x21, 0x66, 0xac);
        root.draw(&PathElement::new(
            vec![(x, TOP as i32 - 4), (x, lanes_bottom)],
            blue.stroke_width(1),
        ))?;
        let label = if detail.is_empty() {
            fault.label().to_string()
        } else {
            format!("{} {detail}", fault.label())
        };
        if cluster_labels.fits(x + 3, label.chars().count(), 10) {
            root.draw(&Text::new(label, (x + 3, TOP as i32 - 14), text(10).color(&blue)))?;
        }
    }
    let mut membership_labels = LabelRow::default();
    for (time, voters, learners) in lanes.memberships.iter().skip(1) {
        let x = scale.x(*time);
        let purple = RGBColor(0x6a, 0x3d, 0x9a);
        root.draw(&PathElement::new(
            vec![(x, TOP as i32), (x, lanes_bottom)],
            purple.stroke_width(2),
        ))?;
        let mut label = format!("voters {voters:?}");
        if !learners.is_empty() {
            label.push_str(&format!(" learners {learners:?}"));
        }
        if membership_labels.fits(x + 3, label.chars().count(), 10) {
            root.draw(&Text::new(
                label,
                (x + 3, lanes_bottom + 4),
                text(10).color(&purple),
            ))?;
        }
    }
    // The time axis.
    root.draw(&PathElement::new(
        vec![(LEFT as i32, lanes_bottom), (scale.x(end), lanes_bottom)],
        BLACK.stroke_width(1),
    ))?;
    for tick in ticks(start, end) {
        let x = scale.x(tick);
        root.draw(&PathElement::new(
            vec![(x, lanes_bottom), (x, lanes_bottom + 5)],
            BLACK.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            format!("{tick}"),
            (x, lanes_bottom + 18),
            text(11).pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    root.draw(&Text::new(
        unit.to_string(),
        (WIDTH as i32 - RIGHT as i32, height as i32 - 14),
        text(12).pos(Pos::new(HPos::Right, VPos::Top)),
    ))?;
    Ok(())
}

/// Round tick positions, about ten across the run.
fn ticks(start: f64, end: f64) -> Vec<f64> {
    let range = (end - start).max(1.0);
    let raw = range / 10.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (start / step).ceil() * step;
    (0..=20)
        .map(|i| first + step * f64::from(i))
        .take_while(|t| *t <= end)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_within_the_run() {
        assert_eq!(
            ticks(0.0, 100.0),
            (0..=10).map(|i| f64::from(i) * 10.0).collect::<Vec<_>>()
        );
        let some = ticks(3.0, 4_800.0);
        assert_eq!(some.first(), Some(&500.0));
        assert!(some.iter().all(|t| *t >= 3.0 && *t <= 4_800.0));
    }
}
