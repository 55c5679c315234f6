//! Rotary embedding frequencies as transformers computes them (default, linear, llama3).

use crate::weights::config::RopeScaling;

/// `inv_freq[i] = 1 / theta^(2i/d)`, i < d/2, with the model's scaling applied.
pub fn inv_freq(head_dim: usize, theta: f64, scaling: Option<&RopeScaling>) -> Vec<f32> {
    let half = head_dim / 2;
    let base: Vec<f64> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
        .collect();
    let scaled: Vec<f64> = match scaling {
        None => base,
        Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let old = *original_max_position_embeddings as f64;
            let low_wavelen = old / low_freq_factor;
            let high_wavelen = old / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    };
    scaled.into_iter().map(|f| f as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_llama3() {
        let f = inv_freq(8, 10000.0, None);
        assert_eq!(f.len(), 4);
        assert!((f[0] - 1.0).abs() < 1e-7 && (f[1] - 0.1).abs() < 1e-7);
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let g = inv_freq(128, 500000.0, Some(&s));
        // High frequencies untouched, the lowest divided by the factor.
        assert_eq!(g[0], inv_freq(128, 500000.0, None)[0]);
        assert!((g[63] - inv_freq(128, 500000.0, None)[63] / 8.0).abs() < 1e-12);
    }
}
