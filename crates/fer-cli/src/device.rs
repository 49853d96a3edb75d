//! The one place that picks a burn backend.

use burn::tensor::Device;

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum DeviceChoice {
    /// burn's pure-Rust `flex` CPU backend.
    #[default]
    Cpu,
    /// burn's CUDA backend (GPU 0); needs a build with `--features cuda`.
    Cuda,
}

impl DeviceChoice {
    pub fn device(self) -> anyhow::Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda => Ok(Device::cuda(0)),
            #[cfg(not(feature = "cuda"))]
            DeviceChoice::Cuda => anyhow::bail!("this fer was built without CUDA; rebuild with `cargo build --release -p fer-cli --features cuda`"),
        }
    }
}
