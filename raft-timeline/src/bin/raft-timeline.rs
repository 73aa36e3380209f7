//! `raft-timeline draw run.jsonl run.svg`: draws a recorded timeline.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raft_timeline::Timeline;

#[derive(Parser)]
#[command(
    name = "raft-timeline",
    about = "Draws a Raft cluster's recorded timeline",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Draws the timeline in INPUT (JSON lines) into OUTPUT (PNG if it ends in .png, SVG otherwise).
    Draw {
        /// The recorded timeline.
        input: PathBuf,
        /// The picture to write.
        output: PathBuf,
        /// A title instead of the one recorded.
        #[arg(long)]
        title: Option<String>,
    },
}

fn main() -> ExitCode {
    let Command::Draw { input, output, title } = Cli::parse().command;
    let drawn = Timeline::read_jsonl(&input).and_then(|mut timeline| {
        if let Some(title) = title {
            timeline.title = title;
        }
        timeline.write_picture(&output)
    });
    match drawn {
        Ok(()) => {
            println!("{}", output.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("raft-timeline: {error}");
            ExitCode::FAILURE
        }
    }
}
