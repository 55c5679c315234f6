//! `fourierft demo`: the adapter pipeline on the committed tiny-llama fixture — inspect the
//! base, load two PEFT adapters and a packed copy, check them against the model, rebuild every
//! adapted layer's ΔW and compare it with PEFT's own output (the committed goldens).

use std::time::Instant;

use fourierft::fourier::delta::relative_max_error;
use fourierft::fourier::{Adapter, CpuMethod};
use fourierft::weights::{DType, ModelFiles, SafeTensorsFile};
use fourierft::{Error, Result};

pub fn run() -> Result<()> {
    let fx = crate::repo_root().join("tests/fixtures");
    let model_dir = fx.join("tiny_llama");
    let t = Instant::now();
    let model = ModelFiles::open(&model_dir)?;
    let c = &model.config;
    outln!(
        "base model {}: {} ({} layers, hidden {}, {} tensors, {} bytes), opened in {:.2} ms",
        model_dir.display(),
        c.model_type,
        c.num_hidden_layers,
        c.hidden_size,
        model.weights.len(),
        model.weights.total_bytes(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let packed =
        std::env::temp_dir().join(format!("fourierft-demo-{}.safetensors", std::process::id()));
    for name in ["llama_a", "llama_b"] {
        let dir = fx.join("adapters").join(name);
        let t = Instant::now();
        let a = Adapter::load(&dir)?;
        let fits = a.fit(&model)?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        let bytes = a.write_packed(&packed, DType::F16, None)?;
        let p = Adapter::load(&packed)?;
        outln!(
            "\nadapter {name}: {} layers, {} coefficients, seed {}, scaling {}; PEFT folder {} bytes, packed f16 {} bytes; loaded+checked in {:.2} ms",
            a.modules.len(),
            a.modules.iter().map(|m| m.n()).sum::<usize>(),
            a.config.random_loc_seed,
            a.config.scaling,
            a.file_bytes,
            bytes,
            load_ms
        );
        let golden =
            SafeTensorsFile::open(&fx.join("golden").join(format!("{name}_delta.safetensors")))?;
        for f in &fits {
            let m = a.require_module(&f.module)?;
            let t = Instant::now();
            let d = a.module_delta(m, f.out_features, f.in_features, CpuMethod::Fast)?;
            let us = t.elapsed().as_secs_f64() * 1e6;
            let want: Vec<f64> = golden
                .tensor(&format!("{}.delta_w", f.module))?
                .to_f32_vec()?
                .into_iter()
                .map(f64::from)
                .collect();
            let err = relative_max_error(&d.delta, &want);
            let pm = p.require_module(&f.module)?;
            let dp = p.module_delta(pm, f.out_features, f.in_features, CpuMethod::Fast)?;
            let err16 = relative_max_error(&dp.delta, &want);
            outln!(
                "  {:<36} {:>3}x{:<3} n={:<3} ΔW in {:>6.1} µs  vs PEFT: {:.1e} (f32), {:.1e} (packed f16)",
                f.module, f.out_features, f.in_features, f.n, us, err, err16
            );
            if err > 1e-5 {
                return Err(Error::InvalidArgument(format!(
                    "{}: ΔW differs from PEFT's by {err:.2e} of max|ΔW|",
                    f.module
                )));
            }
        }
    }
    let _ = std::fs::remove_file(&packed);
    outln!("\nAll ΔW match PEFT within 1e-5 of max|ΔW|. (Text generation arrives with the model runtime.)");
    Ok(())
}
