//! An in-memory queue for tests: records what was sent, and can be told to fail.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{ChangeMessage, Queue, QueueError};

/// How a failing queue fails: `QueueError::Transient` or `QueueError::Invalid`.
type FailWith = fn(String) -> QueueError;

#[derive(Default)]
pub struct MemoryQueue {
    sent: Mutex<Vec<ChangeMessage>>,
    failing: Mutex<Option<FailWith>>,
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every later send fails with `Transient` (true) or `Invalid` (false), until [`Self::recover`].
    pub fn fail(&self, transient: bool) {
        let f: FailWith = if transient {
            |m| QueueError::transient(m)
        } else {
            |m| QueueError::invalid(m)
        };
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    pub fn recover(&self) {
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn sent(&self) -> Vec<ChangeMessage> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, message: &ChangeMessage) -> Result<String, QueueError> {
        if let Some(fail) = *self.failing.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(fail("the test queue is set to fail".into()));
        }
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.push(message.clone());
        Ok(format!("mem-{}", sent.len()))
    }
}
