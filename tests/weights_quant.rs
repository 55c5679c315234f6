//! MLX affine quantisation against `mlx.core.quantize` / `dequantize` outputs (mlx 0.32.4)
//! stored in tests/fixtures/quant/mlx_quant.safetensors by tools/. Bit-for-bit.

use std::path::Path;

use fourierft::weights::quant::{dequantize, dequantize_as, dequantize_row, quantize};
use fourierft::weights::{DType, QuantSpec, SafeTensorsFile};

fn fixture() -> SafeTensorsFile {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quant/mlx_quant.safetensors");
    // Must fail (not skip) when the fixture is missing.
    SafeTensorsFile::open(&p)
        .unwrap_or_else(|e| panic!("quantisation fixture missing or unreadable: {e}"))
}

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn quantize_and_dequantize_match_mlx_bit_for_bit() {
    let f = fixture();
    let mut checked = 0;
    let mut bits_seen = std::collections::BTreeSet::new();
    for (dn, dtype) in [
        ("f32", DType::F32),
        ("f16", DType::F16),
        ("bf16", DType::BF16),
    ] {
        let w = f.tensor(&format!("w.{dn}")).unwrap();
        assert_eq!(w.dtype, dtype);
        let (rows, cols) = w.expect_2d().unwrap();
        let wv = w.to_f32_vec().unwrap();
        for bits in QuantSpec::BITS {
            for g in QuantSpec::GROUP_SIZES {
                let key = format!("b{bits}.g{g}.{dn}");
                let Some(qw) = f.get(&format!("{key}.weight")) else {
                    continue;
                };
                let spec = QuantSpec::new(bits, g).unwrap();
                let want_w = qw.to_u32_vec().unwrap();
                let ts = f.tensor(&format!("{key}.scales")).unwrap();
                let tb = f.tensor(&format!("{key}.biases")).unwrap();
                let td = f.tensor(&format!("{key}.dequant")).unwrap();
                assert_eq!(ts.dtype, dtype, "{key}");
                assert_eq!(qw.shape, &[rows, spec.packed_cols(cols).unwrap()], "{key}");
                let want_s = ts.to_f32_vec().unwrap();
                let want_b = tb.to_f32_vec().unwrap();
                let want_d = td.to_f32_vec().unwrap();

                let (got_w, got_s, got_b) = quantize(&wv, rows, cols, spec, dtype);
                let bad_w = got_w.iter().zip(&want_w).filter(|(a, b)| a != b).count();
                assert_eq!(bad_w, 0, "{key}: {bad_w} packed words differ from MLX");
                assert_eq!(bits_of(&got_s), bits_of(&want_s), "{key}: scales differ");
                assert_eq!(bits_of(&got_b), bits_of(&want_b), "{key}: biases differ");

                // MLX's dequantize, exactly (stepwise rounding in the model dtype).
                let d = dequantize_as(&want_w, &want_s, &want_b, rows, cols, spec, dtype);
                let bad = d
                    .iter()
                    .zip(&want_d)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(bad, 0, "{key}: {bad} dequantised values differ from MLX");
                // f32 arithmetic: identical for F32, within one dtype rounding otherwise.
                let d32 = dequantize(&want_w, &want_s, &want_b, rows, cols, spec);
                if dtype == DType::F32 {
                    assert_eq!(bits_of(&d32), bits_of(&want_d), "{key}");
                } else {
                    let tol = if dtype == DType::F16 { 1e-3 } else { 8e-3 };
                    for (k, (a, b)) in d32.iter().zip(&want_d).enumerate() {
                        let gi = (k / cols) * (cols / g) + (k % cols) / g;
                        // One rounding of the product and one of the sum, relative to the operands.
                        let mag = want_b[gi].abs() + want_s[gi].abs() * spec.n_bins() as f32;
                        assert!(
                            (a - b).abs() <= tol * mag,
                            "{key}[{k}]: {a} vs {b} (magnitude {mag})"
                        );
                    }
                }
                checked += 1;
                bits_seen.insert(bits);
            }
        }
    }
    assert!(checked >= 18, "only {checked} fixture entries found");
    assert_eq!(
        bits_seen.len(),
        6,
        "fixture must cover bits 2,3,4,5,6,8: {bits_seen:?}"
    );
}

/// Tiny deterministic generator (xorshift) for self-contained property tests.
fn rand_vec(n: usize, seed: u64, scale: f32, offset: f32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale + offset
        })
        .collect()
}

#[test]
fn roundtrip_error_is_at_most_half_a_step() {
    for bits in QuantSpec::BITS {
        for g in QuantSpec::GROUP_SIZES {
            let spec = QuantSpec::new(bits, g).unwrap();
            let (rows, cols) = (3, 2 * g);
            let w = rand_vec(rows * cols, (bits as u64) * 1000 + g as u64, 0.7, 0.2);
            let (q, s, b) = quantize(&w, rows, cols, spec, DType::F32);
            let d = dequantize(&q, &s, &b, rows, cols, spec);
            for r in 0..rows {
                for c in 0..cols {
                    let gi = r * (cols / g) + c / g;
                    let (step, bias) = (s[gi], b[gi]);
                    let x = w[r * cols + c];
                    let e = (d[r * cols + c] - x).abs();
                    // Codes inside [0, n_bins] are within half a step; MLX's edge-exact scale
                    // can push the far end of the range past n_bins (clamped), by < 1 code.
                    let code = ((x - bias) / step).round_ties_even();
                    let bound = if (0.0..=spec.n_bins() as f32).contains(&code) {
                        0.5
                    } else {
                        1.5
                    };
                    assert!(
                        e <= bound * step.abs() * 1.0001 + 1e-6,
                        "bits {bits} g {g}: err {e} step {step} code {code}"
                    );
                }
            }
            // Row-wise API agrees with the matrix API.
            let packed = spec.packed_cols(cols).unwrap();
            let mut row = vec![0f32; cols];
            dequantize_row(
                &q[packed..2 * packed],
                &s[cols / g..2 * cols / g],
                &b[cols / g..2 * cols / g],
                spec,
                cols,
                &mut row,
            );
            assert_eq!(&row[..], &d[cols..2 * cols]);
        }
    }
}

#[test]
fn straddling_codes_pack_as_one_bit_stream() {
    // 3-bit codes 0..7 repeated: code 10 occupies bits 30..33 and straddles words 0 and 1.
    let spec = QuantSpec::new(3, 32).unwrap();
    let cols = 32;
    let w: Vec<f32> = (0..cols).map(|k| (k % 8) as f32).collect();
    let (q, s, b) = quantize(&w, 1, cols, spec, DType::F32);
    assert_eq!(q.len(), 3);
    let mut expect = [0u32; 3];
    for k in 0..cols {
        // max=7 has the larger magnitude: scale = -1, bias = 7, code = 7 - w.
        let code = (7 - k % 8) as u64;
        let p = k * 3;
        let wide = code << (p % 32);
        expect[p / 32] |= wide as u32;
        if p % 32 + 3 > 32 {
            expect[p / 32 + 1] |= (wide >> 32) as u32;
        }
    }
    assert_eq!(q, expect);
    assert_eq!(dequantize(&q, &s, &b, 1, cols, spec), w);
}

#[test]
fn spec_validation() {
    assert!(QuantSpec::new(7, 64).is_err());
    assert!(QuantSpec::new(4, 48).is_err());
    let e = QuantSpec::new(1, 64).unwrap_err().to_string();
    assert!(e.contains("bits must be one of 2, 3, 4, 5, 6, 8"), "{e}");
    let s = QuantSpec::new(4, 64).unwrap();
    assert_eq!(s.packed_cols(128), Some(16));
    assert_eq!(s.packed_cols(96), None);
    assert_eq!(s.unpacked_cols(16), Some(128));
    assert_eq!(QuantSpec::new(6, 32).unwrap().packed_cols(64), Some(12));
}

#[test]
fn half_precision_outputs_are_representable() {
    let spec = QuantSpec::new(4, 32).unwrap();
    let w = rand_vec(64, 9, 3.0, 1.0);
    for dt in [DType::F16, DType::BF16] {
        let (_, s, b) = quantize(&w, 1, 64, spec, dt);
        for v in s.iter().chain(&b) {
            assert_eq!(dt.round_f32(*v).to_bits(), v.to_bits());
        }
    }
}
