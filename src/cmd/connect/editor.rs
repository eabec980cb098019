//! The interactive line editor: rustyline on its own thread with tab completion of message types and
//! slash commands, multi-line JSON (Enter sends once braces balance) and a history file per target.

use std::io::IsTerminal;
use std::path::PathBuf;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{CompletionType, Config, Context, Editor, ExternalPrinter};
use tokio::sync::mpsc;

use super::input::{self, SLASH_COMMANDS};

/// Lines kept in a history file.
const HISTORY_SIZE: usize = 1000;

/// Completes the endpoint's message types and the slash commands; holds multi-line JSON open.
struct Helper {
    types: Vec<&'static str>,
}

impl Completer for Helper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let pair = |word: &str| Pair { display: word.to_owned(), replacement: word.to_owned() };
        if let Some(arg) = before.strip_prefix("/json ") {
            let found = ["on", "off"].iter().filter(|w| w.starts_with(arg.trim_start())).map(|w| pair(w)).collect();
            return Ok((pos - arg.trim_start().len(), found));
        }
        if before.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let words = self.types.iter().copied().chain(SLASH_COMMANDS.iter().map(|(name, _)| *name));
        Ok((0, words.filter(|w| w.starts_with(before)).map(pair).collect()))
    }
}

impl Hinter for Helper {
    type Hint = String;
}

impl Highlighter for Helper {}

impl Validator for Helper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if input::is_complete(ctx.input()) { ValidationResult::Valid(None) } else { ValidationResult::Incomplete })
    }
}

impl rustyline::Helper for Helper {}

/// `$XDG_STATE_HOME/rtctl/history-<key>`, else `~/.local/state/rtctl/history-<key>`.
pub fn history_path(key: &str) -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state")))?;
    Some(state.join("rtctl").join(format!("history-{key}")))
}

/// Starts the editor thread; each complete entry arrives on the returned channel, `/quit` on Ctrl-D or
/// Ctrl-C. The printer writes above the prompt.
pub fn spawn(
    types: Vec<&'static str>,
    history_key: &str,
) -> anyhow::Result<(mpsc::UnboundedReceiver<String>, Box<dyn ExternalPrinter + Send>)> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .max_history_size(HISTORY_SIZE)?
        .history_ignore_dups(true)?
        .history_ignore_space(true)
        .build();
    let mut editor: Editor<Helper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(Helper { types }));
    let history = history_path(history_key);
    if let Some(path) = &history {
        // A missing file is the first session for this target, not an error.
        let _ = editor.load_history(path);
    }
    let printer = editor.create_external_printer()?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            let entry = match editor.readline("> ") {
                Ok(entry) => entry,
                Err(ReadlineError::Eof | ReadlineError::Interrupted) => "/quit".to_owned(),
                Err(_) => "/quit".to_owned(),
            };
            if entry.trim() == "/history" {
                for (n, line) in editor.history().iter().enumerate() {
                    println!("{:>4}  {}", n + 1, line.replace('\n', "\n      "));
                }
                continue;
            }
            if !entry.trim().is_empty() && entry.trim() != "/quit" {
                let _ = editor.add_history_entry(entry.as_str());
                if let Some(path) = &history {
                    save(&mut editor, path);
                }
            }
            let quit = matches!(input::parse(&entry), Ok(input::Action::Quit));
            if tx.send(entry).is_err() || quit {
                break;
            }
        }
    });
    Ok((rx, Box::new(printer)))
}

fn save(editor: &mut Editor<Helper, DefaultHistory>, path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Saved after every entry: the session may end while the editor thread waits for a key.
    let _ = editor.save_history(path);
}

/// Restores the terminal as it was when dropped. The session can end (the hub closed) while the editor
/// thread is blocked in raw mode; the process then exits without rustyline's own restore.
pub struct TerminalGuard {
    saved: Option<libc::termios>,
}

impl TerminalGuard {
    pub fn save() -> Self {
        if !std::io::stdin().is_terminal() {
            return Self { saved: None };
        }
        let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes a termios into the pointer on success; it is only read then.
        let saved =
            unsafe { (libc::tcgetattr(libc::STDIN_FILENO, termios.as_mut_ptr()) == 0).then(|| termios.assume_init()) };
        Self { saved }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores settings read from the same descriptor by tcgetattr.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
            // Bracketed paste off (rustyline turns it on), and end the half-typed line.
            println!("\x1b[?2004l");
        }
    }
}
