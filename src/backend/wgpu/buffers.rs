//! GPU buffers. Tensors are uploaded straight from their (possibly unaligned) mmap bytes
//! with one copy into a mapped-at-creation buffer, padded to a multiple of 4 bytes.

use crate::error::{Error, Result};
use crate::weights::{DType, TensorView};

use super::context::GpuContext;

/// A tensor on the GPU: the raw little-endian bytes of the file, as stored.
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Bytes of tensor data (the buffer may be up to 3 bytes longer).
    pub bytes: u64,
}

/// Round up to a multiple of 4 (buffer sizes and copies must be).
pub fn pad4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

impl GpuContext {
    /// A storage buffer holding `data` (one copy, zero padded to 4 bytes).
    pub fn upload_bytes(
        &self,
        label: &str,
        data: &[u8],
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        let size = pad4(data.len().max(4) as u64);
        if size > self.limits.max_buffer_size {
            return Err(Error::Gpu(format!(
                "{label}: {size} bytes exceed this device's largest buffer ({} bytes)",
                self.limits.max_buffer_size
            )));
        }
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: true,
        });
        {
            let mut view = buffer
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| Error::Gpu(format!("{label}: cannot map for upload: {e}")))?;
            view.slice(..data.len()).copy_from_slice(data);
        }
        buffer.unmap();
        Ok(buffer)
    }

    /// Upload one tensor from its mmap view (one copy).
    pub fn upload_tensor(&self, t: &TensorView<'_>) -> Result<GpuTensor> {
        let buffer = self.upload_bytes(
            t.name,
            t.data,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(GpuTensor {
            buffer,
            dtype: t.dtype,
            shape: t.shape.to_vec(),
            bytes: t.data.len() as u64,
        })
    }

    /// An uninitialised storage buffer of `size` bytes (padded to 4).
    pub fn storage(&self, label: &str, size: u64) -> Result<wgpu::Buffer> {
        let size = pad4(size.max(4));
        if size > self.limits.max_buffer_size {
            return Err(Error::Gpu(format!(
                "{label}: {size} bytes exceed this device's largest buffer ({} bytes)",
                self.limits.max_buffer_size
            )));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A uniform buffer with `data`.
    pub fn uniform(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        self.upload_bytes(label, data, wgpu::BufferUsages::UNIFORM)
    }

    /// Read `size` bytes of `buffer` back to the host (waits for the GPU).
    pub fn read_back(&self, buffer: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        let padded = pad4(size.max(4));
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read-back"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read-back"),
            });
        enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, padded);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("read-back: the map callback never ran".into()))?
            .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
        let out = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("read-back: {e}")))?;
            view[..size as usize].to_vec()
        };
        staging.unmap();
        Ok(out)
    }
}

/// Little-endian f32s from bytes.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
