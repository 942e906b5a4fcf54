//! Re-encodes Q4_1 weights as Q8_0 while the model loads, tensor by tensor.
//!
//! candle multiplies Q8_0 weights with hand-written AVX2 kernels chosen at run time, while Q4_1 only has
//! a portable scalar loop (fast only when the whole build targets the host CPU). Q8_0 holds every Q4_1
//! value almost exactly (8-bit against 4-bit steps), so answers stay the same while a portable build
//! runs at host-CPU speed. The cost: the weights take about 1.7× the memory.
//!
//! The GGUF reader of candle's model reads each tensor with a seek and one exact read. This module
//! gives it a virtual file in which the Q4_1 tensors are Q8_0 ones, produced on demand from the real
//! file, so no second copy of the weights is ever held.

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

enum Source {
    /// Bytes copied from the real file at this absolute offset.
    Copy(u64),
    /// A tensor of the real file, re-encoded.
    Requant(TensorInfo),
}

struct Region {
    start: u64,
    len: u64,
    source: Source,
}

/// A `Read + Seek` view of a GGUF file's tensor data with Q4_1 tensors as Q8_0.
pub struct Requantizing<R> {
    inner: R,
    data_offset: u64,
    regions: Vec<Region>,
    size: u64,
    pos: u64,
    cached: Option<(usize, Vec<u8>)>,
}

fn byte_len(dtype: GgmlDType, elems: usize) -> u64 {
    (elems / dtype.block_size() * dtype.type_size()) as u64
}

/// Rewrites `content` to describe the virtual file (same names and shapes, Q8_0 where there was Q4_1)
/// and returns the reader that serves it. `reader` is the real file.
pub fn requantize_q4_1<R: Read + Seek>(
    content: &mut Content,
    reader: R,
) -> (Requantizing<R>, usize) {
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    let mut regions = Vec::with_capacity(names.len());
    let mut pos = 0u64;
    let mut converted = 0usize;
    for name in names {
        let Some(info) = content.tensor_infos.get_mut(&name) else {
            continue;
        };
        let elems = info.shape.elem_count();
        let (len, source) =
            if info.ggml_dtype == GgmlDType::Q4_1 && elems % GgmlDType::Q8_0.block_size() == 0 {
                converted += 1;
                let original = TensorInfo {
                    ggml_dtype: info.ggml_dtype,
                    shape: info.shape.clone(),
                    offset: info.offset,
                };
                info.ggml_dtype = GgmlDType::Q8_0;
                (byte_len(GgmlDType::Q8_0, elems), Source::Requant(original))
            } else {
                (
                    byte_len(info.ggml_dtype, elems),
                    Source::Copy(content.tensor_data_offset + info.offset),
                )
            };
        info.offset = pos;
        regions.push(Region {
            start: pos,
            len,
            source,
        });
        pos += len;
    }
    let data_offset = content.tensor_data_offset;
    content.tensor_data_offset = 0;
    (
        Requantizing {
            inner: reader,
            data_offset,
            regions,
            size: pos,
            pos: 0,
            cached: None,
        },
        converted,
    )
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl<R: Read + Seek> Requantizing<R> {
    fn region_at(&self, pos: u64) -> Option<usize> {
        let i = self.regions.partition_point(|r| r.start + r.len <= pos);
        (i < self.regions.len() && self.regions[i].start <= pos).then_some(i)
    }

    fn converted(&mut self, index: usize) -> std::io::Result<&[u8]> {
        if self.cached.as_ref().map(|(i, _)| *i) != Some(index) {
            let Source::Requant(info) = &self.regions[index].source else {
                return Err(io_error("not a converted tensor"));
            };
            let bytes = info
                .read(&mut self.inner, self.data_offset, &Device::Cpu)
                .and_then(|q| q.dequantize(&Device::Cpu))
                .and_then(|t| QTensor::quantize(&t, GgmlDType::Q8_0))
                .and_then(|q| q.data().map(|d| d.into_owned()))
                .map_err(io_error)?;
            self.cached = Some((index, bytes));
        }
        match &self.cached {
            Some((_, bytes)) => Ok(bytes),
            None => Err(io_error("conversion lost")),
        }
    }
}

impl<R: Read + Seek> Read for Requantizing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(index) = self.region_at(self.pos) else {
            return Ok(0);
        };
        let (start, len) = (self.regions[index].start, self.regions[index].len);
        let within = self.pos - start;
        let n = usize::try_from(len - within)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match self.regions[index].source {
            Source::Copy(at) => {
                self.inner.seek(SeekFrom::Start(at + within))?;
                self.inner.read_exact(&mut buf[..n])?;
            }
            Source::Requant(_) => {
                let bytes = self.converted(index)?;
                let from = usize::try_from(within).map_err(io_error)?;
                let chunk = bytes
                    .get(from..from + n)
                    .ok_or_else(|| io_error("converted tensor has an unexpected size"))?;
                buf[..n].copy_from_slice(chunk);
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Requantizing<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io_error("seek out of range"))?;
        Ok(self.pos)
    }
}
