//! The discrete-event engine: an event queue in integer nanoseconds, the ordering rule for
//! events at the same instant, and the run loop.
//!
//! # Same-instant ordering
//!
//! Events are ordered by `(time, class, sequence)`:
//! 1. **Timers** (`Class::Timer`): TIME-WAIT expiry, the moment a TIME-WAIT becomes reusable
//!    by `tcp_tw_reuse`, SYN retransmission. A kernel timer due at `t` has fired by the time
//!    anything else at `t` looks at the tables.
//! 2. **Packets** (`Class::Packet`): segments arriving at a host, in the order they were sent.
//!    The kernel processes a segment in softirq before the application wakes on it.
//! 3. **Applications** (`Class::App`): connect(), retries. They act on the state that timers
//!    and packets left at that instant. (A server's close after its last response is keyed
//!    as a packet of its connection: `src/sim/run.rs`.)
//!
//! Timers and applications at one instant run in the order they were scheduled (FIFO by a
//! global sequence number). Packets at one instant run in the order their connections were
//! opened, and a connection's own packets in the order it sent them: a packet's key is
//! `(connection number, segment number)` ([`packet_key`]). The rule makes runs reproducible
//! and matches how a host sees one instant: a port whose TIME-WAIT ends exactly when
//! connect() is called is free for that connect(). Keying packets by their connection lets a
//! segment be scheduled when its time is known, not when the segment before it is processed:
//! the engine schedules a whole fixed-delay exchange at connect() (`sim/fast/exchange.rs`) and gets the
//! order that stepping through every segment gives. Beyond 2²⁴ − 1 segments of one connection
//! the segment number stays at its maximum; two of them due at one instant then run in heap
//! order, which is still deterministic.
//!
//! # Cost
//!
//! Timers of fixed length (TIME-WAIT, the reuse delay) are scheduled in FIFO *lanes*, which
//! are sorted by construction. Events scheduled a fixed delay ahead ([`Queue::push_after`]:
//! packets crossing a link of fixed one-way latency) get a lane of their own once that delay
//! has recurred [`LANE_AFTER`] times, up to [`DELAY_LANES`] lanes. A *source*
//! ([`Queue::add_source`]) is a lane of one pending event whose owner keeps what it stands
//! for, such as the next TIME-WAIT entry of a stream of connections: setting it stores no
//! event. Everything else goes to a binary heap. The lanes holding events are kept in order
//! of head (a sorted list while few, a second heap beyond); `pop` takes the least of the heap
//! top and the first of them, so each event costs O(log n) with n the events in the heap,
//! O(1) for lane events when few lanes hold events, as in most runs, O(log m) when m do (a
//! fleet's thousand streams cost ten steps, not a thousand), and memory is bounded by live
//! state.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use crate::time::Instant;

/// Asks the CPU to bring `*p` into cache ahead of use. A hint only: it reads nothing and
/// cannot fault, whatever the address.
#[inline]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is in SSE, which every x86-64 CPU has; it never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the kernel to back the buffer of `v` (its whole capacity) with huge pages where it
/// can: Linux `MADV_HUGEPAGE`, which transparent huge pages in `madvise` mode honour. An
/// array touched at scattered places, such as a thousand pools' port sets, then costs a few
/// TLB entries instead of one per 4 KiB page. Advice only: nothing changes if the kernel
/// declines, and buffers under 2 MiB are left alone.
pub fn advise_huge_pages<T>(v: &Vec<T>) {
    const PAGE: usize = 4096;
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + v.capacity() * std::mem::size_of::<T>();
    let (a, e) = (start.next_multiple_of(PAGE), end & !(PAGE - 1));
    if e < a + HUGE {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Some(p) = std::ptr::NonNull::new(a as *mut std::ffi::c_void) {
        use nix::sys::mman::{MmapAdvise, madvise};
        // SAFETY: the range lies inside the allocation `v` owns; MADV_HUGEPAGE changes how
        // the kernel backs it, never what it holds.
        let _ = unsafe { madvise(p, e - a, MmapAdvise::MADV_HUGEPAGE) };
    }
}

/// Lane entries read ahead of the front: a lane of long timers is read once, in order, long
/// after it was written.
const LANE_PREFETCH: usize = 16;

/// The class of an event, deciding order at equal times (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Timer = 0,
    Packet = 1,
    App = 2,
}

struct Entry<E> {
    at: u64,
    key: u64,
    ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.key) == (o.at, o.key)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest entry.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.key).cmp(&(self.at, self.key))
    }
}

/// Low bits of a key below the sequence number, for events placed between two scheduled
/// ones ([`Queue::push_between`]).
const SUB_BITS: u32 = 24;
/// A key: the class in the top 2 bits, then the sequence number (38 bits, 2.7 × 10¹¹
/// events), then [`SUB_BITS`].
const CLASS_SHIFT: u32 = 62;

/// Bits of a packet key's segment number.
const STAGE_BITS: u32 = SUB_BITS;

/// The key of segment `stage` (1, 2, …) of connection `origin`: packets at one instant run by
/// connection, then by segment.
pub fn packet_key(origin: u64, stage: u32) -> u64 {
    let stage = u64::from(stage.min((1 << STAGE_BITS) - 1));
    ((Class::Packet as u64) << CLASS_SHIFT)
        | ((origin & ((1 << (CLASS_SHIFT - STAGE_BITS)) - 1)) << STAGE_BITS)
        | stage
}

/// Most lanes made for recurring delays.
pub const DELAY_LANES: usize = 8;
/// Uses of a delay before it gets a lane.
pub const LANE_AFTER: u32 = 64;
/// Delays counted towards a lane at once.
const CANDIDATES: usize = 16;

/// `(at, key)` packed as `at << 64 | key`: one integer comparison orders two events.
#[inline(always)]
pub fn packed(at: u64, key: u64) -> u128 {
    (u128::from(at) << 64) | u128::from(key)
}

/// The packed `(at, key)` of an empty lane's head: sorts after every event.
const NO_HEAD: u128 = u128::MAX;

/// A lane's place in [`Order`] when it holds no event.
const NOT_IN_ORDER: usize = usize::MAX;

/// Lanes holding events that [`Order`] keeps in a sorted list; beyond, in a heap.
const ORDER_SORTED_MAX: usize = 16;

/// The lanes that hold events, by `head`, the packed `(at, key)` of the lane's front entry.
/// While few lanes hold events (most runs: one or two), a list sorted by head, the least
/// last, where a pop moves the popped lane's new head a step or two up; once more than
/// [`ORDER_SORTED_MAX`] do (a fleet's streams, one per workload), a binary min-heap with each
/// lane's place in it, where entering, a head moving on and leaving cost O(log n).
#[derive(Default)]
struct Order {
    /// `(head, lane)`: sorted, the least last; or, once `is_heap`, a heap, the least first.
    heap: Vec<(u128, usize)>,
    is_heap: bool,
    /// Per lane, its index in `heap` once `is_heap`, [`NOT_IN_ORDER`] if none.
    place: Vec<usize>,
}

impl Order {
    /// The lane with the least head.
    #[inline(always)]
    fn first(&self) -> Option<&(u128, usize)> {
        if self.is_heap {
            self.heap.first()
        } else {
            self.heap.last()
        }
    }

    fn contains(&self, lane: usize) -> bool {
        if self.is_heap {
            self.place[lane] != NOT_IN_ORDER
        } else {
            self.heap.iter().any(|&(_, l)| l == lane)
        }
    }

    /// `lane`, not held, now holds events, the first with `head`.
    #[inline]
    fn enter(&mut self, head: u128, lane: usize) {
        if !self.is_heap {
            if self.heap.len() < ORDER_SORTED_MAX {
                let o = &mut self.heap;
                o.push((head, lane));
                let mut i = o.len() - 1;
                while i > 0 && o[i - 1].0 < head {
                    o[i] = o[i - 1];
                    i -= 1;
                }
                o[i] = (head, lane);
                return;
            }
            self.make_heap();
        }
        let i = self.heap.len();
        self.heap.push((head, lane));
        self.up(i);
    }

    /// The sorted list as a heap: reversed, it is one.
    #[cold]
    fn make_heap(&mut self) {
        self.heap.reverse();
        for (i, &(_, lane)) in self.heap.iter().enumerate() {
            self.place[lane] = i;
        }
        self.is_heap = true;
    }

    /// The first lane's head has grown to `head`.
    #[inline]
    fn first_moved(&mut self, head: u128) {
        if !self.is_heap {
            let o = &mut self.heap;
            let mut i = o.len() - 1;
            let lane = o[i].1;
            while i > 0 && o[i - 1].0 < head {
                o[i] = o[i - 1];
                i -= 1;
            }
            o[i] = (head, lane);
            return;
        }
        self.heap[0].0 = head;
        self.down(0);
    }

    /// The first lane holds no more events.
    #[inline]
    fn pop_first(&mut self) {
        if self.is_heap {
            self.remove_at(0);
        } else {
            self.heap.pop();
        }
    }

    /// `lane`, held, holds no more events.
    fn remove(&mut self, lane: usize) {
        if self.is_heap {
            self.remove_at(self.place[lane]);
        } else if let Some(i) = self.heap.iter().position(|&(_, l)| l == lane) {
            self.heap.remove(i);
        }
    }

    fn remove_at(&mut self, i: usize) {
        self.place[self.heap[i].1] = NOT_IN_ORDER;
        let Some(last) = self.heap.pop() else {
            return;
        };
        if i < self.heap.len() {
            self.heap[i] = last;
            self.down(i);
            self.up(self.place[last.1]);
        }
    }

    /// Moves the entry at `i` towards the root to its place.
    fn up(&mut self, mut i: usize) {
        let e = self.heap[i];
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].0 <= e.0 {
                break;
            }
            self.heap[i] = self.heap[parent];
            self.place[self.heap[i].1] = i;
            i = parent;
        }
        self.heap[i] = e;
        self.place[e.1] = i;
    }

    /// Moves the entry at `i` away from the root to its place.
    fn down(&mut self, mut i: usize) {
        let e = self.heap[i];
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let c = if l + 1 < n && self.heap[l + 1].0 < self.heap[l].0 {
                l + 1
            } else {
                l
            };
            if self.heap[c].0 >= e.0 {
                break;
            }
            self.heap[i] = self.heap[c];
            self.place[self.heap[i].1] = i;
            i = c;
        }
        self.heap[i] = e;
        self.place[e.1] = i;
    }
}

/// The pending events.
pub struct Queue<E> {
    heap: BinaryHeap<Entry<E>>,
    lanes: Vec<VecDeque<Entry<E>>>,
    /// Per lane, the event a *source* lane stands for ([`Queue::add_source`]); `None` for a
    /// FIFO lane.
    sources: Vec<Option<E>>,
    /// The lanes that hold events, by the packed `(at, key)` of their front entries.
    order: Order,
    /// (delay, class, lane) of the lanes made by `push_after`.
    delay_lanes: Vec<(u64, Class, usize)>,
    /// (delay, class, uses) of delays seen by `push_after` without a lane yet.
    candidates: Vec<(u64, Class, u32)>,
    seq: u64,
    /// The packed `(at, key)` of the earliest event, [`NO_HEAD`] for none: lowered by every
    /// push, recomputed by every removal.
    head: u128,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            lanes: Vec::new(),
            sources: Vec::new(),
            order: Order::default(),
            delay_lanes: Vec::new(),
            candidates: Vec::new(),
            seq: 0,
            head: NO_HEAD,
        }
    }
}

impl<E: Copy> Queue<E> {
    fn key(&mut self, class: Class) -> u64 {
        self.seq += 1;
        ((class as u64) << CLASS_SHIFT) | (self.seq << SUB_BITS)
    }

    /// A fresh key of `class`, as scheduling an event now would give it.
    pub fn next_key(&mut self, class: Class) -> u64 {
        self.key(class)
    }

    /// The sequence number of the latest event scheduled.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Schedules `ev` in the heap as if it had been scheduled right after the event numbered
    /// `after` (and before the next one), `sub` ordering several such events (1 ..).
    pub fn push_between(&mut self, at: Instant, class: Class, after: u64, sub: u32, ev: E) {
        debug_assert!(sub > 0 && sub < 1 << SUB_BITS && after <= self.seq);
        let key = ((class as u64) << CLASS_SHIFT) | (after << SUB_BITS) | u64::from(sub);
        self.heap_push(Entry { at: at.0, key, ev });
    }

    /// Schedules `ev` at `at`.
    pub fn push(&mut self, at: Instant, class: Class, ev: E) {
        let key = self.key(class);
        self.push_keyed(at, key, ev);
    }

    /// A new FIFO lane for events whose times never decrease (one class per lane).
    pub fn add_lane(&mut self) -> usize {
        self.lanes.push(VecDeque::new());
        self.sources.push(None);
        self.order.place.push(NOT_IN_ORDER);
        self.lanes.len() - 1
    }

    /// A new *source*: a lane of at most one pending event, `ev`, whose time and key its
    /// owner sets ([`Queue::set_source`]) from state it keeps itself, such as the next
    /// arrival of a stream. Popping it clears it.
    pub fn add_source(&mut self, ev: E) -> usize {
        let lane = self.add_lane();
        self.sources[lane] = Some(ev);
        lane
    }

    /// Schedules a source's event at `at` with `key`; the source must be clear.
    #[inline]
    pub fn set_source(&mut self, lane: usize, at: Instant, key: u64) {
        debug_assert!(self.sources[lane].is_some());
        debug_assert!(!self.order.contains(lane), "source set twice");
        self.enter(packed(at.0, key), lane);
    }

    /// Unschedules a source's event, if set.
    pub fn clear_source(&mut self, lane: usize) {
        debug_assert!(self.sources[lane].is_some());
        if self.order.contains(lane) {
            self.order.remove(lane);
            self.reset_head();
        }
    }

    /// The packed `(at, key)` of the earliest event (`at << 64 | key`), `u128::MAX` when
    /// none is pending: an event that sorts before it would be popped next.
    #[inline]
    pub fn peek_packed(&self) -> u128 {
        debug_assert_eq!(self.head, {
            let lane = self.order.first().map_or(NO_HEAD, |&(h, _)| h);
            lane.min(self.heap.peek().map_or(NO_HEAD, |e| packed(e.at, e.key)))
        });
        self.head
    }

    /// Puts `lane`, whose head is now `head`, in `order`.
    #[inline]
    fn enter(&mut self, head: u128, lane: usize) {
        self.head = self.head.min(head);
        self.order.enter(head, lane);
    }

    /// Schedules `ev` at `at` in `lane`; `at` must not precede the lane's last entry.
    pub fn push_lane(&mut self, lane: usize, at: Instant, class: Class, ev: E) {
        let key = self.key(class);
        debug_assert!(
            self.lanes[lane]
                .back()
                .is_none_or(|b| (b.at, b.key) <= (at.0, key))
        );
        self.push_lane_keyed(lane, at, key, ev);
    }

    /// Schedules `ev` at `at` in `lane`, or in the heap if the lane's last entry sorts after
    /// it: the order is the same either way.
    pub fn push_lane_ordered(&mut self, lane: usize, at: Instant, class: Class, ev: E) {
        let key = self.key(class);
        self.push_lane_keyed(lane, at, key, ev);
    }

    /// Schedules `ev` at `at` with a key made by [`packet_key`], in the heap.
    pub fn push_keyed(&mut self, at: Instant, key: u64, ev: E) {
        self.heap_push(Entry { at: at.0, key, ev });
    }

    #[inline]
    fn heap_push(&mut self, e: Entry<E>) {
        self.head = self.head.min(packed(e.at, e.key));
        self.heap.push(e);
    }

    /// Recomputes [`Queue::head`] after a removal.
    #[inline]
    fn reset_head(&mut self) {
        let lane = self.order.first().map_or(NO_HEAD, |&(h, _)| h);
        let heap = self.heap.peek().map_or(NO_HEAD, |e| packed(e.at, e.key));
        self.head = lane.min(heap);
    }

    /// Schedules `ev` at `at` with a given key in `lane`, or in the heap if the lane's last
    /// entry sorts after it.
    pub fn push_lane_keyed(&mut self, lane: usize, at: Instant, key: u64, ev: E) {
        debug_assert!(self.sources[lane].is_none());
        let l = &mut self.lanes[lane];
        match l.back() {
            None => {
                l.push_back(Entry { at: at.0, key, ev });
                self.enter(packed(at.0, key), lane);
            }
            Some(b) if (b.at, b.key) <= (at.0, key) => l.push_back(Entry { at: at.0, key, ev }),
            Some(_) => self.heap_push(Entry { at: at.0, key, ev }),
        }
    }

    /// Schedules `ev` at `now + delay` with a given key (a packet's, [`packet_key`]): a
    /// recurring delay gets a lane, as in [`Queue::push_after`].
    pub fn push_after_keyed(&mut self, now: Instant, delay: u64, key: u64, ev: E) {
        let at = Instant(now.0 + delay);
        match self.lane_for(delay, Class::Packet) {
            Some(lane) => self.push_lane_keyed(lane, at, key, ev),
            None => self.push_keyed(at, key, ev),
        }
    }

    /// The lane of a recurring `(delay, class)`, made once the pair has recurred
    /// [`LANE_AFTER`] times.
    fn lane_for(&mut self, delay: u64, class: Class) -> Option<usize> {
        if let Some(&(_, _, lane)) = self
            .delay_lanes
            .iter()
            .find(|(d, c, _)| *d == delay && *c == class)
        {
            return Some(lane);
        }
        if self.delay_lanes.len() < DELAY_LANES {
            match self
                .candidates
                .iter_mut()
                .position(|(d, c, _)| *d == delay && *c == class)
            {
                Some(i) => {
                    self.candidates[i].2 += 1;
                    if self.candidates[i].2 >= LANE_AFTER {
                        self.candidates.swap_remove(i);
                        let lane = self.add_lane();
                        self.delay_lanes.push((delay, class, lane));
                        return Some(lane);
                    }
                }
                None if self.candidates.len() < CANDIDATES => {
                    self.candidates.push((delay, class, 1));
                }
                None => {}
            }
        }
        None
    }

    /// Schedules `ev` at `now + delay`. `now` must never decrease between calls: then events
    /// of one delay and class are in time order, and a recurring delay gets a FIFO lane.
    pub fn push_after(&mut self, now: Instant, delay: u64, class: Class, ev: E) {
        let at = Instant(now.0 + delay);
        match self.lane_for(delay, class) {
            Some(lane) => self.push_lane(lane, at, class, ev),
            None => self.push(at, class, ev),
        }
    }

    /// Removes and returns the earliest event if it is due before `end`.
    pub fn pop_before(&mut self, end: Instant) -> Option<(Instant, E)> {
        self.pop_keyed(end).map(|(at, _, ev)| (at, ev))
    }

    /// Like [`Queue::pop_before`], also giving the event's key, which orders it among the
    /// events of its instant ([`Queue::place`] reads it).
    #[inline(always)]
    pub fn pop_keyed(&mut self, end: Instant) -> Option<(Instant, u64, E)> {
        let &(lane, i) = self.order.first().unwrap_or(&(NO_HEAD, 0));
        // The heap wins a tie with a lane.
        if let Some(top) = self.heap.peek()
            && packed(top.at, top.key) <= lane
        {
            if top.at >= end.0 {
                return None;
            }
            let e = self.heap.pop()?;
            self.reset_head();
            return Some((Instant(e.at), e.key, e.ev));
        }
        let (at, key) = ((lane >> 64) as u64, lane as u64);
        if at >= end.0 {
            return None;
        }
        if let Some(ev) = self.sources[i] {
            self.order.pop_first();
            self.reset_head();
            return Some((Instant(at), key, ev));
        }
        let l = &mut self.lanes[i];
        let e = l.pop_front()?;
        if let Some(ahead) = l.get(LANE_PREFETCH) {
            prefetch(ahead);
        }
        match l.front() {
            Some(f) => {
                let head = packed(f.at, f.key);
                self.order.first_moved(head);
            }
            None => {
                self.order.pop_first();
            }
        }
        self.reset_head();
        Some((Instant(e.at), e.key, e.ev))
    }

    /// The class and place `(sequence number, sub)` a key stands for.
    pub fn place(key: u64) -> (Class, (u64, u32)) {
        let class = match key >> CLASS_SHIFT {
            0 => Class::Timer,
            1 => Class::Packet,
            _ => Class::App,
        };
        let place = key & ((1 << CLASS_SHIFT) - 1);
        let sub = (place & ((1 << SUB_BITS) - 1)) as u32;
        (class, (place >> SUB_BITS, sub))
    }

    /// When the earliest event is due, if any.
    pub fn next_time(&self) -> Option<Instant> {
        let first = self.peek_packed();
        (first != NO_HEAD).then_some(Instant((first >> 64) as u64))
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(Instant, E)> {
        self.pop_before(Instant(u64::MAX))
    }

    /// The event `k` places behind the front of `lane`.
    pub fn lane_peek(&self, lane: usize, k: usize) -> Option<&E> {
        self.lanes[lane].get(k).map(|e| &e.ev)
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        let sources = self
            .order
            .heap
            .iter()
            .filter(|&&(_, l)| self.sources[l].is_some());
        self.heap.len() + self.lanes.iter().map(VecDeque::len).sum::<usize>() + sources.count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_instant_events_run_timers_then_packets_then_applications() {
        let mut q = Queue::default();
        let lane = q.add_lane();
        q.push(Instant(5), Class::App, "connect");
        q.push(Instant(5), Class::Packet, "syn");
        q.push_lane(lane, Instant(5), Class::Timer, "tw-expiry");
        q.push(Instant(5), Class::Packet, "fin");
        q.push(Instant(4), Class::App, "early");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["early", "tw-expiry", "syn", "fin", "connect"]);
    }

    #[test]
    fn recurring_delays_get_lanes_and_order_is_unchanged() {
        // The same schedule through push_after and through the heap alone pops identically.
        let mut a = Queue::default();
        let mut b = Queue::default();
        let mut x = 12345u64;
        let mut now = 0;
        for i in 0..10_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += x % 50;
            // Three recurring delays and a random one; two classes.
            let delay = [100, 250, 100, 7 + x % 1000][(x % 4) as usize];
            let class = if x.is_multiple_of(3) {
                Class::App
            } else {
                Class::Packet
            };
            a.push_after(Instant(now), delay, class, i);
            b.push(Instant(now + delay), class, i);
            if x.is_multiple_of(5) {
                // Pop as a run does, now never passing the next event.
                if let (Some((ta, ea)), Some((tb, eb))) = (a.pop_before(Instant(u64::MAX)), b.pop())
                {
                    assert_eq!((ta, ea), (tb, eb));
                    now = now.max(ta.0);
                }
            }
        }
        assert!(!a.delay_lanes.is_empty());
        let rest_a: Vec<_> = std::iter::from_fn(|| a.pop()).collect();
        let rest_b: Vec<_> = std::iter::from_fn(|| b.pop()).collect();
        assert_eq!(rest_a, rest_b);
    }

    #[test]
    fn many_lanes_and_sources_pop_as_one_heap_would() {
        // A thousand lanes and sources, set, cleared and pushed at random, pop in the order
        // of a queue holding everything in its heap.
        let mut a = Queue::default();
        let mut b = Queue::default();
        let lanes: Vec<usize> = (0..500).map(|_| a.add_lane()).collect();
        let sources: Vec<usize> = (0..500).map(|i| a.add_source(1_000_000 + i)).collect();
        let mut set = vec![None; sources.len()];
        let mut last = vec![0u64; lanes.len()];
        let mut x = 99u64;
        let mut now = 0u64;
        let mut step = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for n in 0..200_000u64 {
            let r = step();
            match r % 4 {
                0 => {
                    let l = (r >> 8) as usize % lanes.len();
                    let at = now.max(last[l]) + (r >> 20) % 1000;
                    last[l] = at;
                    let key = a.next_key(Class::Timer);
                    a.push_lane_keyed(lanes[l], Instant(at), key, n);
                    b.push_keyed(Instant(at), key, n);
                }
                1 => {
                    let i = (r >> 8) as usize % sources.len();
                    if let Some(key) = set[i].take() {
                        a.clear_source(sources[i]);
                        b.heap.retain(|e| e.key != key);
                        b.reset_head();
                    } else {
                        let at = now + (r >> 20) % 1000;
                        let key = a.next_key(Class::App);
                        a.set_source(sources[i], Instant(at), key);
                        b.push_keyed(Instant(at), key, 1_000_000 + i as u64);
                        set[i] = Some(key);
                    }
                }
                _ => {
                    let (ea, eb) = (
                        a.pop_keyed(Instant(u64::MAX)),
                        b.pop_keyed(Instant(u64::MAX)),
                    );
                    assert_eq!(ea, eb);
                    assert_eq!(a.peek_packed(), b.peek_packed());
                    if let Some((at, _, ev)) = ea {
                        now = at.0;
                        if ev >= 1_000_000 {
                            set[(ev - 1_000_000) as usize] = None;
                        }
                    }
                }
            }
        }
        let rest_a: Vec<_> = std::iter::from_fn(|| a.pop()).collect();
        let rest_b: Vec<_> = std::iter::from_fn(|| b.pop()).collect();
        assert_eq!(rest_a, rest_b);
    }

    #[test]
    fn lanes_and_heap_merge_in_time_order() {
        let mut q = Queue::default();
        let lane = q.add_lane();
        for t in [10, 20, 30] {
            q.push_lane(lane, Instant(t), Class::Timer, t);
        }
        for t in [25, 5, 15] {
            q.push(Instant(t), Class::Packet, t);
        }
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, [5, 10, 15, 20, 25, 30]);
    }
}
