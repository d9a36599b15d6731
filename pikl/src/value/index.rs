//! The hash index of a dict or set: open addressing with linear probing over 8-byte slots.
//!
//! Each slot holds an entry's tag, the high 32 bits of its hash (in the slot's high half), and
//! the entry's position + 1 (low half); 0 is an empty slot. The table is at most half full, a power of two long, and
//! entries are never removed. Placing, probing and rehashing all read the tag, so growing needs
//! no hash again.
//!
//! Why not a SIMD table: filling a fresh one, each insert loads a 16-byte group of control bytes
//! that earlier inserts had just written one byte at a time. Such a load cannot be served from
//! the store buffer, and stalls: 15% of a 33-key dict's load went there. Here every load reads
//! one 8-byte slot written by one 8-byte store.

/// A dict's or set's hash index: entry positions by hash.
#[derive(Clone, Debug)]
pub(crate) struct Index {
    slots: Box<[u64]>,
    len: usize,
}

/// The tag kept for hash `h`.
#[inline(always)]
fn tag(h: u64) -> u32 {
    (h >> 32) as u32
}

impl Index {
    /// An empty index with room for `n` entries.
    pub(crate) fn with_capacity(n: usize) -> Index {
        Index { slots: vec![0; slots_for(n)].into_boxed_slice(), len: 0 }
    }

    /// An index of entries whose hashes are `hashes` (in position order), known distinct.
    pub(crate) fn build(hashes: impl ExactSizeIterator<Item = u64>, capacity: usize) -> Index {
        let mut index = Index::with_capacity(capacity.max(hashes.len()));
        for (pos, h) in hashes.enumerate() {
            index.insert_unique(h, pos);
        }
        index
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The position of the entry with hash `h` for which `is_key` holds.
    #[inline]
    pub(crate) fn find(&self, h: u64, mut is_key: impl FnMut(usize) -> bool) -> Option<usize> {
        let t = tag(h);
        let mask = self.mask();
        let mut i = t as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == t {
                let pos = (s as u32 - 1) as usize;
                if is_key(pos) {
                    return Some(pos);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The position of the entry with hash `h` for which `is_key` holds; if there is none,
    /// records `pos` (the next entry's position) under `h` and gives `None`.
    #[inline]
    pub(crate) fn find_or_insert(
        &mut self,
        h: u64,
        pos: usize,
        mut is_key: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        self.reserve(1);
        let t = tag(h);
        let mask = self.mask();
        let mut i = t as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                self.slots[i] = slot(t, pos);
                self.len += 1;
                return None;
            }
            if (s >> 32) as u32 == t {
                let found = (s as u32 - 1) as usize;
                if is_key(found) {
                    return Some(found);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Records `pos` under `h`, for an entry known not to be there yet.
    #[inline]
    pub(crate) fn insert_unique(&mut self, h: u64, pos: usize) {
        self.reserve(1);
        let t = tag(h);
        place(&mut self.slots, t, slot(t, pos));
        self.len += 1;
    }

    /// Makes room for `n` more entries.
    #[inline]
    pub(crate) fn reserve(&mut self, n: usize) {
        if (self.len + n) * 2 > self.slots.len() {
            self.grow(self.len + n);
        }
    }

    #[cold]
    fn grow(&mut self, want: usize) {
        let mut slots = vec![0; slots_for(want)].into_boxed_slice();
        for &s in self.slots.iter().filter(|&&s| s != 0) {
            place(&mut slots, (s >> 32) as u32, s);
        }
        self.slots = slots;
    }
}

/// Slots for `n` entries: a power of two, at least twice `n` (and at least 16).
fn slots_for(n: usize) -> usize {
    n.saturating_mul(2).max(16).checked_next_power_of_two().expect("index size overflows usize")
}

/// A slot's value: tag `t`, position `pos`.
#[inline(always)]
fn slot(t: u32, pos: usize) -> u64 {
    let p = u32::try_from(pos + 1).expect("a dict or set holds fewer than 2^32 - 1 entries");
    (t as u64) << 32 | p as u64
}

/// Puts slot value `s` (tag `t`) into the first empty slot of its probe sequence.
#[inline(always)]
fn place(slots: &mut [u64], t: u32, s: u64) {
    let mask = slots.len() - 1;
    let mut i = t as usize & mask;
    while slots[i] != 0 {
        i = (i + 1) & mask;
    }
    slots[i] = s;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_across_growth_and_collisions() {
        let mut index = Index::with_capacity(0);
        // Hashes with equal tags (differing only in the low half) and hashes whose probe
        // sequences run into each other.
        let hashes: Vec<u64> = (0..1000u64).map(|i| if i % 3 == 0 { 7 << 32 | i } else { i << 32 }).collect();
        for (pos, &h) in hashes.iter().enumerate() {
            assert_eq!(index.find_or_insert(h, pos, |p| p == pos), None);
        }
        for (pos, &h) in hashes.iter().enumerate() {
            assert_eq!(index.find(h, |p| p == pos), Some(pos));
            assert_eq!(index.find_or_insert(h, 5000, |p| p == pos), Some(pos));
        }
        assert_eq!(index.find(12345, |_| true), None);
        assert!(index.slots.len() >= 2000 && index.slots.len().is_power_of_two());
        let rebuilt = Index::build(hashes.iter().copied(), 0);
        for (pos, &h) in hashes.iter().enumerate() {
            assert_eq!(rebuilt.find(h, |p| p == pos), Some(pos));
        }
    }
}
