//! The tenants' allowed origins as WebSocket upgrades read them: every browser connect carries an `Origin`,
//! so a known tenant's list is answered from memory. A change made here shows at once; one made by another
//! node shows within `TTL`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ids::DevId;

const TTL: Duration = Duration::from_secs(10);

/// A tenant's list and when it was read.
type Entry = (Instant, Arc<[String]>);

#[derive(Default, Clone, Debug)]
pub(super) struct OriginsCache(Arc<Mutex<HashMap<DevId, Entry>>>);

impl OriginsCache {
    pub(super) fn get(&self, dev_id: DevId) -> Option<Arc<[String]>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&dev_id)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, list)| list.clone())
    }

    pub(super) fn put(&self, dev_id: DevId, list: Arc<[String]>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(dev_id, (Instant::now(), list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_per_tenant_and_replaced() {
        let c = OriginsCache::default();
        assert!(c.get(DevId(1)).is_none());
        c.put(DevId(1), Arc::from(vec!["https://a.example".to_string()]));
        assert_eq!(c.get(DevId(1)).unwrap().len(), 1);
        assert!(c.get(DevId(2)).is_none());
        c.put(DevId(1), Arc::from(Vec::new()));
        assert!(c.get(DevId(1)).unwrap().is_empty());
    }
}
