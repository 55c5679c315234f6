//! Spectral positions: the first `n` entries of
//! `torch.randperm(out*in, generator=torch.Generator().manual_seed(seed))`, split into
//! (row = idx / in, col = idx % in) exactly as PEFT's `FourierFTLayer.update_layer` does.
//!
//! torch has two CPU paths (aten randperm_cpu):
//! - N < u32::MAX / 20 (= 214,748,364): forward Fisher–Yates with 32-bit draws,
//!   `z = random() % (N - i); swap(r[i], r[i + z])`. Entry i is final after step i, so the
//!   first n entries need n draws; untouched entries are the identity, so a sparse map of
//!   the swapped slots is all the memory needed: O(n).
//! - otherwise the inside-out shuffle with 64-bit draws, `z = random64() % (i + 1);
//!   r[i] = r[z]; r[z] = i`. Values only move from a lower slot to a higher one, so slots
//!   below n are only ever written with `r[z] = i` (z < n) after the first n steps: track the
//!   first n slots only. Every one of the N draws is still needed (O(N) time, O(n) memory).

use std::collections::HashMap;

use super::mt19937::Mt19937;

/// torch's switch-over point between the two randperm algorithms.
pub const LARGE_PERM_THRESHOLD: u64 = (u32::MAX / 20) as u64;

/// First `n` entries of torch's `randperm(total)` for `seed`. `n` is clamped to `total`.
pub fn randperm_prefix(total: u64, n: usize, seed: u64) -> Vec<u64> {
    let n = (n as u64).min(total) as usize;
    let mut g = Mt19937::new(seed);
    if total < LARGE_PERM_THRESHOLD {
        forward_prefix(&mut g, total, n)
    } else {
        inside_out_prefix(&mut g, total, n)
    }
}

/// torch's path for N < 214,748,364 (forward Fisher–Yates, 32-bit draws), first n slots.
fn forward_prefix(g: &mut Mt19937, total: u64, n: usize) -> Vec<u64> {
    let mut swapped: HashMap<u64, u64> = HashMap::with_capacity(n * 2);
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let ri = swapped.get(&i).copied().unwrap_or(i);
        if i + 1 >= total {
            // The last slot gets no draw in torch's loop (i < N - 1).
            out.push(ri);
            break;
        }
        let z = (g.next_u32() as u64) % (total - i);
        let j = i + z;
        let rj = swapped.get(&j).copied().unwrap_or(j);
        swapped.insert(j, ri);
        out.push(rj);
    }
    out
}

/// torch's path for large N (inside-out shuffle, 64-bit draws), first n slots.
fn inside_out_prefix(g: &mut Mt19937, total: u64, n: usize) -> Vec<u64> {
    let mut r = vec![0u64; n];
    for i in 0..total {
        let z = (g.next_u64() % (i + 1)) as usize;
        if (i as usize) < n {
            r[i as usize] = r[z];
            r[z] = i;
        } else if z < n {
            r[z] = i;
        }
    }
    r
}

/// Spectral positions of one layer: `(rows, cols)` with rows over `out_features`
/// and cols over `in_features`, as PEFT's `indices[0]`, `indices[1]`.
pub fn spectral_positions(
    seed: u64,
    out_features: usize,
    in_features: usize,
    n: usize,
) -> (Vec<u32>, Vec<u32>) {
    let total = out_features as u64 * in_features as u64;
    let idx = randperm_prefix(total, n, seed);
    let inn = in_features as u64;
    let rows = idx.iter().map(|&k| (k / inn) as u32).collect();
    let cols = idx.iter().map(|&k| (k % inn) as u32).collect();
    (rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain full-array implementation of both torch paths, to check the sparse ones.
    fn full(total: u64, seed: u64, force_large: bool) -> Vec<u64> {
        let mut g = Mt19937::new(seed);
        if !force_large {
            let mut r: Vec<u64> = (0..total).collect();
            for i in 0..total.saturating_sub(1) {
                let z = g.next_u32() as u64 % (total - i);
                r.swap(i as usize, (i + z) as usize);
            }
            r
        } else {
            let mut r = vec![0u64; total as usize];
            for i in 0..total {
                let z = (g.next_u64() % (i + 1)) as usize;
                r[i as usize] = r[z];
                r[z] = i;
            }
            r
        }
    }

    #[test]
    fn sparse_forward_matches_full_shuffle() {
        for &(total, seed) in &[(1u64, 0u64), (2, 1), (10, 0), (97, 777), (1000, 3)] {
            let f = full(total, seed, false);
            for n in [0usize, 1, total as usize / 2, total as usize] {
                assert_eq!(
                    randperm_prefix(total, n, seed),
                    f[..n].to_vec(),
                    "N={total} n={n}"
                );
            }
        }
    }

    #[test]
    fn architecture_check_values_4096_squared() {
        let got = randperm_prefix(4096 * 4096, 5, 777);
        assert_eq!(got, vec![1374311, 8240085, 6766295, 6474818, 14786199]);
    }

    #[test]
    fn sparse_inside_out_matches_full_shuffle() {
        for &(total, seed) in &[(1u64, 0u64), (50, 9), (333, 777)] {
            let f = full(total, seed, true);
            for n in [0usize, 1, 17.min(total as usize), total as usize] {
                let got = inside_out_prefix(&mut Mt19937::new(seed), total, n);
                assert_eq!(got, f[..n].to_vec(), "N={total} n={n}");
            }
        }
    }
}
