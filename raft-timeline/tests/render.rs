//! The picture of a small story: a 3-node cluster elects node 1, node 1 is killed, node 2 takes
//! over, node 1 restarts and follows; the picture has every lane, role and marker.

use raft_timeline::{Event, Fault, Role, Timeline, TimelineError};

fn story() -> Timeline {
    let mut t = Timeline::new("leader kill", "ms");
    t.push(
        0.0,
        None,
        Event::Membership {
            voters: vec![1, 2, 3],
            learners: vec![],
        },
    );
    for node in 1..=3 {
        t.push(
            0.0,
            Some(node),
            Event::Role {
                role: Role::Follower,
                term: 0,
            },
        );
    }
    t.push(
        140.0,
        Some(1),
        Event::Role {
            role: Role::PreCandidate,
            term: 0,
        },
    );
    t.push(
        150.0,
        Some(1),
        Event::Role {
            role: Role::Candidate,
            term: 1,
        },
    );
    t.push(
        160.0,
        Some(1),
        Event::Role {
            role: Role::Leader,
            term: 1,
        },
    );
    for (i, time) in [200.0, 250.0, 300.0].into_iter().enumerate() {
        for node in 1..=3 {
            t.push(time, Some(node), Event::Commit { index: i as u64 + 1 });
        }
    }
    t.push(
        400.0,
        Some(1),
        Event::Fault {
            fault: Fault::Kill,
            detail: String::new(),
        },
    );
    t.push(
        420.0,
        None,
        Event::Fault {
            fault: Fault::Partition,
            detail: "{2} | {3}".into(),
        },
    );
    t.push(
        560.0,
        None,
        Event::Fault {
            fault: Fault::Heal,
            detail: String::new(),
        },
    );
    t.push(
        620.0,
        Some(2),
        Event::Role {
            role: Role::Leader,
            term: 2,
        },
    );
    t.push(
        700.0,
        Some(1),
        Event::Fault {
            fault: Fault::Restart,
            detail: String::new(),
        },
    );
    t.push(
        720.0,
        Some(1),
        Event::Role {
            role: Role::Follower,
            term: 2,
        },
    );
    t.push(800.0, Some(2), Event::Commit { index: 5 });
    t
}

#[test]
fn the_picture_shows_every_lane_role_term_and_marker() {
    let svg = story().render_svg().expect("draws");
    assert!(svg.starts_with("<svg"), "an SVG document");
    for text in [
        "leader kill",
        "node 1",
        "node 2",
        "node 3",
        "t1",
        "t2",
        "kill",
        "restart",
        "partition {2} | {3}",
        "heal",
        "commit index",
    ] {
        assert!(svg.contains(text), "the picture shows {text:?}");
    }
    // The leader's green and the down grey are painted (plotters writes colours as #RRGGBB).
    assert!(svg.contains("#31A354"), "a leader band");
    assert!(svg.contains("#636363"), "a down band");
}

#[test]
fn who_led_when_follows_from_the_records() {
    let lanes = story().lanes();
    assert_eq!(lanes.leaders(), vec![(1, 160.0, 400.0), (2, 620.0, lanes.span.1)]);
    assert!(lanes.span.1 > 800.0, "room after the last record");
    assert_eq!(lanes.max_commit, 5);
    assert_eq!(lanes.cluster_faults.len(), 2);
}

#[test]
fn the_log_round_trips_through_json_lines_and_files() {
    let story = story();
    let text = story.to_jsonl();
    assert!(text
        .lines()
        .next()
        .is_some_and(|l| l.contains(r#""event":"meta""#)));
    assert_eq!(Timeline::from_jsonl(&text).expect("parses"), story);
    let dir = tempfile_dir("round-trip");
    let path = dir.join("story.jsonl");
    story.write_jsonl(&path).expect("writes");
    assert_eq!(Timeline::read_jsonl(&path).expect("reads"), story);
    story.write_svg(&dir.join("story.svg")).expect("draws");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_malformed_line_is_refused_with_its_number() {
    let text = "{\"time\":0,\"event\":\"commit\",\"index\":1,\"node\":1}\n\n{\"time\":\"soon\",\"event\":\"commit\"}\n";
    match Timeline::from_jsonl(text) {
        Err(TimelineError::BadLine { line, .. }) => assert_eq!(line, 3),
        other => panic!("expected a bad line 3, got {other:?}"),
    }
    assert!(matches!(
        Timeline::from_jsonl(r#"{"time":1,"event":"role","role":"emperor","term":1}"#),
        Err(TimelineError::BadLine { line: 1, .. })
    ));
}

#[test]
fn an_empty_timeline_still_draws() {
    let svg = Timeline::new("nothing happened", "step")
        .render_svg()
        .expect("draws");
    assert!(svg.contains("nothing happened"));
}

fn tempfile_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("raft-timeline-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn the_draw_command_draws_a_log_and_refuses_a_bad_one_with_its_line() {
    let dir = tempfile_dir("draw");
    let input = dir.join("story.jsonl");
    story().write_jsonl(&input).expect("writes");
    let output = dir.join("story.svg");
    let drawn = std::process::Command::new(env!("CARGO_BIN_EXE_raft-timeline"))
        .args(["draw", "--title", "retitled"])
        .arg(&input)
        .arg(&output)
        .output()
        .expect("runs");
    assert!(
        drawn.status.success(),
        "{}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    assert!(std::fs::read_to_string(&output)
        .expect("drawn")
        .contains("retitled"));

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"time\":1,\"event\":\"nonsense\"}\n").expect("writes");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_raft-timeline"))
        .arg("draw")
        .arg(&bad)
        .arg(dir.join("bad.svg"))
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("line 1"));
    let _ = std::fs::remove_dir_all(dir);
}

/// The pixels of a PNG, decoded.
fn pixels(png: &[u8]) -> resvg::tiny_skia::Pixmap {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG signature");
    resvg::tiny_skia::Pixmap::decode_png(png).expect("the PNG decodes")
}

/// The `width` and `height` attributes of an SVG's root element.
fn svg_size(svg: &str) -> (u32, u32) {
    let attribute = |name: &str| -> u32 {
        let start = svg.find(&format!("{name}=\"")).expect("the attribute") + name.len() + 2;
        let end = start + svg[start..].find('"').expect("its end");
        svg[start..end].parse().expect("a number")
    };
    (attribute("width"), attribute("height"))
}

#[test]
fn the_png_is_the_svg_at_twice_the_size_with_the_role_colours() {
    let story = story();
    let (width, height) = svg_size(&story.render_svg().expect("draws"));
    let pixmap = pixels(&story.render_png().expect("rasterizes"));
    assert_eq!((pixmap.width(), pixmap.height()), (2 * width, 2 * height));
    let count = |rgb: (u8, u8, u8)| {
        pixmap
            .pixels()
            .iter()
            .filter(|p| (p.red(), p.green(), p.blue()) == rgb && p.alpha() == 255)
            .count()
    };
    // Node 1 and then node 2 lead: a green band; node 1 is down in between: a dark grey one.
    assert!(count((0x31, 0xa3, 0x54)) > 1000, "the leader's band is drawn");
    assert!(count((0xc6, 0xdb, 0xef)) > 1000, "the followers' bands are drawn");
    assert!(count((0x63, 0x63, 0x63)) > 100, "the down band is drawn");
}

#[test]
fn the_png_sets_its_text_in_the_embedded_font() {
    // The same picture with a short and a long title: only text can make the difference, and a
    // rasterizer without a font would draw none.
    let dark = |title: &str| {
        let mut story = story();
        story.title = title.to_owned();
        pixels(&story.render_png().expect("rasterizes"))
            .pixels()
            .iter()
            .filter(|p| {
                p.alpha() == 255 && u32::from(p.red()) + u32::from(p.green()) + u32::from(p.blue()) < 200
            })
            .count()
    };
    let short = dark("x");
    let long = dark("a much longer title, with many letters in it, WWWWWWWW");
    assert!(
        long > short + 500,
        "the title's letters are drawn: {short} dark pixels, then {long}"
    );
}

#[test]
fn write_picture_chooses_the_format_by_extension() {
    let dir = tempfile_dir("picture");
    let story = story();
    for (name, png) in [("a.png", true), ("b.PNG", true), ("c.svg", false), ("d", false)] {
        let path = dir.join(name);
        story.write_picture(&path).expect("draws");
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(bytes.starts_with(b"\x89PNG"), png, "{name}");
        assert_eq!(bytes.starts_with(b"<svg"), !png, "{name}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
