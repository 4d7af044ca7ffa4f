//! Where a session puts the messages it accepts: [`Store`], with a directory of files
//! ([`Maildir`]) and an in-memory list for tests ([`Memory`]).

use bytes::Bytes;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A message the server accepted, as it hands it to its [`Store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The session's id for the message, as in its `Received:` header:
    /// `<unix-millis>.<pid>.<n>`, with `n` counting the messages of the process.
    pub id: String,
    /// The reverse-path from `MAIL FROM`, without its brackets; empty for the null path `<>`.
    pub reverse_path: String,
    /// The forward-paths from `RCPT TO`, without their brackets, in the order given.
    pub recipients: Vec<String>,
    /// The envelope as header lines the server puts on top of the message, each ending in
    /// CRLF: `Return-Path`, one `X-Tendril-Rcpt-To` per recipient, then `Received`.
    pub envelope: String,
    /// The message as the client sent it, dot-stuffing undone: empty, or ending in the CRLF
    /// of its last line.
    pub data: Bytes,
}

impl Message {
    /// The message as stored: [`envelope`](Self::envelope), then [`data`](Self::data).
    pub fn to_bytes(&self) -> Vec<u8> {
        [self.envelope.as_bytes(), &self.data].concat()
    }
}

/// Where a [`Session`](super::Session) puts each message it accepts.
///
/// The session calls [`deliver`](Self::deliver) once per message, in the connection's task,
/// after the body has passed the size and mail-loop checks. It then replies
/// `250 OK queued as <name>` with the name returned, or, if delivery fails,
/// `451 Requested action aborted: local error in processing`. Either way the transaction is
/// over and the session reads commands again.
pub trait Store: fmt::Debug + Send + Sync {
    /// Keep `message`, and return the name it is queued under, for the `250` reply.
    fn deliver(&self, message: Message) -> io::Result<String>;
}

/// Each message in its own file in one directory, named `<id>.eml` (the
/// [`Message::id`], so `<unix-millis>.<pid>.<n>.eml`) and holding [`Message::to_bytes`].
///
/// A message is written to a hidden temporary file (`.<id>.eml.tmp`), synced, then renamed, so
/// it appears whole or not at all. The file is written synchronously in the connection's
/// task: fine for an example; a production server would hand it to a blocking pool. (Despite
/// the name, this is one flat directory, not the `tmp`/`new`/`cur` layout of Maildir proper.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maildir {
    dir: PathBuf,
}

impl Maildir {
    /// Store in `dir`, which must exist when messages arrive.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Maildir { dir: dir.into() }
    }

    /// Store in `dir`, creating it (and its parents) if missing.
    pub fn create(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Maildir { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Store for Maildir {
    fn deliver(&self, message: Message) -> io::Result<String> {
        // The id becomes a file name: no separators, no hidden or relative names.
        let id = &message.id;
        if id.is_empty()
            || id.starts_with('.')
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("message id {id:?} is not a file name"),
            ));
        }
        let name = format!("{id}.eml");
        write_atomically(
            &self.dir,
            &name,
            &[message.envelope.as_bytes(), &message.data],
        )?;
        Ok(name)
    }
}

/// Write `parts` to a temporary file in `dir`, sync it, then rename it to `name`: the message
/// appears whole or not at all.
fn write_atomically(dir: &Path, name: &str, parts: &[&[u8]]) -> io::Result<()> {
    fn write(tmp: &Path, parts: &[&[u8]]) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    }
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = write(&tmp, parts).and_then(|()| fs::rename(&tmp, dir.join(name)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Messages kept in memory, in the order they arrived, for tests to look at.
///
/// A cheap handle: clones share one list, so a test keeps a clone and gives another to the
/// [`Settings`](super::Settings). A message is queued under its [`Message::id`]; delivery
/// never fails.
///
/// ```
/// use tendril_examples::smtp::{Memory, Settings};
///
/// let mail = Memory::new();
/// let settings = Settings::new("mx.test", mail.clone());
/// # let _ = settings;
/// assert!(mail.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Memory {
    messages: Arc<Mutex<Vec<Message>>>,
}

impl Memory {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The messages delivered so far, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.lock().clone()
    }

    /// Take the messages delivered so far, oldest first, leaving the store empty.
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(&mut *self.lock())
    }

    /// How many messages are stored.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No message is stored.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The list. A panic while it was held (in a test) leaves it whole, so poisoning is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, Vec<Message>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for Memory {
    fn deliver(&self, message: Message) -> io::Result<String> {
        let id = message.id.clone();
        self.lock().push(message);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> Message {
        Message {
            id: id.to_owned(),
            reverse_path: String::new(),
            recipients: vec!["b@y".to_owned()],
            envelope: "Return-Path: <>\r\nX-Tendril-Rcpt-To: <b@y>\r\n".to_owned(),
            data: Bytes::from_static(b"Subject: hi\r\n\r\nbody\r\n"),
        }
    }

    #[test]
    fn a_message_is_stored_as_its_envelope_then_its_data() {
        assert_eq!(
            message("1.2.3").to_bytes(),
            b"Return-Path: <>\r\nX-Tendril-Rcpt-To: <b@y>\r\nSubject: hi\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn memory_clones_share_one_list_in_delivery_order() {
        let mail = Memory::new();
        let handle = mail.clone();
        assert_eq!(handle.deliver(message("1.2.3")).unwrap(), "1.2.3");
        assert_eq!(handle.deliver(message("1.2.4")).unwrap(), "1.2.4");
        assert_eq!(mail.len(), 2);
        let ids: Vec<String> = mail.messages().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["1.2.3", "1.2.4"]);
        assert_eq!(mail.take(), [message("1.2.3"), message("1.2.4")]);
        assert!(mail.is_empty() && handle.is_empty());
    }

    #[test]
    fn maildir_refuses_an_id_that_is_not_a_plain_file_name() {
        let maildir = Maildir::new(std::env::temp_dir().join("tendril-smtp-no-such-dir"));
        for id in ["", ".hidden", "../escape", "a/b", "a\\b", "x y"] {
            let e = maildir.deliver(message(id)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{id:?}");
        }
    }
}
