//! Poll tokens. Each component of the loop owns a tag and a slab of its
//! sources; a token is (generation, slot, tag), so the loop routes an event
//! by its tag alone, and an event for an fd that was closed and whose slot
//! was reused carries an old generation and is dropped as stale.

use mio::Token;

/// Which component a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Listener,
    Signals,
    Client,
    Monitor,
    Channel,
    /// The inotify fd on the containers' run directories.
    Watch,
    /// The netlink socket that tells of deleted links.
    NetLinks,
    /// The netlink socket that tells of nf_tables changes.
    NetTable,
}

const TAG_BITS: u32 = 3;
const TAGS: [Tag; 8] = [
    Tag::Listener,
    Tag::Signals,
    Tag::Client,
    Tag::Monitor,
    Tag::Channel,
    Tag::Watch,
    Tag::NetLinks,
    Tag::NetTable,
];
/// Bits for the slot index: half of what the tag leaves (32-bit targets:
/// 16384 slots per component and 15-bit generations).
const INDEX_BITS: u32 = (usize::BITS - TAG_BITS) / 2;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// Generations wrap below the bits left for them, so no token is ever
/// usize::MAX (which mio keeps for itself).
const GENERATION_MASK: u32 = ((1u64 << (usize::BITS - TAG_BITS - INDEX_BITS - 1)) - 1) as u32;

fn tag_index(tag: Tag) -> usize {
    TAGS.iter().position(|&t| t == tag).unwrap_or(0)
}

/// The token of a source with no slab (the listener, the signalfd).
pub fn fixed(tag: Tag) -> Token {
    Token(tag_index(tag))
}

pub fn tag_of(token: Token) -> Option<Tag> {
    TAGS.get(token.0 & ((1 << TAG_BITS) - 1)).copied()
}

fn make(tag: Tag, index: usize, generation: u32) -> Token {
    Token(((generation as usize) << (TAG_BITS + INDEX_BITS)) | (index << TAG_BITS) | tag_index(tag))
}

fn split(token: Token) -> (usize, u32) {
    (
        (token.0 >> TAG_BITS) & INDEX_MASK,
        (token.0 >> (TAG_BITS + INDEX_BITS)) as u32,
    )
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// A component's sources by token.
pub struct Slab<T> {
    tag: Tag,
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    pub fn new(tag: Tag) -> Slab<T> {
        Slab {
            tag,
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Stores `value`; `None` when every slot is taken.
    pub fn insert(&mut self, value: T) -> Option<Token> {
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() <= INDEX_MASK => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                self.slots.len() - 1
            }
            None => return None,
        };
        let slot = &mut self.slots[index];
        slot.generation = slot.generation.wrapping_add(1) & GENERATION_MASK;
        slot.value = Some(value);
        Some(make(self.tag, index, slot.generation))
    }

    fn slot(&self, token: Token) -> Option<&Slot<T>> {
        if tag_of(token) != Some(self.tag) {
            return None;
        }
        let (index, generation) = split(token);
        self.slots.get(index).filter(|s| s.generation == generation)
    }

    pub fn get(&self, token: Token) -> Option<&T> {
        self.slot(token)?.value.as_ref()
    }

    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        self.slot(token)?;
        let (index, _) = split(token);
        self.slots[index].value.as_mut()
    }

    pub fn remove(&mut self, token: Token) -> Option<T> {
        self.slot(token)?;
        let (index, _) = split(token);
        let value = self.slots[index].value.take()?;
        self.free.push(index);
        Some(value)
    }

    /// Every source and its token.
    pub fn iter(&self) -> impl Iterator<Item = (Token, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value
                .as_ref()
                .map(|v| (make(self.tag, i, s.generation), v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_route_by_tag() {
        let mut clients = Slab::new(Tag::Client);
        let mut monitors = Slab::new(Tag::Monitor);
        let c = clients.insert("c").unwrap();
        let m = monitors.insert("m").unwrap();
        assert_eq!(tag_of(c), Some(Tag::Client));
        assert_eq!(tag_of(m), Some(Tag::Monitor));
        assert_eq!(tag_of(fixed(Tag::Signals)), Some(Tag::Signals));
        // A token of another component is not found here.
        assert_eq!(clients.get(m), None);
        assert_eq!(monitors.get(c), None);
        assert_eq!(clients.get(c), Some(&"c"));
    }

    #[test]
    fn a_reused_slot_does_not_answer_to_its_old_token() {
        let mut s = Slab::new(Tag::Client);
        let old = s.insert(1).unwrap();
        assert_eq!(s.remove(old), Some(1));
        let new = s.insert(2).unwrap();
        assert_ne!(old, new);
        assert_eq!(s.get(old), None);
        assert_eq!(s.remove(old), None);
        assert_eq!(s.get(new), Some(&2));
        assert_eq!(
            s.iter().map(|(t, v)| (t, *v)).collect::<Vec<_>>(),
            [(new, 2)]
        );
    }

    #[test]
    fn the_largest_token_is_not_the_reserved_one() {
        for tag in TAGS {
            let t = make(tag, INDEX_MASK, GENERATION_MASK);
            assert_ne!(t, Token(usize::MAX));
            assert_eq!(tag_of(t), Some(tag));
            assert_eq!(split(t), (INDEX_MASK, GENERATION_MASK));
        }
        // The generation after the largest wraps to 0.
        assert_eq!(GENERATION_MASK.wrapping_add(1) & GENERATION_MASK, 0);
    }
}
