//! Next-token sampling: greedy, temperature, top-k, top-p (nucleus), with a small seeded
//! PRNG (xoshiro256**, seeded through splitmix64) so a seed gives the same text on every
//! platform. No allocation per call once the scratch buffer has grown to the vocabulary size.
//!
//! Order of operations, as in transformers' logits warpers: temperature, top-k, top-p, then
//! one draw from the renormalised distribution.
//!
//! Degenerate input never panics: NaN logits count as -inf; when no logit is above -inf (or
//! `logits` is empty) the result is id 0, which is also what `torch.argmax` gives for an
//! all -inf row. +inf logits win outright (one is drawn uniformly among them; greedy takes
//! the lowest id).

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// 0 (or negative, or NaN) = greedy argmax, ties to the lowest id like `torch.argmax`;
    /// +inf = uniform over the tokens whose logit is above -inf.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability sums to ≥ top_p
    /// (always at least one); ≥ 1.0 (or NaN) = off.
    pub top_p: f32,
    pub seed: u64,
}

impl SamplerConfig {
    /// Deterministic argmax decoding.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl Default for SamplerConfig {
    /// Plain sampling from the model's distribution: temperature 1, no top-k, no top-p, seed 0.
    fn default() -> Self {
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// xoshiro256** (Blackman & Vigna), state filled by splitmix64 from a 64-bit seed.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Picks token ids from logits; holds the RNG and a scratch buffer of (weight, id) pairs.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// Candidates: (unnormalised probability, token id). Capacity grows to the vocab size.
    cand: Vec<(f32, u32)>,
}

/// Greedy choice: the largest logit, ties to the lowest id, NaN ignored; 0 when none is
/// above -inf or `logits` is empty.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

/// Descending weight, then ascending id (so equal weights resolve like argmax).
fn by_weight_desc(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        Sampler {
            cfg,
            rng: Rng::new(cfg.seed),
            cand: Vec::new(),
        }
    }

    /// A sampler with its scratch buffer already sized for `vocab_size` logits, so that even
    /// the first call does not allocate.
    pub fn with_vocab(cfg: SamplerConfig, vocab_size: usize) -> Self {
        let mut s = Self::new(cfg);
        s.cand.reserve(vocab_size);
        s
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Restart the random sequence (same as a new sampler with this seed).
    pub fn reseed(&mut self, seed: u64) {
        self.cfg.seed = seed;
        self.rng = Rng::new(seed);
    }

    /// Whether this configuration always takes the argmax.
    pub fn is_greedy(&self) -> bool {
        let t = self.cfg.temperature;
        t.is_nan() || t <= 0.0 || self.cfg.top_k == 1
    }

    /// The next token id for one row of logits (length = vocab size).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.is_greedy() {
            return argmax(logits);
        }
        let t = self.cfg.temperature;
        let max = logits
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        if max == f32::NEG_INFINITY {
            return 0; // empty, or every logit is -inf / NaN
        }

        // softmax(l / t) up to a constant: exp((l - max) / t). Zero weights are dropped.
        self.cand.clear();
        if max == f32::INFINITY {
            for (i, &l) in logits.iter().enumerate() {
                if l == f32::INFINITY {
                    self.cand.push((1.0, i as u32));
                }
            }
        } else {
            for (i, &l) in logits.iter().enumerate() {
                if l > f32::NEG_INFINITY {
                    let w = ((l - max) / t).exp();
                    if w > 0.0 {
                        self.cand.push((w, i as u32));
                    }
                }
            }
        }
        let mut sorted = false;

        // top-k: partial selection, then order the k survivors.
        let k = self.cfg.top_k;
        if k > 0 && k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, by_weight_desc);
            self.cand.truncate(k);
            self.cand.sort_unstable_by(by_weight_desc);
            sorted = true;
        }

        // top-p: the shortest prefix (by descending probability) with mass ≥ p.
        let p = self.cfg.top_p;
        if p < 1.0 && self.cand.len() > 1 {
            let total: f64 = self.cand.iter().map(|c| c.0 as f64).sum();
            if !sorted {
                // A token lighter than (1 - p) / (n - 1) of the mass is never in the nucleus
                // unless it is the most likely one (the llama2.c pruning), so skip sorting
                // those. The top weight is exactly 1 (exp(0)), hence the min.
                let n = self.cand.len() as f64;
                let cutoff = ((1.0 - p.max(0.0) as f64) / (n - 1.0) * total).min(1.0) as f32;
                self.cand.retain(|c| c.0 >= cutoff);
                self.cand.sort_unstable_by(by_weight_desc);
            }
            let target = p.max(0.0) as f64 * total;
            let mut cum = 0.0f64;
            let mut keep = self.cand.len();
            for (j, c) in self.cand.iter().enumerate() {
                cum += c.0 as f64;
                if cum >= target {
                    keep = j + 1;
                    break;
                }
            }
            self.cand.truncate(keep.max(1));
        }

        let total: f64 = self.cand.iter().map(|c| c.0 as f64).sum();
        let r = self.rng.next_f64() * total;
        let mut cum = 0.0f64;
        for c in &self.cand {
            cum += c.0 as f64;
            if r < cum {
                return c.1;
            }
        }
        // Rounding left r at the very top: the last candidate.
        self.cand.last().map(|c| c.1).unwrap_or(0)
    }
}
