//! Where a session's lines go: above the prompt of an interactive session (rustyline's external
//! printer), to a terminal, or to stdout as one JSON object per frame for scripts.

use std::io::Write;

use colored::Colorize;
use rustyline::ExternalPrinter;
use serde_json::Value;

/// Where lines are written.
pub enum Sink {
    /// Above the line being typed.
    Prompt(Box<dyn ExternalPrinter + Send>),
    /// A terminal without an editor (a scripted session run by hand).
    Terminal,
    /// Frames to stdout as JSON lines, everything else to stderr.
    JsonLines,
}

pub struct Output {
    sink: Sink,
    /// Pretty-print incoming JSON, or one normalized JSON line per frame for scripts; off (`--raw`,
    /// `/json off`), frames are shown exactly as they came.
    pub pretty: bool,
    timestamps: bool,
}

impl Output {
    pub fn new(sink: Sink, pretty: bool, timestamps: bool) -> Self {
        Self { sink, pretty, timestamps }
    }

    pub fn is_json_lines(&self) -> bool {
        matches!(self.sink, Sink::JsonLines)
    }

    /// A frame from the hub.
    pub fn incoming(&mut self, text: &str) {
        let parsed: Option<Value> = serde_json::from_str(text).ok();
        if self.is_json_lines() {
            // One line per frame, whatever its layout on the wire; a non-JSON frame becomes a JSON string.
            // Raw (`--raw`, `/json off`) writes the frame's text as it came instead: key order, spacing, non-JSON.
            let line = match parsed {
                _ if !self.pretty => text.to_owned(),
                Some(value) => value.to_string(),
                None => Value::from(text).to_string(),
            };
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
            return;
        }
        let body = match (&parsed, self.pretty) {
            (Some(value), true) => serde_json::to_string_pretty(value).unwrap_or_else(|_| text.to_owned()),
            _ => text.to_owned(),
        };
        let is_error = parsed.as_ref().is_some_and(|v| v["type"] == "error");
        let body = indent(&body);
        let line = if is_error { format!("← {body}").red() } else { format!("← {body}").cyan() };
        self.emit(line.to_string());
    }

    /// A frame we sent.
    pub fn outgoing(&mut self, text: &str) {
        if !self.is_json_lines() {
            self.emit(format!("→ {text}").green().to_string());
        }
    }

    /// Connection state and command results.
    pub fn system(&mut self, message: &str) {
        match self.sink {
            Sink::JsonLines => eprintln!("rtctl: {message}"),
            _ => self.emit(format!("* {message}").yellow().to_string()),
        }
    }

    /// Something went wrong (refused input, a failed connect).
    pub fn error(&mut self, message: &str) {
        match self.sink {
            Sink::JsonLines => eprintln!("rtctl: {message}"),
            _ => self.emit(format!("! {message}").red().bold().to_string()),
        }
    }

    /// Text shown as it is (e.g. `/help`).
    pub fn plain(&mut self, text: &str) {
        match self.sink {
            Sink::JsonLines => eprintln!("{text}"),
            _ => self.emit(text.to_owned()),
        }
    }

    fn emit(&mut self, line: String) {
        let line = if self.timestamps {
            format!("{} {line}", chrono::Local::now().format("%H:%M:%S%.3f").to_string().dimmed())
        } else {
            line
        };
        match &mut self.sink {
            Sink::Prompt(printer) => {
                // Outside a prompt (before the first, between two) rustyline writes the text as it is, and
                // the next prompt would draw over a line without its newline; at a prompt it adds none.
                if printer.print(format!("{line}\n")).is_err() {
                    println!("{line}");
                }
            }
            _ => println!("{line}"),
        }
    }
}

/// Continuation lines line up under the first one's text, after the arrow and its space.
fn indent(body: &str) -> String {
    body.replace('\n', "\n  ")
}
