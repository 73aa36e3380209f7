//! The picture as a PNG: the SVG that [`crate::svg`] draws, rasterized by resvg.
//!
//! The text is set in DejaVu Sans, embedded in the binary, so the picture does not depend on the
//! fonts a machine happens to have (a CI runner may have none).

use std::sync::{Arc, OnceLock};

use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg::{fontdb, Options, Tree};

use crate::TimelineError;

/// Pixels per SVG unit: twice the SVG's size, sharp on a high-density screen.
pub(crate) const SCALE: f32 = 2.0;

/// The fonts the text is set in, loaded once.
fn fonts() -> Arc<fontdb::Database> {
    static FONTS: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut fonts = fontdb::Database::new();
            for face in [dejavu::sans::regular(), dejavu::sans::bold()] {
                fonts.load_font_source(fontdb::Source::Binary(Arc::new(face)));
            }
            fonts.set_sans_serif_family("DejaVu Sans");
            Arc::new(fonts)
        })
        .clone()
}

/// Rasterizes `svg` at [`SCALE`] into PNG bytes.
pub(crate) fn rasterize(svg: &str) -> Result<Vec<u8>, TimelineError> {
    let options = Options {
        font_family: "DejaVu Sans".to_owned(),
        fontdb: fonts(),
        ..Options::default()
    };
    let tree = Tree::from_str(svg, &options)
        .map_err(|e| TimelineError::Draw(format!("the SVG does not parse: {e}")))?;
    let size = tree.size().to_int_size().scale_by(SCALE).ok_or_else(|| {
        TimelineError::Draw(format!(
            "the picture's size {:?} cannot be rasterized",
            tree.size()
        ))
    })?;
    let mut pixmap = Pixmap::new(size.width(), size.height())
        .ok_or_else(|| TimelineError::Draw(format!("no {}x{} pixel buffer", size.width(), size.height())))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(&tree, Transform::from_scale(SCALE, SCALE), &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| TimelineError::Draw(format!("PNG encoding: {e}")))
}
