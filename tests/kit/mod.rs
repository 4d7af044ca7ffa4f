//! Applications shared by the connection, TLS and tracker tests.
#![allow(dead_code)]

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use tendril_core::{AppError, Application, CloseReason, Event, Tendril};

/// What an application saw, shared with the test.
#[derive(Debug, Default)]
pub struct Log {
    pub frames: Vec<Bytes>,
    pub closed: Vec<String>,
    pub events: Vec<String>,
    pub writable: usize,
}

pub type SharedLog = Arc<Mutex<Log>>;

pub fn log() -> SharedLog {
    Arc::default()
}

/// Records frames and close reasons; optionally echoes.
pub struct Recorder {
    pub log: SharedLog,
    pub echo: bool,
}

impl Recorder {
    pub fn new(log: &SharedLog) -> Self {
        Recorder {
            log: log.clone(),
            echo: false,
        }
    }

    pub fn echo(log: &SharedLog) -> Self {
        Recorder {
            log: log.clone(),
            echo: true,
        }
    }
}

impl Application for Recorder {
    fn recv_frame(&mut self, tendril: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.log.lock().unwrap().frames.push(frame.clone());
        if self.echo {
            tendril.send_frame(frame)?;
        }
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
        self.log.lock().unwrap().closed.push(reason.to_string());
    }

    fn writable(&mut self, _: &mut Tendril) {
        self.log.lock().unwrap().writable += 1;
    }

    fn event(&mut self, _: &mut Tendril, event: &Event) {
        self.log.lock().unwrap().events.push(format!("{event:?}"));
    }
}

/// Frames as strings, for readable assertions.
pub fn texts(log: &SharedLog) -> Vec<String> {
    log.lock()
        .unwrap()
        .frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

pub fn closed(log: &SharedLog) -> Vec<String> {
    log.lock().unwrap().closed.clone()
}
