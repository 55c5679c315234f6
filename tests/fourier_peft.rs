//! FourierFT against PEFT 0.21 itself: positions, ΔW and indices for every fixture adapter
//! (goldens written by tools/make_fixtures.py with torch + peft).

mod common;

use common::{fixtures, rel_err, scratch};
use fourierft::fourier::positions::randperm_prefix;
use fourierft::fourier::{Adapter, AdapterFormat, CpuMethod};
use fourierft::weights::{DType, ModelFiles, SafeTensorsFile};

const CASES: &[(&str, &str)] = &[
    ("llama_a", "tiny_llama"),
    ("llama_b", "tiny_llama"),
    ("llama_pattern", "tiny_llama"),
    ("llama_f16", "tiny_llama"),
    ("bert_cls", "tiny_bert"),
    ("gpt2_conv1d", "tiny_gpt2"),
];

fn check_against_golden(adapter: &Adapter, model_name: &str, golden_name: &str, tol: f64) {
    let model = ModelFiles::open(&fixtures().join(model_name)).expect("open model");
    let fits = adapter.fit(&model).expect("adapter fits its model");
    let golden =
        SafeTensorsFile::open(&fixtures().join(format!("golden/{golden_name}_delta.safetensors")))
            .expect("golden");
    let golden_modules: Vec<&str> = golden
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(".delta_w"))
        .collect();
    let ours: Vec<&str> = fits.iter().map(|f| f.module.as_str()).collect();
    let mut g_sorted = golden_modules.clone();
    g_sorted.sort();
    assert_eq!(
        ours, g_sorted,
        "{golden_name}: adapted modules differ from PEFT's"
    );
    for f in &fits {
        let want_w = golden.tensor(&format!("{}.delta_w", f.module)).unwrap();
        assert_eq!(
            want_w.shape,
            &[f.out_features, f.in_features],
            "{}: ΔW orientation",
            f.module
        );
        // PEFT returns ΔW in the spectrum's dtype; for an F16 spectrum the fixture also holds
        // the unrounded f32 ΔW, which is what we compute (closer to PEFT's f16 result than a
        // second rounding would be: at most half an f16 ulp away everywhere).
        let f32_name = format!("{}.delta_w_f32", f.module);
        let (want_w, tol) = match golden.get(&f32_name) {
            Some(t) => {
                let rounded = want_w.to_f32_vec().unwrap();
                let exact = t.to_f32_vec().unwrap();
                {
                    let m = CpuMethod::Fast;
                    let d = adapter
                        .module_delta(
                            adapter.require_module(&f.module).unwrap(),
                            f.out_features,
                            f.in_features,
                            m,
                        )
                        .unwrap();
                    let e = rel_err(&d.delta, &rounded);
                    assert!(
                        e <= 5e-4,
                        "{golden_name} {}: ΔW vs PEFT's f16 ΔW: {e:.2e}",
                        f.module
                    );
                }
                (exact, tol)
            }
            None => (want_w.to_f32_vec().unwrap(), tol),
        };
        let want_idx = golden
            .tensor(&format!("{}.indices", f.module))
            .unwrap()
            .to_i64_vec()
            .unwrap();
        let m = adapter.require_module(&f.module).unwrap();
        for method in [CpuMethod::Fast, CpuMethod::Reference] {
            let d = adapter
                .module_delta(m, f.out_features, f.in_features, method)
                .unwrap();
            let idx: Vec<i64> = d.rows.iter().chain(&d.cols).map(|&x| x as i64).collect();
            assert_eq!(idx, want_idx, "{golden_name} {}: indices", f.module);
            let e = rel_err(&d.delta, &want_w);
            assert!(
                e <= tol,
                "{golden_name} {} {method:?}: ΔW rel err {e:.2e} > {tol:.0e}",
                f.module
            );
        }
    }
}

#[test]
fn every_fixture_adapter_matches_peft() {
    for (adapter, model) in CASES {
        let a = Adapter::load(&fixtures().join("adapters").join(adapter)).expect("load adapter");
        assert_eq!(a.format, AdapterFormat::Peft);
        check_against_golden(&a, model, adapter, 1e-5);
    }
}

#[test]
fn packed_f32_round_trips_exactly_and_f16_stays_close() {
    let dir = scratch("packed");
    for (name, model) in CASES {
        let a = Adapter::load(&fixtures().join("adapters").join(name)).unwrap();
        let p32 = dir.join(format!("{name}.f32.safetensors"));
        a.write_packed(&p32, DType::F32, None).unwrap();
        let b = Adapter::load(&p32).unwrap();
        assert_eq!(b.format, AdapterFormat::Packed);
        assert_eq!(b.config.raw, a.config.raw, "{name}: config round trip");
        assert_eq!(b.modules.len(), a.modules.len());
        for (x, y) in a.modules.iter().zip(&b.modules) {
            assert_eq!(
                (&x.name, &x.coeffs),
                (&y.name, &y.coeffs),
                "{name}: coefficients"
            );
        }
        assert_eq!(a.extras.len(), b.extras.len());
        for (x, y) in a.extras.iter().zip(&b.extras) {
            assert_eq!(
                (&x.name, &x.shape, &x.values),
                (&y.name, &y.shape, &y.values)
            );
        }
        check_against_golden(&b, model, name, 1e-5);
        // From memory, as an app would after a download.
        let bytes = std::fs::read(&p32).unwrap();
        let c = Adapter::from_packed_bytes(&p32, bytes).unwrap();
        assert_eq!(c.modules[0].coeffs, a.modules[0].coeffs);

        // f16 coefficients: half the size, ΔW within f16 rounding of PEFT's.
        let p16 = dir.join(format!("{name}.f16.safetensors"));
        let size16 = a.write_packed(&p16, DType::F16, None).unwrap();
        let size32 = std::fs::metadata(&p32).unwrap().len();
        assert!(
            size16 < size32,
            "{name}: f16 file {size16} !< f32 file {size32}"
        );
        check_against_golden(&Adapter::load(&p16).unwrap(), model, name, 2e-3);
    }
}

#[test]
fn explicit_positions_are_used_and_checked() {
    let dir = scratch("explicit");
    let a = Adapter::load(&fixtures().join("adapters/llama_a")).unwrap();
    let model = ModelFiles::open(&fixtures().join("tiny_llama")).unwrap();
    let fits = a.fit(&model).unwrap();
    let p = dir.join("explicit.safetensors");
    a.write_packed(&p, DType::F32, Some(&fits)).unwrap();
    let b = Adapter::load(&p).unwrap();
    assert!(b.modules.iter().all(|m| m.positions.is_some()));
    check_against_golden(&b, "tiny_llama", "llama_a", 1e-5);
    // The same file on a model whose layers are too small must be refused.
    let gpt2 = ModelFiles::open(&fixtures().join("tiny_gpt2")).unwrap();
    assert!(b.fit(&gpt2).is_err());
}

#[test]
fn randperm_matches_torch_on_both_paths() {
    let g = SafeTensorsFile::open(&fixtures().join("golden/randperm.safetensors")).unwrap();
    let mut checked = 0;
    for name in g.names() {
        let mut parts = name.split('.').skip(1);
        let total: u64 = parts.next().unwrap().parse().unwrap();
        let seed: u64 = parts.next().unwrap().parse().unwrap();
        let want: Vec<u64> = g
            .tensor(name)
            .unwrap()
            .to_i64_vec()
            .unwrap()
            .iter()
            .map(|&x| x as u64)
            .collect();
        assert_eq!(randperm_prefix(total, want.len(), seed), want, "{name}");
        checked += 1;
    }
    assert!(checked >= 8, "randperm golden holds {checked} cases");
}
