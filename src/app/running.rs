//! The one running set a reload works on: members keyed by id, each with the config it was
//! started from and a handle to what runs it.
//!
//! Receives the configs a new file asks for, `(id, config)` in config order; promises a
//! [`Plan`]: which running members to stop (gone), which to start (new), which to restart
//! (the same id with a config that is not equal) and which to keep (equal config: left
//! running untouched). Configs are compared with `PartialEq`, never through their text.
//! Devices (config [`crate::config::DeviceConfig`], handle: cancellation and status), sinks
//! (the sink's settings, handle: its delivery loop) and the devices on the shared MQTT
//! connection (handle: their status) all use it. Pure bookkeeping: starting and stopping is
//! the caller's.

/// What a reload does to a running set: ids in config order (`stop` in running order).
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<K> {
    pub start: Vec<K>,
    pub stop: Vec<K>,
    pub restart: Vec<K>,
    pub keep: Vec<K>,
}

impl<K> Plan<K> {
    /// A plan that changes nothing.
    pub fn empty() -> Self {
        Self {
            start: Vec::new(),
            stop: Vec::new(),
            restart: Vec::new(),
            keep: Vec::new(),
        }
    }
}

impl<K: PartialEq> Plan<K> {
    /// True when `id` has to be (re)started: new, or its config changed.
    pub fn starts(&self, id: &K) -> bool {
        self.start.contains(id) || self.restart.contains(id)
    }
}

struct Member<K, C, H> {
    id: K,
    config: C,
    handle: H,
}

/// Running members keyed by `K`, started from a `C`, run through an `H`.
pub struct RunningSet<K, C, H> {
    members: Vec<Member<K, C, H>>,
}

impl<K, C, H> Default for RunningSet<K, C, H> {
    fn default() -> Self {
        Self {
            members: Vec::new(),
        }
    }
}

impl<K: PartialEq + Clone, C: PartialEq, H> RunningSet<K, C, H> {
    /// What it takes to run `wanted` instead of what runs now (pure).
    pub fn plan<'a>(&self, wanted: impl IntoIterator<Item = (&'a K, &'a C)>) -> Plan<K>
    where
        K: 'a,
        C: 'a,
    {
        let mut p = Plan::empty();
        let mut seen: Vec<&K> = Vec::new();
        for (id, config) in wanted {
            seen.push(id);
            match self.members.iter().find(|m| &m.id == id) {
                None => p.start.push(id.clone()),
                Some(m) if &m.config == config => p.keep.push(id.clone()),
                Some(_) => p.restart.push(id.clone()),
            }
        }
        for m in &self.members {
            if !seen.contains(&&m.id) {
                p.stop.push(m.id.clone());
            }
        }
        p
    }

    /// Records a started member (replacing one with the same id, whose handle is returned).
    pub fn insert(&mut self, id: K, config: C, handle: H) -> Option<H> {
        let old = self.remove(&id);
        self.members.push(Member { id, config, handle });
        old
    }

    /// Takes a member out; the caller stops it through the returned handle.
    pub fn remove(&mut self, id: &K) -> Option<H> {
        let i = self.members.iter().position(|m| &m.id == id)?;
        Some(self.members.remove(i).handle)
    }

    /// The handle of `id` when it runs with exactly `config`.
    pub fn get_unchanged(&self, id: &K, config: &C) -> Option<&H> {
        self.members
            .iter()
            .find(|m| &m.id == id && &m.config == config)
            .map(|m| &m.handle)
    }

    /// The handles, in the set's order.
    pub fn handles(&self) -> impl Iterator<Item = &H> {
        self.members.iter().map(|m| &m.handle)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Puts the members in `order` (the config's order); ids not in it go last.
    pub fn sort(&mut self, order: &[K]) {
        self.members
            .sort_by_key(|m| order.iter().position(|o| o == &m.id).unwrap_or(usize::MAX));
    }
}

#[cfg(test)]
#[path = "running_tests.rs"]
mod tests;
