//! A run of a Raft cluster as a picture: who led when.
//!
//! A [`Timeline`] is a small event log: [`Record`]s of a time, a node (or the whole cluster) and
//! an [`Event`] (a role or term change, a commit, a fault, a membership change). It is written and
//! read as JSON lines, and [`Timeline::render_svg`] (or [`Timeline::render_png`]) draws it: one lane per node, its role as a
//! coloured band, the term written where it changes, the commit index as a line, red markers for
//! faults on a node and blue lines for faults on the whole cluster.
//!
//! ```
//! use raft_timeline::{Event, Fault, Role, Timeline};
//!
//! let mut timeline = Timeline::new("a leader is killed", "ms");
//! for node in 1..=3 {
//!     timeline.push(0.0, Some(node), Event::Role { role: Role::Follower, term: 0 });
//! }
//! timeline.push(150.0, Some(1), Event::Role { role: Role::Leader, term: 1 });
//! timeline.push(400.0, Some(1), Event::Fault { fault: Fault::Kill, detail: String::new() });
//! timeline.push(620.0, Some(2), Event::Role { role: Role::Leader, term: 2 });
//!
//! let lanes = timeline.lanes();
//! // Node 2 leads from 620 ms to the end of the picture.
//! assert_eq!(lanes.leaders(), vec![(1, 150.0, 400.0), (2, 620.0, lanes.span.1)]);
//! let svg = timeline.render_svg()?;
//! assert!(svg.starts_with("<svg"));
//!
//! // The log round-trips through JSON lines.
//! let text = timeline.to_jsonl();
//! assert_eq!(Timeline::from_jsonl(&text)?, timeline);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod event;
mod lanes;
mod png;
mod svg;

use std::path::{Path, PathBuf};

pub use crate::event::{Event, Fault, Record, Role};
pub use crate::lanes::{Band, Lane, LaneState, Lanes};

/// What can go wrong reading, writing or drawing a timeline.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// A line of the log is not a record.
    #[error("line {line} of the timeline is not a record: {source}")]
    BadLine {
        /// The line's number, from 1.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Plotters could not draw the picture.
    #[error("the timeline could not be drawn: {0}")]
    Draw(String),
}

/// A run's event log, in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// Drawn above the lanes.
    pub title: String,
    /// The unit of the records' times.
    pub unit: String,
    /// What happened, in time order.
    pub records: Vec<Record>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new(title: impl Into<String>, unit: impl Into<String>) -> Self {
        Timeline {
            title: title.into(),
            unit: unit.into(),
            records: Vec::new(),
        }
    }

    /// Records `event` at `time` on `node` (`None`: on the whole cluster).
    pub fn push(&mut self, time: f64, node: Option<u64>, event: Event) {
        self.records.push(Record { time, node, event });
    }

    /// The log as JSON lines, a [`Event::Meta`] record first.
    pub fn to_jsonl(&self) -> String {
        let meta = Record {
            time: self.records.first().map_or(0.0, |r| r.time),
            node: None,
            event: Event::Meta {
                title: self.title.clone(),
                unit: self.unit.clone(),
            },
        };
        let mut text = String::new();
        for record in std::iter::once(&meta).chain(&self.records) {
            // A record is plain data: it always serializes.
            if let Ok(line) = serde_json::to_string(record) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    }

    /// Reads a log written by [`Timeline::to_jsonl`] (or by any tool that writes the same
    /// records). Blank lines are skipped; the records are sorted by time.
    pub fn from_jsonl(text: &str) -> Result<Self, TimelineError> {
        let mut timeline = Timeline::new("", "");
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = serde_json::from_str(line).map_err(|source| TimelineError::BadLine {
                line: number + 1,
                source,
            })?;
            match record.event {
                Event::Meta { title, unit } => {
                    timeline.title = title;
                    timeline.unit = unit;
                }
                _ => timeline.records.push(record),
            }
        }
        timeline.records.sort_by(|a, b| a.time.total_cmp(&b.time));
        Ok(timeline)
    }

    /// The records folded into lanes, as the picture shows them.
    pub fn lanes(&self) -> Lanes {
        Lanes::of(&self.records)
    }

    /// The picture, as an SVG document.
    pub fn render_svg(&self) -> Result<String, TimelineError> {
        svg::render(&self.lanes(), &self.title, &self.unit).map_err(|e| TimelineError::Draw(e.to_string()))
    }

    /// Writes the log to `path`.
    pub fn write_jsonl(&self, path: &Path) -> Result<(), TimelineError> {
        write(path, self.to_jsonl().as_bytes())
    }

    /// Reads a log from `path`.
    pub fn read_jsonl(path: &Path) -> Result<Self, TimelineError> {
        let text = std::fs::read_to_string(path).map_err(|source| TimelineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Timeline::from_jsonl(&text)
    }

    /// The picture as a PNG, twice the SVG's size. The text is set in an embedded font, so every
    /// machine draws the same pixels.
    pub fn render_png(&self) -> Result<Vec<u8>, TimelineError> {
        png::rasterize(&self.render_svg()?)
    }

    /// Draws the picture into `path` (SVG).
    pub fn write_svg(&self, path: &Path) -> Result<(), TimelineError> {
        write(path, self.render_svg()?.as_bytes())
    }

    /// Draws the picture into `path` (PNG).
    pub fn write_png(&self, path: &Path) -> Result<(), TimelineError> {
        write(path, &self.render_png()?)
    }

    /// Draws the picture into `path`: a PNG if its name ends in `.png` (in any case), an SVG
    /// otherwise.
    pub fn write_picture(&self, path: &Path) -> Result<(), TimelineError> {
        if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("png"))
        {
            self.write_png(path)
        } else {
            self.write_svg(path)
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), TimelineError> {
    let io = |source| TimelineError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, bytes).map_err(io)
}
