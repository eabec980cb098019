//! The in-memory layer: one process, publish is a direct local delivery.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Layer, LayerError, Push};
use crate::hub::registry::Registry;

/// Fan-out within this process only: the embedded default.
pub struct MemoryLayer {
    registry: Arc<Registry>,
}

impl MemoryLayer {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

#[async_trait]
impl Layer for MemoryLayer {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, group: &str, push: Push) -> Result<(), LayerError> {
        self.registry.deliver(group, push).await;
        Ok(())
    }

    // Every group is "subscribed" in one process: the registry already holds its members.
    async fn subscribe(&self, _group: &str) -> Result<(), LayerError> {
        Ok(())
    }

    fn unsubscribe(&self, _group: &str) {}

    async fn ping(&self) -> Result<(), LayerError> {
        Ok(())
    }
}
