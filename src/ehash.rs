//! The four-tuple table of a host (the kernel's `ehash`): every socket that owns a tuple, by
//! that tuple. Open addressing with linear probing and backward-shift deletion, at most half
//! full, 8-byte slots, with the tables' fixed hasher ([`crate::host::TableHasher`]): no per-process seed and
//! no iteration, so its layout never reaches a result. Unlike a `HashMap` it can prefetch the
//! slot of a tuple the engine will look up soon (a TIME-WAIT about to expire).

use std::hash::Hasher;

use crate::host::TableHasher;

/// A slot: the low 32 bits of its key's hash (which give its home slot) and the socket id,
/// [`EMPTY`] in a free slot. A key is confirmed by the caller's `key_of(id)`: 8-byte slots
/// keep a table of 100,000 sockets within 2 MiB.
#[derive(Clone, Copy)]
struct Slot {
    hash: u32,
    id: u32,
}

const EMPTY: u32 = u32::MAX;
const FREE: Slot = Slot { hash: 0, id: EMPTY };
const MIN_SLOTS: usize = 16;

/// A map from a four-tuple key (`Tuple::key`) to the id of the socket that owns it. The
/// key of an id is the caller's to give (`key_of`): the socket's own tuple.
pub struct Ehash {
    slots: Vec<Slot>,
    len: usize,
}

impl Default for Ehash {
    fn default() -> Self {
        Ehash {
            slots: vec![FREE; MIN_SLOTS],
            len: 0,
        }
    }
}

fn hash(key: u128) -> u32 {
    let mut h = TableHasher::default();
    h.write_u128(key);
    h.finish() as u32
}

impl Ehash {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot holding `key`, or the free slot ending its probe run.
    fn find(&self, key: u128, h: u32, key_of: impl Fn(u32) -> u128) -> Result<usize, usize> {
        let mask = self.mask();
        let mut i = h as usize & mask;
        loop {
            let s = self.slots[i];
            if s.id == EMPTY {
                return Err(i);
            }
            if s.hash == h && key_of(s.id) == key {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: u128, key_of: impl Fn(u32) -> u128) -> Option<u32> {
        self.find(key, hash(key), key_of)
            .ok()
            .map(|i| self.slots[i].id)
    }

    /// Inserts `id` under `key`, or replaces the id there; returns the id replaced.
    pub fn insert(&mut self, key: u128, id: u32, key_of: impl Fn(u32) -> u128) -> Option<u32> {
        debug_assert!(id != EMPTY);
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let h = hash(key);
        match self.find(key, h, key_of) {
            Ok(i) => Some(std::mem::replace(&mut self.slots[i].id, id)),
            Err(i) => {
                self.slots[i] = Slot { hash: h, id };
                self.len += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, key: u128, key_of: impl Fn(u32) -> u128) -> Option<u32> {
        let mut hole = self.find(key, hash(key), key_of).ok()?;
        let id = self.slots[hole].id;
        let mask = self.mask();
        // Backward shift: move up each later entry of the run that may sit in the hole.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s.id == EMPTY {
                break;
            }
            let home = s.hash as usize & mask;
            // The entry stays if its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = FREE;
        self.len -= 1;
        Some(id)
    }

    /// Asks the CPU to bring `key`'s home slot into cache.
    pub fn prefetch(&self, key: u128) {
        crate::engine::prefetch(&self.slots[hash(key) as usize & self.mask()]);
    }

    fn grow(&mut self) {
        let bigger = vec![FREE; 2 * self.slots.len()];
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.mask();
        for s in old {
            if s.id != EMPTY {
                let mut i = s.hash as usize & mask;
                while self.slots[i].id != EMPTY {
                    i = (i + 1) & mask;
                }
                self.slots[i] = s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn answers_as_a_hash_map_does_through_growth_and_deletions() {
        // Ids are indexes into `keys`, as socket ids index the socket table.
        let mut keys: Vec<u128> = Vec::new();
        let mut t = Ehash::default();
        let mut m: HashMap<u128, u32> = HashMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Few distinct keys, so that runs collide and deletions shift entries back.
            let key = u128::from(x % 5_000) << 64 | u128::from(x % 7);
            match x >> 61 {
                0..=3 => {
                    keys.push(key);
                    let id = (keys.len() - 1) as u32;
                    let key_of = |i: u32| keys[i as usize];
                    assert_eq!(t.insert(key, id, key_of), m.insert(key, id));
                }
                4..=6 => {
                    let key_of = |i: u32| keys[i as usize];
                    assert_eq!(t.remove(key, key_of), m.remove(&key));
                }
                _ => {
                    let key_of = |i: u32| keys[i as usize];
                    assert_eq!(t.get(key, key_of), m.get(&key).copied());
                }
            }
            assert_eq!(t.len(), m.len());
        }
        assert!(m.len() > 1_000);
        for (k, v) in &m {
            assert_eq!(t.get(*k, |i| keys[i as usize]), Some(*v));
        }
    }
}
