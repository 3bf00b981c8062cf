//! Which NAT address and port a cloud gateway gives a new flow (notes/nat-reference.md §8).
//!
//! - **Shared pool** (AWS NAT Gateway, Azure NAT Gateway): any address's ports 1024–65535
//!   serve any VM; an address takes at most `per_destination` flows toward one destination
//!   (address, port). The address is drawn at random among those under the limit (Azure:
//!   "random"; AWS documents none, UNVERIFIED), the port from a random start, the next free.
//! - **Ports per VM** (GCP static allocation, Azure LB, App Service): each VM behind gets a
//!   block of consecutive ports on one address at start, in the order the VMs are listed,
//!   the addresses filled one after another from port 1024 (Azure: "frontend IPs are
//!   consumed one at a time"); a VM left without a block (the addresses are full) gets no
//!   port (GCP: `nat_allocation_failed`). GCP rounds `min_ports_per_vm` up to a power of
//!   two. A flow takes a port of its VM's block free toward its destination: on Azure the
//!   lowest ("the first available SNAT port is used", an older version of the load
//!   balancer's page), on GCP from a random start (not documented, UNVERIFIED).
//! - **Dynamic** (GCP `enable_dynamic_port_allocation`): the block starts at
//!   `min_ports_per_vm`; a flow that finds no port free toward its destination doubles the
//!   VM's ports (up to `max_ports_per_vm`) with blocks of `min_ports_per_vm` taken in
//!   address and port order ("Cloud NAT doubles the number of ports allocated to the VM").
//! - **Endpoint-independent mapping** (GCP `enable_endpoint_independent_mapping`): while a
//!   VM's (address, port) has a flow, every new flow from it keeps that flow's NAT address
//!   and port; if that port is taken toward the new destination the SYN is dropped as
//!   `ENDPOINT_INDEPENDENCE_CONFLICT`. A new (address, port) may get a NAT port another
//!   VM endpoint maps to, if it is free toward the destination (UNVERIFIED).

use super::cloud::{Allocation, Cloud, Provider, azure_ports_for_pool};
use super::conntrack::{Entry, Table};
use crate::host::{Table as Map, Tuple};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// GCP's drop reason when endpoint-independent mapping forbids the only port a flow may have.
/// (Cloud NAT troubleshooting and monitoring pages spell it so; the issue wrote
/// `ENDPOINT_INDEPENDENT_CONFLICT`.)
pub const EIM_CONFLICT: &str = "ENDPOINT_INDEPENDENCE_CONFLICT";

/// Consecutive ports `lo .. lo + len` on NAT address `ip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    ip: u32,
    lo: u16,
    len: u32,
}

/// What a new flow gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// This NAT (address, port).
    Port(u32, u16),
    /// Nothing: the SYN is dropped, counted under this name.
    Drop(&'static str),
}

/// A cloud gateway's allocation state.
pub struct Blocks {
    cloud: Cloud,
    ips: Vec<u32>,
    rng: ChaCha8Rng,
    /// Per VM (a host behind the gateway, in order), its ports: none when the addresses
    /// were full.
    vms: Vec<Vec<Chunk>>,
    /// Every address of each VM, to its VM.
    vm_of: Map<u32, u32>,
    /// Dynamic allocation: blocks of `min_ports_per_vm` no VM holds, in address and port order.
    spare: VecDeque<Chunk>,
    /// Endpoint-independent mappings: VM (address, port) → NAT (address, port), flows.
    eim: Map<(u32, u16), (u32, u16, u32)>,
    /// Ports per VM at start (0 for a shared pool).
    pub ports_per_vm: u32,
    /// The most ports one VM held.
    pub ports_per_vm_peak: u32,
    pub vms_without_ports: u64,
    pub vm_count: u64,
}

impl Blocks {
    /// The allocation for the VMs whose addresses are `vm_ips` (one list per VM, in the
    /// order they are listed) behind a gateway with addresses `ips`. A VM's ports serve
    /// every address it has.
    pub fn new(cloud: &Cloud, ips: &[u32], vm_ips: &[Vec<u32>], rng: ChaCha8Rng) -> Blocks {
        let mut vm_of = Map::default();
        for (v, addrs) in vm_ips.iter().enumerate() {
            for &a in addrs {
                vm_of.insert(a, v as u32);
            }
        }
        let mut b = Blocks {
            cloud: cloud.clone(),
            ips: ips.to_vec(),
            rng,
            vms: vec![Vec::new(); vm_ips.len()],
            vm_of,
            spare: VecDeque::new(),
            eim: Map::default(),
            ports_per_vm: 0,
            ports_per_vm_peak: 0,
            vms_without_ports: 0,
            vm_count: vm_ips.len() as u64,
        };
        let per_vm = match cloud.allocation {
            Allocation::Shared { .. } => return b,
            Allocation::PerVm { ports: 0 } => azure_ports_for_pool(vm_ips.len()).unwrap_or(0),
            // Rounded up to a power of two, at most an address's ports.
            Allocation::PerVm { ports } if cloud.provider == Provider::Gcp => {
                ports.next_power_of_two().min(cloud.ports_per_address)
            }
            Allocation::PerVm { ports } => ports,
            Allocation::Dynamic { min, .. } => min.min(cloud.ports_per_address),
        };
        b.ports_per_vm = per_vm;
        let mut blocks = b.blocks_of(per_vm);
        for v in 0..vm_ips.len() {
            match blocks.pop_front() {
                Some(c) => {
                    b.vms[v].push(c);
                    b.ports_per_vm_peak = per_vm;
                }
                None => b.vms_without_ports += 1,
            }
        }
        if matches!(cloud.allocation, Allocation::Dynamic { .. }) {
            b.spare = blocks;
        }
        b
    }

    /// Whether each VM has ports of its own (not one pool shared by every VM).
    pub fn per_vm(&self) -> bool {
        !matches!(self.cloud.allocation, Allocation::Shared { .. })
    }

    /// Every block of `len` ports, address after address, each from port 1024.
    fn blocks_of(&self, len: u32) -> VecDeque<Chunk> {
        let per_address = self.cloud.ports_per_address.checked_div(len).unwrap_or(0);
        let mut out = VecDeque::new();
        for &ip in &self.ips {
            for k in 0..per_address {
                out.push_back(Chunk {
                    ip,
                    lo: (1024 + k * len) as u16,
                    len,
                });
            }
        }
        out
    }

    /// The NAT address and port for a new flow with original tuple `orig`.
    pub fn pick(&mut self, table: &Table, orig: &Tuple) -> Pick {
        let out = self.cloud.provider.out_of_ports();
        if let Allocation::Shared { per_destination } = self.cloud.allocation {
            return self.pick_shared(table, orig, per_destination);
        }
        if self.cloud.eim
            && let Some(&(ip, port, _)) = self.eim.get(&(orig.local_ip, orig.local_port))
        {
            return match table.toward(ip, orig.remote_ip, orig.remote_port) {
                Some(h) if h.has(port) => Pick::Drop(EIM_CONFLICT),
                _ => Pick::Port(ip, port),
            };
        }
        let Some(&vm) = self.vm_of.get(&orig.local_ip) else {
            return Pick::Drop(out);
        };
        let chunks = &self.vms[vm as usize];
        if chunks.is_empty() {
            return Pick::Drop(out);
        }
        let total: u32 = chunks.iter().map(|c| c.len).sum();
        let start = match self.cloud.provider {
            Provider::Gcp => self.rng.random_range(0..total),
            _ => 0,
        };
        if let Some(p) = search(table, chunks, orig, start) {
            return Pick::Port(p.0, p.1);
        }
        match self.grow(vm as usize, total) {
            Some(first_new) => {
                let chunks = &self.vms[vm as usize];
                search(table, &chunks[first_new..], orig, 0)
                    .map_or(Pick::Drop(out), |p| Pick::Port(p.0, p.1))
            }
            None => Pick::Drop(out),
        }
    }

    /// AWS, Azure NAT Gateway: an address under its per-destination limit, at random, and a
    /// free port on it from a random start.
    fn pick_shared(&mut self, table: &Table, orig: &Tuple, per_destination: u32) -> Pick {
        let n = self.ips.len();
        let first = self.rng.random_range(0..n);
        let span = self.cloud.ports_per_address;
        let start = self.rng.random_range(0..span);
        for i in 0..n {
            let ip = self.ips[(first + i) % n];
            let held = table.toward(ip, orig.remote_ip, orig.remote_port);
            if held.is_some_and(|h| h.count >= per_destination) {
                continue;
            }
            let chunk = [Chunk {
                ip,
                lo: 1024,
                len: span,
            }];
            if let Some(p) = search(table, &chunk, orig, start) {
                return Pick::Port(p.0, p.1);
            }
        }
        Pick::Drop(self.cloud.provider.out_of_ports())
    }

    /// Dynamic allocation: doubles VM `vm`'s `total` ports (to at most the maximum) from
    /// the spare blocks; the index of its first new chunk, or `None` when it cannot grow.
    fn grow(&mut self, vm: usize, total: u32) -> Option<usize> {
        let Allocation::Dynamic { min, max } = self.cloud.allocation else {
            return None;
        };
        let want = total.min(max.saturating_sub(total)) / min;
        if want == 0 || self.spare.is_empty() {
            return None;
        }
        let chunks = &mut self.vms[vm];
        let first_new = chunks.len();
        for _ in 0..want {
            let Some(c) = self.spare.pop_front() else {
                break;
            };
            chunks.push(c);
        }
        let now: u32 = chunks.iter().map(|c| c.len).sum();
        self.ports_per_vm_peak = self.ports_per_vm_peak.max(now);
        Some(first_new)
    }

    /// A flow was created with reply tuple `reply`: its endpoint-independent mapping.
    pub fn created(&mut self, orig: &Tuple, reply: &Tuple) {
        if self.cloud.eim && self.cloud.provider == Provider::Gcp {
            let m = self.eim.entry((orig.local_ip, orig.local_port)).or_insert((
                reply.local_ip,
                reply.local_port,
                0,
            ));
            m.2 += 1;
        }
    }

    /// Entry `e` left the table.
    pub fn released(&mut self, e: &Entry) {
        if !self.cloud.eim {
            return;
        }
        let key = (e.orig.local_ip, e.orig.local_port);
        if let Some(m) = self.eim.get_mut(&key) {
            m.2 -= 1;
            if m.2 == 0 {
                self.eim.remove(&key);
            }
        }
    }
}

/// A port of `chunks` (taken as one sequence of their ports) free toward `orig`'s
/// destination, the first at or after position `start`, wrapping.
fn search(table: &Table, chunks: &[Chunk], orig: &Tuple, start: u32) -> Option<(u32, u16)> {
    let mut skip = start;
    let mut at = None;
    for (i, c) in chunks.iter().enumerate() {
        if skip < c.len {
            at = Some((i, skip));
            break;
        }
        skip -= c.len;
    }
    let (first, offset) = at.unwrap_or((0, 0));
    let n = chunks.len();
    for k in 0..=n {
        let i = (first + k) % n;
        let c = chunks[i];
        let (a, b) = match k {
            0 => (u32::from(c.lo) + offset, u32::from(c.lo) + c.len),
            _ if k == n => (u32::from(c.lo), u32::from(c.lo) + offset),
            _ => (u32::from(c.lo), u32::from(c.lo) + c.len),
        };
        let free = match table.toward(c.ip, orig.remote_ip, orig.remote_port) {
            None => (a < b).then_some(a),
            Some(h) => h.first_free(a, b),
        };
        if let Some(p) = free {
            return Some((c.ip, p as u16));
        }
    }
    None
}
