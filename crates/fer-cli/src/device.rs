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
            #[cfg(any(feature = "cuda", feature = "cuda-plain"))]
            DeviceChoice::Cuda => cuda_device(),
            #[cfg(not(any(feature = "cuda", feature = "cuda-plain")))]
            DeviceChoice::Cuda => anyhow::bail!(
                "this fer was built without CUDA; rebuild with `cargo build --release -p fer-cli --features cuda` \
                    (README, section \"GPU\")"
            ),
        }
    }
}

/// Where the NVIDIA kernel driver announces itself on Linux.
#[cfg_attr(not(any(feature = "cuda", feature = "cuda-plain")), allow(dead_code))]
const NVIDIA_DRIVER: &str = "/proc/driver/nvidia/version";

#[cfg(any(feature = "cuda", feature = "cuda-plain"))]
fn cuda_device() -> anyhow::Result<Device> {
    if !std::path::Path::new(NVIDIA_DRIVER).exists() {
        anyhow::bail!(
            "--device cuda: no NVIDIA GPU driver on this machine ({NVIDIA_DRIVER} does not exist); use --device cpu"
        );
    }
    start_device("CUDA GPU 0", || {
        let device = Device::cuda(0);
        // Creating the device is lazy; one tiny round trip makes the runtime start now.
        let _ = burn::tensor::Tensor::<1>::zeros([1], &device).into_data();
        device
    })
}

/// Starts a device, turning a panic in the runtime (burn-cuda panics with `RecvError` on its
/// worker thread when no usable GPU answers) into an error that says which device failed.
#[cfg_attr(not(any(feature = "cuda", feature = "cuda-plain", test)), allow(dead_code))]
pub fn start_device(name: &str, start: impl FnOnce() -> Device + std::panic::UnwindSafe) -> anyhow::Result<Device> {
    let previous = std::panic::take_hook();
    let message = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = message.clone();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut m) = seen.lock() {
            m.get_or_insert_with(|| info.to_string());
        }
    }));
    let result = std::panic::catch_unwind(start);
    std::panic::set_hook(previous);
    result.map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| message.lock().ok().and_then(|m| m.clone()))
            .unwrap_or_else(|| "unknown failure".into());
        anyhow::anyhow!("{name} could not be started: {text}; check `nvidia-smi`, or use --device cpu")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_device_start_is_an_error_that_names_the_device() {
        let err = start_device("CUDA GPU 0", || panic!("called `Result::unwrap()` on an `Err` value: RecvError"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CUDA GPU 0 could not be started")
                && err.contains("RecvError")
                && err.contains("--device cpu"),
            "{err}"
        );
        assert!(start_device("CPU", Device::flex).is_ok());
    }

    #[cfg(not(any(feature = "cuda", feature = "cuda-plain")))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build_it() {
        let err = DeviceChoice::Cuda.device().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
