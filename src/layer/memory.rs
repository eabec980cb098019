//! The in-memory layer: one process, publish is a direct local delivery.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Layer, LayerError, LocalGroups, Push};

/// Fan-out within this process only: the embedded default.
pub struct MemoryLayer<G> {
    local: Arc<G>,
}

impl<G: LocalGroups> MemoryLayer<G> {
    pub fn new(local: Arc<G>) -> Self {
        Self { local }
    }
}

#[async_trait]
impl<G: LocalGroups> Layer for MemoryLayer<G> {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, group: &str, push: Push) -> Result<(), LayerError> {
        self.local.deliver(group, push).await;
        Ok(())
    }

    // Every group is "subscribed" in one process: the local groups already hold its members.
    async fn subscribe(&self, _group: &str) -> Result<(), LayerError> {
        Ok(())
    }

    fn unsubscribe(&self, _group: &str) {}

    async fn ping(&self) -> Result<(), LayerError> {
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Mutex;

    use super::*;

    /// One delivery as a test sees it: the group, the frame's bytes, the connection skipped.
    pub type Delivery = (String, Vec<u8>, Option<u64>);

    /// Local groups that record what they are handed.
    #[derive(Default)]
    pub struct Recorder {
        pub members: Mutex<Vec<String>>,
        pub delivered: Mutex<Vec<Delivery>>,
    }

    impl LocalGroups for Recorder {
        async fn deliver(self: &Arc<Self>, group: &str, push: Push) -> usize {
            let members = usize::from(self.has_members(group));
            self.delivered.lock().unwrap().push((group.to_owned(), push.wire.to_vec(), push.skip));
            members
        }

        fn groups(&self) -> Vec<String> {
            self.members.lock().unwrap().clone()
        }

        fn has_members(&self, group: &str) -> bool {
            self.members.lock().unwrap().iter().any(|g| g == group)
        }
    }

    /// Every publish reaches the local groups at once, in publish order, with its frame and skip intact;
    /// subscribing needs nothing in one process.
    #[tokio::test]
    async fn publishes_are_delivered_locally_in_order() {
        let local = Arc::new(Recorder::default());
        let layer = MemoryLayer::new(Arc::clone(&local));
        layer.subscribe("room:r1").await.unwrap();
        layer.publish("room:r1", Push::new("{\"n\":1}".into())).await.unwrap();
        layer.publish("org:acme", Push::skipping("{\"n\":2}".into(), 7)).await.unwrap();
        layer.unsubscribe("room:r1");
        assert!(layer.ping().await.is_ok());
        let delivered = local.delivered.lock().unwrap().clone();
        assert_eq!(
            delivered,
            [
                ("room:r1".to_owned(), Push::new("{\"n\":1}".into()).wire.to_vec(), None),
                ("org:acme".to_owned(), Push::new("{\"n\":2}".into()).wire.to_vec(), Some(7)),
            ]
        );
    }
}
