//! FourierFT: generator, positions, adapters, ΔW on the CPU. No GPU code.
