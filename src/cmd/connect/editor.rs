//! The interactive line editor: rustyline on its own thread with tab completion of message types and
//! slash commands, multi-line JSON (a continuation prompt until the braces balance), Ctrl-C as a shell
//! has it, and a history file per target.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, CompletionType, ConditionalEventHandler, Config, Context, Editor, Event, EventContext, EventHandler,
    ExternalPrinter, KeyCode, KeyEvent, Modifiers, RepeatCount,
};
use tokio::sync::mpsc;

use super::input::{self, SLASH_COMMANDS};

/// Lines kept in a history file.
const HISTORY_SIZE: usize = 1000;

/// The prompt of an entry's first line, and of the lines that continue an unbalanced JSON entry.
pub const PROMPT: &str = "> ";
pub const CONTINUATION_PROMPT: &str = "… ";

/// Completes the endpoint's message types and the slash commands.
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

/// Enter always ends the line: an unbalanced JSON entry continues under a prompt of its own (see
/// [`spawn`]), which rustyline's own multi-line input does not show.
impl Validator for Helper {}

/// Ctrl-C interrupts as usual, noting first whether it discards typed text (a shell's Ctrl-C) or
/// comes on an empty line (which ends the session).
struct CtrlC {
    discards_text: Arc<AtomicBool>,
}

impl ConditionalEventHandler for CtrlC {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext<'_>) -> Option<Cmd> {
        self.discards_text.store(!ctx.line().is_empty(), Ordering::Relaxed);
        None
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

/// Starts the editor thread; each complete entry arrives on the returned channel. Ctrl-C discards a
/// half-typed entry and keeps the session; on an empty line it sends `/quit`, as Ctrl-D does. The
/// printer writes above the prompt.
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
    let discards_text = Arc::new(AtomicBool::new(false));
    let ctrl_c = CtrlC { discards_text: Arc::clone(&discards_text) };
    editor.bind_sequence(KeyEvent(KeyCode::Char('C'), Modifiers::CTRL), EventHandler::Conditional(Box::new(ctrl_c)));
    let history = history_path(history_key);
    if let Some(path) = &history {
        // A missing file is the first session for this target, not an error.
        let _ = editor.load_history(path);
    }
    let printer = editor.create_external_printer()?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // The lines of an entry so far: more than one while a JSON entry's braces do not balance.
        let mut entry = String::new();
        loop {
            discards_text.store(false, Ordering::Relaxed);
            let prompt = if entry.is_empty() { PROMPT } else { CONTINUATION_PROMPT };
            match editor.readline(prompt) {
                Ok(line) => {
                    if !entry.is_empty() {
                        entry.push('\n');
                    }
                    entry.push_str(&line);
                    if !input::is_complete(&entry) {
                        continue;
                    }
                }
                Err(ReadlineError::Interrupted) if discards_text.load(Ordering::Relaxed) || !entry.is_empty() => {
                    entry.clear();
                    continue;
                }
                Err(_) => entry = "/quit".to_owned(),
            }
            let entry = std::mem::take(&mut entry);
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
            let quit = matches!(input::parse(&entry, None), Ok(input::Action::Quit));
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
